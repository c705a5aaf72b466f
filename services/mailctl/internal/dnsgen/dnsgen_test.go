package dnsgen

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/postcove/postcove/services/internal/dkimkey"
	"github.com/postcove/postcove/services/internal/dnsclient"
	"github.com/postcove/postcove/services/internal/testlib"
)

var now = time.Date(2026, 11, 5, 12, 30, 45, 0, time.UTC)

// keysDir returns a keys directory holding an RSA and an Ed25519 key for
// example.org.
func keysDir(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	for sel, typ := range map[string]dkimkey.Type{"s202611": dkimkey.RSA2048, "ed202611": dkimkey.Ed25519} {
		key, err := dkimkey.Generate(typ)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := dkimkey.Write(dir, "example.org", sel, key, false); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// fullOptions returns options with both addresses and the keys of keys.
func fullOptions(keys string) Options {
	return Options{
		Domain: "example.org", IPv4: netip.MustParseAddr("192.0.2.1"), IPv6: netip.MustParseAddr("2001:db8::1"),
		KeysDir: keys, Now: now,
	}
}

// byNameType indexes records by "name TYPE"; several records of one name
// and type are joined with " | ".
func byNameType(rs []Record) map[string]string {
	m := map[string]string{}
	for _, r := range rs {
		k := r.Name + " " + r.Type
		if m[k] != "" {
			m[k] += " | "
		}
		m[k] += r.Value
	}
	return m
}

func TestBuild(t *testing.T) {
	o := fullOptions(keysDir(t))
	plan, err := Build(o)
	if err != nil {
		t.Fatal(err)
	}
	keys, err := dkimkey.List(o.KeysDir, "example.org")
	if err != nil {
		t.Fatal(err)
	}
	dkimValue := map[string]string{}
	for _, k := range keys {
		dkimValue[k.Selector], _ = dkimkey.Record(k.Signer.Public())
	}
	want := map[string]string{
		"mail.example.org. A":                  "192.0.2.1",
		"mail.example.org. AAAA":               "2001:db8::1",
		"example.org. MX":                      "10 mail.example.org.",
		"example.org. TXT":                     "v=spf1 ip4:192.0.2.1 ip6:2001:db8::1 -all",
		"ed202611._domainkey.example.org. TXT": dkimValue["ed202611"],
		"s202611._domainkey.example.org. TXT":  dkimValue["s202611"],
		"_dmarc.example.org. TXT":              "v=DMARC1; p=quarantine; rua=mailto:postmaster@example.org",
		"_mta-sts.example.org. TXT":            "v=STSv1; id=20261105123045",
		"mta-sts.example.org. CNAME":           "mail.example.org.",
		"_smtp._tls.example.org. TXT":          "v=TLSRPTv1; rua=mailto:postmaster@example.org",
		"_submissions._tcp.example.org. SRV":   "0 1 465 mail.example.org.",
		"_submission._tcp.example.org. SRV":    "10 1 587 mail.example.org.",
		"_imaps._tcp.example.org. SRV":         "0 1 993 mail.example.org.",
		"_imap._tcp.example.org. SRV":          "10 1 143 mail.example.org.",
		"_pop3s._tcp.example.org. SRV":         "20 1 995 mail.example.org.",
		"_pop3._tcp.example.org. SRV":          "30 1 110 mail.example.org.",
		"autoconfig.example.org. CNAME":        "mail.example.org.",
		"1.2.0.192.in-addr.arpa. PTR":          "mail.example.org.",
		"1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa. PTR": "mail.example.org.",
	}
	if got := byNameType(plan.Records); !reflect.DeepEqual(got, want) {
		t.Errorf("Build() records:\n%v\nwant\n%v", got, want)
	}
	for _, r := range plan.Records {
		checkRR(t, r)
		if wantWhere := map[bool]string{true: WhereProvider, false: WhereZone}[r.Type == "PTR"]; r.Where != wantWhere || r.Note == "" || r.TTL != DefaultTTL {
			t.Errorf("record %s %s: where %q, TTL %d, note %q", r.Name, r.Type, r.Where, r.TTL, r.Note)
		}
	}
	wantPolicy := Policy{
		URL:  "https://mta-sts.example.org/.well-known/mta-sts.txt",
		Text: "version: STSv1\nmode: testing\nmx: mail.example.org\nmax_age: 86400\n",
	}
	if plan.Policy != wantPolicy || plan.Domain != "example.org" || plan.Hostname != "mail.example.org" || plan.Notes != nil {
		t.Errorf("Build() = policy %+v, domain %q, hostname %q, notes %q; want policy %+v", plan.Policy, plan.Domain, plan.Hostname, plan.Notes, wantPolicy)
	}
}

// checkRR checks that r.RR() is a zone-file line the DNS library reads
// back to the same record, with its data equal to r.Value (for TXT: the
// joined strings, each at most 255 bytes).
func checkRR(t *testing.T, r Record) {
	t.Helper()
	rr, err := dns.NewRR(r.RR())
	if err != nil {
		t.Errorf("dns.NewRR(%q) = %v", r.RR(), err)
		return
	}
	h := rr.Header()
	data := strings.TrimPrefix(rr.String(), h.String())
	if txt, ok := rr.(*dns.TXT); ok {
		data = strings.Join(txt.Txt, "")
		if !reflect.DeepEqual(txt.Txt, r.Strings) {
			t.Errorf("dns.NewRR(%q) strings = %q, want %q", r.RR(), txt.Txt, r.Strings)
		}
		for _, s := range txt.Txt {
			if len(s) > 255 {
				t.Errorf("%s: a string of %d bytes", r.RR(), len(s))
			}
		}
	}
	if h.Name != r.Name || dns.TypeToString[h.Rrtype] != r.Type || h.Ttl != r.TTL || data != r.Value {
		t.Errorf("dns.NewRR(%q) = %q; want name %s, type %s, TTL %d, data %q", r.RR(), rr.String(), r.Name, r.Type, r.TTL, r.Value)
	}
}

// TestServed: the records, served by a DNS server, read back through
// dnsclient as the values Build promised.
func TestServed(t *testing.T) {
	plan, err := Build(fullOptions(keysDir(t)))
	if err != nil {
		t.Fatal(err)
	}
	var zone strings.Builder
	for _, r := range plan.Records {
		zone.WriteString(r.RR() + "\n")
	}
	srv := testlib.StartDNS(t, zone.String())
	res, err := dnsclient.New([]string{srv.Addr}, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for _, r := range plan.Records {
		if r.Type == "PTR" { // served on the reverse name, asked by address below
			continue
		}
		got, err := lookup(ctx, res, r)
		if err != nil || !slices.Contains(got, r.Value) {
			t.Errorf("%s %s from DNS = %q, %v; want %q among them", r.Type, r.Name, got, err, r.Value)
		}
	}
	ptr, err := res.PTR(ctx, netip.MustParseAddr("2001:db8::1"))
	if err != nil || !reflect.DeepEqual(ptr, []string{"mail.example.org"}) {
		t.Errorf("PTR(2001:db8::1) = %q, %v; want [mail.example.org]", ptr, err)
	}
}

// lookup asks for r's name and type and returns the answers in the form
// of Record.Value.
func lookup(ctx context.Context, res *dnsclient.Resolver, r Record) ([]string, error) {
	var out []string
	switch r.Type {
	case "TXT":
		return res.TXT(ctx, r.Name)
	case "MX":
		mxs, err := res.MX(ctx, r.Name)
		for _, mx := range mxs {
			out = append(out, fmt.Sprintf("%d %s.", mx.Pref, mx.Host))
		}
		return out, err
	case "SRV":
		srvs, err := res.SRV(ctx, r.Name)
		for _, s := range srvs {
			out = append(out, fmt.Sprintf("%d %d %d %s.", s.Priority, s.Weight, s.Port, s.Target))
		}
		return out, err
	case "CNAME":
		target, err := res.CNAME(ctx, r.Name)
		return []string{target + "."}, err
	case "A", "AAAA":
		ips, err := res.IPs(ctx, r.Name)
		for _, ip := range ips {
			out = append(out, ip.String())
		}
		return out, err
	}
	return nil, fmt.Errorf("no lookup for type %s", r.Type)
}

func TestBuildOptions(t *testing.T) {
	keys := keysDir(t)
	tests := []struct {
		name    string
		change  func(*Options)
		key     string // "name TYPE"
		want    string
		policy  string // in the policy text
		note    string // in the notes of the record, or of the plan
		noteKey string
	}{
		{"reject with external reports", func(o *Options) {
			o.DMARCPolicy, o.RUA = DMARCReject, []string{"mailto:dmarc@reports.example", "mailto:postmaster@example.org"}
		}, "_dmarc.example.org. TXT", "v=DMARC1; p=reject; rua=mailto:dmarc@reports.example,mailto:postmaster@example.org", "",
			`example.org._report._dmarc.reports.example. TXT "v=DMARC1"`, "_dmarc.example.org. TXT"},
		{"reports to a subdomain need no authorisation", func(o *Options) { o.RUA = []string{"mailto:d@reports.example.org"} },
			"_smtp._tls.example.org. TXT", "v=TLSRPTv1; rua=mailto:d@reports.example.org", "", "to d@reports.example.org,", "_smtp._tls.example.org. TXT"},
		{"p=none", func(o *Options) { o.DMARCPolicy = DMARCNone }, "_dmarc.example.org. TXT",
			"v=DMARC1; p=none; rua=mailto:postmaster@example.org", "", "move to p=quarantine", "_dmarc.example.org. TXT"},
		{"enforce", func(o *Options) { o.MTASTSMode = MTASTSEnforce }, "_mta-sts.example.org. TXT", "v=STSv1; id=20261105123045",
			"mode: enforce\nmx: mail.example.org\nmax_age: 604800\n", "", ""},
		{"none", func(o *Options) { o.MTASTSMode = MTASTSNone }, "_mta-sts.example.org. TXT", "v=STSv1; id=20261105123045",
			"mode: none\n", "", ""},
		{"host in another zone", func(o *Options) { o.Hostname = "MX1.Hosting.example" }, "mx1.hosting.example. A", "192.0.2.1",
			"mx: mx1.hosting.example\n", "belongs in the zone that holds mx1.hosting.example", "mx1.hosting.example. A"},
		{"IPv4 only", func(o *Options) { o.IPv6 = netip.Addr{} }, "example.org. TXT", "v=spf1 ip4:192.0.2.1 -all", "", "", ""},
		{"IPv6 only", func(o *Options) { o.IPv4 = netip.Addr{} }, "example.org. TXT", "v=spf1 ip6:2001:db8::1 -all", "", "", ""},
		{"TTL", func(o *Options) { o.TTL = 300 }, "example.org. MX", "10 mail.example.org.", "", "", ""},
		{"no keys", func(o *Options) { o.KeysDir = t.TempDir() }, "s202611._domainkey.example.org. TXT", "", "",
			"create one with 'mailctl dkim keygen example.org'", "plan"},
		{"no keys directory", func(o *Options) { o.KeysDir = "" }, "s202611._domainkey.example.org. TXT", "", "", "", ""},
	}
	for _, tt := range tests {
		o := fullOptions(keys)
		tt.change(&o)
		plan, err := Build(o)
		if err != nil {
			t.Errorf("%s: Build() = %v", tt.name, err)
			continue
		}
		if got := byNameType(plan.Records)[tt.key]; got != tt.want {
			t.Errorf("%s: Build() %s = %q, want %q", tt.name, tt.key, got, tt.want)
		}
		if !strings.Contains(plan.Policy.Text, tt.policy) {
			t.Errorf("%s: Build() policy = %q, want it to contain %q", tt.name, plan.Policy.Text, tt.policy)
		}
		notes := strings.Join(plan.Notes, "\n")
		for _, r := range plan.Records {
			if r.Name+" "+r.Type == tt.noteKey {
				notes = r.Note
			}
			if o.TTL != 0 && r.TTL != o.TTL {
				t.Errorf("%s: %s %s TTL = %d, want %d", tt.name, r.Name, r.Type, r.TTL, o.TTL)
			}
			checkRR(t, r)
		}
		if !strings.Contains(notes, tt.note) {
			t.Errorf("%s: note = %q, want it to contain %q", tt.name, notes, tt.note)
		}
	}
}

func TestBuildErrors(t *testing.T) {
	keys := keysDir(t)
	tests := []struct {
		name   string
		change func(*Options)
		want   string
	}{
		{"no address", func(o *Options) { o.IPv4, o.IPv6 = netip.Addr{}, netip.Addr{} }, "no address"},
		{"IPv6 as IPv4", func(o *Options) { o.IPv4 = netip.MustParseAddr("2001:db8::2") }, "not an IPv4 address"},
		{"IPv4 as IPv6", func(o *Options) { o.IPv6 = netip.MustParseAddr("192.0.2.2") }, "not an IPv6 address"},
		{"mapped IPv4 as IPv6", func(o *Options) { o.IPv6 = netip.MustParseAddr("::ffff:192.0.2.2") }, "not an IPv6 address"},
		{"bad domain", func(o *Options) { o.Domain = "localhost" }, "domain"},
		{"bad hostname", func(o *Options) { o.Hostname = "a b.example" }, "hostname"},
		{"hostname mta-sts", func(o *Options) { o.Hostname = "mta-sts.example.org" }, "taken by the mta-sts record"},
		{"hostname autoconfig", func(o *Options) { o.Hostname = "autoconfig.example.org" }, "taken by the autoconfig record"},
		{"unreadable key", func(o *Options) {
			o.KeysDir = t.TempDir()
			os.Mkdir(filepath.Join(o.KeysDir, "example.org"), 0o700)
			if err := os.WriteFile(filepath.Join(o.KeysDir, "example.org", "zz.key"), []byte("junk"), 0o600); err != nil {
				t.Fatal(err)
			}
		}, "zz.key"},
	}
	for _, tt := range tests {
		o := fullOptions(keys)
		tt.change(&o)
		if _, err := Build(o); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: Build() = %v, want an error containing %q", tt.name, err, tt.want)
		}
	}
}

// anyResult adapts a parse function to the table of TestParse.
func anyResult[T any](f func(string) (T, error)) func(string) (any, error) {
	return func(s string) (any, error) { return f(s) }
}

func TestParse(t *testing.T) {
	policy, mode, rua := anyResult(ParseDMARCPolicy), anyResult(ParseMTASTSMode), anyResult(ParseRUA)
	tests := []struct {
		fn   string
		f    func(string) (any, error)
		in   string
		want any
		ok   bool
	}{
		{"ParseDMARCPolicy", policy, "reject", DMARCReject, true},
		{"ParseDMARCPolicy", policy, "Reject", DMARCPolicy(""), false},
		{"ParseMTASTSMode", mode, "enforce", MTASTSEnforce, true},
		{"ParseMTASTSMode", mode, "strict", MTASTSMode(""), false},
		{"ParseRUA", rua, "mailto:a@example.org", []string{"mailto:a@example.org"}, true},
		{"ParseRUA", rua, "MAILTO:A@Example.org, mailto:b@bücher.example", []string{"mailto:a@example.org", "mailto:b@xn--bcher-kva.example"}, true},
		{"ParseRUA", rua, "a@example.org", []string(nil), false},
		{"ParseRUA", rua, "https://example.org/report", []string(nil), false},
		{"ParseRUA", rua, "mailto:a@example.org!10m", []string(nil), false},
		{"ParseRUA", rua, "mailto:a@example.org,", []string(nil), false},
	}
	for _, tt := range tests {
		got, err := tt.f(tt.in)
		if !reflect.DeepEqual(got, tt.want) || (err == nil) != tt.ok {
			t.Errorf("%s(%q) = %#v, %v; want %#v, ok=%v", tt.fn, tt.in, got, err, tt.want, tt.ok)
		}
	}
}

func TestRR(t *testing.T) {
	tests := []struct {
		r    Record
		want string
	}{
		{Record{Name: "example.org.", Type: "MX", TTL: 60, Value: "10 mail.example.org."}, "example.org. 60 IN MX 10 mail.example.org."},
		{Record{Name: "example.org.", Type: "TXT", TTL: 60, Value: "a", Strings: []string{"a"}}, `example.org. 60 IN TXT "a"`},
		{Record{Name: "example.org.", Type: "TXT", TTL: 60, Strings: []string{"a", "b"}}, `example.org. 60 IN TXT ( "a" "b" )`},
		{Record{Name: "example.org.", Type: "TXT", TTL: 60, Value: strings.Repeat("x", 256)}, `example.org. 60 IN TXT ( "` + strings.Repeat("x", 255) + `" "x" )`},
		{Record{Name: "example.org.", Type: "TXT", TTL: 60, Strings: []string{"say \"hi\"\\\n\xff"}}, `example.org. 60 IN TXT "say \"hi\"\\\010\255"`},
	}
	for _, tt := range tests {
		if got := tt.r.RR(); got != tt.want {
			t.Errorf("%+v.RR() = %s, want %s", tt.r, got, tt.want)
		}
		rr, err := dns.NewRR(tt.want)
		if err != nil {
			t.Errorf("dns.NewRR(%s) = %v", tt.want, err)
		}
		if txt, ok := rr.(*dns.TXT); ok {
			want := tt.r.Strings
			if want == nil {
				want = dkimkey.SplitTXT(tt.r.Value)
			}
			if got, _ := wireStrings(txt); !reflect.DeepEqual(got, want) {
				t.Errorf("dns.NewRR(%s) strings = %q, want %q", tt.want, got, want)
			}
		}
	}
}

// wireStrings returns the character-strings of a TXT record as they go on
// the wire (the DNS library keeps them escaped).
func wireStrings(txt *dns.TXT) ([]string, error) {
	buf := make([]byte, 1024)
	n, err := dns.PackRR(txt, buf, 0, nil, false)
	if err != nil {
		return nil, err
	}
	// RDATA: after the name, type, class, TTL and length.
	var out []string
	for data := buf[n-int(txt.Hdr.Rdlength) : n]; len(data) > 0; data = data[1+int(data[0]):] {
		out = append(out, string(data[1:1+int(data[0])]))
	}
	return out, nil
}
