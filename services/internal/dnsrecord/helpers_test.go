package dnsrecord

import (
	"errors"
	"strings"
	"testing"
)

// errorTest is a record a parser must refuse: the term its error names
// ("" for the record as a whole) and a phrase of the error.
type errorTest struct {
	in   string
	term string
	msg  string
}

// testErrors checks that parse refuses each record with the *Error
// described.
func testErrors(t *testing.T, fn, record string, tests []errorTest, parse func(string) error) {
	t.Helper()
	for _, tt := range tests {
		err := parse(tt.in)
		var e *Error
		if !errors.As(err, &e) {
			t.Errorf("%s(%q) = %v, want an *Error", fn, tt.in, err)
			continue
		}
		if e.Term != tt.term || !strings.Contains(e.Error(), tt.msg) {
			t.Errorf("%s(%q) = %q (term %q), want term %q and %q", fn, tt.in, err, e.Term, tt.term, tt.msg)
		}
		checkError(t, fn, tt.in, record, err)
	}
}

// mustParse returns what parse makes of s, or nil after reporting its
// error.
func mustParse[T any](t *testing.T, fn, s string, parse func(string) (*T, error)) *T {
	t.Helper()
	v, err := parse(s)
	if err != nil {
		t.Errorf("%s(%q) = %v, want no error", fn, s, err)
		return nil
	}
	return v
}

// fuzzParse is the body of a fuzz target: parse must not panic, must
// return nothing but an *Error when it refuses s, and what it accepts is
// handed to check for the invariants of the record type.
func fuzzParse[T any](t *testing.T, fn, record, s string, parse func(string) (*T, error), check func(*T)) {
	t.Helper()
	v, err := parse(s)
	if err != nil {
		if v != nil {
			t.Errorf("%s(%q) = %+v, %v: want nothing with an error", fn, s, v, err)
		}
		checkError(t, fn, s, record, err)
		return
	}
	check(v)
}

// addSeeds adds the records of the error tables to f's corpus.
func addSeeds(f *testing.F, tables ...[]errorTest) {
	for _, tests := range tables {
		for _, tt := range tests {
			f.Add(tt.in)
		}
	}
}

// checkError checks that err is an *Error for record whose term, if any,
// is where it says.
func checkError(t *testing.T, fn, s, record string, err error) {
	t.Helper()
	var e *Error
	if !errors.As(err, &e) {
		t.Errorf("%s(%q) = %v (%T), want an *Error", fn, s, err, err)
		return
	}
	if e.Record != record || e.Msg == "" {
		t.Errorf("%s(%q) = %+v, want record %q and a message", fn, s, e, record)
	}
	if e.Term == "" {
		if e.Pos != -1 {
			t.Errorf("%s(%q) = %+v: position without a term", fn, s, e)
		}
		return
	}
	if e.Pos < 0 || e.Pos > len(s) || !strings.HasPrefix(s[e.Pos:], e.Term) {
		t.Errorf("%s(%q) = %+v: the term is not at its position", fn, s, e)
	}
}
