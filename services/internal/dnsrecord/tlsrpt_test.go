package dnsrecord

import (
	"slices"
	"strings"
	"testing"
)

var tlsrptValidTests = []struct {
	in   string
	uris []string
}{
	{"v=TLSRPTv1; rua=mailto:tls-reports@example.org", []string{"mailto:tls-reports@example.org"}},
	{"v=TLSRPTv1;rua=mailto:smtp-tls-reporting@google.com", []string{"mailto:smtp-tls-reporting@google.com"}},
	{"v=TLSRPTv1; rua=mailto:a@example.org,https://reports.example.org/v1/tlsrpt;", []string{"mailto:a@example.org", "https://reports.example.org/v1/tlsrpt"}},
	{"v=TLSRPTv1; rua=mailto:a@example.org , https://r.example.net/x; ext=1", []string{"mailto:a@example.org", "https://r.example.net/x"}},
}

var tlsrptErrorTests = []errorTest{
	{"", "", "must start with"},
	{"v=TLSRPTv1", "", "no field"},
	{"v=tlsrptv1; rua=mailto:a@example.org", "", "must start with"},
	{"v=TLSRPTv1; ext=1", "", "rua field is missing"},
	{"v=TLSRPTv1; rua=tls@example.org", "rua", "write mailto:tls@example.org"},
	{"v=TLSRPTv1; rua=http://reports.example.org/", "rua", "mailto: and https:"},
	{"v=TLSRPTv1; rua=mailto:a@example.org; rua=mailto:b@example.org", "rua", "appears twice"},
	{"v=TLSRPTv1; rua=mailto:nobody", "rua", "invalid address"},
	{"v=TLSRPTv1; rua=mailto:a@example.org,", "rua", "empty address"},
	{"v=TLSRPTv1; rua=mailto:a@example.org!10m", "rua", "invalid address"},
}

func TestParseTLSRPT(t *testing.T) {
	for _, tt := range tlsrptValidTests {
		rec := mustParse(t, "ParseTLSRPT", tt.in, ParseTLSRPT)
		if rec == nil {
			continue
		}
		var uris []string
		for _, u := range rec.Reports {
			uris = append(uris, u.URI)
		}
		if !slices.Equal(uris, tt.uris) || !IsTLSRPT(tt.in) {
			t.Errorf("ParseTLSRPT(%q) rua = %q, want %q", tt.in, uris, tt.uris)
		}
	}
	testErrors(t, "ParseTLSRPT", "tls-rpt", tlsrptErrorTests, func(s string) error { _, err := ParseTLSRPT(s); return err })
}

func FuzzTLSRPT(f *testing.F) {
	for _, tt := range tlsrptValidTests {
		f.Add(tt.in)
	}
	addSeeds(f, tlsrptErrorTests)
	f.Fuzz(func(t *testing.T, s string) {
		fuzzParse(t, "ParseTLSRPT", "tls-rpt", s, ParseTLSRPT, func(rec *TLSRPT) {
			if !IsTLSRPT(s) || len(rec.Reports) == 0 {
				t.Errorf("ParseTLSRPT(%q) = %+v", s, rec)
			}
			for _, u := range rec.Reports {
				if u.Scheme == "mailto" && !strings.Contains(u.Address, "@") || u.Scheme == "https" && u.Host == "" ||
					u.Scheme != "mailto" && u.Scheme != "https" {
					t.Errorf("ParseTLSRPT(%q): report URI %+v", s, u)
				}
			}
		})
	})
}
