package config

import (
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"
)

// FieldError is one invalid setting found by a Validate method.
type FieldError struct {
	Key string // TOML key path, e.g. "database.driver"
	Msg string // what is wrong, e.g. `must be sqlite or mysql, got "x"`
	// Env is the environment variable the value came from, when it did not
	// come from the file or the default. Load fills it in so the operator
	// looks in the right place.
	Env string
}

func (e FieldError) Error() string {
	if e.Env != "" {
		return fmt.Sprintf("%s (from %s): %s", e.Key, e.Env, e.Msg)
	}
	return e.Key + ": " + e.Msg
}

// Errors collects the problems a Validate method finds so that it reports
// all of them at once rather than one per restart. The zero value is ready
// to use:
//
//	var errs config.Errors
//	if c.Driver != "sqlite" && c.Driver != "mysql" {
//		errs.Add("database.driver", "must be sqlite or mysql, got %q", c.Driver)
//	}
//	config.CheckAddr(&errs, "listen", c.Listen)
//	return errs.Err()
type Errors struct {
	fields []FieldError
}

// Add records that the setting key is invalid; format and args describe why.
func (e *Errors) Add(key, format string, args ...any) {
	e.fields = append(e.fields, FieldError{Key: key, Msg: fmt.Sprintf(format, args...)})
}

// Len is the number of problems recorded.
func (e *Errors) Len() int { return len(e.fields) }

// Err returns nil when nothing was recorded, else a *ValidationError listing
// every problem. Errors itself is deliberately not an error, so that an empty
// collector can never be returned as a non-nil one.
func (e *Errors) Err() error {
	if len(e.fields) == 0 {
		return nil
	}
	return &ValidationError{Fields: slices.Clone(e.fields)}
}

// ValidationError is what Errors.Err returns: every invalid setting, in the
// order they were found.
type ValidationError struct {
	Fields []FieldError
}

// Error reads "invalid configuration: a.b: why; c: why" (one line, so it
// stays whole in a JSON log line).
func (e *ValidationError) Error() string {
	parts := make([]string, len(e.Fields))
	for i, f := range e.Fields {
		parts[i] = f.Error()
	}
	return "invalid configuration: " + strings.Join(parts, "; ")
}

// Unwrap gives errors.As access to each FieldError.
func (e *ValidationError) Unwrap() []error {
	errs := make([]error, len(e.Fields))
	for i, f := range e.Fields {
		errs[i] = f
	}
	return errs
}

// Join returns the key for name inside the table prefix ("tls", "cert_file"
// → "tls.cert_file"); an empty prefix returns name. Nested configuration
// types use it in Validate methods that take their own key prefix.
func Join(prefix, name string) string {
	if prefix == "" {
		return name
	}
	return prefix + "." + name
}

// CheckAddr records a problem when value is not a host:port listen or dial
// address with a numeric port (0-65535). The host may be empty (all
// interfaces), a name, or an IP address ("[::1]:25" for IPv6).
func CheckAddr(errs *Errors, key, value string) {
	if value == "" {
		errs.Add(key, "missing address (want host:port)")
		return
	}
	host, port, err := net.SplitHostPort(value)
	if err != nil {
		errs.Add(key, "invalid address %q (want host:port)", value)
		return
	}
	if strings.ContainsAny(host, " \t/") {
		errs.Add(key, "invalid host %q in address %q", host, value)
		return
	}
	if _, err := strconv.ParseUint(port, 10, 16); err != nil {
		errs.Add(key, "invalid port %q in address %q (want 0-65535)", port, value)
	}
}

// CheckOneOf records a problem when value is not one of allowed.
func CheckOneOf(errs *Errors, key, value string, allowed ...string) {
	if slices.Contains(allowed, value) {
		return
	}
	quoted := make([]string, len(allowed))
	for i, a := range allowed {
		quoted[i] = strconv.Quote(a)
	}
	errs.Add(key, "must be one of %s, got %q", strings.Join(quoted, ", "), value)
}
