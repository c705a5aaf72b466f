package config

import (
	"encoding"
	"reflect"
	"strings"
	"time"
)

// field is one leaf of a configuration struct: a value that a TOML key or an
// environment variable can set.
type field struct {
	path  []string // TOML key path, e.g. {"database", "dsn"}
	value reflect.Value
	tag   reflect.StructField
}

// key is the dotted TOML key of the field, as operators write it.
func (f field) key() string { return strings.Join(f.path, ".") }

var (
	durationType  = reflect.TypeFor[time.Duration]()
	textUnmarshal = reflect.TypeFor[encoding.TextUnmarshaler]()
)

// leaves returns every leaf field of the struct v in declaration order,
// descending into nested structs (tables) the way the TOML decoder does:
// the key is the toml tag, else the Go field name; "-" and unexported fields
// are skipped; an untagged embedded struct adds its fields to the parent.
// Nil pointers to structs are skipped: there is nothing to set through them.
func leaves(v reflect.Value, path []string) []field {
	var out []field
	t := v.Type()
	for i := range t.NumField() {
		sf := t.Field(i)
		name, tagged := keyName(sf)
		if name == "" {
			continue
		}
		fv := v.Field(i)
		if fv.Kind() == reflect.Pointer && fv.Type().Elem().Kind() == reflect.Struct && !isLeafType(fv.Type()) {
			if fv.IsNil() {
				continue
			}
			fv = fv.Elem()
		}
		if fv.Kind() == reflect.Struct && !isLeafType(fv.Type()) {
			sub := append(append([]string(nil), path...), name)
			if sf.Anonymous && !tagged {
				sub = path
			}
			out = append(out, leaves(fv, sub)...)
			continue
		}
		out = append(out, field{path: append(append([]string(nil), path...), name), value: fv, tag: sf})
	}
	return out
}

// keyName returns the TOML key for a struct field ("" to skip it) and whether
// it came from a tag.
func keyName(sf reflect.StructField) (string, bool) {
	if !sf.IsExported() && !sf.Anonymous {
		return "", false
	}
	tag, ok := sf.Tag.Lookup("toml")
	name, _, _ := strings.Cut(tag, ",")
	switch {
	case name == "-":
		return "", false
	case ok && name != "":
		return name, true
	}
	if !sf.IsExported() && !(sf.Anonymous && sf.Type.Kind() == reflect.Struct) {
		return "", false
	}
	return sf.Name, false
}

// isLeafType reports whether values of t are set as a whole (from one TOML
// value or one environment variable) rather than descended into.
func isLeafType(t reflect.Type) bool {
	if t == durationType {
		return true
	}
	if t.Implements(textUnmarshal) || reflect.PointerTo(t).Implements(textUnmarshal) {
		return true
	}
	return t.Kind() != reflect.Struct && !(t.Kind() == reflect.Pointer && t.Elem().Kind() == reflect.Struct)
}
