package dnscheck

import (
	"bytes"
	"context"
	"crypto"
	"encoding/json"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/postcove/postcove/services/internal/dkimkey"
	"github.com/postcove/postcove/services/internal/dnsclient"
	"github.com/postcove/postcove/services/internal/testlib"
)

const domain = "example.org"

// keys makes a keys directory with an RSA key (selector "rsa") and an
// Ed25519 key (selector "ed") for domain, and returns it with the zone
// lines publishing them.
func keys(t *testing.T) (dir string, records []string) {
	t.Helper()
	dir = t.TempDir()
	for _, k := range []struct {
		sel string
		typ dkimkey.Type
	}{{"rsa", dkimkey.RSA2048}, {"ed", dkimkey.Ed25519}} {
		signer, err := dkimkey.Generate(k.typ)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := dkimkey.Write(dir, domain, k.sel, signer, false); err != nil {
			t.Fatal(err)
		}
		records = append(records, dkimLine(t, k.sel, signer.Public()))
	}
	return dir, records
}

// dkimLine is the zone line publishing pub at selector sel of domain.
func dkimLine(t *testing.T, sel string, pub crypto.PublicKey) string {
	t.Helper()
	rec, err := dkimkey.Record(pub)
	if err != nil {
		t.Fatal(err)
	}
	return txt(dkimkey.RecordName(domain, sel), rec)
}

// txt is a zone line for a TXT record, split into 255-byte strings.
func txt(name, value string) string {
	parts := dkimkey.SplitTXT(value)
	for i, p := range parts {
		parts[i] = fmt.Sprintf("%q", p)
	}
	return fmt.Sprintf("%s. 300 IN TXT %s", name, strings.Join(parts, " "))
}

// goodZone is a domain with everything right: the server mail.example.org
// at 192.0.2.10, sending and receiving.
func goodZone(dkim []string) []string {
	return append([]string{
		"example.org. 300 IN MX 10 mail.example.org.",
		"mail.example.org. 300 IN A 192.0.2.10",
		"10.2.0.192.in-addr.arpa. 300 IN PTR mail.example.org.",
		txt("example.org", "v=spf1 mx -all"),
		txt("example.org", "google-site-verification=abc123"),
		txt("_dmarc.example.org", "v=DMARC1; p=reject; rua=mailto:postmaster@example.org"),
		txt("_mta-sts.example.org", "v=STSv1; id=20250101T000000"),
		"mta-sts.example.org. 300 IN CNAME mail.example.org.",
		txt("_smtp._tls.example.org", "v=TLSRPTv1; rua=mailto:postmaster@example.org"),
	}, dkim...)
}

// edit returns zone without the lines starting with one of drop, plus add.
func edit(zone []string, drop []string, add ...string) []string {
	out := slices.DeleteFunc(slices.Clone(zone), func(line string) bool {
		return slices.ContainsFunc(drop, func(p string) bool { return strings.HasPrefix(line, p) })
	})
	return append(out, add...)
}

// finding is an expected finding: its check, status and a phrase of its
// message or detail.
type finding struct {
	check  string
	status Status
	phrase string
}

func (f finding) in(r *Report) bool {
	for _, got := range r.Findings {
		if got.Check == f.check && got.Status == f.status && strings.Contains(got.Message+"\n"+got.Detail, f.phrase) {
			return true
		}
	}
	return false
}

// run serves zone from a test DNS server and checks domain against it
// with the real resolver.
func run(t *testing.T, zone []string, opts Options, setup func(*testlib.DNSServer)) *Report {
	t.Helper()
	srv := testlib.StartDNS(t, strings.Join(zone, "\n"))
	if setup != nil {
		setup(srv)
	}
	r, err := dnsclient.New([]string{srv.Addr}, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	opts.Domain = domain
	return Check(ctx, r, opts)
}

func dump(r *Report) string {
	var b bytes.Buffer
	r.WriteTable(&b)
	return b.String()
}

func TestCheckCorrectZone(t *testing.T) {
	dir, dkim := keys(t)
	rep := run(t, goodZone(dkim), Options{KeysDir: dir}, nil)
	if rep.Failed() || rep.Count(Warn) > 0 {
		t.Errorf("Check(correct zone) has warnings or failures:\n%s", dump(rep))
	}
	for _, f := range []finding{
		{"mx", Pass, "mail.example.org (preference 10)"},
		{"mx-host", Pass, "192.0.2.10"},
		{"ptr", Pass, "points back"},
		{"spf", Pass, "v=spf1 mx -all"},
		{"spf-lookups", Pass, "needs 1 of the 10"},
		{"spf-ip", Pass, "SPF allows 192.0.2.10, matched by mx (mail.example.org)"},
		{"spf-all", Pass, "-all"},
		{"dkim", Pass, "rsa._domainkey.example.org matches"},
		{"dkim", Pass, "ed._domainkey.example.org matches"},
		{"dmarc", Pass, "p=reject"},
		{"mta-sts", Pass, "policy id 20250101T000000"},
		{"mta-sts", Pass, "mta-sts.example.org has address 192.0.2.10"},
		{"tls-rpt", Pass, "mailto:postmaster@example.org"},
	} {
		if !f.in(rep) {
			t.Errorf("Check(correct zone) lacks %+v:\n%s", f, dump(rep))
		}
	}
}

func TestCheckBrokenZones(t *testing.T) {
	dir, dkim := keys(t)
	good := goodZone(dkim)
	otherKey, err := dkimkey.Generate(dkimkey.Ed25519)
	if err != nil {
		t.Fatal(err)
	}
	ip := func(s string) []netip.Addr { return []netip.Addr{netip.MustParseAddr(s)} }
	tests := []struct {
		name  string
		zone  []string
		opts  Options
		setup func(*testlib.DNSServer)
		want  []finding
	}{
		// The cases the issue names.
		{name: "missing MX", zone: edit(good, []string{"example.org. 300 IN MX"}),
			want: []finding{{"mx", Fail, "no MX record for example.org"}, {"spf-ip", Warn, "no server address"}}},
		{name: "two SPF records", zone: edit(good, nil, txt("example.org", "v=spf1 a -all")),
			want: []finding{{"spf", Fail, "2 SPF records"}, {"spf", Fail, "RFC 7208 §4.5"}}},
		{name: "SPF with 11 lookups", zone: edit(good, []string{`example.org. 300 IN TXT "v=spf1`},
			txt("example.org", "v=spf1 mx include:_spf1.example.net -all"),
			txt("_spf1.example.net", "v=spf1 a mx include:_spf2.example.net ~all"),
			txt("_spf2.example.net", "v=spf1 a:x.example.net mx:y.example.net exists:%{i}.z.example.net include:_spf3.example.net -all"),
			txt("_spf3.example.net", "v=spf1 a mx -all")),
			want: []finding{
				{"spf-lookups", Fail, "SPF needs 11 DNS lookups, more than the 10 allowed"},
				{"spf-lookups", Fail, "example.org: 2, _spf1.example.net: 3, _spf2.example.net: 4, _spf3.example.net: 2"},
				{"spf-ip", Pass, "192.0.2.10"},
			}},
		{name: "DKIM key not matching", zone: edit(good, []string{"ed._domainkey"}, dkimLine(t, "ed", otherKey.Public())),
			opts: Options{KeysDir: dir},
			want: []finding{{"dkim", Fail, "the key published at ed._domainkey.example.org is not the key in"}, {"dkim", Pass, "rsa._domainkey"}}},
		{name: "DMARC with a bad tag", zone: edit(good, []string{"_dmarc"}, txt("_dmarc.example.org", "v=DMARC1; p=reject; adkim=x")),
			want: []finding{{"dmarc", Fail, `tag "adkim" at position 20: "x" is not valid: use r (relaxed) or s (strict)`}}},
		{name: "PTR not forward-confirmed", zone: edit(good, []string{"10.2.0.192.in-addr.arpa"},
			"10.2.0.192.in-addr.arpa. 300 IN PTR host7.provider.example.",
			"host7.provider.example. 300 IN A 198.51.100.7"),
			want: []finding{{"ptr", Fail, "reverse DNS of 192.0.2.10 is host7.provider.example, which does not point back to it"},
				{"ptr", Fail, "host7.provider.example points to 198.51.100.7"}}},

		// MX and hosts.
		{name: "null MX", zone: edit(good, []string{"example.org. 300 IN MX"}, "example.org. 300 IN MX 0 ."),
			want: []finding{{"mx", Fail, "null MX"}}},
		{name: "MX host without address", zone: edit(good, []string{"mail.example.org. 300 IN A"}),
			want: []finding{{"mx-host", Fail, "MX host mail.example.org has no address"}}},
		{name: "MX host is an alias", zone: edit(good, []string{"mail.example.org. 300 IN A"},
			"mail.example.org. 300 IN CNAME srv.example.org.", "srv.example.org. 300 IN A 192.0.2.10"),
			want: []finding{{"mx-host", Warn, "alias (CNAME to srv.example.org)"}, {"ptr", Pass, "points back"}}},
		{name: "no PTR", zone: edit(good, []string{"10.2.0.192.in-addr.arpa"}),
			want: []finding{{"ptr", Fail, "no reverse DNS (PTR) for 192.0.2.10"}}},

		// SPF.
		{name: "no SPF", zone: edit(good, []string{`example.org. 300 IN TXT "v=spf1`}, txt("example.org", "v=spf1-all")),
			want: []finding{{"spf", Fail, "no SPF record"}, {"spf", Fail, `"v=spf1-all" looks like SPF`}}},
		{name: "SPF syntax error", zone: edit(good, []string{`example.org. 300 IN TXT "v=spf1`}, txt("example.org", "v=spf1 mx ip4:192.0.2.300 -all")),
			want: []finding{{"spf", Fail, `term "ip4:192.0.2.300" at position 10`}, {"spf", Fail, "\n            ^"}}},
		{name: "SPF +all", zone: edit(good, []string{`example.org. 300 IN TXT "v=spf1`}, txt("example.org", "v=spf1 mx +all")),
			want: []finding{{"spf-all", Fail, "every server on the Internet"}, {"spf-all", Fail, `"v=spf1 mx -all"`}}},
		{name: "SPF ?all", zone: edit(good, []string{`example.org. 300 IN TXT "v=spf1`}, txt("example.org", "v=spf1 mx ?all")),
			want: []finding{{"spf-all", Warn, "?all"}}},
		{name: "SPF without all", zone: edit(good, []string{`example.org. 300 IN TXT "v=spf1`}, txt("example.org", "v=spf1 mx")),
			want: []finding{{"spf-all", Warn, "no all"}}},
		{name: "SPF all through redirect", zone: edit(good, []string{`example.org. 300 IN TXT "v=spf1`},
			txt("example.org", "v=spf1 redirect=_spf.example.org"), txt("_spf.example.org", "v=spf1 ip4:192.0.2.0/24 ~all")),
			want: []finding{{"spf-all", Pass, "~all (in the record of _spf.example.org, through redirect)"},
				{"spf-ip", Pass, "ip4:192.0.2.0/24 through redirect=_spf.example.org"}, {"spf-lookups", Pass, "needs 1"}}},
		{name: "SPF does not allow the server", zone: good, opts: Options{IPs: ip("203.0.113.5")},
			want: []finding{{"spf-ip", Fail, "SPF does not allow 203.0.113.5: it matches -all (result fail)"},
				{"spf-ip", Fail, `"v=spf1 mx ip4:203.0.113.5 -all"`}, {"ptr", Fail, "no reverse DNS (PTR) for 203.0.113.5"}}},
		{name: "SPF allows through include", zone: edit(good, []string{`example.org. 300 IN TXT "v=spf1`},
			txt("example.org", "v=spf1 include:_spf.example.net -all"), txt("_spf.example.net", "v=spf1 ip6:2001:db8::/32 a:mail.example.org -all")),
			want: []finding{{"spf-ip", Pass, "a:mail.example.org in include:_spf.example.net"}}},
		{name: "SPF include without record", zone: edit(good, []string{`example.org. 300 IN TXT "v=spf1`},
			txt("example.org", "v=spf1 mx include:_spf.nowhere.example -all")),
			want: []finding{{"spf-include", Fail, "_spf.nowhere.example has no SPF record"}}},
		{name: "SPF include loop", zone: edit(good, []string{`example.org. 300 IN TXT "v=spf1`},
			txt("example.org", "v=spf1 mx include:a.example.net -all"), txt("a.example.net", "v=spf1 include:b.example.net -all"),
			txt("b.example.net", "v=spf1 include:A.example.net -all")),
			want: []finding{{"spf-include", Fail, "loops back: example.org → a.example.net → b.example.net → a.example.net"}}},
		{name: "SPF with ptr", zone: edit(good, []string{`example.org. 300 IN TXT "v=spf1`}, txt("example.org", "v=spf1 ptr -all")),
			want: []finding{{"spf", Warn, "RFC 7208 §5.5"}, {"spf-ip", Warn, "cannot tell whether SPF allows 192.0.2.10"}}},

		// DKIM.
		{name: "DKIM record missing", zone: edit(good, []string{"rsa._domainkey"}), opts: Options{KeysDir: dir},
			want: []finding{{"dkim", Fail, "no DKIM record at rsa._domainkey.example.org"}, {"dkim", Fail, `rsa._domainkey.example.org. 3600 IN TXT ( "v=DKIM1; k=rsa; p=`}}},
		{name: "DKIM record revoked", zone: edit(good, []string{"ed._domainkey"}, txt("ed._domainkey.example.org", "v=DKIM1; k=ed25519; p=")),
			opts: Options{KeysDir: dir}, want: []finding{{"dkim", Fail, "revoked"}}},
		{name: "DKIM record broken", zone: edit(good, []string{"ed._domainkey"}, txt("ed._domainkey.example.org", "v=DKIM1; k=ed25519; p=abc")),
			opts: Options{KeysDir: dir}, want: []finding{{"dkim", Fail, "not valid base64"}}},
		{name: "no DKIM keys", zone: good, opts: Options{KeysDir: t.TempDir()},
			want: []finding{{"dkim", Warn, "mailctl dkim keygen example.org"}}},

		// DMARC.
		{name: "no DMARC", zone: edit(good, []string{"_dmarc"}), want: []finding{{"dmarc", Fail, "no DMARC record at _dmarc.example.org"}}},
		{name: "two DMARC", zone: edit(good, nil, txt("_dmarc.example.org", "v=DMARC1; p=none")),
			want: []finding{{"dmarc", Fail, "2 DMARC records"}}},
		{name: "DMARC p=none", zone: edit(good, []string{"_dmarc"}, txt("_dmarc.example.org", "v=DMARC1; p=none; rua=mailto:postmaster@example.org")),
			want: []finding{{"dmarc", Warn, "p=none"}, {"dmarc", Pass, "DMARC record"}}},
		{name: "DMARC unknown tag and bad address", zone: edit(good, []string{"_dmarc"}, txt("_dmarc.example.org", "v=DMARC1; p=reject; rua=dmarc@example.org")),
			want: []finding{{"dmarc", Fail, "write mailto:dmarc@example.org"}}},
		{name: "DMARC unknown tag", zone: edit(good, []string{"_dmarc"}, txt("_dmarc.example.org", "v=DMARC1; p=reject; rua=mailto:d@example.org; rue=mailto:x@example.org")),
			want: []finding{{"dmarc", Warn, `"rue" at position`}}},
		{name: "DMARC external reports", zone: edit(good, []string{"_dmarc"},
			txt("_dmarc.example.org", "v=DMARC1; p=reject; rua=mailto:a@reports.example.net,mailto:b@ok.example.com"),
			txt("example.org._report._dmarc.ok.example.com", "v=DMARC1")),
			want: []finding{{"dmarc-report", Warn, "reports to reports.example.net will not be sent"},
				{"dmarc-report", Warn, `example.org._report._dmarc.reports.example.net. 3600 IN TXT "v=DMARC1"`},
				{"dmarc-report", Pass, "ok.example.com agrees"}}},
		{name: "DMARC temporary failure", zone: good, setup: func(s *testlib.DNSServer) { s.ServFail("_dmarc.example.org") },
			want: []finding{{"dmarc", Fail, "temporary DNS failure, try again"}}},
		{name: "MX temporary failure", zone: good, setup: func(s *testlib.DNSServer) { s.ServFail("mail.example.org") },
			want: []finding{{"mx-host", Fail, "temporary DNS failure, try again"}}},

		// MTA-STS and TLS-RPT.
		{name: "no MTA-STS or TLS-RPT", zone: edit(good, []string{"_mta-sts", "mta-sts", "_smtp._tls"}),
			want: []finding{{"mta-sts", Warn, "no MTA-STS record"}, {"tls-rpt", Warn, "no TLS-RPT record"}}},
		{name: "bad MTA-STS and TLS-RPT", zone: edit(good, []string{"_mta-sts", "_smtp._tls"},
			txt("_mta-sts.example.org", "v=STSv1; id=2025-01-01"), txt("_smtp._tls.example.org", "v=TLSRPTv1; rua=http://example.org/r")),
			want: []finding{{"mta-sts", Fail, "letters and digits"}, {"tls-rpt", Fail, "mailto: and https:"}}},
		{name: "MTA-STS without policy host", zone: edit(good, []string{"mta-sts."}),
			want: []finding{{"mta-sts", Pass, "policy id"}, {"mta-sts", Warn, "policy host mta-sts.example.org has no address"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rep := run(t, tt.zone, tt.opts, tt.setup)
			for _, f := range tt.want {
				if !f.in(rep) {
					t.Errorf("Check(%s) lacks %+v:\n%s", tt.name, f, dump(rep))
				}
			}
			wantFail := slices.ContainsFunc(tt.want, func(f finding) bool { return f.status == Fail })
			if rep.Failed() != wantFail {
				t.Errorf("Check(%s).Failed() = %v, want %v:\n%s", tt.name, rep.Failed(), wantFail, dump(rep))
			}
		})
	}
}

func TestWriteTableAndJSON(t *testing.T) {
	rep := &Report{Domain: domain, Findings: []Finding{
		{Check: "mx", Status: Pass, Message: "mail goes to mail.example.org"},
		{Check: "spf-lookups", Status: Fail, Message: "too many", Detail: "First line that is long enough to be wrapped because it goes on and on past the width of the column.\n  v=spf1 -all"},
	}}
	var b bytes.Buffer
	if err := rep.WriteTable(&b); err != nil {
		t.Fatal(err)
	}
	want := "STATUS  CHECK        MESSAGE\n" +
		"PASS    mx           mail goes to mail.example.org\n" +
		"FAIL    spf-lookups  too many\n" +
		"                     First line that is long enough to be wrapped because it goes on and on\n" +
		"                     past the width of the column.\n" +
		"                       v=spf1 -all\n" +
		"\nexample.org: 1 passed, 0 warnings, 1 failed\n"
	if b.String() != want {
		t.Errorf("WriteTable() =\n%s\nwant\n%s", b.String(), want)
	}
	b.Reset()
	if err := rep.WriteJSON(&b); err != nil {
		t.Fatal(err)
	}
	var got jsonReport
	if err := json.Unmarshal(b.Bytes(), &got); err != nil {
		t.Fatalf("WriteJSON() = %s: %v", b.String(), err)
	}
	if got.OK || got.Fail != 1 || got.Pass != 1 || len(got.Findings) != 2 || got.Findings[1].Status != Fail || got.Findings[0].Detail != "" {
		t.Errorf("WriteJSON() = %+v", got)
	}
}
