package remote

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/postcove/postcove/services/internal/dnsclient"
	"github.com/postcove/postcove/services/internal/testlib"
	"github.com/postcove/postcove/services/mta/internal/deliver/smtpsink"
	"github.com/postcove/postcove/services/mta/internal/queue"
)

func body(s string) queue.Body { return io.NewSectionReader(strings.NewReader(s), 0, int64(len(s))) }

func remote(addrs ...string) []queue.Recipient {
	var out []queue.Recipient
	for _, a := range addrs {
		out = append(out, queue.Recipient{Address: a, Orig: a, Route: queue.RouteRemote})
	}
	return out
}

func codes(res []queue.Result) []int {
	var out []int
	for _, r := range res {
		out = append(out, r.Code)
	}
	return out
}

// setup starts a DNS server with zone and returns a client whose port is
// sink's.
func setup(t *testing.T, sink *smtpsink.Sink, zone string, tune func(*Options)) *Client {
	t.Helper()
	dns := testlib.StartDNS(t, "$TTL 300\n"+zone)
	res, err := dnsclient.New([]string{dns.Addr}, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	_, port, _ := net.SplitHostPort(sink.Addr)
	p, _ := strconv.Atoi(port)
	opts := Options{Hostname: "mta.postcove.test", Port: p, Resolver: res, DialTimeout: 2 * time.Second}
	if tune != nil {
		tune(&opts)
	}
	c, err := New(opts)
	if err != nil {
		t.Fatalf("New = %v", err)
	}
	return c
}

func serverTLS(t *testing.T) *tls.Config {
	t.Helper()
	certs := testlib.NewCerts(t)
	cert, err := tls.LoadX509KeyPair(certs.ServerCert, certs.ServerKey)
	if err != nil {
		t.Fatal(err)
	}
	return &tls.Config{Certificates: []tls.Certificate{cert}}
}

const msg = "From: alice@example.org\r\nSubject: hi\r\n\r\nhello\r\n.\r\n"

// TestMXOrderAndTLS: the lowest preference first; an exchanger that
// refuses connections passes the message to the next; STARTTLS with a
// certificate nobody could verify is used; EHLO gives our name.
func TestMXOrderAndTLS(t *testing.T) {
	sink := smtpsink.Start(t, smtpsink.Options{TLS: serverTLS(t)})
	c := setup(t, sink, `
example.net. MX 20 mx2.example.net.
example.net. MX 10 mx1.example.net.
mx1.example.net. A 127.0.0.3
mx2.example.net. A 127.0.0.1
`, nil)
	env := queue.Envelope{ID: "m1", Sender: "alice@example.org", EnvID: "e1", Ret: "HDRS"}
	res := c.Deliver(context.Background(), env, remote("bob@example.net", "carol@EXAMPLE.net"), body(msg))
	if got := codes(res); !slices.Equal(got, []int{250, 250}) {
		t.Fatalf("Deliver = %+v, want 250 for both", res)
	}
	if res[0].RemoteMTA != "mx2.example.net" || !strings.Contains(res[0].Text, "TLS") {
		t.Errorf("result = %+v, want from mx2.example.net over TLS", res[0])
	}
	got := sink.Messages()
	if len(got) != 1 || got[0].Data != msg || !got[0].TLS || got[0].Helo != "mta.postcove.test" || got[0].From != "alice@example.org" || !slices.Equal(got[0].To, []string{"bob@example.net", "carol@EXAMPLE.net"}) || got[0].Size != int64(len(msg)) {
		t.Errorf("sink got %+v, want one TLS transaction for both from mta.postcove.test", got)
	}
}

// TestTLSFallback: a failed handshake is retried in plaintext, as
// postfix's "may" does.
func TestTLSFallback(t *testing.T) {
	cfg := serverTLS(t)
	cfg.ClientAuth = tls.RequireAnyClientCert // we have none: the handshake fails
	sink := smtpsink.Start(t, smtpsink.Options{TLS: cfg})
	c := setup(t, sink, "example.net. MX 10 mx.example.net.\nmx.example.net. A 127.0.0.1\n", nil)
	res := c.Deliver(context.Background(), queue.Envelope{ID: "m"}, remote("bob@example.net"), body(msg))
	if res[0].Code != 250 {
		t.Fatalf("Deliver = %+v, want 250", res)
	}
	if got := sink.Messages(); len(got) != 1 || got[0].TLS {
		t.Errorf("sink got %+v, want one message in plaintext", got)
	}
}

func TestRoutes(t *testing.T) {
	sink := smtpsink.Start(t, smtpsink.Options{})
	zone := `$TTL 300
implicit.example. A 127.0.0.1
nomail.example. MX 0 .
nxmx.example. MX 10 nowhere.nxmx.example.
refused.example. MX 10 mx.refused.example.
mx.refused.example. A 127.0.0.3
broken.example. MX 10 mx.broken.example.
`
	dns := testlib.StartDNS(t, zone)
	dns.ServFail("broken.example")
	dns.ServFail("flaky.example")
	r, _ := dnsclient.New([]string{dns.Addr}, 2*time.Second)
	_, port, _ := net.SplitHostPort(sink.Addr)
	p, _ := strconv.Atoi(port)
	c, err := New(Options{Hostname: "mta.test", Port: p, Resolver: r, DialTimeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		rcpt     string
		code     int
		enhanced string
	}{
		{"a@implicit.example", 250, "2.0.0"}, // no MX: the A record (RFC 5321 §5.1)
		{"a@nomail.example", 556, "5.1.10"},  // null MX (RFC 7505)
		{"a@nosuch.example", 550, "5.1.2"},   // no such domain
		{"a@flaky.example", 451, "4.4.3"},    // SERVFAIL: temporary
		{"a@broken.example", 451, "4.4.3"},   // SERVFAIL on the MX query
		{"a@nxmx.example", 451, "4.4.4"},     // the exchanger has no address
		{"a@refused.example", 451, "4.4.2"},  // connection refused
	}
	for _, tt := range tests {
		res := c.Deliver(context.Background(), queue.Envelope{ID: "m", Sender: "s@example.org"}, remote(tt.rcpt), body(msg))
		if res[0].Code != tt.code || res[0].Enhanced != tt.enhanced {
			t.Errorf("Deliver(%s) = %+v, want %d %s", tt.rcpt, res[0], tt.code, tt.enhanced)
		}
	}
}

// TestPerRecipient: RCPT answers are per recipient; the DATA answer is
// every accepted recipient's; a 5xx to MAIL fails them all, a 4xx to MAIL
// defers them all.
func TestPerRecipient(t *testing.T) {
	var mu sync.Mutex
	dataReply := error(nil)
	mailReply := error(nil)
	sink := smtpsink.Start(t, smtpsink.Options{Reply: func(stage smtpsink.Stage, arg string) error {
		mu.Lock()
		defer mu.Unlock()
		switch {
		case stage == smtpsink.StageMail:
			return mailReply
		case stage == smtpsink.StageRcpt && strings.HasPrefix(arg, "gone@"):
			return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "no such user"}
		case stage == smtpsink.StageRcpt && strings.HasPrefix(arg, "grey@"):
			return &smtp.SMTPError{Code: 450, EnhancedCode: smtp.EnhancedCode{4, 2, 0}, Message: "greylisted"}
		case stage == smtpsink.StageData:
			return dataReply
		}
		return nil
	}})
	c := setup(t, sink, "example.net. MX 10 mx.example.net.\nmx.example.net. A 127.0.0.1\n", nil)
	env := queue.Envelope{ID: "m", Sender: "s@example.org"}
	rcpts := remote("ok@example.net", "gone@example.net", "grey@example.net")
	for _, tt := range []struct {
		name       string
		mail, data error
		want       []int
	}{
		{"per RCPT", nil, nil, []int{250, 550, 450}},
		{"DATA refused", nil, &smtp.SMTPError{Code: 554, EnhancedCode: smtp.EnhancedCode{5, 7, 1}, Message: "spam"}, []int{554, 550, 450}},
		{"MAIL refused", &smtp.SMTPError{Code: 553, EnhancedCode: smtp.EnhancedCode{5, 7, 1}, Message: "sender refused"}, nil, []int{553, 553, 553}},
		{"MAIL deferred", &smtp.SMTPError{Code: 421, EnhancedCode: smtp.EnhancedCode{4, 3, 2}, Message: "busy"}, nil, []int{421, 421, 421}},
	} {
		mu.Lock()
		mailReply, dataReply = tt.mail, tt.data
		mu.Unlock()
		if got := codes(c.Deliver(context.Background(), env, rcpts, body(msg))); !slices.Equal(got, tt.want) {
			t.Errorf("%s: codes = %v, want %v", tt.name, got, tt.want)
		}
	}
}

// TestDomainsAndConcurrency: recipients of two domains go in two
// transactions; no more than PerDomain connections to one domain at once.
func TestDomainsAndConcurrency(t *testing.T) {
	var mu sync.Mutex
	active, peak := map[string]int{}, map[string]int{}
	sink := smtpsink.Start(t, smtpsink.Options{Reply: func(stage smtpsink.Stage, arg string) error {
		dom := domainOf(arg)
		mu.Lock()
		defer mu.Unlock()
		switch stage {
		case smtpsink.StageRcpt:
			active[dom]++
			peak[dom] = max(peak[dom], active[dom])
			mu.Unlock()
			time.Sleep(20 * time.Millisecond) // hold the connection a while
			mu.Lock()
		case smtpsink.StageData:
			active[dom]--
		}
		return nil
	}})
	c := setup(t, sink, `
a.example. MX 10 mx.a.example.
b.example. MX 10 mx.a.example.
mx.a.example. A 127.0.0.1
`, func(o *Options) { o.PerDomain = 2 })
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			res := c.Deliver(context.Background(), queue.Envelope{ID: fmt.Sprint(i), Sender: "s@example.org"}, remote("x@a.example", "y@b.example"), body(msg))
			if got := codes(res); !slices.Equal(got, []int{250, 250}) {
				t.Errorf("Deliver = %+v, want 250 for both", res)
			}
		})
	}
	wg.Wait()
	if n := len(sink.Messages()); n != 16 {
		t.Errorf("sink got %d transactions, want 16 (one per domain per message)", n)
	}
	if peak["a.example"] > 2 || peak["b.example"] > 2 {
		t.Errorf("peak connections per domain = %v, want at most 2", peak)
	}
}

func TestSMTPUTF8AndSize(t *testing.T) {
	plain := smtpsink.Start(t, smtpsink.Options{MaxMessageBytes: 100})
	c := setup(t, plain, "example.net. MX 10 mx.example.net.\nmx.example.net. A 127.0.0.1\n", nil)
	res := c.Deliver(context.Background(), queue.Envelope{ID: "m"}, remote("bjørn@example.net"), body(msg))
	if res[0].Code != 553 || res[0].Enhanced != "5.6.7" {
		t.Errorf("UTF-8 address to a server without SMTPUTF8 = %+v, want 553 5.6.7", res[0])
	}
	res = c.Deliver(context.Background(), queue.Envelope{ID: "m"}, remote("b@example.net"), body(strings.Repeat("x", 200)+"\r\n"))
	if res[0].Code != 552 || res[0].Enhanced != "5.3.4" {
		t.Errorf("message over the SIZE limit = %+v, want 552 5.3.4", res[0])
	}
	utf8 := smtpsink.Start(t, smtpsink.Options{SMTPUTF8: true})
	c = setup(t, utf8, "example.net. MX 10 mx.example.net.\nmx.example.net. A 127.0.0.1\n", nil)
	res = c.Deliver(context.Background(), queue.Envelope{ID: "m"}, remote("bjørn@example.net"), body(msg))
	if got := utf8.Messages(); res[0].Code != 250 || len(got) != 1 || !got[0].UTF8 {
		t.Errorf("UTF-8 address to a server with SMTPUTF8 = %+v, sink %+v; want 250 with SMTPUTF8", res[0], got)
	}
}

func TestRelay(t *testing.T) {
	certs := testlib.NewCerts(t)
	cert, err := tls.LoadX509KeyPair(certs.ServerCert, certs.ServerKey)
	if err != nil {
		t.Fatal(err)
	}
	pem, err := os.ReadFile(certs.CA)
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(pem)
	auth := func(user, pass string) error {
		if user == "relayuser" && pass == "s3cret" {
			return nil
		}
		return errors.New("bad credentials")
	}
	sink := smtpsink.Start(t, smtpsink.Options{TLS: &tls.Config{Certificates: []tls.Certificate{cert}}, Auth: auth})
	newRelay := func(addr, pass string) *Client {
		c, err := New(Options{Hostname: "mta.test", Relay: &Relay{Addr: addr, Username: "relayuser", Password: pass, TLSConfig: &tls.Config{RootCAs: roots}}})
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	res := newRelay(sink.Addr, "s3cret").Deliver(context.Background(), queue.Envelope{ID: "m", Sender: "s@example.org"}, remote("a@one.example", "b@two.example"), body(msg))
	if got := codes(res); !slices.Equal(got, []int{250, 250}) {
		t.Fatalf("Deliver via relay = %+v, want 250", res)
	}
	if got := sink.Messages(); len(got) != 1 || got[0].AuthUser != "relayuser" || !got[0].TLS || len(got[0].To) != 2 {
		t.Errorf("relay got %+v, want one authenticated TLS transaction for both", got)
	}
	res = newRelay(sink.Addr, "wrong").Deliver(context.Background(), queue.Envelope{ID: "m"}, remote("a@one.example"), body(msg))
	if res[0].Code != 454 {
		t.Errorf("Deliver with a wrong relay password = %+v, want 454 (stays queued)", res[0])
	}
	plain := smtpsink.Start(t, smtpsink.Options{Auth: auth})
	res = newRelay(plain.Addr, "s3cret").Deliver(context.Background(), queue.Envelope{ID: "m"}, remote("a@one.example"), body(msg))
	if res[0].Code/100 != 4 || len(plain.Messages()) != 0 {
		t.Errorf("Deliver via a relay without TLS = %+v, want 4xx and no password sent", res[0])
	}
	// A certificate for another name fails verification: nothing sent.
	wrong := smtpsink.Start(t, smtpsink.Options{TLS: serverTLS(t), Auth: auth})
	res = newRelay(wrong.Addr, "s3cret").Deliver(context.Background(), queue.Envelope{ID: "m"}, remote("a@one.example"), body(msg))
	if res[0].Code/100 != 4 || len(wrong.Messages()) != 0 {
		t.Errorf("Deliver via a relay with an untrusted certificate = %+v, want 4xx", res[0])
	}
}

// TestConnectionReuse: messages to one domain in a row share a
// connection; one the server closed meanwhile is replaced without failing
// the delivery.
func TestConnectionReuse(t *testing.T) {
	addr := testlib.FreeAddr(t)
	sink := smtpsink.Start(t, smtpsink.Options{Addr: addr, TLS: serverTLS(t)})
	c := setup(t, sink, "example.net. MX 10 mx.example.net.\nmx.example.net. A 127.0.0.1\n", func(o *Options) { o.ConnCacheTime = time.Minute })
	t.Cleanup(func() { c.Close() })
	send := func() {
		t.Helper()
		res := c.Deliver(context.Background(), queue.Envelope{ID: "m", Sender: "s@example.org"}, remote("b@example.net"), body(msg))
		if res[0].Code != 250 || res[0].RemoteMTA != "mx.example.net" {
			t.Fatalf("Deliver = %+v, want 250 from mx.example.net", res[0])
		}
	}
	for range 3 {
		send()
	}
	if n, m := sink.Connections(), len(sink.Messages()); n != 1 || m != 3 {
		t.Errorf("3 messages: %d connections, %d received; want 1 connection", n, m)
	}
	sink.Close() // the remote server restarts
	sink2 := smtpsink.Start(t, smtpsink.Options{Addr: addr})
	send()
	if got := sink2.Messages(); len(got) != 1 {
		t.Errorf("after the restart the server got %d messages, want 1", len(got))
	}
}
