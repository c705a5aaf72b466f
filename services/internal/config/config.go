// Package config loads a service's settings: defaults set in code, then a
// TOML file (https://toml.io/en/v1.0.0), then environment variables, then the
// service's own Validate method.
//
// A service describes its settings as a struct with `toml:"..."` tags and
// fills in the defaults before calling Load:
//
//	type Config struct {
//		Listen   string `toml:"listen" help:"gRPC listen address"`
//		Database struct {
//			DSN string `toml:"dsn"`
//		} `toml:"database"`
//		Lockout struct {
//			Base time.Duration `toml:"base"`
//		} `toml:"lockout"`
//	}
//
// Decoding is strict: a key the struct does not have is an error, since a
// misspelt key silently ignored is a setting the operator believes is on.
//
// Every leaf can be overridden by an environment variable named by the prefix
// and the key path in upper case joined by "_": with the prefix
// "POSTCOVE_AUTH", database.dsn is POSTCOVE_AUTH_DATABASE_DSN. That is what
// docker compose files set. Supported leaf types: string, bool, the integer
// and float kinds, time.Duration, []string (comma-separated in the
// environment) and any type implementing encoding.TextUnmarshaler. Other
// fields (maps, arrays of tables) can only be set in the file.
//
// Durations are plain time.Duration fields, written as Go duration strings in
// both places ("5s", "1h30m"). A bare TOML integer for a duration is refused:
// the decoder would read it as nanoseconds, which nobody means.
package config

import (
	"errors"
	"fmt"
	"os"
	"reflect"
	"strings"
	"time"

	"github.com/BurntSushi/toml"
)

// Validator is implemented by configuration structs that check themselves
// after loading. Use Errors to report every problem at once.
type Validator interface {
	Validate() error
}

// Load fills dst (a pointer to a struct whose fields carry `toml:"..."` tags,
// already holding defaults) from the TOML file at path (skipped when path is
// "") and then from environment variables named with envPrefix, then calls
// dst.Validate() if dst implements Validator.
func Load(path, envPrefix string, dst any) error {
	return load(path, envPrefix, dst, os.LookupEnv)
}

// load is Load with the environment passed in, for tests that run in
// parallel.
func load(path, envPrefix string, dst any, lookup func(string) (string, bool)) error {
	rv := reflect.ValueOf(dst)
	if rv.Kind() != reflect.Pointer || rv.IsNil() || rv.Elem().Kind() != reflect.Struct {
		return fmt.Errorf("config: destination must be a non-nil pointer to a struct, got %T", dst)
	}
	if path != "" {
		if err := loadFile(path, dst); err != nil {
			return err
		}
	}
	fromEnv, err := applyEnv(envPrefix, rv.Elem(), lookup)
	if err != nil {
		return fmt.Errorf("config: environment: %w", err)
	}
	v, ok := dst.(Validator)
	if !ok {
		return nil
	}
	err = v.Validate()
	var verr *ValidationError
	if errors.As(err, &verr) {
		for i, f := range verr.Fields {
			if f.Env == "" {
				verr.Fields[i].Env = fromEnv[f.Key]
			}
		}
	}
	return err
}

// loadFile decodes the TOML file at path into dst, refusing unknown keys and
// integer durations.
func loadFile(path string, dst any) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("config: %w", err)
	}
	md, err := toml.Decode(string(data), dst)
	if err != nil {
		return fmt.Errorf("config %s: %w", path, decodeError(err))
	}
	if unknown := topmost(md.Undecoded()); len(unknown) > 0 {
		return fmt.Errorf("config %s: %w", path, &UnknownKeysError{Keys: unknown})
	}
	if err := checkDurations(md, reflect.ValueOf(dst).Elem()); err != nil {
		return fmt.Errorf("config %s: %w", path, err)
	}
	return nil
}

// UnknownKeysError lists keys in the file that the configuration struct does
// not have, typically misspellings.
type UnknownKeysError struct {
	Keys []string
}

func (e *UnknownKeysError) Error() string {
	quoted := make([]string, len(e.Keys))
	for i, k := range e.Keys {
		quoted[i] = fmt.Sprintf("%q", k)
	}
	if len(quoted) == 1 {
		return "unknown key " + quoted[0]
	}
	return "unknown keys " + strings.Join(quoted, ", ")
}

// topmost returns the undecoded keys without those inside an undecoded table:
// for a misspelt [databse] table the operator needs to hear "databse" once,
// not once for each key in it.
func topmost(keys []toml.Key) []string {
	var out []string
	var last string
	for _, k := range keys {
		s := k.String()
		if last != "" && strings.HasPrefix(s, last+".") {
			continue
		}
		out = append(out, s)
		last = s
	}
	return out
}

// decodeError rewords the TOML library's errors: it keeps the line and key
// the library found and drops its "toml: " prefix, which the "config PATH:"
// context makes redundant.
func decodeError(err error) error {
	var pe toml.ParseError
	if errors.As(err, &pe) {
		msg := fmt.Sprintf("line %d: %s", pe.Position.Line, pe.Message)
		if pe.LastKey != "" {
			msg = fmt.Sprintf("line %d, key %q: %s", pe.Position.Line, pe.LastKey, pe.Message)
		}
		return &wrapped{msg: msg, err: err}
	}
	msg := strings.TrimPrefix(err.Error(), "toml: ")
	// Type errors read `line 4 (last key "database.max_open"): ...`;
	// make them read like the parse errors above.
	if before, rest, ok := strings.Cut(msg, " (last key "); ok && strings.HasPrefix(before, "line ") {
		if key, tail, ok := strings.Cut(rest, "): "); ok {
			msg = before + ", key " + key + ": " + tail
		}
	}
	return &wrapped{msg: msg, err: err}
}

// wrapped gives an error a new message and keeps it for errors.As.
type wrapped struct {
	msg string
	err error
}

func (w *wrapped) Error() string { return w.msg }
func (w *wrapped) Unwrap() error { return w.err }

// checkDurations refuses TOML integers for time.Duration fields.
func checkDurations(md toml.MetaData, v reflect.Value) error {
	durations := map[string]bool{}
	for _, f := range leaves(v, nil) {
		if f.value.Type() == durationType {
			durations[strings.ToLower(f.key())] = true
		}
	}
	for _, k := range md.Keys() {
		// The decoder matches keys case-insensitively, so do we.
		key := strings.Join(k, ".")
		if durations[strings.ToLower(key)] && md.Type(k...) == "Integer" {
			return fmt.Errorf("key %q: a duration must be a string such as \"30s\" or \"5m\", not an integer (which would mean nanoseconds)", key)
		}
	}
	return nil
}

// SetDefault sets *v to def when it is not positive: the zero value of an
// option struct's limit or timeout means "the default".
func SetDefault[T int | int64 | time.Duration](v *T, def T) {
	if *v <= 0 {
		*v = def
	}
}
