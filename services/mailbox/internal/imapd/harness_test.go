package imapd

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"

	"github.com/postcove/postcove/services/internal/authclient"
	"github.com/postcove/postcove/services/internal/testlib"
	"github.com/postcove/postcove/services/internal/tlsconf"
	"github.com/postcove/postcove/services/mailbox/internal/store"
	"github.com/postcove/postcove/services/mailbox/internal/store/maildir"
	"github.com/postcove/postcove/services/mailbox/internal/store/memstore"
)

// testUser logs in with testPass.
const testUser, testPass = "alice@example.org", "correct horse"

// crlf turns the LF line ends of a test message into CRLF, as LMTP
// stores them.
func crlf(s string) string { return strings.ReplaceAll(s, "\n", "\r\n") }

// multipartMsg has a text part, a base64 attachment and an attached
// message: parts 1, 2 and 3 (3.1 is the inner body).
var multipartMsg = crlf(`From: Bob <bob@example.net>
To: Alice <alice@example.org>
Subject: =?utf-8?q?caf=C3=A9?= report
Date: Mon, 02 Jan 2006 15:04:05 +0000
Message-ID: <m1@example.net>
MIME-Version: 1.0
Content-Type: multipart/mixed; boundary="outer"

preamble
--outer
Content-Type: text/plain; charset=utf-8

Hello plain body with needle-plain.
--outer
Content-Type: application/octet-stream; name="data.bin"
Content-Transfer-Encoding: base64
Content-Disposition: attachment; filename="data.bin"

AAECAwQF
--outer
Content-Type: message/rfc822

From: Carol <carol@example.com>
Subject: inner subject

inner body
--outer--
epilogue
`)

// plainMsg builds a one-part message.
func plainMsg(subject, body string) string {
	return crlf("From: Bob <bob@example.net>\nTo: alice@example.org\nSubject: " + subject +
		"\nDate: Tue, 03 Jan 2006 10:00:00 +0000\n\n" + body + "\n")
}

// fakeAuth accepts the test user's password, unless a test made it fail
// every login with an error of its choosing (an outage, a lockout); quota
// is the user's limit it reports.
type fakeAuth struct {
	fail  atomic.Pointer[error]
	quota atomic.Int64
}

func (a *fakeAuth) failWith(err error) { a.fail.Store(&err) }

func (a *fakeAuth) Authenticate(ctx context.Context, username, password, service, remoteIP string, tls bool) (authclient.User, error) {
	if err := a.fail.Load(); err != nil && *err != nil {
		return authclient.User{}, *err
	}
	if service != authService {
		return authclient.User{}, errors.New("fake auth: service " + service)
	}
	if !strings.EqualFold(username, testUser) || password != testPass {
		return authclient.User{}, authclient.ErrBadCredentials
	}
	return authclient.User{Address: testUser, QuotaBytes: a.quota.Load()}, nil
}

// openStore opens a store of the named kind for one test.
func openStore(t testing.TB, kind string) (store.Store, string) {
	t.Helper()
	if kind == "memstore" {
		s := memstore.New(memstore.Options{})
		t.Cleanup(func() { s.Close() })
		return s, ""
	}
	root := testlib.TempDir(t)
	s, err := maildir.Open(maildir.Options{Root: root, PollInterval: 20 * time.Millisecond, MaxMessageSize: 1 << 20})
	if err != nil {
		t.Fatalf("maildir.Open() = %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s, root
}

// forEachStore runs fn as a parallel subtest for both stores.
func forEachStore(t *testing.T, fn func(t *testing.T, ts *testServer)) {
	for _, kind := range []string{"memstore", "maildir"} {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			fn(t, startServer(t, kind, nil))
		})
	}
}

// testServer is a running Server.
type testServer struct {
	srv       *Server
	addr      string
	auth      *fakeAuth
	store     store.Store
	root      string      // the Maildir root, "" for memstore
	clientTLS *tls.Config // what dial trusts, when the server has TLS
}

// startServer serves a store of the given kind on 127.0.0.1 with
// plaintext logins allowed, after edit changes the options; it is shut
// down when the test ends.
func startServer(t testing.TB, kind string, edit func(*Options)) *testServer {
	t.Helper()
	st, root := openStore(t, kind)
	ts := &testServer{auth: &fakeAuth{}, store: st, root: root}
	opts := Options{Store: st, Auth: ts.auth, AllowPlaintextAuth: true, MaxAppendSize: 64 << 10}
	if edit != nil {
		edit(&opts)
	}
	l, err := net.Listen("tcp", testlib.FreeAddr(t))
	if err != nil {
		t.Fatal(err)
	}
	ts.srv = New(opts)
	ts.addr = l.Addr().String()
	done := make(chan error, 1)
	go func() { done <- ts.srv.Serve(l) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := ts.srv.Shutdown(ctx); err != nil {
			t.Errorf("Shutdown() = %v", err)
		}
		if err := <-done; !errors.Is(err, ErrServerClosed) {
			t.Errorf("Serve() = %v after Shutdown, want ErrServerClosed", err)
		}
	})
	return ts
}

// tlsPair returns a server TLS configuration with a fresh test
// certificate and a client one that trusts it.
func tlsPair(t testing.TB) (server, client *tls.Config) {
	t.Helper()
	certs := testlib.NewCerts(t)
	server, err := tlsconf.ServerConfig(tlsconf.Files{Cert: certs.ServerCert, Key: certs.ServerKey})
	if err == nil {
		client, err = tlsconf.ClientConfig(tlsconf.Files{CA: certs.CA}, "localhost")
	}
	if err != nil {
		t.Fatal(err)
	}
	return server, client
}

// updates collects the unilateral responses a client receives.
type updates struct {
	mu    sync.Mutex
	lines []string // "EXPUNGE 3", "EXISTS 4", "FETCH 2 FLAGS", "FLAGS"
	ch    chan struct{}
}

func (u *updates) add(s string) {
	u.mu.Lock()
	u.lines = append(u.lines, s)
	u.mu.Unlock()
	select {
	case u.ch <- struct{}{}:
	default:
	}
}

// wait waits until one collected line starts with prefix, and returns it.
func (u *updates) wait(t testing.TB, prefix string) string {
	t.Helper()
	timeout := time.After(10 * time.Second)
	for {
		u.mu.Lock()
		for _, l := range u.lines {
			if strings.HasPrefix(l, prefix) {
				u.mu.Unlock()
				return l
			}
		}
		got := strings.Join(u.lines, "; ")
		u.mu.Unlock()
		select {
		case <-u.ch:
		case <-timeout:
			t.Fatalf("no %q update after 10s; got %s", prefix, got)
		}
	}
}

func (u *updates) handler() *imapclient.UnilateralDataHandler {
	return &imapclient.UnilateralDataHandler{
		Expunge: func(seq uint32) { u.add(fmt.Sprintf("EXPUNGE %d", seq)) },
		Mailbox: func(d *imapclient.UnilateralDataMailbox) {
			if d.NumMessages != nil {
				u.add(fmt.Sprintf("EXISTS %d", *d.NumMessages))
			}
			if d.Flags != nil {
				u.add(fmt.Sprintf("FLAGS %v", d.Flags))
			}
		},
		Fetch: func(m *imapclient.FetchMessageData) {
			buf, _ := m.Collect()
			if buf != nil {
				u.add(fmt.Sprintf("FETCH %d %v", buf.SeqNum, buf.Flags))
			}
		},
	}
}

// client is an imapclient connection with the updates it received.
type client struct {
	*imapclient.Client
	updates *updates
}

// dial connects without TLS (or with implicit TLS when the server has
// it) and waits for the greeting.
func (ts *testServer) dial(t testing.TB) *client {
	t.Helper()
	u := &updates{ch: make(chan struct{}, 1)}
	opts := &imapclient.Options{UnilateralDataHandler: u.handler(), TLSConfig: ts.clientTLS}
	var (
		c   *imapclient.Client
		err error
	)
	switch {
	case ts.srv.opts.ImplicitTLS:
		c, err = imapclient.DialTLS(ts.addr, opts)
	case ts.srv.opts.TLS != nil:
		c, err = imapclient.DialStartTLS(ts.addr, opts)
	default:
		c, err = imapclient.DialInsecure(ts.addr, opts)
	}
	if err != nil {
		t.Fatalf("dial %s: %v", ts.addr, err)
	}
	t.Cleanup(func() { c.Close() })
	if err := c.WaitGreeting(); err != nil {
		t.Fatalf("greeting: %v", err)
	}
	return &client{Client: c, updates: u}
}

// login dials and logs in as the test user.
func (ts *testServer) login(t testing.TB) *client {
	t.Helper()
	c := ts.dial(t)
	if err := c.Login(testUser, testPass).Wait(); err != nil {
		t.Fatalf("LOGIN = %v", err)
	}
	return c
}

// selectInbox logs in and selects INBOX.
func (ts *testServer) selectInbox(t testing.TB) *client {
	t.Helper()
	c := ts.login(t)
	if _, err := c.Select("INBOX", nil).Wait(); err != nil {
		t.Fatalf("SELECT INBOX = %v", err)
	}
	return c
}

// user opens the test user's mailboxes directly, as LMTP delivery or
// another process would.
func (ts *testServer) user(t testing.TB) store.Mailboxes {
	t.Helper()
	mbs, err := ts.store.User(context.Background(), testUser)
	if err != nil {
		t.Fatalf("User() = %v", err)
	}
	t.Cleanup(func() { mbs.Close() })
	return mbs
}

// deliver appends messages to a mailbox of the test user and returns
// their UIDs.
func (ts *testServer) deliver(t testing.TB, mailbox string, msgs ...string) []store.UID {
	t.Helper()
	mbs := ts.user(t)
	var uids []store.UID
	for _, m := range msgs {
		res, err := mbs.Append(context.Background(), mailbox, strings.NewReader(m), store.AppendOptions{
			InternalDate: time.Date(2024, 5, 6, 7, 8, 9, 0, time.UTC),
		})
		if err != nil {
			t.Fatalf("Append(%s) = %v", mailbox, err)
		}
		uids = append(uids, res.UID)
	}
	return uids
}

// wantCode checks that err is an IMAP NO (or BAD) with the given code.
func wantCode(t testing.TB, what string, err error, typ imap.StatusResponseType, code imap.ResponseCode) {
	t.Helper()
	var ie *imap.Error
	if !errors.As(err, &ie) || ie.Type != typ || ie.Code != code {
		t.Errorf("%s = %v, want %s [%s]", what, err, typ, code)
	}
}

// raw is a line-level IMAP client for what imapclient hides: exact
// response order, malformed input.
type raw struct {
	t    testing.TB
	conn net.Conn
	r    *bufio.Reader
	n    int
}

func (ts *testServer) raw(t testing.TB) *raw {
	t.Helper()
	conn, err := net.Dial("tcp", ts.addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	conn.SetDeadline(time.Now().Add(30 * time.Second))
	r := &raw{t: t, conn: conn, r: bufio.NewReader(conn)}
	if g := r.line(); !strings.HasPrefix(g, "* OK") {
		t.Fatalf("greeting = %q", g)
	}
	return r
}

func (r *raw) line() string {
	r.t.Helper()
	l, err := r.r.ReadString('\n')
	if err != nil {
		r.t.Fatalf("read: %v (got %q)", err, l)
	}
	return strings.TrimSuffix(l, "\r\n")
}

// cmd sends one command and returns every line up to and including the
// tagged answer.
func (r *raw) cmd(command string) []string {
	r.t.Helper()
	r.n++
	tag := fmt.Sprintf("t%d", r.n)
	if _, err := io.WriteString(r.conn, tag+" "+command+"\r\n"); err != nil {
		r.t.Fatalf("write: %v", err)
	}
	var lines []string
	for {
		l := r.line()
		lines = append(lines, l)
		if strings.HasPrefix(l, tag+" ") {
			return lines
		}
	}
}

// try sends one command and returns the tagged answer, or reports that
// the server closed the connection instead.
func (r *raw) try(command string) (last string, closed bool) {
	r.n++
	tag := fmt.Sprintf("t%d", r.n)
	if _, err := io.WriteString(r.conn, tag+" "+command+"\r\n"); err != nil {
		return "", true
	}
	for {
		l, err := r.r.ReadString('\n')
		if err != nil {
			return "", true
		}
		if strings.HasPrefix(l, tag+" ") {
			return strings.TrimSuffix(l, "\r\n"), false
		}
	}
}

// ok sends a command and fails unless the answer is OK.
func (r *raw) ok(command string) []string {
	r.t.Helper()
	lines := r.cmd(command)
	if last := lines[len(lines)-1]; !strings.Contains(last, " OK") {
		r.t.Fatalf("%s = %q, want OK", command, lines)
	}
	return lines
}
