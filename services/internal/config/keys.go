package config

import (
	"encoding"
	"fmt"
	"io"
	"reflect"
	"strings"
	"text/tabwriter"
	"time"
)

// KeyInfo describes one setting, for a service's configuration reference
// (the `config` subcommand).
type KeyInfo struct {
	Key     string // TOML key path, e.g. "database.dsn"
	Env     string // environment variable; "" when the type cannot be set there
	Type    string // "string", "bool", "integer", "number", "duration", "list of strings", or the Go type
	Default string // the value dst held, formatted as it would be written
	Help    string // the field's `help:"..."` tag
}

// Keys lists every setting of dst (a struct or a pointer to one) in
// declaration order, with its current value as the default. Call it on a
// struct that holds only the defaults.
func Keys(envPrefix string, dst any) []KeyInfo {
	v := reflect.ValueOf(dst)
	for v.Kind() == reflect.Pointer {
		if v.IsNil() {
			return nil
		}
		v = v.Elem()
	}
	if v.Kind() != reflect.Struct {
		return nil
	}
	var out []KeyInfo
	for _, f := range leaves(v, nil) {
		info := KeyInfo{
			Key:     f.key(),
			Type:    typeName(f.value.Type()),
			Default: format(f.value),
			Help:    f.tag.Tag.Get("help"),
		}
		if envSettable(f.value.Type()) {
			info.Env = envName(envPrefix, f.path)
		}
		out = append(out, info)
	}
	return out
}

func typeName(t reflect.Type) string {
	if t == durationType {
		return "duration"
	}
	if reflect.PointerTo(t).Implements(textUnmarshal) {
		return t.String()
	}
	switch t.Kind() {
	case reflect.String:
		return "string"
	case reflect.Bool:
		return "bool"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "integer"
	case reflect.Float32, reflect.Float64:
		return "number"
	case reflect.Slice:
		if t.Elem().Kind() == reflect.String {
			return "list of strings"
		}
	}
	return t.String()
}

// format writes v the way an operator would set it in the environment.
func format(v reflect.Value) string {
	if v.Type() == durationType {
		return time.Duration(v.Int()).String()
	}
	if m, ok := v.Interface().(encoding.TextMarshaler); ok {
		if b, err := m.MarshalText(); err == nil {
			return string(b)
		}
	}
	if v.Kind() == reflect.Slice && v.Type().Elem().Kind() == reflect.String {
		items := make([]string, v.Len())
		for i := range items {
			items[i] = v.Index(i).String()
		}
		return strings.Join(items, ",")
	}
	return fmt.Sprint(v.Interface())
}

// WriteReference prints the settings of dst as a table (key, environment
// variable, type, default, help) for a service's `config` subcommand.
func WriteReference(w io.Writer, envPrefix string, dst any) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "KEY\tENVIRONMENT\tTYPE\tDEFAULT\tDESCRIPTION")
	for _, k := range Keys(envPrefix, dst) {
		env, def := k.Env, k.Default
		if env == "" {
			env = "-"
		}
		if def == "" {
			def = `""`
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", k.Key, env, k.Type, def, k.Help)
	}
	return tw.Flush()
}
