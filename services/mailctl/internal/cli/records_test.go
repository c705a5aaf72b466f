package cli

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/postcove/postcove/services/internal/dkimkey"
	"github.com/postcove/postcove/services/internal/dnsclient"
	"github.com/postcove/postcove/services/internal/testlib"
	"github.com/postcove/postcove/services/mailctl/internal/dnsgen"
)

// wantRecords are the "name TYPE" of every record dns records prints for
// example.org with both addresses and keys s1 and ed1.
var wantRecords = []string{
	"mail.example.org. A", "mail.example.org. AAAA", "example.org. MX", "example.org. TXT",
	"ed1._domainkey.example.org. TXT", "s1._domainkey.example.org. TXT",
	"_dmarc.example.org. TXT", "_mta-sts.example.org. TXT", "mta-sts.example.org. CNAME", "_smtp._tls.example.org. TXT",
	"_submissions._tcp.example.org. SRV", "_submission._tcp.example.org. SRV", "_imaps._tcp.example.org. SRV",
	"_imap._tcp.example.org. SRV", "_pop3s._tcp.example.org. SRV", "_pop3._tcp.example.org. SRV",
	"autoconfig.example.org. CNAME",
	"1.2.0.192.in-addr.arpa. PTR", "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa. PTR",
}

// recordsKeys returns a keys directory with an RSA and an Ed25519 key for
// example.org, made by dkim keygen.
func recordsKeys(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	want(t, keygen(t, dir, "example.org", "--selector", "s1"), 0, "wrote", "")
	want(t, keygen(t, dir, "example.org", "--selector", "ed1", "--type", "ed25519"), 0, "wrote", "")
	return dir
}

func records(t *testing.T, keys string, args ...string) result {
	t.Helper()
	return mailctl(t, "", "", append([]string{"dns", "records", "--keys", keys}, args...)...)
}

// TestDNSRecordsZone: every record is there, each line parses as a zone
// line, PTR is commented out, and the output loads into a DNS server that
// then answers with the values.
func TestDNSRecordsZone(t *testing.T) {
	keys := recordsKeys(t)
	r := records(t, keys, "example.org", "--ip", "192.0.2.1", "--ip6", "2001:db8::1")
	want(t, r, 0, "https://mta-sts.example.org/.well-known/mta-sts.txt", "")
	var got []string
	for line := range strings.Lines(r.stdout) {
		line = strings.TrimSpace(line)
		rrText, commented := strings.CutPrefix(line, "; ")
		if line == "" || commented && !strings.Contains(rrText, " IN PTR ") {
			continue
		}
		rr, err := dns.NewRR(rrText)
		if err != nil || rr == nil {
			t.Errorf("dns.NewRR(%q) = %v, %v", rrText, rr, err)
			continue
		}
		if commented != (rr.Header().Rrtype == dns.TypePTR) {
			t.Errorf("line %q: PTR records, and only they, must be commented out", line)
		}
		got = append(got, rr.Header().Name+" "+dns.TypeToString[rr.Header().Rrtype])
	}
	if !slices.Equal(got, wantRecords) {
		t.Errorf("dns records printed\n%q\nwant\n%q", got, wantRecords)
	}
	for _, s := range []string{"hosting provider", ";   mode: testing\n", ";   max_age: 86400\n", ";   mx: mail.example.org\n"} {
		if !strings.Contains(r.stdout, s) {
			t.Errorf("dns records output lacks %q", s)
		}
	}

	srv := testlib.StartDNS(t, r.stdout)
	res, err := dnsclient.New([]string{srv.Addr}, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	key, err := dkimkey.Load(filepath.Join(keys, "example.org", "s1.key"))
	if err != nil {
		t.Fatal(err)
	}
	dkimValue, _ := dkimkey.Record(key.Public())
	for name, value := range map[string]string{
		"example.org":                "v=spf1 ip4:192.0.2.1 ip6:2001:db8::1 -all",
		"_dmarc.example.org":         "v=DMARC1; p=quarantine; rua=mailto:postmaster@example.org",
		"s1._domainkey.example.org":  dkimValue,
		"_smtp._tls.example.org":     "v=TLSRPTv1; rua=mailto:postmaster@example.org",
		"_mta-sts.example.org":       "v=STSv1; id=", // a time
		"ed1._domainkey.example.org": "v=DKIM1; k=ed25519; p=",
	} {
		txt, err := res.TXT(context.Background(), name)
		if err != nil || len(txt) != 1 || !strings.HasPrefix(txt[0], value) {
			t.Errorf("TXT(%s) served from the zone output = %q, %v; want %q", name, txt, err, value)
		}
	}
}

func TestDNSRecordsJSON(t *testing.T) {
	keys := recordsKeys(t)
	r := records(t, keys, "--format", "json", "example.org", "--ip", "192.0.2.1", "--ip6", "2001:db8::1",
		"--hostname", "MX.example.org", "--dmarc-policy", "reject", "--rua", "mailto:dmarc@example.org", "--mta-sts-mode", "enforce")
	want(t, r, 0, `"records"`, "")
	var plan dnsgen.Plan
	if err := json.Unmarshal([]byte(r.stdout), &plan); err != nil {
		t.Fatalf("json output: %v\n%s", err, r.stdout)
	}
	values := map[string]string{}
	for _, rec := range plan.Records {
		if _, err := dns.NewRR(rec.RR()); err != nil {
			t.Errorf("dns.NewRR(%q) = %v", rec.RR(), err)
		}
		values[rec.Name+" "+rec.Type] = rec.Value
	}
	for k, v := range map[string]string{
		"mx.example.org. A":                  "192.0.2.1",
		"example.org. MX":                    "10 mx.example.org.",
		"_dmarc.example.org. TXT":            "v=DMARC1; p=reject; rua=mailto:dmarc@example.org",
		"mta-sts.example.org. CNAME":         "mx.example.org.",
		"_submissions._tcp.example.org. SRV": "0 1 465 mx.example.org.",
	} {
		if values[k] != v {
			t.Errorf("json record %s = %q, want %q", k, values[k], v)
		}
	}
	if want := "version: STSv1\nmode: enforce\nmx: mx.example.org\nmax_age: 604800\n"; plan.Policy.Text != want {
		t.Errorf("json mta_sts_policy.text = %q, want %q", plan.Policy.Text, want)
	}
}

func TestDNSRecordsTable(t *testing.T) {
	r := records(t, t.TempDir(), "example.org", "--ip", "192.0.2.1", "--format", "table")
	want(t, r, 0, "v=spf1 ip4:192.0.2.1 -all", "")
	lines := strings.Split(r.stdout, "\n")
	header := lines[0]
	if !strings.HasPrefix(header, "NAME ") || !strings.Contains(header, " TTL ") || !strings.HasSuffix(header, " VALUE") {
		t.Fatalf("table header = %q", header)
	}
	ttlCol, valueCol := strings.Index(header, "TTL"), strings.Index(header, "VALUE")
	for _, line := range lines[1:] {
		if line == "" {
			break
		}
		if line[ttlCol:ttlCol+5] != "3600 " || line[valueCol-1] != ' ' || line[valueCol] == ' ' {
			t.Errorf("table row %q is not aligned with %q", line, header)
		}
	}
	for _, s := range []string{"hosting provider", "1.2.0.192.in-addr.arpa.", "  mode: testing", "Note: No DKIM key", "mailctl dkim keygen example.org"} {
		if !strings.Contains(r.stdout, s) {
			t.Errorf("table output lacks %q:\n%s", s, r.stdout)
		}
	}
}

func TestDNSRecordsErrors(t *testing.T) {
	keys := t.TempDir()
	tests := []struct {
		args   []string
		code   int
		stderr string
	}{
		{[]string{"example.org"}, 2, "--ip is required"},
		{[]string{}, 2, "usage: mailctl dns records DOMAIN"},
		{[]string{"localhost", "--ip", "192.0.2.1"}, 2, "DOMAIN: "},
		{[]string{"example.org", "--ip", "2001:db8::1"}, 2, `--ip: "2001:db8::1" is not an IPv4 address`},
		{[]string{"example.org", "--ip", "192.0.2"}, 2, "--ip: "},
		{[]string{"example.org", "--ip6", "192.0.2.1"}, 2, `--ip6: "192.0.2.1" is not an IPv6 address`},
		{[]string{"example.org", "--ip6", "::ffff:192.0.2.1"}, 2, "--ip6: "},
		{[]string{"example.org", "--ip", "192.0.2.1", "--hostname", "mail server"}, 2, "--hostname: "},
		{[]string{"example.org", "--ip", "192.0.2.1", "--hostname", "mta-sts.example.org"}, 1, "taken by the mta-sts record"},
		{[]string{"example.org", "--ip", "192.0.2.1", "--dmarc-policy", "strict"}, 2, `--dmarc-policy: unknown DMARC policy "strict"`},
		{[]string{"example.org", "--ip", "192.0.2.1", "--rua", "dmarc@example.org"}, 2, "--rua: "},
		{[]string{"example.org", "--ip", "192.0.2.1", "--mta-sts-mode", "on"}, 2, `--mta-sts-mode: unknown MTA-STS mode "on"`},
		{[]string{"example.org", "--ip", "192.0.2.1", "--format", "xml"}, 2, `--format: unknown format "xml"`},
		{[]string{"example.org", "--ip", "192.0.2.1", "--ttl", "60"}, 2, "flag provided but not defined: -ttl"},
	}
	for _, tt := range tests {
		want(t, records(t, keys, tt.args...), tt.code, "", tt.stderr)
	}

	bad := filepath.Join(keys, "example.org", "broken.key")
	if err := os.MkdirAll(filepath.Dir(bad), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bad, []byte("not a key"), 0o600); err != nil {
		t.Fatal(err)
	}
	want(t, records(t, keys, "example.org", "--ip", "192.0.2.1"), 1, "", bad)
}
