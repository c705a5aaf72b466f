package address

import (
	"errors"
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"
)

func FuzzParse(f *testing.F) {
	for _, tt := range parseTests {
		f.Add(tt.in)
	}
	for _, tt := range domainTests {
		f.Add("user@" + tt.in)
		f.Add("@" + tt.in)
	}
	f.Add("a+b+c@d.example")
	f.Add("a.+b@d.example")
	f.Fuzz(func(t *testing.T, s string) {
		for _, p := range []struct {
			name  string
			parse func(string) (Address, error)
		}{{"Parse", Parse}, {"ParseSource", ParseSource}} {
			a, err := p.parse(s)
			if err != nil {
				checkError(t, p.name, s, err)
				if a != (Address{}) {
					t.Errorf("%s(%q) = %v, %v: want the zero Address with an error", p.name, s, a, err)
				}
				continue
			}
			checkAddress(t, p.name, s, a, p.name == "ParseSource")
			again, err := p.parse(a.String())
			if err != nil || again != a {
				t.Errorf("%s(%q) = %v, but %s(%q) = %v, %v", p.name, s, a, p.name, a.String(), again, err)
			}
			if b, ok := a.StripTag("+"); ok {
				checkAddress(t, "StripTag", a.String(), b, false)
				if again, err := Parse(b.String()); err != nil || again != b {
					t.Errorf("%v.StripTag(\"+\") = %v, but Parse(%q) = %v, %v", a, b, b, again, err)
				}
			}
		}
	})
}

func FuzzParseDomain(f *testing.F) {
	for _, tt := range domainTests {
		f.Add(tt.in)
	}
	for _, tt := range parseTests {
		if _, d, ok := strings.Cut(tt.in, "@"); ok {
			f.Add(d)
		}
	}
	f.Fuzz(func(t *testing.T, s string) {
		d, err := ParseDomain(s)
		if err != nil {
			checkError(t, "ParseDomain", s, err)
			if d != "" {
				t.Errorf("ParseDomain(%q) = %q, %v: want \"\" with an error", s, d, err)
			}
			return
		}
		checkDomain(t, "ParseDomain", s, d)
		if again, err := ParseDomain(d); err != nil || again != d {
			t.Errorf("ParseDomain(%q) = %q, but ParseDomain(%q) = %q, %v", s, d, d, again, err)
		}
		// The display form must lead back to the same domain.
		if again, err := ParseDomain(DomainUnicode(d)); err != nil || again != d {
			t.Errorf("ParseDomain(DomainUnicode(%q)) = %q, %v, want %q", d, again, err, d)
		}
		// A domain accepted on its own is accepted in an address.
		if a, err := ParseSource("@" + d); err != nil || a.Domain != d {
			t.Errorf("ParseSource(%q) = %v, %v, want domain %q", "@"+d, a, err, d)
		}
	})
}

func checkError(t *testing.T, fn, s string, err error) {
	t.Helper()
	var e *Error
	if !errors.As(err, &e) {
		t.Fatalf("%s(%q) returned %T %v, want *Error", fn, s, err, err)
	}
	if e.Input != s || e.Reason == "" {
		t.Errorf("%s(%q) returned %#v", fn, s, e)
	}
}

// checkAddress verifies the invariants every accepted address satisfies.
func checkAddress(t *testing.T, fn, s string, a Address, catchAll bool) {
	t.Helper()
	str := a.String()
	if len(str) > maxAddressLen {
		t.Errorf("%s(%q) = %q: %d octets, more than %d", fn, s, str, len(str), maxAddressLen)
	}
	checkDomain(t, fn, s, a.Domain)
	l := a.Local
	if l == "" {
		if !catchAll {
			t.Errorf("%s(%q) = %v: empty local part", fn, s, a)
		}
		return
	}
	switch {
	case len(l) > maxLocalLen:
		t.Errorf("%s(%q) = %v: local part longer than %d octets", fn, s, a, maxLocalLen)
	case !utf8.ValidString(l):
		t.Errorf("%s(%q) = %v: local part is not UTF-8", fn, s, a)
	case strings.ContainsAny(l, "/\\\x00@%!:,;<>\"()[] "):
		t.Errorf("%s(%q) = %v: local part contains a refused character", fn, s, a)
	case strings.Contains(l, ".."), strings.HasPrefix(l, "."), strings.HasSuffix(l, "."):
		t.Errorf("%s(%q) = %v: local part has a bad dot", fn, s, a)
	case foldLocal(l) != l:
		t.Errorf("%s(%q) = %v: local part is not canonical", fn, s, a)
	}
	for _, r := range l {
		if unicode.In(r, unicode.C, unicode.Z, unicode.Variation_Selector, unicode.Other_Default_Ignorable_Code_Point) {
			t.Errorf("%s(%q) = %v: local part contains %U", fn, s, a, r)
		}
	}
}

// checkDomain verifies the invariants every accepted domain satisfies.
func checkDomain(t *testing.T, fn, s, d string) {
	t.Helper()
	if len(d) > maxDomainLen {
		t.Errorf("%s(%q): domain %q longer than %d octets", fn, s, d, maxDomainLen)
	}
	if !strings.Contains(d, ".") || strings.Contains(d, "..") || strings.HasPrefix(d, ".") || strings.HasSuffix(d, ".") {
		t.Errorf("%s(%q): domain %q has a bad dot", fn, s, d)
	}
	for i := 0; i < len(d); i++ {
		if c := d[i]; !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-' || c == '.') {
			t.Errorf("%s(%q): domain %q contains %q", fn, s, d, c)
		}
	}
	for label := range strings.SplitSeq(d, ".") {
		if len(label) > maxLabelLen || strings.HasPrefix(label, "-") || strings.HasSuffix(label, "-") {
			t.Errorf("%s(%q): domain %q has a bad label %q", fn, s, d, label)
		}
	}
}
