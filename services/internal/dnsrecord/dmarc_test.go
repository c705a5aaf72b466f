package dnsrecord

import (
	"slices"
	"strings"
	"testing"

	"github.com/emersion/go-msgauth/dmarc"
)

var dmarcValidTests = []struct {
	in       string
	policy   dmarc.Policy
	rua      []string // addresses of the mailto: rua URIs
	warnings []string // the tags warned about
}{
	{"v=DMARC1; p=reject; rua=mailto:mailauth-reports@google.com", dmarc.PolicyReject, []string{"mailauth-reports@google.com"}, nil},
	{"v=DMARC1; p=reject; pct=100; rua=mailto:itex-rua@microsoft.com; ruf=mailto:itex-ruf@microsoft.com; fo=1", dmarc.PolicyReject, []string{"itex-rua@microsoft.com"}, nil},
	{"v=DMARC1;p=none", dmarc.PolicyNone, nil, nil},
	{"v=DMARC1; p=quarantine;", dmarc.PolicyQuarantine, nil, nil},
	{"v=DMARC1 ; p = none ; ", dmarc.PolicyNone, nil, nil},
	{"v=DMARC1; p=none;; sp=reject", dmarc.PolicyNone, nil, nil},
	{"v=DMARC1; p=quarantine; sp=reject; adkim=s; aspf=r; pct=50; fo=0:1:d:s; rf=afrf; ri=3600", dmarc.PolicyQuarantine, nil, nil},
	{"v=DMARC1; p=reject; rua=mailto:a@example.org!10m, mailto:B@Example.NET", dmarc.PolicyReject, []string{"a@example.org", "b@example.net"}, nil},
	{"v=DMARC1; p=reject; rua=mailto:dmarc%2Breports@example.org", dmarc.PolicyReject, []string{"dmarc+reports@example.org"}, nil},
	{"v=DMARC1; p=Reject; ADKIM=s", dmarc.PolicyReject, nil, []string{"p", "ADKIM"}},
	{"v=DMARC1; p=none; foo=bar", dmarc.PolicyNone, nil, []string{"foo"}},
	{"v=DMARC1; p=none; rua=https://dmarc.example.org/report", dmarc.PolicyNone, nil, []string{"rua"}},
}

var dmarcErrorTests = []errorTest{
	{"", "", "starts with"},
	{"p=reject; v=DMARC1", "", "starts with"},
	{"v=spf1 -all", "v", "unknown"},
	{"v=dmarc1; p=none", "v", "unknown"},
	{"v=DMARC2; p=none", "v", "unknown"},
	{"v=DMARC1", "", "p is missing"},
	{"v=DMARC1; P=reject", "", "p is missing"},
	{"v=DMARC1; p", "p", "tag=value"},
	{"v=DMARC1; =none", "=none", "missing"},
	{"v=DMARC1; 1p=none", "1p=none", "start with a letter"},
	{"v=DMARC1; p-x=none", "p-x=none", "only letters"},
	{"v=DMARC1; p=reject; p=none", "p", "appears twice"},
	{"v=DMARC1; p=rejct", "p", "none, quarantine or reject"},
	{"v=DMARC1; p=", "p", "none, quarantine or reject"},
	{"v=DMARC1; p=none; sp=all", "sp", "none, quarantine or reject"},
	{"v=DMARC1; p=none; adkim=x", "adkim", "relaxed"},
	{"v=DMARC1; p=none; aspf=relaxed", "aspf", "relaxed"},
	{"v=DMARC1; p=none; pct=150", "pct", "0 to 100"},
	{"v=DMARC1; p=none; pct=+50", "pct", "0 to 100"},
	{"v=DMARC1; p=none; pct=", "pct", "0 to 100"},
	{"v=DMARC1; p=none; fo=2", "fo", "0, 1, d or s"},
	{"v=DMARC1; p=none; rf=iodef", "rf", "afrf"},
	{"v=DMARC1; p=none; ri=0", "ri", "greater than zero"},
	{"v=DMARC1; p=none; ri=1d", "ri", "seconds"},
	{"v=DMARC1; p=none; rua=dmarc@example.org", "rua", "write mailto:dmarc@example.org"},
	{"v=DMARC1; p=none; rua=", "rua", "no reporting address"},
	{"v=DMARC1; p=none; rua=mailto:a@example.org,", "rua", "empty address"},
	{"v=DMARC1; p=none; ruf=mailto:not-an-address", "ruf", "invalid address"},
	{"v=DMARC1; p=none; rua=mailto:a@localhost", "rua", "invalid address"},
	{"v=DMARC1; p=none; rua=mailto:a@example.org!10x", "rua", "size limit"},
	{"v=DMARC1; p=none; rua=mailto:a@example.org!99999999999999999999", "rua", "too large"},
	{"v=DMARC1; p=none; rua=mailto:a@example.org%2Cb@example.org", "rua", "one address"},
	{"v=DMARC1; p=none; rua=mailto:a%zz@example.org", "rua", "percent-encoding"},
	{"v=DMARC1; p=none; rua=https://", "rua", "no host"},
	{"v=DMARC1; p=none; n=caf\xc3\xa9", "n", "printable ASCII"},
}

func TestParseDMARC(t *testing.T) {
	for _, tt := range dmarcValidTests {
		rec, ws, err := ParseDMARC(tt.in)
		if err != nil {
			t.Errorf("ParseDMARC(%q) = %v, want no error", tt.in, err)
			continue
		}
		if rec.Policy != tt.policy {
			t.Errorf("ParseDMARC(%q).Policy = %q, want %q", tt.in, rec.Policy, tt.policy)
		}
		var rua, warned []string
		for _, u := range rec.AggregateReports {
			if u.Scheme == "mailto" {
				rua = append(rua, u.Address)
			}
		}
		for _, w := range ws {
			warned = append(warned, w.Term)
		}
		if !slices.Equal(rua, tt.rua) {
			t.Errorf("ParseDMARC(%q) rua = %q, want %q", tt.in, rua, tt.rua)
		}
		if !slices.Equal(warned, tt.warnings) {
			t.Errorf("ParseDMARC(%q) warnings = %v, want on tags %q", tt.in, ws, tt.warnings)
		}
		checkDMARC(t, tt.in, rec, ws)
	}
}

func TestParseDMARCFields(t *testing.T) {
	rec, _, err := ParseDMARC("v=DMARC1; p=quarantine; sp=reject; adkim=s; pct=25; fo=1:d; ri=3600; rua=mailto:a@example.org!50k; ruf=mailto:f@example.org")
	if err != nil {
		t.Fatal(err)
	}
	if rec.SubdomainPolicy != dmarc.PolicyReject || rec.DKIMAlignment != dmarc.AlignmentStrict || rec.SPFAlignment != dmarc.AlignmentRelaxed ||
		rec.Percent == nil || *rec.Percent != 25 || rec.FailureOptions != dmarc.FailureAny|dmarc.FailureDKIM || rec.ReportInterval.Seconds() != 3600 {
		t.Errorf("ParseDMARC: record = %+v", rec.Record)
	}
	want := []ReportURI{{URI: "mailto:a@example.org", Scheme: "mailto", Address: "a@example.org", MaxSize: 50 << 10}}
	if !slices.Equal(rec.AggregateReports, want) {
		t.Errorf("ParseDMARC: rua = %+v, want %+v", rec.AggregateReports, want)
	}
	if len(rec.FailureReports) != 1 || rec.FailureReports[0].Address != "f@example.org" {
		t.Errorf("ParseDMARC: ruf = %+v", rec.FailureReports)
	}
}

func TestParseDMARCErrors(t *testing.T) {
	testErrors(t, "ParseDMARC", "dmarc", dmarcErrorTests, func(s string) error { _, _, err := ParseDMARC(s); return err })
}

func FuzzDMARC(f *testing.F) {
	for _, tt := range dmarcValidTests {
		f.Add(tt.in)
	}
	addSeeds(f, dmarcErrorTests)
	type parsed struct {
		rec *DMARC
		ws  []Warning
	}
	parse := func(s string) (*parsed, error) {
		rec, ws, err := ParseDMARC(s)
		if rec == nil && ws == nil {
			return nil, err
		}
		return &parsed{rec, ws}, err
	}
	f.Fuzz(func(t *testing.T, s string) {
		fuzzParse(t, "ParseDMARC", "dmarc", s, parse, func(p *parsed) { checkDMARC(t, s, p.rec, p.ws) })
	})
}

func checkDMARC(t *testing.T, s string, rec *DMARC, ws []Warning) {
	t.Helper()
	switch rec.Policy {
	case dmarc.PolicyNone, dmarc.PolicyQuarantine, dmarc.PolicyReject:
	default:
		t.Errorf("ParseDMARC(%q): policy %q", s, rec.Policy)
	}
	if len(rec.Tags) == 0 || rec.Tags[0].Name != "v" || rec.Tags[0].Value != "DMARC1" {
		t.Errorf("ParseDMARC(%q): tags %+v do not start with v=DMARC1", s, rec.Tags)
	}
	seen := map[string]bool{}
	for _, tag := range rec.Tags {
		if seen[tag.Name] {
			t.Errorf("ParseDMARC(%q): tag %q twice", s, tag.Name)
		}
		seen[tag.Name] = true
		if !strings.HasPrefix(s[tag.Pos:], tag.Name) {
			t.Errorf("ParseDMARC(%q): tag %+v not at its position", s, tag)
		}
	}
	if rec.Percent != nil && (*rec.Percent < 0 || *rec.Percent > 100) {
		t.Errorf("ParseDMARC(%q): pct %d", s, *rec.Percent)
	}
	for _, u := range append(slices.Clone(rec.AggregateReports), rec.FailureReports...) {
		if u.Scheme == "" || u.Scheme == "mailto" && !strings.Contains(u.Address, "@") {
			t.Errorf("ParseDMARC(%q): bad report URI %+v", s, u)
		}
	}
	if len(rec.AggregateReports) != len(rec.ReportURIAggregate) || len(rec.FailureReports) != len(rec.ReportURIFailure) {
		t.Errorf("ParseDMARC(%q): report URIs %+v, %+v, go-msgauth has %q, %q", s, rec.AggregateReports, rec.FailureReports, rec.ReportURIAggregate, rec.ReportURIFailure)
	}
	for _, w := range ws {
		if w.Msg == "" || !strings.HasPrefix(s[w.Pos:], w.Term) {
			t.Errorf("ParseDMARC(%q): warning %+v", s, w)
		}
	}
}
