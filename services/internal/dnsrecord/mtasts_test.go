package dnsrecord

import (
	"slices"
	"strings"
	"testing"
	"time"
)

var mtastsValidTests = []struct {
	in string
	id string
}{
	{"v=STSv1; id=20160831085700Z;", "20160831085700Z"},
	{"v=STSv1;id=1", "1"},
	{"v=STSv1; id=20190429T010101", "20190429T010101"},
	{"v=STSv1 ;\tid=abc ; ext-1.x=some:value ;", "abc"},
	{"v=STSv1; id=" + strings.Repeat("a", 32), strings.Repeat("a", 32)},
}

var mtastsErrorTests = []errorTest{
	{"", "", "must start with"},
	{"v=STSv1", "", "no field"},
	{"v=STSv1;", "", "no field"},
	{"v=stsv1; id=1", "", "must start with"},
	{" v=STSv1;id=0", "", "must start with"},
	{"v=STSv1 id=1", "", "must start with"},
	{"v=STSv1; ext=1", "", "id field is missing"},
	{"v=STSv1; id=", "id", "empty"},
	{"v=STSv1; id=abc-def", "id", "letters and digits"},
	{"v=STSv1; id=" + strings.Repeat("a", 33), "id", "1 to 32"},
	{"v=STSv1; id=1;;", ";", "empty field"},
	{"v=STSv1; id=1; id=2", "id", "appears twice"},
	{"v=STSv1; id = 1", "id = 1", "field name"},
	{"v=STSv1; id", "id", "name=value"},
	{"v=STSv1; id=1; -x=1", "-x=1", "start with a letter"},
	{"v=STSv1; id=1; x=a=b", "x", "without"},
}

func TestParseMTASTS(t *testing.T) {
	for _, tt := range mtastsValidTests {
		rec, err := ParseMTASTS(tt.in)
		if err != nil || rec.ID != tt.id {
			t.Errorf("ParseMTASTS(%q) = %+v, %v, want id %q", tt.in, rec, err, tt.id)
		}
		if !IsMTASTS(tt.in) {
			t.Errorf("IsMTASTS(%q) = false, want true", tt.in)
		}
	}
	testErrors(t, "ParseMTASTS", "mta-sts", mtastsErrorTests, func(s string) error { _, err := ParseMTASTS(s); return err })
}

var policyValidTests = []struct {
	in   string
	want MTASTSPolicy
}{
	{"version: STSv1\nmode: enforce\nmx: mail.example.com\nmx: *.example.net\nmax_age: 604800\n",
		MTASTSPolicy{Mode: "enforce", MX: []string{"mail.example.com", "*.example.net"}, MaxAge: 7 * 24 * time.Hour}},
	{"version: STSv1\r\nmode: testing\r\nmx: mx1.example.org\r\nmax_age: 86400\r\n",
		MTASTSPolicy{Mode: "testing", MX: []string{"mx1.example.org"}, MaxAge: 24 * time.Hour}},
	{"version: STSv1\nmode: none\nmax_age:31557600",
		MTASTSPolicy{Mode: "none", MaxAge: 31557600 * time.Second}},
	// The first of a repeated field counts (RFC 8461 §3.2).
	{"version: STSv1\nmode: testing\nmode: enforce\nmx: a.example\nmax_age: 60\nmax_age: 120\nfoo: bar baz  \n",
		MTASTSPolicy{Mode: "testing", MX: []string{"a.example"}, MaxAge: time.Minute, Extensions: []Tag{{Name: "foo", Value: "bar baz", Pos: 82}}}},
}

var policyErrorTests = []errorTest{
	{"", "", "version field is missing"},
	{"version: STSv1\nmode: enforce\nmx: a.example\n", "", "max_age field is missing"},
	{"version: STSv1\nmode: enforce\nmax_age: 60\n", "", "no mx field"},
	{"mode: enforce\nmx: a.example\nmax_age: 60\n", "", "version field is missing"},
	{"version: STSv2\nmode: enforce\nmx: a.example\nmax_age: 60\n", "version", "STSv1"},
	{"version: STSv1\nmode: Enforce\nmx: a.example\nmax_age: 60\n", "mode", "lower case"},
	{"version: STSv1\nmode: enforce\nmx: a.example\nmax_age: 31557601\n", "max_age", "at most"},
	{"version: STSv1\nmode: enforce\nmx: a.example\nmax_age: -1\n", "max_age", "seconds"},
	{"version: STSv1\nmode: enforce\nmx: *.*.example\nmax_age: 60\n", "mx", "not a host name"},
	{"version: STSv1\nmode: enforce\nmx: bücher.example\nmax_age: 60\n", "mx", "punycode"},
	{"version: STSv1\nmode: enforce\nmx: a.example.\nmax_age: 60\n", "mx", "not a host name"},
	{"version: STSv1\n\nmode: enforce\nmx: a.example\nmax_age: 60\n", "", "line 2 is empty"},
	{"version: STSv1\nmode enforce\n", "mode enforce", "key: value"},
	{"version: STSv1\nfoo:\n", "foo", "empty"},
	{"version: STSv1\n_x: 1\n", "_x: 1", "start with a letter"},
}

func TestParseMTASTSPolicy(t *testing.T) {
	for _, tt := range policyValidTests {
		pol := mustParse(t, "ParseMTASTSPolicy", tt.in, ParseMTASTSPolicy)
		if pol == nil {
			continue
		}
		if pol.Mode != tt.want.Mode || !slices.Equal(pol.MX, tt.want.MX) || pol.MaxAge != tt.want.MaxAge || !slices.Equal(pol.Extensions, tt.want.Extensions) {
			t.Errorf("ParseMTASTSPolicy(%q) = %+v, want %+v", tt.in, pol, tt.want)
		}
	}
	testErrors(t, "ParseMTASTSPolicy", "mta-sts policy", policyErrorTests, func(s string) error { _, err := ParseMTASTSPolicy(s); return err })
}

func FuzzMTASTS(f *testing.F) {
	for _, tt := range mtastsValidTests {
		f.Add(tt.in)
	}
	for _, tt := range policyValidTests {
		f.Add(tt.in)
	}
	addSeeds(f, mtastsErrorTests, policyErrorTests)
	f.Fuzz(func(t *testing.T, s string) {
		fuzzParse(t, "ParseMTASTS", "mta-sts", s, ParseMTASTS, func(rec *MTASTS) {
			if !IsMTASTS(s) || rec.ID == "" || len(rec.ID) > 32 || !isAlnum(rec.ID) {
				t.Errorf("ParseMTASTS(%q) = %+v", s, rec)
			}
		})
		fuzzParse(t, "ParseMTASTSPolicy", "mta-sts policy", s, ParseMTASTSPolicy, func(pol *MTASTSPolicy) {
			switch {
			case pol.Mode != "enforce" && pol.Mode != "testing" && pol.Mode != "none",
				pol.MaxAge < 0 || pol.MaxAge > maxMTASTSAge*time.Second,
				pol.Mode != "none" && len(pol.MX) == 0:
				t.Errorf("ParseMTASTSPolicy(%q) = %+v", s, pol)
			}
			for _, mx := range pol.MX {
				if mxPatternProblem(mx) != "" {
					t.Errorf("ParseMTASTSPolicy(%q): mx %q", s, mx)
				}
			}
		})
	})
}
