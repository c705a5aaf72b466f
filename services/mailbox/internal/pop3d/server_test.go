package pop3d

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"

	"github.com/postcove/postcove/services/internal/authclient"
	"github.com/postcove/postcove/services/mailbox/internal/store"
)

// Three messages covering the wire-format cases: CRLF text with lines that
// start with dots, bare-LF text (a dovecot Maildir), and bare CR plus an
// unterminated last line.
const (
	msgCRLF = "From: bob@example.org\r\nSubject: one\r\n\r\nHello\r\n.hidden dot\r\n..two dots\r\n.\r\nend\r\n"
	msgLF   = "Subject: two\n\nline1\nline2\n.dot\nline4\n"
	msgOdd  = "Subject: three\r\n\r\nbare\rcr\r\nlast line without newline"
)

// The wire forms of the three messages (before byte-stuffing).
var (
	wireCRLF = msgCRLF
	wireLF   = strings.ReplaceAll(msgLF, "\n", "\r\n")
	wireOdd  = "Subject: three\r\n\r\nbare\r\ncr\r\nlast line without newline\r\n"
)

// stuffed byte-stuffs a wire-form message and appends the terminator.
func stuffed(wire string) string {
	lines := strings.SplitAfter(wire, "\r\n")
	for i, l := range lines {
		if strings.HasPrefix(l, ".") {
			lines[i] = "." + l
		}
	}
	return strings.Join(lines, "") + ".\r\n"
}

// raw reads a multi-line response's body verbatim, terminator included.
func (c *client) raw() string {
	c.t.Helper()
	var b strings.Builder
	for {
		l, err := c.r.ReadString('\n')
		if err != nil {
			c.t.Fatalf("read: %v (got %q)", err, b.String()+l)
		}
		b.WriteString(l)
		if l == ".\r\n" {
			return b.String()
		}
	}
}

// waitSessions waits until the server has no session left.
func waitSessions(t testing.TB, s *Server) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		s.mu.Lock()
		n := len(s.sessions)
		s.mu.Unlock()
		if n == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d sessions still running", n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func ids(msgs []store.Message) []string {
	var out []string
	for _, m := range msgs {
		out = append(out, m.ID)
	}
	return out
}

// TestSession walks through a full session on each store: the numbers,
// sizes and texts a client sees, DELE, RSET and the UPDATE at QUIT.
func TestSession(t *testing.T) {
	forEachStore(t, func(t *testing.T, st store.Store) {
		deliver(t, st, testUser, msgCRLF, msgLF, msgOdd)
		stored := inbox(t, st, testUser)
		ts := startServer(t, st, nil)
		c := dial(t, ts.addr)
		c.login(testUser, testPass)

		sizes := []int{len(wireCRLF), len(wireLF), len(wireOdd)}
		total := sizes[0] + sizes[1] + sizes[2]
		single := []struct{ cmd, want string }{
			{"STAT", fmt.Sprintf("+OK 3 %d", total)},
			{"LIST 2", fmt.Sprintf("+OK 2 %d", sizes[1])},
			{"list 3", fmt.Sprintf("+OK 3 %d", sizes[2])},
			{"LIST 4", "-ERR no such message, only 3 messages in maildrop"},
			{"LIST 0", "-ERR no such message, only 3 messages in maildrop"},
			{"LIST x", "-ERR invalid message number"},
			{"LIST -1", "-ERR invalid message number"},
			{"LIST 99999999999", "-ERR invalid message number"},
			{"UIDL 1", "+OK 1 " + stored[0].ID},
			{"NOOP", "+OK"},
			{"RETR", "-ERR RETR needs one message number"},
			{"TOP 1", "-ERR TOP needs a message number and a line count"},
			{"TOP 1 x", "-ERR invalid line count"},
		}
		for _, tt := range single {
			if got := c.cmd(tt.cmd); got != tt.want {
				t.Errorf("%s = %q, want %q", tt.cmd, got, tt.want)
			}
		}

		c.ok("LIST")
		if got, want := c.multi(), []string{
			fmt.Sprintf("1 %d", sizes[0]), fmt.Sprintf("2 %d", sizes[1]), fmt.Sprintf("3 %d", sizes[2]),
		}; !slices.Equal(got, want) {
			t.Errorf("LIST = %q, want %q", got, want)
		}
		c.ok("UIDL")
		if got, want := c.multi(), []string{"1 " + stored[0].ID, "2 " + stored[1].ID, "3 " + stored[2].ID}; !slices.Equal(got, want) {
			t.Errorf("UIDL = %q, want %q", got, want)
		}

		retr := []struct {
			cmd, head, body string
		}{
			{"RETR 1", fmt.Sprintf("+OK %d octets", sizes[0]), stuffed(wireCRLF)},
			{"RETR 2", fmt.Sprintf("+OK %d octets", sizes[1]), stuffed(wireLF)},
			{"RETR 3", fmt.Sprintf("+OK %d octets", sizes[2]), stuffed(wireOdd)},
			{"TOP 1 0", "+OK top of message follows", "From: bob@example.org\r\nSubject: one\r\n\r\n.\r\n"},
			{"TOP 1 2", "+OK top of message follows", "From: bob@example.org\r\nSubject: one\r\n\r\nHello\r\n..hidden dot\r\n.\r\n"},
			{"TOP 2 4", "+OK top of message follows", "Subject: two\r\n\r\nline1\r\nline2\r\n..dot\r\nline4\r\n.\r\n"},
			{"TOP 2 100", "+OK top of message follows", stuffed(wireLF)},
			{"TOP 3 1", "+OK top of message follows", "Subject: three\r\n\r\nbare\r\n.\r\n"},
		}
		for _, tt := range retr {
			if got := c.cmd(tt.cmd); got != tt.head {
				t.Fatalf("%s = %q, want %q", tt.cmd, got, tt.head)
			}
			if got := c.raw(); got != tt.body {
				t.Errorf("%s body = %q, want %q", tt.cmd, got, tt.body)
			}
		}

		steps := []struct{ cmd, want string }{
			{"DELE 1", "+OK message 1 deleted"},
			{"DELE 1", "-ERR message 1 already deleted"},
			{"RETR 1", "-ERR message 1 already deleted"},
			{"LIST 1", "-ERR message 1 already deleted"},
			{"UIDL 1", "-ERR message 1 already deleted"},
			{"STAT", fmt.Sprintf("+OK 2 %d", sizes[1]+sizes[2])},
			{"RSET", "+OK maildrop has 3 messages"},
			{"STAT", fmt.Sprintf("+OK 3 %d", total)},
			{"DELE 2", "+OK message 2 deleted"},
		}
		for _, tt := range steps {
			if got := c.cmd(tt.cmd); got != tt.want {
				t.Errorf("%s = %q, want %q", tt.cmd, got, tt.want)
			}
		}
		c.ok("LIST")
		if got, want := c.multi(), []string{fmt.Sprintf("1 %d", sizes[0]), fmt.Sprintf("3 %d", sizes[2])}; !slices.Equal(got, want) {
			t.Errorf("LIST after DELE 2 = %q, want %q", got, want)
		}
		c.ok("RETR 3")
		c.raw()
		if got, want := c.cmd("QUIT"), "+OK pop.example.org POP3 server signing off (2 messages left)"; got != want {
			t.Errorf("QUIT = %q, want %q", got, want)
		}
		if !c.closed() {
			t.Error("connection still open after QUIT")
		}
		waitSessions(t, ts.srv)

		left := inbox(t, st, testUser)
		if got, want := ids(left), []string{stored[0].ID, stored[2].ID}; !slices.Equal(got, want) {
			t.Fatalf("INBOX after QUIT = %q, want %q", got, want)
		}
		// RSET undid RETR 1 and 2; RETR 3 came after it.
		if store.HasFlag(left[0].Flags, store.FlagSeen) || !store.HasFlag(left[1].Flags, store.FlagSeen) {
			t.Errorf("flags after QUIT = %v, %v, want only message 3 \\Seen", left[0].Flags, left[1].Flags)
		}
	})
}

// TestUpdateOnlyAtQuit: DELE'd messages stay when the connection drops,
// when the session ends on a timeout, and when the server shuts down.
func TestUpdateOnlyAtQuit(t *testing.T) {
	ends := []struct {
		name string
		end  func(t *testing.T, ts *testServer, c *client)
	}{
		{"dropped connection", func(t *testing.T, ts *testServer, c *client) {
			c.conn.Close()
		}},
		{"shutdown", func(t *testing.T, ts *testServer, c *client) {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if err := ts.srv.Shutdown(ctx); err != nil {
				t.Errorf("Shutdown() = %v", err)
			}
			if got, want := c.line(), "-ERR [SYS/TEMP] server shutting down, try again later"; got != want {
				t.Errorf("after Shutdown: %q, want %q", got, want)
			}
			if err := <-ts.done; !errors.Is(err, ErrServerClosed) {
				t.Errorf("Serve() = %v, want ErrServerClosed", err)
			}
		}},
		{"idle timeout", func(t *testing.T, ts *testServer, c *client) {
			if !c.closed() {
				t.Error("connection still open after the idle timeout")
			}
		}},
	}
	for _, tt := range ends {
		t.Run(tt.name, func(t *testing.T) {
			forEachStore(t, func(t *testing.T, st store.Store) {
				deliver(t, st, testUser, msgCRLF, msgLF)
				before := ids(inbox(t, st, testUser))
				ts := startServer(t, st, func(o *Options) { o.IdleTimeout = time.Second })
				c := dial(t, ts.addr)
				c.login(testUser, testPass)
				c.ok("DELE 1")
				c.ok("DELE 2")
				tt.end(t, ts, c)
				waitSessions(t, ts.srv)
				if got := ids(inbox(t, st, testUser)); !slices.Equal(got, before) {
					t.Errorf("INBOX = %q, want %q (untouched)", got, before)
				}
			})
		})
	}
}

// TestUIDLStable: UIDLs do not change across sessions, and a message
// delivered meanwhile gets a new one; numbers come from each login's
// snapshot.
func TestUIDLStable(t *testing.T) {
	forEachStore(t, func(t *testing.T, st store.Store) {
		deliver(t, st, testUser, msgCRLF, msgLF, msgOdd)
		ts := startServer(t, st, nil)
		uidl := func() []string {
			c := dial(t, ts.addr)
			c.login(testUser, testPass)
			c.ok("UIDL")
			got := c.multi()
			c.ok("QUIT")
			return got
		}
		first := uidl()
		if second := uidl(); !slices.Equal(first, second) {
			t.Fatalf("UIDL changed between sessions: %q then %q", first, second)
		}

		c := dial(t, ts.addr)
		c.login(testUser, testPass)
		c.ok("DELE 2")
		c.ok("QUIT")
		deliver(t, st, testUser, "Subject: four\r\n\r\nnew\r\n")
		third := uidl()
		if len(third) != 3 {
			t.Fatalf("UIDL after DELE 2 and a delivery = %q, want 3 entries", third)
		}
		_, id1, _ := strings.Cut(first[0], " ")
		_, id3, _ := strings.Cut(first[2], " ")
		if want := []string{"1 " + id1, "2 " + id3}; !slices.Equal(third[:2], want) {
			t.Errorf("UIDL = %q, want it to start with %q", third, want)
		}
		_, id4, _ := strings.Cut(third[2], " ")
		for _, l := range first {
			if strings.HasSuffix(l, " "+id4) {
				t.Errorf("new message reuses UIDL %q", id4)
			}
		}
	})
}

// TestConcurrentSessions: two sessions on one maildrop (allowed, see the
// package doc) delete the same message; both QUITs succeed, and a message
// the other session removed is reported, not fatal.
func TestConcurrentSessions(t *testing.T) {
	forEachStore(t, func(t *testing.T, st store.Store) {
		deliver(t, st, testUser, msgCRLF, msgLF)
		ts := startServer(t, st, nil)
		a, b := dial(t, ts.addr), dial(t, ts.addr)
		a.login(testUser, testPass)
		b.login(testUser, testPass)
		a.ok("DELE 1")
		a.ok("DELE 2")
		b.ok("DELE 1")
		a.ok("QUIT")
		if got, want := b.cmd("RETR 2"), "-ERR message was removed by another session"; got != want {
			t.Errorf("RETR of a message expunged elsewhere = %q, want %q", got, want)
		}
		if got := b.cmd("QUIT"); !strings.HasPrefix(got, "+OK") {
			t.Errorf("QUIT after the other session expunged = %q, want +OK", got)
		}
		if got := inbox(t, st, testUser); len(got) != 0 {
			t.Errorf("INBOX = %d messages, want 0", len(got))
		}
	})
}

// TestAuthorization covers the AUTHORIZATION state: logins, their
// failures and the response codes, and commands in the wrong state.
func TestAuthorization(t *testing.T) {
	plain := func(authz, user, pass string) string {
		return b64(authz + "\x00" + user + "\x00" + pass)
	}
	type step struct {
		send, want string
		more       []string // the rest of a multi-line answer, without "."
	}
	tests := []struct {
		name      string
		authMode  string
		plaintext bool
		steps     []step
		closed    bool // the server closes the connection after the steps
	}{
		{"user pass", "", true, []step{
			{"USER " + testUser, "+OK send PASS", nil},
			{"PASS " + testPass, "+OK maildrop ready, 0 messages", nil},
			{"USER x", "-ERR already logged in", nil},
			{"STLS", "-ERR already logged in", nil},
		}, false},
		{"case-insensitive keywords", "", true, []step{
			{"user " + testUser, "+OK send PASS", nil},
			{"pAsS " + testPass, "+OK maildrop ready, 0 messages", nil},
		}, false},
		{"bad password", "", true, []step{
			{"USER " + testUser, "+OK send PASS", nil},
			{"PASS wrong", "-ERR [AUTH] authentication failed", nil},
			{"PASS " + testPass, "-ERR send USER first", nil},
		}, false},
		{"empty password", "", true, []step{
			{"USER " + testUser, "+OK send PASS", nil},
			{"PASS", "-ERR [AUTH] authentication failed", nil},
		}, false},
		{"three failures close", "", true, []step{
			{"USER " + testUser, "+OK send PASS", nil},
			{"PASS a", "-ERR [AUTH] authentication failed", nil},
			{"USER " + testUser, "+OK send PASS", nil},
			{"PASS b", "-ERR [AUTH] authentication failed", nil},
			{"AUTH PLAIN " + plain("", testUser, "c"), "-ERR [AUTH] authentication failed", nil},
		}, true},
		{"locked", "locked", true, []step{
			{"USER " + testUser, "+OK send PASS", nil},
			{"PASS " + testPass, "-ERR [LOGIN-DELAY] too many failed logins, try again in 90 seconds", nil},
		}, false},
		{"auth unavailable", "unavailable", true, []step{
			{"USER " + testUser, "+OK send PASS", nil},
			{"PASS " + testPass, "-ERR [SYS/TEMP] authentication service unavailable, try again later", nil},
			{"USER " + testUser, "+OK send PASS", nil},
			{"PASS " + testPass, "-ERR [SYS/TEMP] authentication service unavailable, try again later", nil},
			{"USER " + testUser, "+OK send PASS", nil},
			{"PASS " + testPass, "-ERR [SYS/TEMP] authentication service unavailable, try again later", nil},
			{"CAPA", "+OK capability list follows", []string{"TOP", "UIDL", "RESP-CODES", "AUTH-RESP-CODE",
				"PIPELINING", "EXPIRE NEVER", "LOGIN-DELAY 0", "USER", "SASL PLAIN", "IMPLEMENTATION postcove"}},
		}, false},
		{"auth plain initial response", "", true, []step{
			{"AUTH PLAIN " + plain("", testUser, testPass), "+OK maildrop ready, 0 messages", nil},
		}, false},
		{"auth plain with authzid", "", true, []step{
			{"auth plain " + plain(testUser, testUser, testPass), "+OK maildrop ready, 0 messages", nil},
		}, false},
		{"auth plain continuation", "", true, []step{
			{"AUTH PLAIN", "+ ", nil},
			{plain("", testUser, testPass), "+OK maildrop ready, 0 messages", nil},
		}, false},
		{"auth plain cancelled", "", true, []step{
			{"AUTH PLAIN", "+ ", nil},
			{"*", "-ERR authentication cancelled", nil},
			{"AUTH PLAIN", "+ ", nil},
			{plain("", testUser, testPass), "+OK maildrop ready, 0 messages", nil},
		}, false},
		{"auth plain bad", "", true, []step{
			{"AUTH PLAIN " + plain("bob@example.org", testUser, testPass), "-ERR [AUTH] authentication failed", nil},
			{"AUTH PLAIN !!!", "-ERR [AUTH] authentication failed", nil},
			{"AUTH PLAIN =", "-ERR [AUTH] authentication failed", nil},
		}, true},
		{"auth other mechanism", "", true, []step{
			{"AUTH CRAM-MD5", "-ERR unsupported authentication mechanism", nil},
			{"AUTH", "+OK SASL mechanisms follow", []string{"PLAIN"}},
		}, false},
		{"plaintext refused", "", false, []step{
			{"USER " + testUser, "-ERR [AUTH] plaintext authentication disallowed without TLS", nil},
			{"PASS " + testPass, "-ERR [AUTH] plaintext authentication disallowed without TLS", nil},
			{"AUTH PLAIN " + plain("", testUser, testPass), "-ERR [AUTH] plaintext authentication disallowed without TLS", nil},
			{"AUTH", "+OK SASL mechanisms follow", []string{}},
		}, false},
		{"apop", "", true, []step{
			{"APOP " + testUser + " c4c9334bac560ecc979e58001b3e22fb", "-ERR APOP is not supported; use USER/PASS or AUTH PLAIN", nil},
		}, false},
		{"stls without tls", "", true, []step{
			{"STLS", "-ERR STLS not available", nil},
		}, false},
		{"transaction commands before login", "", true, []step{
			{"STAT", "-ERR not logged in", nil},
			{"LIST", "-ERR not logged in", nil},
			{"RETR 1", "-ERR not logged in", nil},
			{"DELE 1", "-ERR not logged in", nil},
			{"NOOP", "-ERR not logged in", nil},
			{"QUIT", "+OK pop.example.org POP3 server signing off", nil},
		}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			st := storeKinds()[0].open(t)
			ts := startServer(t, st, func(o *Options) { o.AllowPlaintextAuth = tt.plaintext })
			ts.auth.setMode(tt.authMode)
			c := dial(t, ts.addr)
			for _, s := range tt.steps {
				if got := c.cmd(s.send); got != s.want {
					t.Fatalf("%s = %q, want %q", s.send, got, s.want)
				}
				if s.more == nil {
					continue
				}
				if got := c.multi(); !slices.Equal(got, s.more) {
					t.Errorf("%s = %q, want %q", s.send, got, s.more)
				}
			}
			if tt.closed {
				if !c.closed() {
					t.Error("connection still open, want it closed")
				}
				return
			}
			c.ok("CAPA") // still usable
			c.multi()
		})
	}
}

// TestCapa: the capability list follows the connection's TLS and the
// plaintext policy (RFC 2449 section 6, RFC 2595 section 4).
func TestCapa(t *testing.T) {
	serverTLS, _, _ := tlsConfigs(t)
	base := []string{"TOP", "UIDL", "RESP-CODES", "AUTH-RESP-CODE", "PIPELINING", "EXPIRE NEVER", "LOGIN-DELAY 0"}
	with := func(extra ...string) []string {
		return append(append(slices.Clone(base), extra...), "IMPLEMENTATION postcove")
	}
	tests := []struct {
		name      string
		tls       bool
		plaintext bool
		loggedIn  bool
		want      []string
	}{
		{"no tls, plaintext refused", false, false, false, with()},
		{"no tls, plaintext allowed", false, true, false, with("USER", "SASL PLAIN")},
		{"stls offered, plaintext refused", true, false, false, with("STLS")},
		{"stls offered, plaintext allowed", true, true, false, with("USER", "SASL PLAIN", "STLS")},
		{"logged in", true, true, true, with("USER", "SASL PLAIN")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ts := startServer(t, storeKinds()[0].open(t), func(o *Options) {
				o.AllowPlaintextAuth = tt.plaintext
				if tt.tls {
					o.TLS = serverTLS
				}
			})
			c := dial(t, ts.addr)
			if tt.loggedIn {
				c.login(testUser, testPass)
			}
			c.ok("CAPA")
			if got := c.multi(); !slices.Equal(got, tt.want) {
				t.Errorf("CAPA = %q, want %q", got, tt.want)
			}
		})
	}
}

// TestBadInput: malformed, unknown, overlong and 8-bit commands get -ERR
// and the session goes on; too many of them close it.
func TestBadInput(t *testing.T) {
	st := storeKinds()[0].open(t)
	deliver(t, st, testUser, msgCRLF)
	ts := startServer(t, st, func(o *Options) { o.MaxLineLength = 300 })
	c := dial(t, ts.addr)
	c.login(testUser, testPass)
	tests := []struct{ send, want string }{
		{"", "-ERR empty command"},
		{"   ", "-ERR empty command"},
		{"XYZZY", "-ERR unknown command"},
		{"LAST", "-ERR unknown command"},
		{"AB", "-ERR unknown command"},
		{"STAT\x00", "-ERR unknown command"},
		{"\xff\xfe\xfd", "-ERR unknown command"},
		{"RETR \xff", "-ERR invalid arguments"},
		{"LIST 1 2", "-ERR too many arguments"},
		{"STAT now", "-ERR STAT takes no arguments"},
		{"NOOP x", "-ERR NOOP takes no arguments"},
		{"RSET x", "-ERR RSET takes no arguments"},
		{"QUIT x", "-ERR QUIT takes no arguments"},
		{"CAPA x", "-ERR CAPA takes no arguments"},
		{"DELE", "-ERR DELE needs one message number"},
		{"RETR +1", "-ERR invalid message number"},
		{"LIST " + strings.Repeat("9", 41), "-ERR invalid arguments"},
		{"NOOP " + strings.Repeat("x", 400), "-ERR line too long"},
		{strings.Repeat("A", 5000), "-ERR line too long"},
		{"STAT", "+OK 1 " + strconv.Itoa(len(msgCRLF))},
		{"noop", "+OK"},
	}
	for _, tt := range tests {
		if got := c.cmd(tt.send); got != tt.want {
			t.Errorf("%.40q = %q, want %q", tt.send, got, tt.want)
		}
	}
	// Bare LF line ends are accepted.
	c.send("NOOP\n")
	if got := c.line(); got != "+OK" {
		t.Errorf("NOOP with bare LF = %q, want +OK", got)
	}
	// The limit: maxBadCommands in total (18 so far).
	if got, want := c.cmd("BAD1"), "-ERR unknown command"; got != want {
		t.Errorf("bad command number %d = %q, want %q", maxBadCommands-1, got, want)
	}
	if got, want := c.cmd("BAD2"), "-ERR too many invalid commands, closing"; got != want {
		t.Errorf("bad command number %d = %q, want %q", maxBadCommands, got, want)
	}
	if !c.closed() {
		t.Error("connection still open after too many bad commands")
	}
}

// TestPipelining: commands sent in one write are all answered, in order.
func TestPipelining(t *testing.T) {
	st := storeKinds()[0].open(t)
	deliver(t, st, testUser, msgCRLF, msgLF)
	ts := startServer(t, st, nil)
	c := dial(t, ts.addr)
	c.send("USER " + testUser + "\r\nPASS " + testPass + "\r\nSTAT\r\nRETR 1\r\nDELE 1\r\nUIDL\r\nQUIT\r\n")
	want := []string{"+OK send PASS", "+OK maildrop ready, 2 messages", fmt.Sprintf("+OK 2 %d", len(wireCRLF)+len(wireLF))}
	for _, w := range want {
		if got := c.line(); got != w {
			t.Fatalf("pipelined answer = %q, want %q", got, w)
		}
	}
	if got := c.line(); !strings.HasPrefix(got, "+OK") {
		t.Fatalf("RETR = %q", got)
	}
	if got := c.raw(); got != stuffed(wireCRLF) {
		t.Errorf("RETR body = %q", got)
	}
	for _, w := range []string{"+OK message 1 deleted", "+OK unique-id listing follows"} {
		if got := c.line(); got != w {
			t.Fatalf("pipelined answer = %q, want %q", got, w)
		}
	}
	c.multi()
	if got := c.line(); !strings.HasPrefix(got, "+OK") {
		t.Errorf("QUIT = %q", got)
	}
}

// TestPanicRecovered: a panic in a session (here in the authenticator) is
// logged and counted, the client gets -ERR, and the server keeps serving.
func TestPanicRecovered(t *testing.T) {
	st := storeKinds()[0].open(t)
	ts := startServer(t, st, nil)
	ts.auth.setMode("panic")
	c := dial(t, ts.addr)
	c.ok("USER " + testUser)
	if got, want := c.cmd("PASS "+testPass), "-ERR [SYS/TEMP] internal server error"; got != want {
		t.Errorf("PASS with a panicking authenticator = %q, want %q", got, want)
	}
	if !c.closed() {
		t.Error("connection still open after a panic")
	}
	ts.auth.setMode("")
	c = dial(t, ts.addr)
	c.login(testUser, testPass)
	c.ok("QUIT")
	waitSessions(t, ts.srv)
	if got := counter(t, ts, "postcove_pop3_panics_total", ""); got != 1 {
		t.Errorf("postcove_pop3_panics_total = %v, want 1", got)
	}
}

// counter returns a counter's (or gauge's) value from the test registry;
// label selects a "result" label value.
func counter(t *testing.T, ts *testServer, name, label string) float64 {
	t.Helper()
	mfs, err := ts.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			if label != "" && !hasLabel(m, "result", label) {
				continue
			}
			if m.GetCounter() != nil {
				return m.GetCounter().GetValue()
			}
			return m.GetGauge().GetValue()
		}
	}
	return 0
}

func hasLabel(m *dto.Metric, name, value string) bool {
	for _, l := range m.GetLabel() {
		if l.GetName() == name && l.GetValue() == value {
			return true
		}
	}
	return false
}

// TestMetrics: sessions, logins by result, bytes and deletions are counted.
func TestMetrics(t *testing.T) {
	st := storeKinds()[0].open(t)
	deliver(t, st, testUser, msgCRLF, msgLF)
	ts := startServer(t, st, nil)
	c := dial(t, ts.addr)
	c.ok("USER " + testUser)
	c.cmd("PASS nope")
	c.login(testUser, testPass)
	c.ok("RETR 2")
	c.raw()
	c.ok("TOP 1 0")
	c.raw()
	c.ok("DELE 1")
	c.ok("QUIT")
	waitSessions(t, ts.srv)
	tests := []struct {
		name, label string
		want        float64
	}{
		{"postcove_pop3_sessions_total", "", 1},
		{"postcove_pop3_sessions_active", "", 0},
		{"postcove_pop3_logins_total", "ok", 1},
		{"postcove_pop3_logins_total", "failed", 1},
		{"postcove_pop3_retrieved_bytes_total", "", float64(len(wireLF) + len("From: bob@example.org\r\nSubject: one\r\n\r\n"))},
		{"postcove_pop3_deleted_messages_total", "", 1},
	}
	for _, tt := range tests {
		if got := counter(t, ts, tt.name, tt.label); got != tt.want {
			t.Errorf("%s{%s} = %v, want %v", tt.name, tt.label, got, tt.want)
		}
	}
}

// TestSharedMetrics: the 110 and 995 servers of one process count into
// one Metrics.
func TestSharedMetrics(t *testing.T) {
	st := storeKinds()[0].open(t)
	serverTLS, clientTLS, _ := tlsConfigs(t)
	plain := startServer(t, st, nil)
	implicit := startServer(t, st, func(o *Options) {
		o.TLS = serverTLS
		o.ImplicitTLS = true
		o.Metrics = plain.srv.metrics
	})
	dial(t, plain.addr).ok("QUIT")
	conn, err := tls.Dial("tcp", implicit.addr, clientTLS)
	if err != nil {
		t.Fatal(err)
	}
	c := newClient(t, conn)
	c.line()
	c.ok("QUIT")
	waitSessions(t, plain.srv)
	waitSessions(t, implicit.srv)
	if got := counter(t, plain, "postcove_pop3_sessions_total", ""); got != 2 {
		t.Errorf("postcove_pop3_sessions_total = %v, want 2", got)
	}
}

// TestMaxSessions: a connection over the limit is told to come back
// later; once a session ends there is room again.
func TestMaxSessions(t *testing.T) {
	ts := startServer(t, storeKinds()[0].open(t), func(o *Options) { o.MaxSessions = 1 })
	first := dial(t, ts.addr)
	conn, err := net.Dial("tcp", ts.addr)
	if err != nil {
		t.Fatal(err)
	}
	second := newClient(t, conn)
	if got, want := second.line(), "-ERR [SYS/TEMP] too many connections, try again later"; got != want {
		t.Errorf("connection over MaxSessions = %q, want %q", got, want)
	}
	if !second.closed() {
		t.Error("connection over MaxSessions still open")
	}
	first.ok("QUIT")
	waitSessions(t, ts.srv)
	dial(t, ts.addr).ok("QUIT")
}

// TestServeErrors: Serve refuses a configuration it cannot run.
func TestServeErrors(t *testing.T) {
	st := storeKinds()[0].open(t)
	tests := []struct {
		name string
		opts Options
	}{
		{"no store", Options{Auth: newFakeAuth()}},
		{"no auth", Options{Store: st}},
		{"implicit tls without config", Options{Store: st, Auth: newFakeAuth(), ImplicitTLS: true}},
	}
	for _, tt := range tests {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		if err := New(tt.opts).Serve(l); err == nil {
			t.Errorf("%s: Serve() = nil, want an error", tt.name)
		}
	}
	srv := New(Options{Store: st, Auth: newFakeAuth()})
	if err := srv.Shutdown(context.Background()); err != nil {
		t.Fatalf("Shutdown() = %v", err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Serve(l); !errors.Is(err, ErrServerClosed) {
		t.Errorf("Serve() after Shutdown = %v, want ErrServerClosed", err)
	}
}

// TestShutdownWaitsForCommand: a session in the middle of a command (here
// a slow login) finishes it before it is told the server is going away,
// and Shutdown gives up at its context's deadline on one that hangs.
func TestShutdownWaitsForCommand(t *testing.T) {
	st := storeKinds()[0].open(t)
	slow := &slowAuth{fakeAuth: newFakeAuth(), release: make(chan struct{})}
	ts := startServer(t, st, func(o *Options) { o.Auth = slow })
	c := dial(t, ts.addr)
	c.ok("USER " + testUser)
	c.send("PASS " + testPass + "\r\n")
	for slow.waiting() == 0 {
		time.Sleep(5 * time.Millisecond)
	}
	errc := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		errc <- ts.srv.Shutdown(ctx)
	}()
	time.Sleep(50 * time.Millisecond)
	close(slow.release)
	if got, want := c.line(), "+OK maildrop ready, 0 messages"; got != want {
		t.Errorf("PASS during Shutdown = %q, want %q", got, want)
	}
	if got, want := c.line(), "-ERR [SYS/TEMP] server shutting down, try again later"; got != want {
		t.Errorf("after the command = %q, want %q", got, want)
	}
	if err := <-errc; err != nil {
		t.Errorf("Shutdown() = %v", err)
	}

	// A session stuck in a command past the deadline is cut off.
	ts = startServer(t, st, func(o *Options) { o.Auth = &slowAuth{fakeAuth: newFakeAuth(), release: make(chan struct{})} })
	c = dial(t, ts.addr)
	c.ok("USER " + testUser)
	c.send("PASS " + testPass + "\r\n")
	time.Sleep(50 * time.Millisecond)
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	if err := ts.srv.Shutdown(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Shutdown() with a hung session = %v, want DeadlineExceeded", err)
	}
}

// slowAuth blocks each login until release is closed or the context ends.
type slowAuth struct {
	*fakeAuth
	release chan struct{}
	n       atomic.Int64
}

func (a *slowAuth) waiting() int64 { return a.n.Load() }

func (a *slowAuth) Authenticate(ctx context.Context, username, password, service, remoteIP string, tls bool) (u authclient.User, err error) {
	a.n.Add(1)
	select {
	case <-a.release:
	case <-ctx.Done():
		return u, ctx.Err()
	}
	return a.fakeAuth.Authenticate(ctx, username, password, service, remoteIP, tls)
}
