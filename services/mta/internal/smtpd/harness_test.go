package smtpd

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/postcove/postcove/services/internal/authclient"
	"github.com/postcove/postcove/services/internal/logging"
	"github.com/postcove/postcove/services/internal/testlib"
	"github.com/postcove/postcove/services/internal/tlsconf"
	"github.com/postcove/postcove/services/mta/internal/queue"
)

const testHost = "mx.example.org"

// memSpool is the queue as the SMTP side sees it: it keeps what Enqueue
// got, or fails with err.
type memSpool struct {
	mu   sync.Mutex // protects the fields below
	msgs []queued
	err  error
}

type queued struct {
	id   string
	env  queue.Envelope
	body string
}

func (q *memSpool) Enqueue(ctx context.Context, env queue.Envelope, body io.Reader) (string, error) {
	b, err := io.ReadAll(body)
	if err != nil {
		return "", err
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.err != nil {
		return "", q.err
	}
	id := fmt.Sprintf("Q%d", len(q.msgs)+1)
	env.ID = id
	q.msgs = append(q.msgs, queued{id: id, env: env, body: string(b)})
	return id, nil
}

func (q *memSpool) setErr(err error) {
	q.mu.Lock()
	q.err = err
	q.mu.Unlock()
}

func (q *memSpool) all() []queued {
	q.mu.Lock()
	defer q.mu.Unlock()
	return append([]queued(nil), q.msgs...)
}

// one returns the only queued message, failing t otherwise.
func (q *memSpool) one(t *testing.T) queued {
	t.Helper()
	msgs := q.all()
	if len(msgs) != 1 {
		t.Fatalf("queued %d messages, want 1: %+v", len(msgs), msgs)
	}
	return msgs[0]
}

// startAuth starts a real auth service: example.org with alice and bob,
// an alias team@ to both and a remote address, and a catch-all domain.
func startAuth(t *testing.T) *testlib.Auth {
	t.Helper()
	a := testlib.StartAuth(t)
	a.Domain(t, "example.org")
	a.User(t, "alice@example.org", "alice-pw", 0)
	a.User(t, "bob@example.org", "bob-pw", 0)
	a.Alias(t, "team@example.org", "alice@example.org", "bob@example.org", "carol@remote.example")
	a.Alias(t, "loop1@example.org", "loop2@example.org")
	a.Alias(t, "loop2@example.org", "loop1@example.org")
	return a
}

// env is a running server with its spool.
type env struct {
	addr  string
	srv   *Server
	spool *memSpool
	ca    *x509.CertPool
}

// startServer serves mode on a fresh port with a certificate, auth a and
// a memSpool; edit changes the options first.
func startServer(t *testing.T, a *testlib.Auth, mode Mode, edit func(*Options)) *env {
	t.Helper()
	certs := testlib.NewCerts(t)
	tlsCfg := mustTLS(t, certs)
	pem, err := os.ReadFile(certs.CA)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	log, err := logging.New(testWriter{t}, "debug")
	if err != nil {
		t.Fatal(err)
	}
	e := &env{spool: &memSpool{}, ca: pool}
	opts := Options{
		Mode:     mode,
		Hostname: testHost,
		TLS:      tlsCfg,
		Auth:     authclient.New(a.Conn()),
		Spool:    e.spool,
		Logger:   log,
	}
	if edit != nil {
		edit(&opts)
	}
	e.srv, err = New(opts)
	if err != nil {
		t.Fatal(err)
	}
	e.addr = testlib.FreeAddr(t)
	lis, err := net.Listen("tcp", e.addr)
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- e.srv.Serve(lis) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := e.srv.Shutdown(ctx); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
		if err := <-served; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return e
}

// testWriter sends the server's log to the test's.
type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Logf("%s", strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// client is a raw SMTP client: it sends exactly the bytes it is told to.
type client struct {
	t    *testing.T
	conn net.Conn
	r    *bufio.Reader
}

func dial(t *testing.T, e *env) *client {
	t.Helper()
	c := dialRaw(t, e)
	c.expect("220 ")
	return c
}

// dialRaw connects without reading the greeting.
func dialRaw(t *testing.T, e *env) *client {
	t.Helper()
	conn, err := net.DialTimeout("tcp", e.addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return &client{t: t, conn: conn, r: newReader(conn)}
}

func newReader(r io.Reader) *bufio.Reader { return bufio.NewReader(r) }

// dialTLS connects with implicit TLS.
func dialTLS(t *testing.T, e *env) *client {
	t.Helper()
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", e.addr, &tls.Config{RootCAs: e.ca, ServerName: "localhost"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	c := &client{t: t, conn: conn, r: bufio.NewReader(conn)}
	c.expect("220 ")
	return c
}

// send writes s as is.
func (c *client) send(s string) {
	c.t.Helper()
	c.conn.SetWriteDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c.conn, s); err != nil {
		c.t.Fatalf("send %q: %v", s, err)
	}
}

// reply reads one reply, all its lines joined by "\n".
func (c *client) reply() string {
	c.t.Helper()
	c.conn.SetReadDeadline(time.Now().Add(20 * time.Second))
	var lines []string
	for {
		line, err := c.r.ReadString('\n')
		if err != nil {
			c.t.Fatalf("read reply (after %q): %v", lines, err)
		}
		line = strings.TrimRight(line, "\r\n")
		lines = append(lines, line)
		if len(line) < 4 || line[3] != '-' {
			return strings.Join(lines, "\n")
		}
	}
}

// expect reads a reply and fails unless it starts with prefix.
func (c *client) expect(prefix string) string {
	c.t.Helper()
	r := c.reply()
	if !strings.HasPrefix(r, prefix) {
		c.t.Fatalf("reply %q, want %q...", r, prefix)
	}
	return r
}

// cmd sends a command line and checks the reply's start.
func (c *client) cmd(line, prefix string) string {
	c.t.Helper()
	c.send(line + "\r\n")
	r := c.reply()
	if !strings.HasPrefix(r, prefix) {
		c.t.Fatalf("%s: reply %q, want %q...", line, r, prefix)
	}
	return r
}

// startTLS upgrades the connection.
func (c *client) startTLS(e *env) {
	c.t.Helper()
	c.cmd("STARTTLS", "220 ")
	tc := tls.Client(c.conn, &tls.Config{RootCAs: e.ca, ServerName: "localhost"})
	tc.SetDeadline(time.Now().Add(10 * time.Second))
	if err := tc.Handshake(); err != nil {
		c.t.Fatalf("TLS handshake: %v", err)
	}
	c.conn, c.r = tc, bufio.NewReader(tc)
}

// login does EHLO, STARTTLS, EHLO and AUTH PLAIN on a submission port.
func (c *client) login(e *env, user, pass string) {
	c.t.Helper()
	c.cmd("EHLO client.test", "250")
	c.startTLS(e)
	c.cmd("EHLO client.test", "250")
	c.cmd("AUTH PLAIN "+plain(user, pass), "235 ")
}

// plain is an AUTH PLAIN initial response (RFC 4616), with an
// authorization identity when one is given.
func plain(user, pass string, authzid ...string) string {
	return base64.StdEncoding.EncodeToString([]byte(strings.Join(authzid, "") + "\x00" + user + "\x00" + pass))
}

// closed reports whether the server has closed the connection: the next
// read gets EOF (or a reset) rather than data or a timeout.
func (c *client) closed() bool {
	c.conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	_, err := c.r.ReadByte()
	if ne, ok := err.(net.Error); ok && ne.Timeout() {
		return false
	}
	return err != nil
}

// message is a minimal well-formed message.
func message(from, subject string) string {
	return "From: " + from + "\r\nTo: someone@example.org\r\nSubject: " + subject + "\r\n\r\nHello.\r\n"
}

// transaction runs MAIL, RCPT and DATA with body (ending in CRLF) and
// returns the final reply.
func (c *client) transaction(from, to, body string) string {
	c.t.Helper()
	c.cmd("MAIL FROM:<"+from+">", "250 ")
	c.cmd("RCPT TO:<"+to+">", "250 ")
	c.cmd("DATA", "354 ")
	c.send(body + ".\r\n")
	return c.reply()
}

func b64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

// startAuthLockout is startAuth with a lockout after two failed
// logins from one IP.
func startAuthLockout(t *testing.T) *testlib.Auth {
	t.Helper()
	a := testlib.StartAuth(t, "POSTCOVE_AUTH_LOCKOUT_IP_THRESHOLD=2")
	a.Domain(t, "example.org")
	a.User(t, "alice@example.org", "alice-pw", 0)
	a.User(t, "bob@example.org", "bob-pw", 0)
	return a
}

// mustTLS is the server side of certs.
func mustTLS(t testing.TB, certs testlib.Certs) *tls.Config {
	t.Helper()
	cfg, err := tlsconf.ServerConfig(tlsconf.Files{Cert: certs.ServerCert, Key: certs.ServerKey})
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}
