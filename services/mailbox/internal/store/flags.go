package store

import (
	"fmt"
	"slices"
	"strings"
)

// maxKeywordLen bounds a keyword; dovecot's own limit is near this.
const maxKeywordLen = 128

// systemFlag returns the canonical form of a storable system flag given in
// lower case.
func systemFlag(lower string) (string, bool) {
	for _, f := range []string{FlagSeen, FlagAnswered, FlagFlagged, FlagDeleted, FlagDraft} {
		if strings.ToLower(f) == lower {
			return f, true
		}
	}
	return "", false
}

// NormalizeFlags validates flags and returns them sorted and without
// duplicates (flags compare case-insensitively, RFC 9051 section 2.3.2):
// system flags in canonical spelling, keywords as first given. \Recent is
// dropped (it cannot be stored); another "\" flag or a keyword that is not
// an IMAP atom is ErrInvalidFlag.
func NormalizeFlags(flags []string) ([]string, error) {
	out := make([]string, 0, len(flags))
	for _, f := range flags {
		if strings.HasPrefix(f, `\`) {
			lf := strings.ToLower(f)
			if lf == `\recent` {
				continue
			}
			c, ok := systemFlag(lf)
			if !ok {
				return nil, fmt.Errorf("%w: %q", ErrInvalidFlag, f)
			}
			f = c
		} else if !validKeyword(f) {
			return nil, fmt.Errorf("%w: %q", ErrInvalidFlag, f)
		}
		if !HasFlag(out, f) {
			out = append(out, f)
		}
	}
	slices.Sort(out)
	return out, nil
}

// validKeyword reports whether k is an IMAP atom (RFC 9051 section 9,
// flag-keyword): no controls, spaces, atom-specials or 8-bit characters.
func validKeyword(k string) bool {
	if k == "" || len(k) > maxKeywordLen {
		return false
	}
	for i := 0; i < len(k); i++ {
		c := k[i]
		if c <= ' ' || c >= 0x7f || strings.IndexByte(`(){%*"\]`, c) >= 0 {
			return false
		}
	}
	return true
}

// HasFlag reports whether flags holds f, case-insensitively.
func HasFlag(flags []string, f string) bool {
	for _, g := range flags {
		if strings.EqualFold(g, f) {
			return true
		}
	}
	return false
}

// ApplyFlags returns cur changed by op with normalized flags (both sorted),
// and whether anything changed. cur is not modified.
func ApplyFlags(cur []string, op FlagOp, flags []string) ([]string, bool) {
	var next []string
	switch op {
	case FlagsReplace:
		next = slices.Clone(flags)
	case FlagsAdd:
		next = slices.Clone(cur)
		for _, f := range flags {
			if !HasFlag(next, f) {
				next = append(next, f)
			}
		}
		slices.Sort(next)
	case FlagsRemove:
		next = make([]string, 0, len(cur))
		for _, f := range cur {
			if !HasFlag(flags, f) {
				next = append(next, f)
			}
		}
	}
	if len(next) == len(cur) {
		same := true
		for i := range next {
			if !strings.EqualFold(next[i], cur[i]) {
				same = false
				break
			}
		}
		if same {
			return cur, false
		}
	}
	return next, true
}

// Keywords returns the flags that are keywords (not system flags).
func Keywords(flags []string) []string {
	var ks []string
	for _, f := range flags {
		if !strings.HasPrefix(f, `\`) {
			ks = append(ks, f)
		}
	}
	return ks
}
