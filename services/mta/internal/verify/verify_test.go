package verify

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-msgauth/dkim"
	"github.com/emersion/go-msgauth/dmarc"

	"github.com/postcove/postcove/services/internal/authclient"
	"github.com/postcove/postcove/services/internal/dkimkey"
	"github.com/postcove/postcove/services/internal/dnsclient"
	"github.com/postcove/postcove/services/internal/testlib"
	"github.com/postcove/postcove/services/mta/internal/policy"
	"github.com/postcove/postcove/services/mta/internal/smtpd"
)

// testZone is the loopback DNS of the tests; %[1]s is the DKIM key
// record of every selector "sel". The client is always 127.0.0.1.
const testZone = `
pass.example.      IN TXT "v=spf1 ip4:127.0.0.1 -all"
fail.example.      IN TXT "v=spf1 -all"
soft.example.      IN TXT "v=spf1 ~all"
neutral.example.   IN TXT "v=spf1 ?all"
perm.example.      IN TXT "v=spf1 nonsense:x -all"
none.example.      IN A 192.0.2.1
helo.example.      IN TXT "v=spf1 ip4:127.0.0.1 -all"
mx.example.        IN TXT "v=spf1 mx -all"
mx.example.        IN MX 10 mail.mx.example.
mail.mx.example.   IN A 127.0.0.1
spftemp.example.   IN TXT "v=spf1 ip4:127.0.0.1 -all"

reject.example.            IN TXT "v=spf1 -all"
_dmarc.reject.example.     IN TXT "v=DMARC1; p=reject"
bounce.reject.example.     IN TXT "v=spf1 ip4:127.0.0.1 -all"
quarantine.example.        IN TXT "v=spf1 -all"
_dmarc.quarantine.example. IN TXT "v=DMARC1; p=quarantine"
monitor.example.           IN TXT "v=spf1 -all"
_dmarc.monitor.example.    IN TXT "v=DMARC1; p=none"
strict.example.            IN TXT "v=spf1 -all"
_dmarc.strict.example.     IN TXT "v=DMARC1; p=reject; aspf=s; adkim=s"
bounce.strict.example.     IN TXT "v=spf1 ip4:127.0.0.1 -all"
org.example.               IN TXT "v=spf1 -all"
_dmarc.org.example.        IN TXT "v=DMARC1; p=none; sp=reject"
sub.org.example.           IN TXT "v=spf1 -all"
sampled.example.           IN TXT "v=spf1 -all"
_dmarc.sampled.example.    IN TXT "v=DMARC1; p=reject; pct=0"
dmarctemp.example.         IN TXT "v=spf1 -all"
tempreject.example.        IN TXT "v=spf1 ip4:127.0.0.1 -all"
_dmarc.tempreject.example. IN TXT "v=DMARC1; p=reject"
broken.example.            IN TXT "v=spf1 -all"
_dmarc.broken.example.     IN TXT "v=DMARC1; p=bogus"

signed.example.                     IN TXT "v=spf1 -all"
_dmarc.signed.example.              IN TXT "v=DMARC1; p=reject"
sel._domainkey.signed.example.      IN TXT "%[1]s"
sel._domainkey.other.example.       IN TXT "%[1]s"
sel._domainkey.mail.strict.example. IN TXT "%[1]s"
sel._domainkey.example.org.         IN TXT "%[1]s"
sel._domainkey.dmarctemp.example.   IN TXT "%[1]s"

ours.example.     IN TXT "v=spf1 ip4:127.0.0.1 -all"
tempours.example. IN TXT "v=spf1 ip4:127.0.0.1 -all"
`

// servFailed are the names whose lookups fail temporarily.
var servFailed = []string{"spftemp.example", "_dmarc.dmarctemp.example", "tempreject.example",
	"broken._domainkey.signed.example", "tempours.example"}

// localDomainsOfTest are the domains auth says are ours.
var localDomainsOfTest = []string{"example.org", "ours.example", "tempours.example"}

// fixture is a Verifier on a loopback DNS server and a real auth service.
type fixture struct {
	v    *Verifier
	dns  *testlib.DNSServer
	auth *testlib.Auth
	key  ed25519.PrivateKey
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	_, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	rec, err := dkimkey.Record(key.Public())
	if err != nil {
		t.Fatal(err)
	}
	f := &fixture{key: key, dns: testlib.StartDNS(t, fmt.Sprintf(testZone, rec)), auth: testlib.StartAuth(t)}
	for _, name := range servFailed {
		f.dns.ServFail(name)
	}
	for _, d := range localDomainsOfTest {
		f.auth.Domain(t, d)
	}
	r, err := dnsclient.New([]string{f.dns.Addr}, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	f.v, err = New(Options{Hostname: "mx.example.org", Resolver: r, Domains: authclient.New(f.auth.Conn())})
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// message is one test message: its envelope, From, and DKIM signatures
// given as "domain/selector".
type message struct {
	helo, sender, from string
	sign               []string
	tamper             bool // the body is changed after signing
}

// build returns the message as smtpd hands it to the Verifier.
func (f *fixture) build(t *testing.T, m message) *smtpd.Message {
	t.Helper()
	raw := "From: " + m.from + "\r\nTo: alice@example.org\r\nSubject: test\r\n" +
		"Date: Fri, 27 Nov 2026 16:00:00 +0000\r\nMessage-ID: <1@test>\r\n\r\nHello.\r\n"
	for _, s := range m.sign {
		domain, selector, _ := strings.Cut(s, "/")
		var signed bytes.Buffer
		err := dkim.Sign(&signed, strings.NewReader(raw), &dkim.SignOptions{Domain: domain, Selector: selector, Signer: f.key})
		if err != nil {
			t.Fatal(err)
		}
		raw = signed.String()
	}
	if m.tamper {
		raw = strings.Replace(raw, "Hello.", "Hello!", 1)
	}
	br := bufio.NewReader(strings.NewReader(raw))
	h, err := policy.ReadHeader(br, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	if m.helo == "" {
		m.helo = "client.test"
	}
	return &smtpd.Message{RemoteIP: net.IPv4(127, 0, 0, 1), Helo: m.helo, Sender: m.sender, Header: h, Body: br}
}

// TestVerify: SPF, DKIM and DMARC results in Authentication-Results, and
// the verdict each combination gets, against records on loopback DNS.
func TestVerify(t *testing.T) {
	f := newFixture(t)
	tests := []struct {
		name  string
		msg   message
		want  []string // in Authentication-Results, unfolded
		reply string   // prefix of the refusal; "" accepts
		junk  bool
	}{
		// SPF (RFC 7208), no DMARC record.
		{name: "spf pass", msg: message{sender: "a@pass.example", from: "a@pass.example"},
			want: []string{"spf=pass smtp.mailfrom=a@pass.example", "dkim=none", "dmarc=none header.from=pass.example"}},
		{name: "spf fail", msg: message{sender: "a@fail.example", from: "a@fail.example"}, want: []string{"spf=fail smtp.mailfrom=a@fail.example"}},
		{name: "spf softfail", msg: message{sender: "a@soft.example", from: "a@soft.example"}, want: []string{"spf=softfail "}},
		{name: "spf neutral", msg: message{sender: "a@neutral.example", from: "a@neutral.example"}, want: []string{"spf=neutral "}},
		{name: "spf none", msg: message{sender: "a@none.example", from: "a@none.example"}, want: []string{"spf=none "}},
		{name: "spf permerror", msg: message{sender: "a@perm.example", from: "a@perm.example"}, want: []string{"spf=permerror "}},
		{name: "spf temperror, no policy: accepted", msg: message{sender: "a@spftemp.example", from: "a@spftemp.example"},
			want: []string{"spf=temperror smtp.mailfrom=a@spftemp.example", "dmarc=none"}},
		{name: "spf mx mechanism", msg: message{sender: "a@mx.example", from: "a@mx.example"}, want: []string{"spf=pass "}},
		{name: "null sender: HELO identity", msg: message{helo: "helo.example", from: "MAILER-DAEMON@helo.example"},
			want: []string{"spf=pass smtp.helo=helo.example"}},
		{name: "null sender, address literal", msg: message{helo: "[127.0.0.1]", from: "MAILER-DAEMON@none.example"},
			want: []string{"spf=none;"}},

		// DKIM (RFC 6376).
		{name: "dkim pass aligns", msg: message{sender: "a@signed.example", from: "a@signed.example", sign: []string{"signed.example/sel"}},
			want: []string{"spf=fail ", "dkim=pass header.d=signed.example header.s=sel", "dmarc=pass header.from=signed.example"}},
		{name: "dkim fail: body changed", msg: message{sender: "a@signed.example", from: "a@signed.example", sign: []string{"signed.example/sel"}, tamper: true},
			want: []string{"dkim=fail header.d=signed.example header.s=sel", "dmarc=fail header.from=signed.example"}, reply: "550 5.7.1 "},
		{name: "dkim permerror: no key", msg: message{sender: "a@signed.example", from: "a@signed.example", sign: []string{"signed.example/missing"}},
			want: []string{"dkim=permerror header.d=signed.example header.s=missing", "dmarc=fail"}, reply: "550 5.7.1 "},
		{name: "dkim temperror: key lookup SERVFAIL", msg: message{sender: "a@signed.example", from: "a@signed.example", sign: []string{"signed.example/broken"}},
			want: []string{"dkim=temperror header.d=signed.example header.s=broken", "dmarc=temperror"}, reply: "451 4.7.0 "},
		{name: "two signatures", msg: message{sender: "a@signed.example", from: "a@signed.example", sign: []string{"other.example/sel", "signed.example/sel"}},
			want: []string{"dkim=pass header.d=signed.example header.s=sel", "dkim=pass header.d=other.example header.s=sel", "dmarc=pass"}},
		{name: "dkim pass not aligned", msg: message{sender: "a@reject.example", from: "a@reject.example", sign: []string{"other.example/sel"}},
			want: []string{"dkim=pass header.d=other.example", "dmarc=fail header.from=reject.example"}, reply: "550 5.7.1 "},

		// DMARC (RFC 7489).
		{name: "p=reject", msg: message{sender: "a@reject.example", from: "a@reject.example"},
			want: []string{"spf=fail ", "dmarc=fail header.from=reject.example"}, reply: "550 5.7.1 "},
		{name: "p=quarantine", msg: message{sender: "a@quarantine.example", from: "a@quarantine.example"},
			want: []string{"dmarc=fail header.from=quarantine.example"}, junk: true},
		{name: "p=none", msg: message{sender: "a@monitor.example", from: "a@monitor.example"}, want: []string{"dmarc=fail header.from=monitor.example"}},
		{name: "pass by relaxed SPF alignment", msg: message{sender: "bounce@bounce.reject.example", from: "a@reject.example"},
			want: []string{"spf=pass smtp.mailfrom=bounce@bounce.reject.example", "dmarc=pass header.from=reject.example"}},
		{name: "strict SPF alignment", msg: message{sender: "bounce@bounce.strict.example", from: "a@strict.example"},
			want: []string{"spf=pass ", "dmarc=fail header.from=strict.example"}, reply: "550 5.7.1 "},
		{name: "strict DKIM alignment", msg: message{sender: "a@strict.example", from: "a@strict.example", sign: []string{"mail.strict.example/sel"}},
			want: []string{"dkim=pass header.d=mail.strict.example", "dmarc=fail"}, reply: "550 5.7.1 "},
		{name: "sp of the organizational domain", msg: message{sender: "a@sub.org.example", from: "a@sub.org.example"},
			want: []string{"dmarc=fail header.from=sub.org.example"}, reply: "550 5.7.1 "},
		{name: "p of the organizational domain itself", msg: message{sender: "a@org.example", from: "a@org.example"},
			want: []string{"dmarc=fail header.from=org.example"}},
		{name: "pct=0: reject becomes quarantine", msg: message{sender: "a@sampled.example", from: "a@sampled.example"},
			want: []string{"dmarc=fail"}, junk: true},
		{name: "unparsable record: permerror", msg: message{sender: "a@broken.example", from: "a@broken.example"}, want: []string{"dmarc=permerror"}},
		{name: "several authors: the strictest wins", msg: message{sender: "a@monitor.example", from: "a@monitor.example, b@reject.example"},
			want: []string{"dmarc=fail header.from=monitor.example", "dmarc=fail header.from=reject.example"}, reply: "550 5.7.1 "},
		{name: "From the parser refuses", msg: message{sender: "a@pass.example", from: "<a@reject.example"},
			want: []string{"dmarc=fail header.from=reject.example"}, reply: "550 5.7.1 "},

		// SERVFAIL never gives a 5xx.
		{name: "DMARC lookup SERVFAIL", msg: message{sender: "a@dmarctemp.example", from: "a@dmarctemp.example"},
			want: []string{"dmarc=temperror header.from=dmarctemp.example"}, reply: "451 4.7.0 "},
		{name: "SPF SERVFAIL under p=reject", msg: message{sender: "a@tempreject.example", from: "a@tempreject.example"},
			want: []string{"spf=temperror ", "dmarc=temperror"}, reply: "451 4.7.0 "},
		{name: "DMARC lookup SERVFAIL, unaligned pass", msg: message{sender: "a@fail.example", from: "a@dmarctemp.example", sign: []string{"signed.example/sel"}},
			want: []string{"dkim=pass header.d=signed.example", "dmarc=temperror"}, reply: "451 4.7.0 "},
		{name: "DMARC lookup SERVFAIL, strictly aligned pass", msg: message{sender: "a@fail.example", from: "a@dmarctemp.example", sign: []string{"dmarctemp.example/sel"}},
			want: []string{"dkim=pass header.d=dmarctemp.example", "dmarc=temperror"}},

		// Our own domains from outside.
		{name: "local From, no SPF", msg: message{sender: "alice@example.org", from: "alice@example.org"},
			want: []string{"spf=none ", "dmarc=none header.from=example.org"}, reply: "550 5.7.1 "},
		{name: "local From, SPF pass", msg: message{sender: "a@ours.example", from: "a@ours.example"}, want: []string{"spf=pass "}},
		{name: "local From, other envelope", msg: message{sender: "a@pass.example", from: "alice@example.org"}, reply: "550 5.7.1 "},
		{name: "local envelope, other From", msg: message{sender: "alice@example.org", from: "a@monitor.example"}, reply: "550 5.7.1 "},
		{name: "local From, DKIM aligned", msg: message{sender: "a@fail.example", from: "alice@example.org", sign: []string{"example.org/sel"}},
			want: []string{"dkim=pass header.d=example.org"}},
		{name: "local From, SPF SERVFAIL", msg: message{sender: "a@tempours.example", from: "a@tempours.example"},
			want: []string{"spf=temperror "}, reply: "451 4.7.0 "},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			verdict, err := f.v.Verify(context.Background(), f.build(t, tt.msg))
			if err != nil {
				t.Fatalf("Verify(%+v) = %v", tt.msg, err)
			}
			ar := strings.ReplaceAll(verdict.AuthResults, "\r\n\t", " ")
			if !strings.HasPrefix(ar, "mx.example.org; spf=") {
				t.Errorf("Authentication-Results %q, want our authserv-id then spf", ar)
			}
			for _, w := range tt.want {
				if !strings.Contains(ar, w) {
					t.Errorf("Authentication-Results %q, want %q in it", ar, w)
				}
			}
			reply := ""
			if verdict.Reject != nil {
				r := verdict.Reject
				reply = fmt.Sprintf("%d %d.%d.%d %s", r.Code, r.EnhancedCode[0], r.EnhancedCode[1], r.EnhancedCode[2], r.Message)
				if verdict.Reject.Code/100 == 5 && strings.Contains(ar, "temperror") && !strings.Contains(ar, "dmarc=fail") {
					t.Errorf("5xx %q on a temporary DNS failure", reply)
				}
			}
			if tt.reply == "" && reply != "" || !strings.HasPrefix(reply, tt.reply) {
				t.Errorf("Verify(%+v): refused %q, want %q", tt.msg, reply, tt.reply)
			}
			if verdict.Junk != tt.junk {
				t.Errorf("Verify(%+v): Junk = %v, want %v", tt.msg, verdict.Junk, tt.junk)
			}
		})
	}
}

// TestAuthResultsField: the whole field, as RFC 8601 writes it, one
// result a line.
func TestAuthResultsField(t *testing.T) {
	f := newFixture(t)
	verdict, err := f.v.Verify(context.Background(), f.build(t, message{
		sender: "bounce@bounce.reject.example", from: "Someone <a@signed.example>", sign: []string{"signed.example/sel"},
	}))
	if err != nil {
		t.Fatal(err)
	}
	want := "mx.example.org;\r\n\tspf=pass smtp.mailfrom=bounce@bounce.reject.example;\r\n\tdkim=pass header.d=signed.example header.s=sel;\r\n\tdmarc=pass header.from=signed.example"
	if verdict.AuthResults != want {
		t.Errorf("Authentication-Results:\n%q\nwant\n%q", verdict.AuthResults, want)
	}
}

// TestAuthUnavailable: when auth cannot say whether a domain is ours,
// the message is deferred (Verify fails, smtpd answers 451), never
// refused; a message that passes needs no answer from auth.
func TestAuthUnavailable(t *testing.T) {
	f := newFixture(t)
	f.auth.Stop()
	_, err := f.v.Verify(context.Background(), f.build(t, message{sender: "alice@example.org", from: "alice@example.org"}))
	if !errors.Is(err, authclient.ErrUnavailable) {
		t.Errorf("Verify with auth down = %v, want ErrUnavailable", err)
	}
	verdict, err := f.v.Verify(context.Background(), f.build(t, message{sender: "a@pass.example", from: "a@pass.example"}))
	if err != nil || verdict.Reject != nil {
		t.Errorf("Verify of a passing message with auth down = %+v, %v, want accepted", verdict, err)
	}
}

// TestNetResolver: the adapter gives the SPF and DMARC libraries the
// *net.DNSError they tell "no record" from "try later" by.
func TestNetResolver(t *testing.T) {
	dns := testlib.StartDNS(t, `a.example. IN TXT "one" "two"
a.example. IN MX 10 mx.a.example.
mx.a.example. IN A 192.0.2.7
mx.a.example. IN AAAA 2001:db8::7
7.2.0.192.in-addr.arpa. IN PTR mx.a.example.
`)
	dns.ServFail("down.example")
	r, err := dnsclient.New([]string{dns.Addr}, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	n := netResolver{r: r}
	ctx := context.Background()
	if txt, err := n.LookupTXT(ctx, "a.example"); err != nil || len(txt) != 1 || txt[0] != "onetwo" {
		t.Errorf("LookupTXT(a.example) = %q, %v", txt, err)
	}
	if mx, err := n.LookupMX(ctx, "a.example"); err != nil || len(mx) != 1 || mx[0].Host != "mx.a.example" || mx[0].Pref != 10 {
		t.Errorf("LookupMX(a.example) = %v, %v", mx, err)
	}
	if ips, err := n.LookupIPAddr(ctx, "mx.a.example"); err != nil || len(ips) != 2 || ips[0].IP.String() != "192.0.2.7" || ips[1].IP.String() != "2001:db8::7" {
		t.Errorf("LookupIPAddr(mx.a.example) = %v, %v", ips, err)
	}
	if names, err := n.LookupAddr(ctx, "192.0.2.7"); err != nil || len(names) != 1 || names[0] != "mx.a.example" {
		t.Errorf("LookupAddr(192.0.2.7) = %q, %v", names, err)
	}
	for _, tt := range []struct {
		name                string
		lookup              func() error
		notFound, temporary bool
	}{
		{"TXT nxdomain", func() error { _, err := n.LookupTXT(ctx, "b.example"); return err }, true, false},
		{"TXT nodata", func() error { _, err := n.LookupTXT(ctx, "mx.a.example"); return err }, true, false},
		{"TXT servfail", func() error { _, err := n.LookupTXT(ctx, "down.example"); return err }, false, true},
		{"MX servfail", func() error { _, err := n.LookupMX(ctx, "down.example"); return err }, false, true},
		{"IP nxdomain", func() error { _, err := n.LookupIPAddr(ctx, "b.example"); return err }, true, false},
		{"PTR nxdomain", func() error { _, err := n.LookupAddr(ctx, "192.0.2.8"); return err }, true, false},
		{"PTR of no address", func() error { _, err := n.LookupAddr(ctx, "nonsense"); return err }, true, false},
	} {
		err := tt.lookup()
		de, ok := err.(*net.DNSError) // the libraries assert the type, so must this
		if !ok || de.IsNotFound != tt.notFound || de.Temporary() != tt.temporary {
			t.Errorf("%s: %#v, want a *net.DNSError with IsNotFound %v, Temporary() %v", tt.name, err, tt.notFound, tt.temporary)
		}
	}
}

func TestAligned(t *testing.T) {
	for _, tt := range []struct {
		authenticated, author string
		strict, want          bool
	}{
		{"example.com", "example.com", true, true},
		{"mail.example.com", "example.com", false, true},
		{"mail.example.com", "example.com", true, false},
		{"example.com", "news.example.com", false, true},
		{"a.example.co.uk", "b.example.co.uk", false, true},
		{"example.co.uk", "other.co.uk", false, false}, // co.uk is a public suffix
		{"a.github.io", "b.github.io", false, false},   // so is github.io (the PSL's private part)
		{"", "example.com", false, false},
	} {
		mode := dmarc.AlignmentMode(dmarc.AlignmentRelaxed)
		if tt.strict {
			mode = dmarc.AlignmentStrict
		}
		if got := aligned(tt.authenticated, tt.author, mode); got != tt.want {
			t.Errorf("aligned(%q, %q, %q) = %v, want %v", tt.authenticated, tt.author, mode, got, tt.want)
		}
	}
}

func TestAuthorDomains(t *testing.T) {
	for _, tt := range []struct {
		from []string
		want []string
	}{
		{[]string{"Alice <alice@Example.ORG.>"}, []string{"example.org"}},
		{[]string{"a@one.example, \"B\" <b@two.example>, c@ONE.example"}, []string{"one.example", "two.example"}},
		{[]string{"a@one.example", "b@two.example"}, []string{"one.example", "two.example"}},
		{[]string{"=?utf-8?q?J=C3=B6rg?= <j@b\u00fccher.example>"}, []string{"xn--bcher-kva.example"}},
		{[]string{"broken <a@three.example"}, []string{"three.example"}},
		{[]string{"undisclosed"}, nil},
		{nil, nil},
	} {
		h := &policy.Header{}
		for _, f := range tt.from {
			h.Append("From", f)
		}
		if got := authorDomains(h); strings.Join(got, ",") != strings.Join(tt.want, ",") {
			t.Errorf("authorDomains(%q) = %q, want %q", tt.from, got, tt.want)
		}
	}
}

func TestSampled(t *testing.T) {
	pct := func(n int) *int { return &n }
	for _, tt := range []struct {
		p    string
		pct  *int
		want string
	}{
		{"reject", nil, "reject"},
		{"reject", pct(100), "reject"},
		{"reject", pct(0), "quarantine"},
		{"quarantine", pct(0), "none"},
		{"none", pct(0), "none"},
	} {
		if got := sampled(dmarc.Policy(tt.p), tt.pct); string(got) != tt.want {
			t.Errorf("sampled(%s, %v) = %s, want %s", tt.p, tt.pct, got, tt.want)
		}
	}
}
