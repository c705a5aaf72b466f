package address

import (
	"errors"
	"strings"
	"testing"
)

type parseTest struct {
	in   string
	want Address // zero when an error is expected
	err  string  // substring of Error.Reason; empty when in is valid
}

// parseTests are shared by Parse, ParseSource and the fuzz seeds.
var parseTests = []parseTest{
	// Plain and case folding.
	{in: "user@example.com", want: Address{"user", "example.com"}},
	{in: "User@Example.COM", want: Address{"user", "example.com"}},
	{in: "USER.Name@EXAMPLE.com", want: Address{"user.name", "example.com"}},
	{in: "a@b.c", want: Address{"a", "b.c"}},
	{in: "first.last+tag@example.com", want: Address{"first.last+tag", "example.com"}},
	{in: "o'brien@example.ie", want: Address{"o'brien", "example.ie"}},
	{in: "#$&'*+-=?^_`{|}~@example.com", want: Address{"#$&'*+-=?^_`{|}~", "example.com"}},
	{in: "1234@example.com", want: Address{"1234", "example.com"}},
	{in: "user@example.com.", want: Address{"user", "example.com"}},
	{in: "user@sub.mail-host.example.com", want: Address{"user", "sub.mail-host.example.com"}},
	{in: "user@123.example", want: Address{"user", "123.example"}},

	// Unicode local parts (RFC 6531) and IDN domains (RFC 5891).
	{in: "Ünïcødé@Bücher.Example", want: Address{"ünïcødé", "xn--bcher-kva.example"}},
	{in: "ünïcødé@xn--bcher-kva.example", want: Address{"ünïcødé", "xn--bcher-kva.example"}},
	{in: "ÜNÏCØDÉ@XN--BCHER-KVA.EXAMPLE", want: Address{"ünïcødé", "xn--bcher-kva.example"}},
	{in: "u\u0308ser@example.com", want: Address{"\u00fcser", "example.com"}}, // NFD -> NFC
	{in: "\u212aelvin@example.com", want: Address{"kelvin", "example.com"}},   // KELVIN SIGN
	{in: "ΣΟΦΙΑ@example.gr", want: Address{"σοφια", "example.gr"}},
	{in: "STRAẞE@example.de", want: Address{"straße", "example.de"}},
	{in: "कुमार@example.in", want: Address{"कुमार", "example.in"}},
	{in: "用户@例子.测试", want: Address{"用户", "xn--fsqu00a.xn--0zwm56d"}},
	{in: "user@faß.de", want: Address{"user", "xn--fa-hia.de"}}, // non-transitional: ß stays
	{in: "user@ＥＸＡＭＰＬＥ．com", want: Address{"user", "example.com"}},
	{in: "user@example.com。", want: Address{"user", "example.com"}},
	{in: "user@col·legi.cat", want: Address{"user", "xn--collegi-xma.cat"}},
	{in: "٣@example.com", want: Address{"٣", "example.com"}},

	// Path-like local parts.
	{in: "../etc@example.com", err: "starts with '.'"},
	{in: "..@example.com", err: "relative path"},
	{in: ".@example.com", err: "relative path"},
	{in: "a/b@example.com", err: "'/'"},
	{in: "a\\b@example.com", err: `'\'`},
	{in: ".hidden@example.com", err: "starts with '.'"},
	{in: "a..b@example.com", err: "'..'"},
	{in: "a.@example.com", err: "ends with '.'"},
	{in: "%2e%2e@example.com", err: "percent-hack"},
	{in: "a\u2215b@example.com", err: "U+2215"}, // DIVISION SLASH
	{in: "a\uff0fb@example.com", err: "U+FF0F"}, // FULLWIDTH SOLIDUS
	{in: "a\u2024b@example.com", err: "U+2024"}, // ONE DOT LEADER

	// Control, invisible and whitespace characters.
	{in: "a\x00b@example.com", err: "NUL"},
	{in: "a\x07b@example.com", err: "control character U+0007"},
	{in: "a\x7fb@example.com", err: "control character U+007F"},
	{in: "a\u0085b@example.com", err: "U+0085"},
	{in: "a\u0090b@example.com", err: "control character U+0090"},
	{in: "a\u200bb@example.com", err: "invisible"},
	{in: "a\u200db@example.com", err: "invisible"},
	{in: "a\u200fb@example.com", err: "invisible"},
	{in: "a\u202eb@example.com", err: "invisible"},
	{in: "a\u2066b@example.com", err: "invisible"},
	{in: "a\u00adb@example.com", err: "invisible"},
	{in: "a\ufeffb@example.com", err: "invisible"},
	{in: "a\ufe0fb@example.com", err: "invisible"},
	{in: "a\u3164b@example.com", err: "invisible"},
	{in: "a\u2028b@example.com", err: "line break"},
	{in: "a\u2029b@example.com", err: "line break"},
	{in: "a b@example.com", err: "whitespace"},
	{in: "a\tb@example.com", err: "whitespace"},
	{in: "a\u00a0b@example.com", err: "whitespace"},
	{in: " user@example.com", err: "leading or trailing whitespace"},
	{in: "user@example.com ", err: "leading or trailing whitespace"},
	{in: "user@example.com\r\n", err: "leading or trailing whitespace"},
	{in: "user@exa\x00mple.com", err: "NUL"},
	{in: "user@exa\u200bmple.com", err: "invisible"},
	{in: "a\xffb@example.com", err: "UTF-8"},
	{in: "user@\xc3\x28.com", err: "UTF-8"},

	// Other Unicode in local parts.
	{in: "a\U0001F4A9@example.com", err: "U+1F4A9"},
	{in: "\u0301a@example.com", err: "combining mark"},
	{in: "a.\u0301b@example.com", err: "combining mark"},
	{in: "a\ue000@example.com", err: "private-use"},
	{in: "a\U000E0041@example.com", err: "invisible"}, // TAG LATIN CAPITAL LETTER A
	{in: "a\u0378@example.com", err: "unassigned"},
	{in: "a\ufffd@example.com", err: "U+FFFD"},
	{in: "a\u00b2@example.com", err: "U+00B2"},  // SUPERSCRIPT TWO
	{in: "a\u037e@example.com", err: "U+037E"},  // GREEK QUESTION MARK, NFC ';'
	{in: "a\uff20b@example.com", err: "U+FF20"}, // FULLWIDTH COMMERCIAL AT

	// Quoting, relay hacks, source routes and list syntax.
	{in: `"a b"@example.com`, err: "quoted"},
	{in: `"ab"@example.com`, err: "quoted"},
	{in: `a"b@example.com`, err: "quoted"},
	{in: "a%b@c.example", err: "percent-hack"},
	{in: "b!a@c.example", err: "bang path"},
	{in: "@a.example,@b.example:user@c.example", err: "source route"},
	{in: "@a.example:user@c.example", err: "source route"},
	{in: "a:b@c.example", err: "':'"},
	{in: "a,b@c.example", err: "address-list"},
	{in: "a;b@c.example", err: "address-list"},
	{in: "<a@c.example>", err: "angle brackets"},
	{in: "a<b@c.example", err: "angle brackets"},
	{in: "a(comment)@c.example", err: "comments"},
	{in: "a[b]@c.example", err: "not allowed in a local part"},
	{in: "a@b@c.example", err: "more than one '@'"},
	{in: "a@b.example@", err: "more than one '@'"},

	// Structure.
	{in: "", err: "empty"},
	{in: "user", err: "missing '@'"},
	{in: "user@", err: "missing domain"},
	{in: "@example.com", err: "empty local part"},
	{in: "@", err: "missing domain"},

	// Domains.
	{in: "user@localhost", err: "single-label"},
	{in: "user@com", err: "single-label"},
	{in: "user@[192.0.2.1]", err: "address literals"},
	{in: "user@[IPv6:2001:db8::1]", err: "address literals"},
	{in: "user@192.0.2.1", err: "all digits"},
	{in: "user@.example.com", err: "empty label"},
	{in: "user@example..com", err: "empty label"},
	{in: "user@example.com..", err: "empty label"},
	{in: "user@.", err: "only a dot"},
	{in: "user@-example.com", err: "starts or ends with '-'"},
	{in: "user@example-.com", err: "starts or ends with '-'"},
	{in: "user@ab--cd.com", err: "internationalised"},
	{in: "user@a_b.example.com", err: "'_'"},
	{in: "user@exa/mple.com", err: "'/'"},
	{in: "user@exa\\mple.com", err: `'\'`},
	{in: "user@exa mple.com", err: "whitespace"},
	{in: "user@exa%mple.com", err: "'%'"},
	{in: "user@xn--abc.com", err: "internationalised"},
	{in: "user@xn--example.com", err: "internationalised"},
	{in: "user@\U0001F4A9.la", err: "U+1F4A9"},
	{in: "user@xn--ls8h.la", err: "U+1F4A9"},
	{in: "user@a\u00b7b.cat", err: "MIDDLE DOT"},
	{in: "user@" + strings.Repeat("a", 64) + ".com", err: "more than the 63 allowed"},
	{in: "user@" + strings.Repeat("a", 63) + ".com", want: Address{"user", strings.Repeat("a", 63) + ".com"}},
	{in: "user@" + strings.Repeat("ü", 60) + ".com", err: "more than the 63 allowed"},

	// Lengths.
	{in: strings.Repeat("a", 64) + "@example.com", want: Address{strings.Repeat("a", 64), "example.com"}},
	{in: strings.Repeat("a", 65) + "@example.com", err: "more than the 64 allowed"},
	{in: strings.Repeat("ü", 33) + "@example.com", err: "more than the 64 allowed"},
	{in: strings.Repeat("u\u0308", 32) + "@example.com", want: Address{strings.Repeat("ü", 32), "example.com"}},
	{in: "a@" + strings.Repeat("a.", 124) + "comm", want: Address{"a", strings.Repeat("a.", 124) + "comm"}}, // 254 octets
	{in: "ab@" + strings.Repeat("a.", 124) + "comm", err: "255 octets long, more than the 254 allowed"},
	{in: "a@" + strings.Repeat("a.", 125) + "com", err: "255 octets long, more than the 254 allowed"},
	{in: "a@" + strings.Repeat("a.", 126) + "com", err: "255 octets long, more than the 253 allowed"},
	{in: strings.Repeat("a", 2000) + "@example.com", err: "far more"},
}

func TestParse(t *testing.T) {
	for _, tt := range parseTests {
		got, err := Parse(tt.in)
		checkParse(t, "Parse", tt, got, err)
	}
}

func TestParseSource(t *testing.T) {
	for _, tt := range parseTests {
		if tt.in == "@example.com" {
			continue // accepted as a catch-all, tested below
		}
		got, err := ParseSource(tt.in)
		checkParse(t, "ParseSource", tt, got, err)
	}
	catchAll := []parseTest{
		{in: "@example.com", want: Address{"", "example.com"}},
		{in: "@Bücher.Example.", want: Address{"", "xn--bcher-kva.example"}},
		{in: "@localhost", err: "single-label"},
		{in: "@[192.0.2.1]", err: "address literals"},
		{in: "@a.example,@b.example:u@c.example", err: "source route"},
		{in: "@a.example:u@c.example", err: "source route"},
		{in: "@@example.com", err: "more than one '@'"},
		{in: "@", err: "missing domain"},
	}
	for _, tt := range catchAll {
		got, err := ParseSource(tt.in)
		checkParse(t, "ParseSource", tt, got, err)
	}
}

func checkParse(t *testing.T, fn string, tt parseTest, got Address, err error) {
	t.Helper()
	if tt.err == "" {
		if err != nil || got != tt.want {
			t.Errorf("%s(%q) = %v, %v, want %v", fn, tt.in, got, err, tt.want)
			return
		}
		// Canonical output is stable.
		again, err := ParseSource(got.String())
		if err != nil || again != got {
			t.Errorf("%s(%q) = %v, but ParseSource(%q) = %v, %v", fn, tt.in, got, got.String(), again, err)
		}
		return
	}
	var e *Error
	if !errors.As(err, &e) {
		t.Errorf("%s(%q) = %v, %v, want error containing %q", fn, tt.in, got, err, tt.err)
		return
	}
	if got != (Address{}) || e.Input != tt.in || !strings.Contains(e.Reason, tt.err) {
		t.Errorf("%s(%q) = %v, %v, want error containing %q", fn, tt.in, got, err, tt.err)
	}
	if e.Reason != strings.ToLower(e.Reason[:1])+e.Reason[1:] {
		t.Errorf("%s(%q): reason %q does not start in lower case", fn, tt.in, e.Reason)
	}
}

func TestEquivalent(t *testing.T) {
	groups := [][]string{
		{"Ünïcødé@Bücher.Example", "ünïcødé@xn--bcher-kva.example", "U\u0308NI\u0308C\u00d8DE\u0301@BU\u0308CHER.example."},
		{"user@bücher.example", "USER@xn--bcher-kva.example", "User@XN--BCHER-KVA.EXAMPLE."},
		{"kelvin@example.com", "\u212aELVIN@example.com", "Kelvin@EXAMPLE.com"},
	}
	for _, g := range groups {
		first, err := Parse(g[0])
		if err != nil {
			t.Errorf("Parse(%q) = %v", g[0], err)
			continue
		}
		for _, s := range g[1:] {
			if got, err := Parse(s); err != nil || got != first {
				t.Errorf("Parse(%q) = %v, %v, want %v", s, got, err, first)
			}
		}
	}
}

func TestString(t *testing.T) {
	tests := []struct {
		a    Address
		want string
	}{
		{Address{"user", "example.com"}, "user@example.com"},
		{Address{"", "example.com"}, "@example.com"},
	}
	for _, tt := range tests {
		if got := tt.a.String(); got != tt.want {
			t.Errorf("%#v.String() = %q, want %q", tt.a, got, tt.want)
		}
	}
}

var domainTests = []struct {
	in, want string
	err      string
}{
	{in: "example.com", want: "example.com"},
	{in: "EXAMPLE.Com.", want: "example.com"},
	{in: "bücher.example", want: "xn--bcher-kva.example"},
	{in: "xn--bcher-kva.example", want: "xn--bcher-kva.example"},
	{in: "BÜCHER.example", want: "xn--bcher-kva.example"},
	{in: "bu\u0308cher.example", want: "xn--bcher-kva.example"},
	{in: "例え.テスト", want: "xn--r8jz45g.xn--zckzah"},
	{in: "ドメイン・テスト.jp", want: "xn--eckzbwbjb8l5esc.jp"},
	{in: "α͵β.gr", want: "xn--wva3je.gr"},
	{in: "א׳.example", want: "xn--4db4e.example"},
	{in: strings.Repeat("a.", 125) + "com", want: strings.Repeat("a.", 125) + "com"}, // 253 octets
	{in: strings.Repeat("a.", 125) + "com.", want: strings.Repeat("a.", 125) + "com"},
	{in: "a・b.jp", err: "KATAKANA MIDDLE DOT"},
	{in: "a\u0375b.gr", err: "GREEK LOWER NUMERAL SIGN"},
	{in: "\u05f3a.example", err: "internationalised"},
	{in: "xn--ngbrx.example", want: "xn--ngbrx.example"}, // عربي
	{in: "a-b.c-d.example", want: "a-b.c-d.example"},
	{in: "", err: "empty"},
	{in: ".", err: "only a dot"},
	{in: "localhost", err: "single-label"},
	{in: "localhost.", err: "single-label"},
	{in: "[192.0.2.1]", err: "address literals"},
	{in: "192.0.2.1", err: "all digits"},
	{in: "a..b", err: "empty label"},
	{in: ".a.b", err: "empty label"},
	{in: "a.b..", err: "empty label"},
	{in: "-a.b", err: "'-'"},
	{in: "a-.b", err: "'-'"},
	{in: "_dmarc.example.com", err: "'_'"},
	{in: "a/b.example", err: "'/'"},
	{in: "..example", err: "empty label"},
	{in: "a@b.example", err: "'@'"},
	{in: " example.com", err: "whitespace"},
	{in: "exa\u202emple.com", err: "invisible"},
	{in: "\xff.example", err: "UTF-8"},
	{in: strings.Repeat("a", 64) + ".com", err: "63"},
	{in: strings.Repeat("abcdefghi.", 26) + "com", err: "more than the 253 allowed"},
	{in: "xn--ls8h.la", err: "U+1F4A9"},
	{in: "xn--abc.example", err: "internationalised"},
	{in: "xn--abc-.example", err: "'-'"},
	{in: "٣٣\u06f3.example", err: "internationalised"},
}

func TestParseDomain(t *testing.T) {
	for _, tt := range domainTests {
		got, err := ParseDomain(tt.in)
		if tt.err == "" {
			if err != nil || got != tt.want {
				t.Errorf("ParseDomain(%q) = %q, %v, want %q", tt.in, got, err, tt.want)
				continue
			}
			if again, err := ParseDomain(got); err != nil || again != got {
				t.Errorf("ParseDomain(%q) = %q, %v, want %q", got, again, err, got)
			}
			continue
		}
		var e *Error
		if !errors.As(err, &e) || got != "" || e.Input != tt.in || !strings.Contains(e.Reason, tt.err) {
			t.Errorf("ParseDomain(%q) = %q, %v, want error containing %q", tt.in, got, err, tt.err)
			continue
		}
		if !strings.HasPrefix(err.Error(), "invalid domain ") {
			t.Errorf("ParseDomain(%q) error %q does not start with \"invalid domain\"", tt.in, err)
		}
	}
}

func TestErrorString(t *testing.T) {
	_, err := Parse("a/b@example.com")
	want := `invalid address "a/b@example.com": contains '/', which would act as a path separator`
	if err == nil || err.Error() != want {
		t.Errorf("Parse error = %v, want %s", err, want)
	}
	_, err = ParseDomain("localhost")
	want = `invalid domain "localhost": single-label domains are not accepted; a domain needs at least one dot`
	if err == nil || err.Error() != want {
		t.Errorf("ParseDomain error = %v, want %s", err, want)
	}
}

func TestStripTag(t *testing.T) {
	tests := []struct {
		in   string
		sep  string
		want string
		ok   bool
	}{
		{"user+tag@example.com", "+", "user@example.com", true},
		{"a+b+c@d.example", "+", "a@d.example", true}, // first separator, like postfix
		{"a+@d.example", "+", "a@d.example", true},
		{"user-tag@example.com", "-", "user@example.com", true},
		{"user--tag@example.com", "--", "user@example.com", true},
		{"ü+x@bücher.example", "+", "ü@xn--bcher-kva.example", true},
		{"user@example.com", "+", "user@example.com", false},
		{"+tag@d.example", "+", "+tag@d.example", false},
		{"a.+tag@d.example", "+", "a.+tag@d.example", false}, // "a." is not a local part
		{"user+tag@example.com", "", "user+tag@example.com", false},
		{"user+tag@example.com", "-", "user+tag@example.com", false},
		{"@example.com", "+", "@example.com", false},
	}
	for _, tt := range tests {
		a, err := ParseSource(tt.in)
		if err != nil {
			t.Fatalf("ParseSource(%q) = %v", tt.in, err)
		}
		got, ok := a.StripTag(tt.sep)
		if got.String() != tt.want || ok != tt.ok {
			t.Errorf("%v.StripTag(%q) = %v, %v, want %s, %v", a, tt.sep, got, ok, tt.want, tt.ok)
		}
		if again, err := Parse(got.String()); ok && (err != nil || again != got) {
			t.Errorf("Parse(%q) = %v, %v, want %v", got, again, err, got)
		}
	}
}

func TestDomainUnicode(t *testing.T) {
	tests := []struct{ in, want string }{
		{"xn--bcher-kva.example", "bücher.example"},
		{"example.com", "example.com"},
		{"xn--r8jz45g.xn--zckzah", "例え.テスト"},
		{"xn--abc.example", "xn--abc.example"}, // invalid: returned unchanged
	}
	for _, tt := range tests {
		if got := DomainUnicode(tt.in); got != tt.want {
			t.Errorf("DomainUnicode(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

// TestULabelReason covers RFC 5892 context rules that the idna profile
// may already enforce on its own (through the Bidi rule), so that they stay
// enforced if it stops doing so.
func TestULabelReason(t *testing.T) {
	tests := []struct{ label, err string }{
		{"bücher", ""},
		{"col·legi", ""},
		{"a·b", "MIDDLE DOT"},
		{"·l", "MIDDLE DOT"},
		{"\u05d0\u05f3", ""},
		{"\u05f3\u05d0", "Hebrew"},
		{"\u0661\u0662", ""},
		{"\u06f1\u06f2", ""},
		{"\u0661\u06f2", "Arabic-Indic"},
		{"a\u200bb", "invisible"},
		{"a\u2600", "U+2600"},
	}
	for _, tt := range tests {
		got := uLabelReason(tt.label)
		if tt.err == "" && got != "" || !strings.Contains(got, tt.err) {
			t.Errorf("uLabelReason(%q) = %q, want %q", tt.label, got, tt.err)
		}
	}
}

// TestEveryCodePoint puts each assigned-plane code point into a local part
// and a domain label and checks that whatever is accepted is canonical and
// stable: random fuzzing rarely reaches most of Unicode.
func TestEveryCodePoint(t *testing.T) {
	if testing.Short() {
		t.Skip("slow")
	}
	for r := rune(0); r < 0xE0200; r++ {
		if r == 0x40000 {
			r = 0xE0000 // planes 4-13 are unassigned
		}
		if 0xD800 <= r && r <= 0xDFFF {
			continue // surrogates cannot be encoded in UTF-8
		}
		c := string(r)
		for _, s := range []string{"a" + c + "b@example.com", c + "@example.com"} {
			if a, err := Parse(s); err == nil {
				checkAddress(t, "Parse", s, a, false)
				if again, err := Parse(a.String()); err != nil || again != a {
					t.Errorf("Parse(%q) = %v, but Parse(%q) = %v, %v", s, a, a.String(), again, err)
				}
			}
		}
		for _, s := range []string{"x" + c + ".example", c + ".example"} {
			if d, err := ParseDomain(s); err == nil {
				checkDomain(t, "ParseDomain", s, d)
				if again, err := ParseDomain(DomainUnicode(d)); err != nil || again != d {
					t.Errorf("ParseDomain(%q) = %q, but ParseDomain(DomainUnicode(%[2]q)) = %q, %v", s, d, again, err)
				}
			}
		}
	}
}
