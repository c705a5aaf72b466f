package pop3d

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"io"
	"net"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/postcove/postcove/services/internal/authclient"
	"github.com/postcove/postcove/services/internal/testlib"
	"github.com/postcove/postcove/services/mailbox/internal/store"
	"github.com/postcove/postcove/services/mailbox/internal/store/maildir"
	"github.com/postcove/postcove/services/mailbox/internal/store/memstore"
)

// The test user of the fake authenticator.
const (
	testUser = "alice@example.org"
	testPass = "correct horse"
)

// fakeAuth is an Authenticator with one user, whose answers a test can
// switch to a lockout, an outage or a panic.
type fakeAuth struct {
	mu    sync.Mutex // protects the fields below
	users map[string]string
	mode  string // "", "locked", "unavailable", "panic"
	calls []string
}

func newFakeAuth() *fakeAuth {
	return &fakeAuth{users: map[string]string{testUser: testPass}}
}

func (a *fakeAuth) setMode(mode string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.mode = mode
}

func (a *fakeAuth) Authenticate(ctx context.Context, username, password, service, remoteIP string, tls bool) (authclient.User, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.calls = append(a.calls, username)
	switch a.mode {
	case "locked":
		return authclient.User{}, &authclient.LockedError{RetryAfter: 90 * time.Second}
	case "unavailable":
		return authclient.User{}, errors.Join(authclient.ErrUnavailable, errors.New("connection refused"))
	case "panic":
		panic("fake auth panics")
	}
	if service != "pop3" {
		return authclient.User{}, errors.New("fake auth: service " + service)
	}
	if pw, ok := a.users[strings.ToLower(username)]; ok && pw == password {
		return authclient.User{Address: strings.ToLower(username)}, nil
	}
	return authclient.User{}, authclient.ErrBadCredentials
}

// storeKind is one store implementation the tests run against.
type storeKind struct {
	name string
	open func(t *testing.T) store.Store
}

func storeKinds() []storeKind {
	return []storeKind{
		{"memstore", func(t *testing.T) store.Store {
			s := memstore.New(memstore.Options{})
			t.Cleanup(func() { s.Close() })
			return s
		}},
		{"maildir", func(t *testing.T) store.Store {
			s, err := maildir.Open(maildir.Options{Root: testlib.TempDir(t), PollInterval: 20 * time.Millisecond})
			if err != nil {
				t.Fatalf("maildir.Open() = %v", err)
			}
			t.Cleanup(func() { s.Close() })
			return s
		}},
	}
}

// forEachStore runs fn as a subtest for every store implementation.
func forEachStore(t *testing.T, fn func(t *testing.T, st store.Store)) {
	for _, k := range storeKinds() {
		t.Run(k.name, func(t *testing.T) {
			t.Parallel()
			fn(t, k.open(t))
		})
	}
}

// openUser opens user's mailboxes for the test's own checks.
func openUser(t testing.TB, st store.Store, user string) store.Mailboxes {
	t.Helper()
	mbs, err := st.User(context.Background(), user)
	if err != nil {
		t.Fatalf("User(%q) = %v", user, err)
	}
	return mbs
}

// deliver appends messages to user's INBOX and returns their UIDs.
func deliver(t testing.TB, st store.Store, user string, msgs ...string) []store.UID {
	t.Helper()
	mbs := openUser(t, st, user)
	defer mbs.Close()
	var uids []store.UID
	for _, m := range msgs {
		res, err := mbs.Append(context.Background(), "INBOX", strings.NewReader(m), store.AppendOptions{})
		if err != nil {
			t.Fatalf("Append() = %v", err)
		}
		uids = append(uids, res.UID)
	}
	return uids
}

// inbox returns the messages in user's INBOX.
func inbox(t testing.TB, st store.Store, user string) []store.Message {
	t.Helper()
	mbs := openUser(t, st, user)
	defer mbs.Close()
	ctx := context.Background()
	mb, err := mbs.Select(ctx, "INBOX")
	if err != nil {
		t.Fatalf("Select(INBOX) = %v", err)
	}
	defer mb.Close()
	msgs, err := mb.Messages(ctx, mb.UIDs())
	if err != nil {
		t.Fatalf("Messages() = %v", err)
	}
	return msgs
}

// testServer is a running Server.
type testServer struct {
	srv   *Server
	addr  string
	auth  *fakeAuth
	store store.Store
	reg   *prometheus.Registry
	done  chan error // Serve's result
}

// startServer serves st on 127.0.0.1:0 with plaintext logins allowed and
// the fake authenticator, after edit changes the options. It is shut down
// when the test ends.
func startServer(t testing.TB, st store.Store, edit func(*Options)) *testServer {
	t.Helper()
	ts := &testServer{auth: newFakeAuth(), store: st, reg: prometheus.NewRegistry(), done: make(chan error, 1)}
	opts := Options{
		Store:              st,
		Auth:               ts.auth,
		AllowPlaintextAuth: true,
		Hostname:           "pop.example.org",
		Metrics:            NewMetrics(ts.reg),
		IdleTimeout:        time.Minute,
	}
	if edit != nil {
		edit(&opts)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ts.srv = New(opts)
	ts.addr = l.Addr().String()
	go func() { ts.done <- ts.srv.Serve(l) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := ts.srv.Shutdown(ctx); err != nil {
			t.Errorf("Shutdown() = %v", err)
		}
	})
	return ts
}

// tlsConfigs returns a server TLS configuration and a client one trusting
// it, from fresh test certificates.
func tlsConfigs(t testing.TB) (server, client *tls.Config, certs testlib.Certs) {
	t.Helper()
	certs = testlib.NewCerts(t)
	cert, err := tls.LoadX509KeyPair(certs.ServerCert, certs.ServerKey)
	if err != nil {
		t.Fatal(err)
	}
	pem, err := os.ReadFile(certs.CA)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		t.Fatal("no CA certificate in " + certs.CA)
	}
	server = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	client = &tls.Config{RootCAs: pool, ServerName: "localhost", MinVersion: tls.VersionTLS12}
	return server, client, certs
}

// client is a raw POP3 client for the tests: it sends lines and reads
// responses, failing the test on I/O errors.
type client struct {
	t    testing.TB
	conn net.Conn
	r    *bufio.Reader
}

// dial connects to addr and reads the greeting.
func dial(t testing.TB, addr string) *client {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	c := newClient(t, conn)
	if g := c.line(); !strings.HasPrefix(g, "+OK ") {
		t.Fatalf("greeting = %q, want +OK", g)
	}
	return c
}

func newClient(t testing.TB, conn net.Conn) *client {
	t.Cleanup(func() { conn.Close() })
	conn.SetDeadline(time.Now().Add(30 * time.Second))
	return &client{t: t, conn: conn, r: bufio.NewReader(conn)}
}

// send writes raw bytes.
func (c *client) send(s string) {
	c.t.Helper()
	if _, err := c.conn.Write([]byte(s)); err != nil {
		c.t.Fatalf("write %q: %v", s, err)
	}
}

// line reads one response line without its CRLF; it fails on a line not
// ending in CRLF.
func (c *client) line() string {
	c.t.Helper()
	l, err := c.r.ReadString('\n')
	if err != nil {
		c.t.Fatalf("read: %v (got %q)", err, l)
	}
	if !strings.HasSuffix(l, "\r\n") {
		c.t.Fatalf("line %q does not end in CRLF", l)
	}
	return strings.TrimSuffix(l, "\r\n")
}

// cmd sends a command and returns the first line of the answer.
func (c *client) cmd(line string) string {
	c.t.Helper()
	c.send(line + "\r\n")
	return c.line()
}

// ok sends a command and fails unless the answer is +OK.
func (c *client) ok(line string) string {
	c.t.Helper()
	got := c.cmd(line)
	if !strings.HasPrefix(got, "+OK") {
		c.t.Fatalf("%s = %q, want +OK", line, got)
	}
	return got
}

// multi reads the rest of a multi-line response, undoing byte-stuffing.
func (c *client) multi() []string {
	c.t.Helper()
	var lines []string
	for {
		l := c.line()
		if l == "." {
			return lines
		}
		lines = append(lines, strings.TrimPrefix(l, "."))
	}
}

// login logs in with USER/PASS.
func (c *client) login(user, pass string) {
	c.t.Helper()
	c.ok("USER " + user)
	c.ok("PASS " + pass)
}

// closed reports whether the server closes the connection within a few
// seconds; anything it still sends (a TLS alert) is skipped.
func (c *client) closed() bool {
	c.t.Helper()
	c.conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, err := io.Copy(io.Discard, c.r)
	return !errors.Is(err, os.ErrDeadlineExceeded)
}

func b64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }
