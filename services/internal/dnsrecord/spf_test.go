package dnsrecord

import (
	"net/netip"
	"slices"
	"strings"
	"testing"
)

// Real-world records (as published in 2025) and hand-made ones.
var spfValidTests = []struct {
	in      string
	mechs   int
	lookups int
	all     string // qualifier of all, "" when none
}{
	{"v=spf1 -all", 1, 0, "-"},
	{"v=spf1", 0, 0, ""},
	{"v=spf1 ", 0, 0, ""},
	{"v=spf1 include:_netblocks.google.com include:_netblocks2.google.com include:_netblocks3.google.com ~all", 4, 3, "~"},
	{"v=spf1 ip4:35.190.247.0/24 ip4:64.233.160.0/19 ip4:66.102.0.0/20 ip4:66.249.80.0/20 ip4:72.14.192.0/18 ip4:74.125.0.0/16 ip4:108.177.8.0/21 ip4:173.194.0.0/16 ip4:209.85.128.0/17 ip4:216.58.192.0/19 ip4:216.239.32.0/19 ~all", 12, 0, "~"},
	{"v=spf1 ip6:2001:4860:4000::/36 ip6:2404:6800:4000::/36 ip6:2607:f8b0:4000::/36 ip6:2800:3f0:4000::/36 ip6:2a00:1450:4000::/36 ip6:2c0f:fb50:4000::/36 ~all", 7, 0, "~"},
	{"v=spf1 include:spf.protection.outlook.com -all", 2, 1, "-"},
	{"v=spf1 ip4:40.92.0.0/15 ip4:40.107.0.0/16 ip4:52.100.0.0/15 ip4:52.102.0.0/16 ip4:52.103.0.0/16 ip4:104.47.0.0/17 ip6:2a01:111:f400::/48 ip6:2a01:111:f403::/49 ip6:2a01:111:f403:8000::/50 ip6:2a01:111:f403:c000::/51 ip6:2a01:111:f403:f000::/52 -all", 12, 0, "-"},
	{"v=spf1 include:_spf-a.microsoft.com include:_spf-b.microsoft.com include:_spf-c.microsoft.com include:_spf-ssg-a.msft.net include:spf-a.hotmail.com include:_spf1-meo.microsoft.com -all", 7, 6, "-"},
	{"V=SPF1 MX A:Mail.Example.COM/24 -ALL", 3, 2, "-"},
	{"v=spf1  mx   -all  ", 2, 1, "-"},
	{"v=spf1 a/24//64 mx:example.org//56 ?all", 3, 2, "?"},
	{"v=spf1 a:example.org/0 mx/32//128 +all", 3, 2, "+"},
	{"v=spf1 ptr ptr:example.org -all", 3, 2, "-"},
	{"v=spf1 exists:%{i}._spf.%{d} -all", 2, 1, "-"},
	{"v=spf1 include:%{ir}.%{v}._spf.%{d2} -all", 2, 1, "-"},
	{"v=spf1 exists:%{l1r+-}.%{D}.example.org exists:%{s}", 2, 2, ""},
	{"v=spf1 a:%{d}/24 -all", 2, 1, "-"},
	{"v=spf1 exists:%{d}}.example.org", 1, 1, ""}, // "}" is a macro-literal
	{"v=spf1 redirect=_spf.example.org", 0, 1, ""},
	{"v=spf1 mx redirect=_spf.example.org -all", 2, 1, "-"},
	{"v=spf1 mx exp=explain._spf.%{d} -all", 2, 1, "-"},
	{"v=spf1 foo=bar ip4=192.0.2.1 x-y.z=%% -all", 1, 0, "-"},
	{"v=spf1 ip6:::ffff:192.0.2.1 ip4:192.0.2.1 ip4:192.0.2.0/32 ip6:2001:db8::/128 ~all", 5, 0, "~"},
	{"v=spf1 include:example.org. exists:123-456.example.org -all", 3, 2, "-"},
	{"v=spf1 -all include:late.example.org", 2, 1, "-"},
}

var spfErrorTests = []errorTest{
	{"", "", "starts with"},
	{"v=spf10 -all", "", "starts with"},
	{" v=spf1 -all", "", "starts with"},
	{"v=spf1\t-all", "", "starts with"},
	{"spf1 -all", "", "starts with"},
	{"v=spf1 mx\t-all", "mx\t-all", "printable ASCII"},
	{"v=spf1 -all\x00", "-all\x00", "printable ASCII"},
	{"v=spf1 a:bücher.example -all", "a:bücher.example", "printable ASCII"},
	{"v=spf1 ip4:192.0.2.300 -all", "ip4:192.0.2.300", "not an IP address"},
	{"v=spf1 ip4:010.0.0.1", "ip4:010.0.0.1", "not an IP address"},
	{"v=spf1 ip4:192.0.2.0/33", "ip4:192.0.2.0/33", "at most 32"},
	{"v=spf1 ip4:192.0.2.0/024", "ip4:192.0.2.0/024", "leading zeros"},
	{"v=spf1 ip4:192.0.2.0/", "ip4:192.0.2.0/", "must be a number"},
	{"v=spf1 ip4:2001:db8::1", "ip4:2001:db8::1", "not an IPv4 address"},
	{"v=spf1 ip6:192.0.2.1", "ip6:192.0.2.1", "not an IPv6 address"},
	{"v=spf1 ip6:2001:db8::/129", "ip6:2001:db8::/129", "at most 128"},
	{"v=spf1 ip6:fe80::1%eth0", "ip6:fe80::1%eth0", "not an IP address"},
	{"v=spf1 ip4", "ip4", "needs a network"},
	{"v=spf1 ip4:", "ip4:", "needs a network"},
	{"v=spf1 a:192.0.2.1", "a:192.0.2.1", "all digits"},
	{"v=spf1 a:foo -all", "a:foo", "not a fully qualified"},
	{"v=spf1 a:foo..example.org", "a:foo..example.org", "empty label"},
	{"v=spf1 a:" + strings.Repeat("x", 64) + ".example.org", "a:" + strings.Repeat("x", 64) + ".example.org", "longer than 63"},
	{"v=spf1 a:example.-org", "a:example.-org", "inner hyphens"},
	{"v=spf1 a/33", "a/33", "at most 32"},
	{"v=spf1 mx//129", "mx//129", "at most 128"},
	{"v=spf1 mx/24/64", "mx/24/64", "bad CIDR"},
	{"v=spf1 mx:", "mx:", "domain is missing"},
	{"v=spf1 mx:example.org/", "mx:example.org/", "bad CIDR"},
	{"v=spf1 include", "include", "needs a domain"},
	{"v=spf1 include:", "include:", "needs a domain"},
	{"v=spf1 include:example.org/24", "include:example.org/24", "top-level label"},
	{"v=spf1 exists", "exists", "needs a domain"},
	{"v=spf1 ptr/24", "ptr/24", "no CIDR"},
	{"v=spf1 all:example.org", "all:example.org", "takes no"},
	{"v=spf1 -all/0", "-all/0", "takes no"},
	{"v=spf1 ipv4:192.0.2.1", "ipv4:192.0.2.1", "write ip4:"},
	{"v=spf1 include:a.example includes:b.example", "includes:b.example", "write include:"},
	{"v=spf1 redirect:example.org", "redirect:example.org", "redirect is a modifier"},
	{"v=spf1 foo", "foo", "unknown mechanism"},
	{"v=spf1 + mx", "+", "followed by a mechanism"},
	{"v=spf1 redirect=a.example redirect=b.example", "redirect=b.example", "appears twice"},
	{"v=spf1 exp=a.example exp=b.example", "exp=b.example", "appears twice"},
	{"v=spf1 -redirect=a.example", "-redirect=a.example", "no qualifier"},
	{"v=spf1 redirect=", "redirect=", "domain is missing"},
	{"v=spf1 1x=y", "1x=y", "start with a letter"},
	{"v=spf1 x!=y", "x!=y", "may contain only"},
	{"v=spf1 exists:%{x}.example.org", "exists:%{x}.example.org", "unknown macro letter"},
	{"v=spf1 exists:%{d0}.example.org", "exists:%{d0}.example.org", "between 1 and 128"},
	{"v=spf1 exists:%{d", "exists:%{d", "not closed"},
	{"v=spf1 exists:%{}.example.org", "exists:%{}.example.org", "letter is missing"},
	{"v=spf1 exists:%{d1r!}.example.org", "exists:%{d1r!}.example.org", "not a delimiter"},
	{"v=spf1 exists:%{c}.example.org", "exists:%{c}.example.org", "only in explanation"},
	{"v=spf1 include:100%.example.org", "include:100%.example.org", `"%." is not a macro`},
	{"v=spf1 include:example.org%", "include:example.org%", "must be followed"},
	{"v=spf1 foo=%x", "foo=%x", "not a macro"},
}

func TestParseSPF(t *testing.T) {
	for _, tt := range spfValidTests {
		rec := mustParse(t, "ParseSPF", tt.in, ParseSPF)
		if rec == nil {
			continue
		}
		if len(rec.Mechanisms) != tt.mechs {
			t.Errorf("ParseSPF(%q) has %d mechanisms, want %d", tt.in, len(rec.Mechanisms), tt.mechs)
		}
		if got := rec.LookupTerms(); got != tt.lookups {
			t.Errorf("ParseSPF(%q).LookupTerms() = %d, want %d", tt.in, got, tt.lookups)
		}
		q, ok := rec.All()
		got := ""
		if ok {
			got = q.String()
		}
		if got != tt.all {
			t.Errorf("ParseSPF(%q).All() = %q, %v, want %q", tt.in, got, ok, tt.all)
		}
		checkSPF(t, tt.in, rec)
	}
}

func TestParseSPFErrors(t *testing.T) {
	testErrors(t, "ParseSPF", "spf", spfErrorTests, func(s string) error { _, err := ParseSPF(s); return err })
}

func TestSPFFields(t *testing.T) {
	rec, err := ParseSPF("v=spf1 ~ip4:192.0.2.1/24 -IP6:2001:DB8::1 ?a:mail.example.org/28//64 mx exists:%{i}.x.example foo=bar redirect=_spf.example.net exp=e.example.net")
	if err != nil {
		t.Fatal(err)
	}
	want := []Mechanism{
		{Qualifier: QualifierSoftFail, Name: "ip4", Network: netip.MustParsePrefix("192.0.2.1/24"), CIDR4: 32, CIDR6: 128, Term: "~ip4:192.0.2.1/24", Pos: 7},
		{Qualifier: QualifierFail, Name: "ip6", Network: netip.MustParsePrefix("2001:db8::1/128"), CIDR4: 32, CIDR6: 128, Term: "-IP6:2001:DB8::1", Pos: 25},
		{Qualifier: QualifierNeutral, Name: "a", Domain: "mail.example.org", CIDR4: 28, CIDR6: 64, Term: "?a:mail.example.org/28//64", Pos: 42},
		{Qualifier: QualifierPass, Name: "mx", CIDR4: 32, CIDR6: 128, Term: "mx", Pos: 69},
		{Qualifier: QualifierPass, Name: "exists", Domain: "%{i}.x.example", CIDR4: 32, CIDR6: 128, Term: "exists:%{i}.x.example", Pos: 72},
	}
	if !slices.Equal(rec.Mechanisms, want) {
		t.Errorf("ParseSPF mechanisms = %+v, want %+v", rec.Mechanisms, want)
	}
	if rec.Redirect != "_spf.example.net" || rec.Exp != "e.example.net" {
		t.Errorf("ParseSPF redirect, exp = %q, %q, want _spf.example.net, e.example.net", rec.Redirect, rec.Exp)
	}
	if want := []Modifier{{Name: "foo", Value: "bar", Pos: 94}}; !slices.Equal(rec.Modifiers, want) {
		t.Errorf("ParseSPF modifiers = %+v, want %+v", rec.Modifiers, want)
	}
	if got, ok := rec.RedirectTarget("example.com"); got != "_spf.example.net" || !ok {
		t.Errorf("RedirectTarget(example.com) = %q, %v, want _spf.example.net, true", got, ok)
	}
	if got, ok := (&SPF{}).RedirectTarget("example.com"); got != "" || ok {
		t.Errorf("RedirectTarget(example.com) without redirect = %q, %v, want \"\", false", got, ok)
	}
	for _, tt := range []struct {
		m      Mechanism
		target string
		ok     bool
	}{
		{rec.Mechanisms[2], "mail.example.org", true},
		{rec.Mechanisms[3], "example.com", true},
		{rec.Mechanisms[4], "", false},
		{Mechanism{Name: "include", Domain: "SPF.Example.org."}, "spf.example.org", true},
	} {
		if got, ok := tt.m.Target("example.com"); got != tt.target || ok != tt.ok {
			t.Errorf("%v.Target(example.com) = %q, %v, want %q, %v", tt.m.Term, got, ok, tt.target, tt.ok)
		}
	}
}

func TestIsSPF(t *testing.T) {
	for _, tt := range []struct {
		in   string
		want bool
	}{
		{"v=spf1", true},
		{"v=spf1 -all", true},
		{"V=SPF1 -all", true},
		{"v=spf1-all", false},
		{"v=spf10", false},
		{"v=spf1\t-all", false},
		{" v=spf1 -all", false},
		{"v=spf2.0/pra -all", false},
		{"google-site-verification=abc", false},
		{"", false},
	} {
		if got := IsSPF(tt.in); got != tt.want {
			t.Errorf("IsSPF(%q) = %v, want %v", tt.in, got, tt.want)
		}
	}
}

func TestSPFWarnings(t *testing.T) {
	for _, tt := range []struct {
		in   string
		want []string // the terms warned about
	}{
		{"v=spf1 mx -all", nil},
		{"v=spf1 ptr -all", []string{"ptr"}},
		{"v=spf1 -all mx", []string{"mx"}},
		{"v=spf1 mx -all redirect=x.example", []string{"redirect=x.example"}},
		{"v=spf1 ip4=192.0.2.1 -all", []string{"ip4=192.0.2.1"}},
		{"v=spf1 mx -all v=spf1", []string{"v=spf1"}},
	} {
		rec, err := ParseSPF(tt.in)
		if err != nil {
			t.Fatalf("ParseSPF(%q) = %v", tt.in, err)
		}
		var got []string
		for _, w := range rec.Warnings() {
			got = append(got, w.Term)
			if tt.in[w.Pos:w.Pos+len(w.Term)] != w.Term {
				t.Errorf("ParseSPF(%q).Warnings(): %v has the wrong position", tt.in, w)
			}
		}
		if !slices.Equal(got, tt.want) {
			t.Errorf("ParseSPF(%q).Warnings() = %v, want terms %q", tt.in, rec.Warnings(), tt.want)
		}
	}
}

func FuzzSPF(f *testing.F) {
	for _, tt := range spfValidTests {
		f.Add(tt.in)
	}
	addSeeds(f, spfErrorTests)
	f.Fuzz(func(t *testing.T, s string) {
		fuzzParse(t, "ParseSPF", "spf", s, ParseSPF, func(rec *SPF) {
			if !IsSPF(s) {
				t.Errorf("ParseSPF(%q) accepted a record IsSPF refuses", s)
			}
			checkSPF(t, s, rec)
		})
	})
}

// checkSPF checks the invariants of an accepted record, including that its
// terms, written out again, parse to the same record.
func checkSPF(t *testing.T, s string, rec *SPF) {
	t.Helper()
	type term struct {
		pos  int
		text string
	}
	var terms []term
	n := 0
	for _, m := range rec.Mechanisms {
		if m.Pos < 0 || m.Pos+len(m.Term) > len(s) || s[m.Pos:m.Pos+len(m.Term)] != m.Term {
			t.Errorf("ParseSPF(%q): mechanism %+v is not at its position", s, m)
		}
		terms = append(terms, term{m.Pos, m.Term})
		switch m.Name {
		case "ip4":
			if !m.Network.Addr().Is4() || m.Network.Bits() < 0 || m.Network.Bits() > 32 {
				t.Errorf("ParseSPF(%q): bad ip4 network %v", s, m.Network)
			}
		case "ip6":
			if !m.Network.Addr().Is6() || m.Network.Bits() < 0 || m.Network.Bits() > 128 {
				t.Errorf("ParseSPF(%q): bad ip6 network %v", s, m.Network)
			}
		case "include", "exists":
			if m.Domain == "" {
				t.Errorf("ParseSPF(%q): %s without a domain", s, m.Name)
			}
		case "all", "a", "mx", "ptr":
		default:
			t.Errorf("ParseSPF(%q): unknown mechanism %q", s, m.Name)
		}
		if m.CIDR4 < 0 || m.CIDR4 > 32 || m.CIDR6 < 0 || m.CIDR6 > 128 {
			t.Errorf("ParseSPF(%q): bad CIDR lengths in %+v", s, m)
		}
		if strings.ContainsAny(m.Domain, " \t") {
			t.Errorf("ParseSPF(%q): domain %q contains white space", s, m.Domain)
		}
		if m.LooksUp() {
			n++
		}
	}
	for _, pos := range []int{rec.RedirectPos, rec.ExpPos} {
		if pos >= 0 {
			terms = append(terms, term{pos, s[pos : strings.IndexByte(s[pos:]+" ", ' ')+pos]})
		}
	}
	for _, m := range rec.Modifiers {
		terms = append(terms, term{m.Pos, s[m.Pos : m.Pos+len(m.Name)+1+len(m.Value)]})
	}
	if got := rec.LookupTerms(); got < n || got > n+1 {
		t.Errorf("ParseSPF(%q).LookupTerms() = %d with %d lookup mechanisms", s, got, n)
	}
	slices.SortFunc(terms, func(a, b term) int { return a.pos - b.pos })
	var b strings.Builder
	b.WriteString("v=spf1")
	for _, tm := range terms {
		b.WriteString(" " + tm.text)
	}
	again, err := ParseSPF(b.String())
	if err != nil {
		t.Errorf("ParseSPF(%q) accepted, but its terms again: ParseSPF(%q) = %v", s, b.String(), err)
		return
	}
	if len(again.Mechanisms) != len(rec.Mechanisms) || again.Redirect != rec.Redirect || again.Exp != rec.Exp || len(again.Modifiers) != len(rec.Modifiers) {
		t.Errorf("ParseSPF(%q) = %+v, but ParseSPF(%q) = %+v", s, rec, b.String(), again)
	}
}
