package config

import (
	"encoding"
	"errors"
	"fmt"
	"reflect"
	"strconv"
	"strings"
	"time"
)

// EnvError is a bad environment override. Its message names both the
// variable, which is what the operator typed, and the key, which is what
// the documentation lists:
//
//	POSTCOVE_AUTH_LOCKOUT_BASE (lockout.base): invalid duration "x"
type EnvError struct {
	Var string // environment variable
	Key string // TOML key path
	Err error
}

func (e *EnvError) Error() string { return fmt.Sprintf("%s (%s): %v", e.Var, e.Key, e.Err) }
func (e *EnvError) Unwrap() error { return e.Err }

// envName is the environment variable that overrides the key path: the
// prefix, then the path in upper case joined by "_". Characters that shells
// do not allow in names ("-", ".") become "_" too.
func envName(prefix string, path []string) string {
	name := strings.ToUpper(strings.Join(path, "_"))
	name = strings.NewReplacer("-", "_", ".", "_").Replace(name)
	if prefix == "" {
		return name
	}
	return prefix + "_" + name
}

// applyEnv sets every leaf of v that has a variable in lookup. It returns
// the key → variable of the ones it set, and every bad value at once, so an
// operator fixes them in one round.
func applyEnv(prefix string, v reflect.Value, lookup func(string) (string, bool)) (map[string]string, error) {
	set := map[string]string{}
	var errs []error
	for _, f := range leaves(v, nil) {
		if !envSettable(f.value.Type()) {
			continue
		}
		name := envName(prefix, f.path)
		s, ok := lookup(name)
		if !ok {
			continue
		}
		if err := setString(f.value, s); err != nil {
			errs = append(errs, &EnvError{Var: name, Key: f.key(), Err: err})
			continue
		}
		set[f.key()] = name
	}
	return set, errors.Join(errs...)
}

// envSettable reports whether setString knows the type. Other fields (maps,
// slices of tables) can only be set in the file.
func envSettable(t reflect.Type) bool {
	if t == durationType || reflect.PointerTo(t).Implements(textUnmarshal) {
		return true
	}
	switch t.Kind() {
	case reflect.String, reflect.Bool,
		reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64,
		reflect.Float32, reflect.Float64:
		return true
	case reflect.Slice:
		return t.Elem().Kind() == reflect.String
	}
	return false
}

// setString parses s into v by v's type. Error messages quote the value and
// say what was expected; the caller adds the variable and key.
func setString(v reflect.Value, s string) error {
	if v.Type() == durationType {
		d, err := time.ParseDuration(s)
		if err != nil {
			return fmt.Errorf("invalid duration %q (want Go syntax such as \"90s\" or \"1h30m\")", s)
		}
		v.SetInt(int64(d))
		return nil
	}
	if u, ok := v.Addr().Interface().(encoding.TextUnmarshaler); ok {
		if err := u.UnmarshalText([]byte(s)); err != nil {
			return fmt.Errorf("invalid value %q: %w", s, err)
		}
		return nil
	}
	switch v.Kind() {
	case reflect.String:
		v.SetString(s)
	case reflect.Bool:
		b, err := parseBool(s)
		if err != nil {
			return err
		}
		v.SetBool(b)
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		n, err := strconv.ParseInt(strings.TrimSpace(s), 10, v.Type().Bits())
		if err != nil {
			return numError("integer", s, v.Type(), err)
		}
		v.SetInt(n)
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		n, err := strconv.ParseUint(strings.TrimSpace(s), 10, v.Type().Bits())
		if err != nil {
			return numError("non-negative integer", s, v.Type(), err)
		}
		v.SetUint(n)
	case reflect.Float32, reflect.Float64:
		n, err := strconv.ParseFloat(strings.TrimSpace(s), v.Type().Bits())
		if err != nil {
			return numError("number", s, v.Type(), err)
		}
		v.SetFloat(n)
	case reflect.Slice:
		items := splitList(s)
		list := reflect.MakeSlice(v.Type(), len(items), len(items))
		for i, item := range items {
			list.Index(i).SetString(item)
		}
		v.Set(list)
	default:
		return fmt.Errorf("type %s cannot be set from the environment", v.Type())
	}
	return nil
}

func numError(want, s string, t reflect.Type, err error) error {
	if errors.Is(err, strconv.ErrRange) {
		return fmt.Errorf("%q is out of range for %s", s, t)
	}
	return fmt.Errorf("invalid %s %q", want, s)
}

// parseBool accepts what strconv.ParseBool does plus the yes/no and on/off
// that operators write in compose files.
func parseBool(s string) (bool, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "1", "t", "true", "yes", "y", "on":
		return true, nil
	case "0", "f", "false", "no", "n", "off":
		return false, nil
	}
	return false, fmt.Errorf("invalid boolean %q (want true or false)", s)
}

// splitList splits a comma-separated list, trimming spaces and dropping
// empty items, so "" is the empty list and "a, b," is {"a", "b"}.
func splitList(s string) []string {
	var out []string
	for item := range strings.SplitSeq(s, ",") {
		if item = strings.TrimSpace(item); item != "" {
			out = append(out, item)
		}
	}
	return out
}
