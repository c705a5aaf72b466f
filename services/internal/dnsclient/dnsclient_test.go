package dnsclient

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/postcove/postcove/services/internal/testlib"
)

// long is a TXT value longer than one character-string may be.
var long = strings.Repeat("0123456789", 40)

var zone = `
example.org.            300 IN MX   20 backup.example.org.
example.org.            300 IN MX   10 mail.example.org.
example.org.            300 IN TXT  "v=spf1 " "ip4:192.0.2.1 " "-all"
example.org.            300 IN TXT  "other"
mail.example.org.       300 IN A    192.0.2.1
mail.example.org.       300 IN AAAA 2001:db8::1
v4only.example.org.     300 IN A    192.0.2.2
v6only.example.org.     300 IN AAAA 2001:db8::2
www.example.org.        300 IN CNAME web.example.org.
web.example.org.        300 IN CNAME mail.example.org.
alias.example.org.      300 IN CNAME example.org.
dangling.example.org.   300 IN CNAME nowhere.example.org.
outside.example.org.    300 IN CNAME host.elsewhere.example.
loop1.example.org.      300 IN CNAME loop2.example.org.
loop2.example.org.      300 IN CNAME loop1.example.org.
s1._domainkey.example.org. 300 IN TXT "v=DKIM1; k=ed25519; p=abc"
long.example.org.       300 IN TXT ` + `"` + long[:255] + `" "` + long[255:] + `"` + `
escaped.example.org.    300 IN TXT  "a\"b\\c\059d\255"
null.example.net.       300 IN MX   0 .
_submissions._tcp.example.org. 300 IN SRV 10 5 465 mail.example.org.
_submissions._tcp.example.org. 300 IN SRV 0 1 465 mail.example.org.
_submissions._tcp.example.org. 300 IN SRV 10 9 465 backup.example.org.
1.2.0.192.in-addr.arpa. 300 IN PTR  mail.example.org.
1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa. 300 IN PTR mail.example.org.
`

func newResolver(t *testing.T, servers ...string) *Resolver {
	t.Helper()
	r, err := New(servers, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestLookups(t *testing.T) {
	srv := testlib.StartDNS(t, zone)
	r := newResolver(t, srv.Addr)
	ctx := context.Background()
	ips := func(ss ...string) []netip.Addr {
		var out []netip.Addr
		for _, s := range ss {
			out = append(out, netip.MustParseAddr(s))
		}
		return out
	}
	tests := []struct {
		call string
		got  func() (any, error)
		want any
	}{
		{"TXT(example.org)", func() (any, error) { return r.TXT(ctx, "example.org") }, []string{"v=spf1 ip4:192.0.2.1 -all", "other"}},
		{"TXT(EXAMPLE.org.)", func() (any, error) { return r.TXT(ctx, "EXAMPLE.org.") }, []string{"v=spf1 ip4:192.0.2.1 -all", "other"}},
		{"TXT(long)", func() (any, error) { return r.TXT(ctx, "long.example.org") }, []string{long}},
		{"TXT(escaped)", func() (any, error) { return r.TXT(ctx, "escaped.example.org") }, []string{"a\"b\\c;d\xff"}},
		{"TXT(s1._domainkey)", func() (any, error) { return r.TXT(ctx, "s1._domainkey.example.org") }, []string{"v=DKIM1; k=ed25519; p=abc"}},
		{"TXT(alias)", func() (any, error) { return r.TXT(ctx, "alias.example.org") }, []string{"v=spf1 ip4:192.0.2.1 -all", "other"}},
		{"MX(example.org)", func() (any, error) { return r.MX(ctx, "example.org") }, []MX{{"mail.example.org", 10}, {"backup.example.org", 20}}},
		{"MX(alias)", func() (any, error) { return r.MX(ctx, "alias.example.org") }, []MX{{"mail.example.org", 10}, {"backup.example.org", 20}}},
		{"MX(null)", func() (any, error) { return r.MX(ctx, "null.example.net") }, []MX{{".", 0}}},
		{"A(mail)", func() (any, error) { return r.A(ctx, "mail.example.org") }, ips("192.0.2.1")},
		{"AAAA(mail)", func() (any, error) { return r.AAAA(ctx, "mail.example.org") }, ips("2001:db8::1")},
		{"A(www)", func() (any, error) { return r.A(ctx, "www.example.org") }, ips("192.0.2.1")},
		{"IPs(mail)", func() (any, error) { return r.IPs(ctx, "mail.example.org") }, ips("192.0.2.1", "2001:db8::1")},
		{"IPs(v4only)", func() (any, error) { return r.IPs(ctx, "v4only.example.org") }, ips("192.0.2.2")},
		{"IPs(v6only)", func() (any, error) { return r.IPs(ctx, "v6only.example.org") }, ips("2001:db8::2")},
		{"PTR(192.0.2.1)", func() (any, error) { return r.PTR(ctx, netip.MustParseAddr("192.0.2.1")) }, []string{"mail.example.org"}},
		{"PTR(::ffff:192.0.2.1)", func() (any, error) { return r.PTR(ctx, netip.MustParseAddr("::ffff:192.0.2.1")) }, []string{"mail.example.org"}},
		{"PTR(2001:db8::1)", func() (any, error) { return r.PTR(ctx, netip.MustParseAddr("2001:db8::1")) }, []string{"mail.example.org"}},
		{"SRV(_submissions)", func() (any, error) { return r.SRV(ctx, "_submissions._tcp.example.org") }, []SRV{
			{"mail.example.org", 465, 0, 1}, {"backup.example.org", 465, 10, 9}, {"mail.example.org", 465, 10, 5}}},
		{"CNAME(www)", func() (any, error) { return r.CNAME(ctx, "www.example.org") }, "web.example.org"},
	}
	for _, tt := range tests {
		got, err := tt.got()
		if err != nil || !reflect.DeepEqual(got, tt.want) {
			t.Errorf("%s = %v, %v; want %v", tt.call, got, err, tt.want)
		}
	}
}

func TestErrors(t *testing.T) {
	srv := testlib.StartDNS(t, zone)
	srv.ServFail("broken.example.org")
	srv.ServFail("nowhere.example.net")
	r := newResolver(t, srv.Addr)
	ctx := context.Background()
	tests := []struct {
		call    string
		err     error
		wantErr error
		wantMsg string
	}{
		{"TXT(nxdomain)", second(r.TXT(ctx, "nope.example.org")), ErrNotFound, "lookup TXT nope.example.org: not found: no such domain (NXDOMAIN)"},
		{"MX(nodata)", second(r.MX(ctx, "mail.example.org")), ErrNotFound, "lookup MX mail.example.org: not found: the name has no MX record"},
		{"TXT(empty non-terminal)", second(r.TXT(ctx, "_domainkey.example.org")), ErrNotFound, "no TXT record"},
		{"A(v6only)", second(r.A(ctx, "v6only.example.org")), ErrNotFound, "no A record"},
		{"IPs(nxdomain)", second(r.IPs(ctx, "nope.example.org")), ErrNotFound, "NXDOMAIN"},
		{"A(dangling CNAME)", second(r.A(ctx, "dangling.example.org")), ErrNotFound, "lookup A dangling.example.org (CNAME to nowhere.example.org): not found: no such domain"},
		{"A(CNAME out of zone)", second(r.A(ctx, "outside.example.org")), ErrNotFound, "CNAME to host.elsewhere.example"},
		{"A(CNAME loop)", second(r.A(ctx, "loop1.example.org")), ErrNotFound, "CNAMEs in a row"},
		{"CNAME(mail)", second(r.CNAME(ctx, "mail.example.org")), ErrNotFound, "no CNAME record"},
		{"PTR(unknown)", second(r.PTR(ctx, netip.MustParseAddr("192.0.2.99"))), ErrNotFound, "lookup PTR 99.2.0.192.in-addr.arpa"},
		{"TXT(bad name)", second(r.TXT(ctx, "a..b")), ErrNotFound, "not a domain name"},
		{"TXT(servfail)", second(r.TXT(ctx, "broken.example.org")), ErrTemporary, "lookup TXT broken.example.org: temporary DNS failure: server " + srv.Addr + ": SERVFAIL"},
		{"IPs(servfail)", second(r.IPs(ctx, "broken.example.org")), ErrTemporary, "SERVFAIL"},
	}
	for _, tt := range tests {
		if !errors.Is(tt.err, tt.wantErr) || !strings.Contains(fmt.Sprint(tt.err), tt.wantMsg) {
			t.Errorf("%s = %v; want %v containing %q", tt.call, tt.err, tt.wantErr, tt.wantMsg)
		}
		if errors.Is(tt.err, ErrNotFound) && errors.Is(tt.err, ErrTemporary) {
			t.Errorf("%s = %v: both not found and temporary", tt.call, tt.err)
		}
	}
}

func second[T any](_ T, err error) error { return err }

// TestTCPFallback: an answer too big for UDP is truncated and fetched again
// over TCP.
func TestTCPFallback(t *testing.T) {
	var b strings.Builder
	for i := range 40 {
		fmt.Fprintf(&b, "big.example.org. IN TXT \"%03d %s\"\n", i, strings.Repeat("x", 200))
	}
	srv := testlib.StartDNS(t, b.String())
	got, err := newResolver(t, srv.Addr).TXT(context.Background(), "big.example.org")
	if err != nil || len(got) != 40 {
		t.Fatalf("TXT(big) = %d records, %v; want 40", len(got), err)
	}
	if n := srv.Queries(); n != 2 {
		t.Errorf("Queries() = %d, want 2 (UDP, then TCP)", n)
	}
}

// TestFailover: a server that fails is skipped for the next; a definite
// answer (NXDOMAIN) from the first is not second-guessed.
func TestFailover(t *testing.T) {
	bad := testlib.StartDNS(t, zone)
	bad.ServFail("example.org")
	good := testlib.StartDNS(t, zone)
	r := newResolver(t, bad.Addr, good.Addr)
	if got, err := r.MX(context.Background(), "example.org"); err != nil || len(got) != 2 {
		t.Errorf("MX(example.org) = %v, %v; want the second server's answer", got, err)
	}
	if _, err := r.MX(context.Background(), "nope.example.org"); !errors.Is(err, ErrNotFound) {
		t.Errorf("MX(nope.example.org) = %v, want %v", err, ErrNotFound)
	}
	if bad.Queries() != 2 || good.Queries() != 1 {
		t.Errorf("queries: first server %d, second %d; want 2 and 1", bad.Queries(), good.Queries())
	}
}

// TestTimeout: a server that never answers is a temporary failure after the
// timeout, and so is a cancelled context.
func TestTimeout(t *testing.T) {
	silent, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	r, err := New([]string{silent.LocalAddr().String()}, 200*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	_, err = r.TXT(context.Background(), "example.org")
	if !errors.Is(err, ErrTemporary) || !strings.Contains(err.Error(), "lookup TXT example.org") {
		t.Errorf("TXT(example.org) = %v, want %v", err, ErrTemporary)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("TXT(example.org) took %v with a 200ms timeout", d)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := r.TXT(ctx, "example.org"); !errors.Is(err, ErrTemporary) || !errors.Is(err, context.Canceled) {
		t.Errorf("TXT(example.org) with a cancelled context = %v, want %v and %v", err, ErrTemporary, context.Canceled)
	}
}

// TestNoEDNS: a server that answers FORMERR to EDNS0 is asked again without
// it (RFC 6891 §7).
func TestNoEDNS(t *testing.T) {
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	handler := dns.HandlerFunc(func(w dns.ResponseWriter, req *dns.Msg) {
		resp := new(dns.Msg)
		if req.IsEdns0() != nil {
			resp.SetRcode(req, dns.RcodeFormatError)
		} else {
			resp.SetReply(req)
			rr, _ := dns.NewRR(`example.org. 60 IN TXT "old server"`)
			resp.Answer = []dns.RR{rr}
		}
		w.WriteMsg(resp)
	})
	srv := &dns.Server{PacketConn: pc, Handler: handler}
	go srv.ActivateAndServe()
	t.Cleanup(func() { srv.Shutdown() })
	got, err := newResolver(t, pc.LocalAddr().String()).TXT(context.Background(), "example.org")
	if err != nil || !reflect.DeepEqual(got, []string{"old server"}) {
		t.Errorf("TXT(example.org) = %q, %v; want [old server]", got, err)
	}
}

func TestNew(t *testing.T) {
	tests := []struct {
		servers []string
		want    []string
		ok      bool
	}{
		{[]string{"127.0.0.1:5353"}, []string{"127.0.0.1:5353"}, true},
		{[]string{"192.0.2.53", "2001:db8::53"}, []string{"192.0.2.53:53", "[2001:db8::53]:53"}, true},
		{[]string{"[::1]:5353"}, []string{"[::1]:5353"}, true},
		{[]string{"dns.example.org:53"}, nil, false},
		{[]string{"127.0.0.1:99999"}, nil, false},
	}
	for _, tt := range tests {
		r, err := New(tt.servers, 0)
		if (err == nil) != tt.ok || err == nil && !reflect.DeepEqual(r.Servers(), tt.want) {
			t.Errorf("New(%q) = %v, %v; want %q, ok=%v", tt.servers, r, err, tt.want, tt.ok)
		}
	}
}

func TestResolvConf(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		conf string
		want []string
		ok   bool
	}{
		{"search example.org\nnameserver 192.0.2.53\nnameserver 2001:db8::53\noptions ndots:2\n", []string{"192.0.2.53:53", "[2001:db8::53]:53"}, true},
		{"# nothing\n", nil, false},
		{"nameserver dns.example.org\n", nil, false},
	}
	for i, tt := range tests {
		path := filepath.Join(dir, fmt.Sprint(i))
		if err := os.WriteFile(path, []byte(tt.conf), 0o644); err != nil {
			t.Fatal(err)
		}
		got, err := resolvConfServers(path)
		if (err == nil) != tt.ok || !reflect.DeepEqual(got, tt.want) {
			t.Errorf("resolvConfServers(%q) = %q, %v; want %q, ok=%v", tt.conf, got, err, tt.want, tt.ok)
		}
	}
	if _, err := resolvConfServers(filepath.Join(dir, "missing")); err == nil {
		t.Errorf("resolvConfServers(missing file) = nil error")
	}
}

func TestUnescape(t *testing.T) {
	tests := []struct{ in, want string }{
		{"plain", "plain"}, {`a\"b`, `a"b`}, {`a\\b`, `a\b`}, {`\059`, ";"}, {`\255x`, "\xffx"},
		{`\999`, "999"}, {`\05`, "05"}, {`trailing\`, `trailing\`}, {`\;`, ";"},
	}
	for _, tt := range tests {
		if got := unescape(tt.in); got != tt.want {
			t.Errorf("unescape(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}
