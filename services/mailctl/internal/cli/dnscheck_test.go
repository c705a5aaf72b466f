package cli

import (
	"cmp"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/postcove/postcove/services/internal/dnsrecord"
	"github.com/postcove/postcove/services/internal/testlib"
	"github.com/postcove/postcove/services/mailctl/internal/dnscheck"
	"github.com/postcove/postcove/services/mailctl/internal/dnsgen"
)

// generatedZone runs "dns records --format json" for example.org with the
// keys in keys and returns the records as zone lines, PTR included (as the
// hosting provider would publish it), keyed by "name TYPE".
func generatedZone(t *testing.T, keys string, args ...string) (lines map[string]string, plan dnsgen.Plan) {
	t.Helper()
	r := records(t, keys, append([]string{"--format", "json", "example.org"}, args...)...)
	want(t, r, 0, `"records"`, "")
	if err := json.Unmarshal([]byte(r.stdout), &plan); err != nil {
		t.Fatalf("dns records --format json: %v\n%s", err, r.stdout)
	}
	lines = map[string]string{}
	for _, rec := range plan.Records {
		lines[rec.Name+" "+rec.Type] = rec.RR()
	}
	return lines, plan
}

func zoneText(lines map[string]string, extra ...string) string {
	var out []string
	for _, l := range lines {
		out = append(out, l)
	}
	slices.Sort(out)
	return strings.Join(append(out, extra...), "\n")
}

func dnsCheck(t *testing.T, srv *testlib.DNSServer, keys string, args ...string) result {
	t.Helper()
	return mailctl(t, "", "", append([]string{"dns", "check", "example.org", "--resolver", srv.Addr, "--keys", keys}, args...)...)
}

// TestDNSCheckRoundTrip: what "dns records" tells the operator to publish,
// once published (and the PTR set), passes "dns check" without a warning.
func TestDNSCheckRoundTrip(t *testing.T) {
	keys := recordsKeys(t)
	lines, plan := generatedZone(t, keys, "--ip", "192.0.2.1", "--ip6", "2001:db8::1")
	srv := testlib.StartDNS(t, zoneText(lines))

	r := dnsCheck(t, srv, keys, "--ip", "192.0.2.1", "--ip", "2001:db8::1")
	want(t, r, 0, "example.org: ", "")
	if !strings.Contains(r.stdout, " 0 warnings, 0 failed") {
		t.Errorf("dns check of the generated records:\n%s", r.stdout)
	}
	for _, phrase := range []string{"SPF allows 192.0.2.1", "SPF allows 2001:db8::1", "s1._domainkey.example.org matches", "ed1._domainkey.example.org matches",
		"reverse DNS of 2001:db8::1 is mail.example.org"} {
		if !strings.Contains(r.stdout, phrase) {
			t.Errorf("dns check of the generated records lacks %q:\n%s", phrase, r.stdout)
		}
	}
	// Without --ip the MX host's addresses are checked, and the result is
	// the same.
	want(t, dnsCheck(t, srv, keys), 0, " 0 warnings, 0 failed", "")

	r = dnsCheck(t, srv, keys, "--format", "json")
	want(t, r, 0, `"ok": true`, "")
	var doc struct {
		OK       bool
		Findings []dnscheck.Finding
	}
	if err := json.Unmarshal([]byte(r.stdout), &doc); err != nil || !doc.OK || len(doc.Findings) < 10 {
		t.Errorf("dns check --format json = %v, %s", err, r.stdout)
	}

	// The policy file dns records prints is valid too.
	if _, err := dnsrecord.ParseMTASTSPolicy(plan.Policy.Text); err != nil {
		t.Errorf("ParseMTASTSPolicy(dns records policy %q) = %v", plan.Policy.Text, err)
	}
}

// TestDNSCheckBroken breaks the generated records in each way the issue
// names and runs mailctl dns check in-process: exit 1 and the finding.
func TestDNSCheckBroken(t *testing.T) {
	keys := recordsKeys(t)
	good, _ := generatedZone(t, keys, "--ip", "192.0.2.1")
	without := func(keys ...string) map[string]string {
		m := map[string]string{}
		for k, v := range good {
			if !slices.Contains(keys, k) {
				m[k] = v
			}
		}
		return m
	}
	tests := []struct {
		name string
		zone string
		keys string // the keys directory, if not the one the records come from
		want string // in stdout, on a FAIL line or its detail
	}{
		{name: "missing MX", zone: zoneText(without("example.org. MX")), want: "no MX record for example.org"},
		{name: "two SPF records", zone: zoneText(good, `example.org. 300 IN TXT "v=spf1 mx -all"`), want: "example.org has 2 SPF records"},
		{name: "SPF with 11 lookups", zone: zoneText(without("example.org. TXT"),
			`example.org. 300 IN TXT "v=spf1 a mx include:_spf.example.net -all"`,
			`_spf.example.net. 300 IN TXT "v=spf1 include:one.example.net include:two.example.net ~all"`,
			`one.example.net. 300 IN TXT "v=spf1 a mx ptr exists:%{i}.x.example.net -all"`,
			`two.example.net. 300 IN TXT "v=spf1 a mx -all"`),
			want: "SPF needs 11 DNS lookups, more than the 10 allowed"},
		// Keys made again after the records were published.
		{name: "DKIM key not matching", zone: zoneText(good), keys: recordsKeys(t),
			want: "the key published at s1._domainkey.example.org is not the key in"},
		{name: "DMARC with a bad tag", zone: zoneText(without("_dmarc.example.org. TXT"), `_dmarc.example.org. 300 IN TXT "v=DMARC1; p=reject; pct=110"`),
			want: `tag "pct" at position 20: "110" is not valid: use a whole number from 0 to 100`},
		{name: "PTR not forward-confirmed", zone: zoneText(without("1.2.0.192.in-addr.arpa. PTR"),
			"1.2.0.192.in-addr.arpa. 300 IN PTR vps-1.hoster.example.", "vps-1.hoster.example. 300 IN A 198.51.100.99"),
			want: "reverse DNS of 192.0.2.1 is vps-1.hoster.example, which does not point back to it"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := testlib.StartDNS(t, tt.zone)
			dir := cmp.Or(tt.keys, keys)
			r := dnsCheck(t, srv, dir, "--ip", "192.0.2.1")
			want(t, r, 1, tt.want, "DNS checks of example.org failed")
			if !failLine(r.stdout, tt.want) {
				t.Errorf("dns check: %q is not part of a FAIL finding:\n%s", tt.want, r.stdout)
			}
			r = dnsCheck(t, srv, dir, "--ip", "192.0.2.1", "--format", "json")
			want(t, r, 1, `"ok": false`, "failed")
		})
	}
}

// failLine reports whether phrase is in a FAIL finding of a table: on its
// line or in the detail lines under it.
func failLine(table, phrase string) bool {
	status := ""
	for line := range strings.Lines(table) {
		if f := strings.Fields(line); len(f) > 0 && slices.Contains([]string{"PASS", "WARN", "FAIL", "STATUS"}, f[0]) {
			status = f[0]
		}
		if status == "FAIL" && strings.Contains(line, phrase) {
			return true
		}
	}
	return false
}

func TestDNSCheckUsage(t *testing.T) {
	srv := testlib.StartDNS(t, "")
	keys := t.TempDir()
	for _, tt := range []struct {
		args []string
		code int
		err  string
	}{
		{[]string{"dns", "check"}, 2, "usage: mailctl dns check DOMAIN"},
		{[]string{"dns", "check", "a.example", "b.example"}, 2, "usage: mailctl dns check DOMAIN"},
		{[]string{"dns", "check", "localhost"}, 2, "DOMAIN:"},
		{[]string{"dns", "check", "example.org", "--format", "xml"}, 2, "use table or json"},
		{[]string{"dns", "check", "example.org", "--ip", "mail.example.org"}, 2, "not an IP address"},
		{[]string{"dns", "check", "example.org", "--resolver", "dns.example:53"}, 2, "--resolver"},
		// An empty zone: everything is missing, which is a failure, not a
		// usage error.
		{[]string{"dns", "check", "example.org", "--resolver", srv.Addr, "--keys", keys}, 1, "failed"},
	} {
		r := mailctl(t, "", "", tt.args...)
		if r.code != tt.code || !strings.Contains(r.stderr, tt.err) {
			t.Errorf("mailctl %s = exit %d, stderr %q; want exit %d, stderr containing %q", strings.Join(tt.args, " "), r.code, r.stderr, tt.code, tt.err)
		}
	}
	want(t, mailctl(t, "", "", "help"), 0, fmt.Sprintf("mailctl %s", dnsCheckUsage), "")
}
