package lmtpd

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/postcove/postcove/services/internal/authclient"

	"github.com/postcove/postcove/services/mailbox/internal/lmtpd/lmtptest"
	"github.com/postcove/postcove/services/mailbox/internal/store"
)

// TestLHLO: the capabilities announce the limits (RFC 1870 SIZE, RFC 9422
// LIMITS RCPTMAX) and what an MTA pipelines on (RFC 2920, RFC 2034).
func TestLHLO(t *testing.T) {
	e := startEnv(t, nil, func(o *Options) { o.MaxMessageBytes = 12345; o.MaxRecipients = 7 })
	c := dial(t, e.addr)
	caps := c.LHLO().Text
	for _, want := range []string{"PIPELINING", "ENHANCEDSTATUSCODES", "8BITMIME", "SIZE 12345", "LIMITS RCPTMAX=7", "CHUNKING"} {
		if !strings.Contains(caps, want) {
			t.Errorf("LHLO capabilities %q lack %q", caps, want)
		}
	}
	// SMTP's greetings are refused: this is LMTP (RFC 2033 section 4.1).
	c.Send("EHLO mta.test")
	c.Expect(500, "LHLO")
}

// TestMixedRecipients: one transaction with a known user, an unknown user,
// a user over quota, an alias and a domain that is not ours gets one
// status per RCPT, and one DATA status per accepted recipient, in order.
func TestMixedRecipients(t *testing.T) {
	e := startEnv(t, startAuth(t), nil)
	c := dial(t, e.addr)
	c.LHLO()
	msg := lmtptest.Message(strings.Repeat("a line of text to take bob over his 1 KiB quota\n", 40))
	rcptReplies, dataReplies := c.Transaction("sender@remote.example",
		[]string{"alice@example.org", "nobody@example.org", "bob@example.org", "team@example.org", "x@elsewhere.example"}, msg)

	wantRcpt := []string{"250 2.0.0", "550 5.1.1", "250 2.0.0", "250 2.0.0", "550 5.1.2"}
	for i, r := range rcptReplies {
		if got := r.String(); !strings.HasPrefix(got, wantRcpt[i]) {
			t.Errorf("RCPT #%d reply = %q, want %q", i+1, got, wantRcpt[i])
		}
	}
	// alice, bob (over quota), team (alice again: one copy; carol).
	wantData := []string{"250 2.0.0 <alice@example.org>", "552 5.2.2 <bob@example.org>", "250 2.0.0 <team@example.org>"}
	if len(dataReplies) != len(wantData) {
		t.Fatalf("DATA replies = %v, want %d", dataReplies, len(wantData))
	}
	for i, r := range dataReplies {
		if got := r.String(); !strings.HasPrefix(got, wantData[i]) {
			t.Errorf("DATA reply #%d = %q, want %q", i+1, got, wantData[i])
		}
	}
	for _, tt := range []struct {
		addr string
		want int
	}{{"alice@example.org", 1}, {"bob@example.org", 0}, {"carol@example.org", 1}} {
		if got := len(stored(t, e.store, tt.addr, store.Inbox)); got != tt.want {
			t.Errorf("INBOX of %s has %d messages, want %d", tt.addr, got, tt.want)
		}
	}
	if !strings.Contains(e.log(), "dave@remote.example") {
		t.Errorf("the ignored forward address of team@ is not logged")
	}
	if got := testutil.ToFloat64(e.srv.metrics.deliveries.WithLabelValues("over_quota")); got != 1 {
		t.Errorf("deliveries{over_quota} = %v, want 1", got)
	}
	if got := testutil.ToFloat64(e.srv.metrics.deliveries.WithLabelValues("inbox")); got != 2 {
		t.Errorf("deliveries{inbox} = %v, want 2", got)
	}
}

// TestStoredMessage: the stored message is the one sent, after
// Return-Path and Delivered-To, with its CRLF line ends and dot-stuffing
// undone, and its file is in the user's Maildir cur/.
func TestStoredMessage(t *testing.T) {
	e := startEnv(t, startAuth(t), nil)
	c := dial(t, e.addr)
	c.LHLO()
	msg := lmtptest.Message("Hello Alice,\n.a line that starts with a dot\n..two dots\nbye\n")
	tests := []struct {
		from, rcpt string
		wantHeader string
	}{
		{"sender@remote.example", "alice@example.org", "Return-Path: <sender@remote.example>\r\nDelivered-To: alice@example.org\r\n"},
		{"", "Alice+news@Example.org", "Return-Path: <>\r\nDelivered-To: Alice+news@Example.org\r\n"},
	}
	for i, tt := range tests {
		_, data := c.Transaction(tt.from, []string{tt.rcpt}, msg)
		if lmtptest.Codes(data)[0] != 250 {
			t.Fatalf("delivery %d: DATA replies %v, want 250", i, data)
		}
		got := stored(t, e.store, "alice@example.org", store.Inbox)
		if len(got) != i+1 {
			t.Fatalf("INBOX has %d messages, want %d", len(got), i+1)
		}
		if want := tt.wantHeader + msg; got[i] != want {
			t.Errorf("stored message %d = %q, want %q", i, got[i], want)
		}
	}
	files, err := filepath.Glob(filepath.Join(e.root, "example.org", "alice", "Maildir", "cur", "*"))
	if err != nil || len(files) != 2 {
		t.Fatalf("files in alice's Maildir/cur = %v (%v), want 2", files, err)
	}
	data, err := os.ReadFile(files[0])
	if err != nil || !strings.HasPrefix(string(data), "Return-Path: <") {
		t.Errorf("Maildir file %s = %q, %v; want it to start with Return-Path", files[0], data, err)
	}
}

// TestSpamToJunk: the spam marks send a message to Junk, anything else to
// INBOX; a user without Junk gets spam in INBOX.
func TestSpamToJunk(t *testing.T) {
	e := startEnv(t, startAuth(t), nil)
	c := dial(t, e.addr)
	c.LHLO()
	tests := []struct {
		header string
		folder string
	}{
		{"X-Postcove-Spam: yes", store.Junk},
		{"X-Spam-Flag: YES", store.Junk},
		{"X-Postcove-Spam: no", store.Inbox},
		{"X-Spam-Flag: NO", store.Inbox},
		{"X-Other: yes", store.Inbox},
	}
	for _, tt := range tests {
		before := map[string]int{}
		for _, f := range []string{store.Inbox, store.Junk} {
			before[f] = len(stored(t, e.store, "carol@example.org", f))
		}
		_, data := c.Transaction("s@remote.example", []string{"carol@example.org"}, lmtptest.Message("spam?", tt.header))
		if lmtptest.Codes(data)[0] != 250 {
			t.Fatalf("%s: DATA replies %v, want 250", tt.header, data)
		}
		for _, f := range []string{store.Inbox, store.Junk} {
			want := before[f]
			if f == tt.folder {
				want++
			}
			if got := len(stored(t, e.store, "carol@example.org", f)); got != want {
				t.Errorf("%s: %s has %d messages, want %d", tt.header, f, got, want)
			}
		}
	}

	user, err := e.store.User(context.Background(), "alice@example.org")
	if err != nil {
		t.Fatal(err)
	}
	if err := user.Delete(context.Background(), store.Junk); err != nil {
		t.Fatal(err)
	}
	user.Close()
	if _, data := c.Transaction("s@remote.example", []string{"alice@example.org"}, lmtptest.Message("spam", "X-Spam-Flag: YES")); lmtptest.Codes(data)[0] != 250 {
		t.Fatalf("spam without Junk: DATA replies %v, want 250", data)
	}
	if got := len(stored(t, e.store, "alice@example.org", store.Inbox)); got != 1 {
		t.Errorf("alice without Junk: INBOX has %d messages, want the spam in it", got)
	}
}

// TestAuthDownThenBack: with auth stopped RCPT answers 451 4.4.3, never
// 550; once auth is back, delivery works without restarting the server.
func TestAuthDownThenBack(t *testing.T) {
	a := startAuth(t)
	e := startEnv(t, a, nil)
	c := dial(t, e.addr)
	c.LHLO()
	if _, data := c.Transaction("s@remote.example", []string{"alice@example.org"}, lmtptest.Message("one")); lmtptest.Codes(data)[0] != 250 {
		t.Fatalf("before stop: DATA replies %v, want 250", data)
	}

	a.Stop()
	rcpt, data := c.Transaction("s@remote.example", []string{"alice@example.org", "nobody@example.org"}, lmtptest.Message("two"))
	for i, r := range rcpt {
		if r.Code != 451 || !strings.HasPrefix(r.Text, "4.4.3") {
			t.Errorf("auth down: RCPT #%d = %v, want 451 4.4.3", i+1, r)
		}
	}
	if data != nil {
		t.Errorf("auth down: DATA replies %v, want no DATA", data)
	}

	a.Start()
	// gRPC reconnects with a backoff: the first RCPT may still find the
	// connection down, and must then say 451 again, never 5xx.
	deadline := time.Now().Add(20 * time.Second)
	for {
		rcpt, data := c.Transaction("s@remote.example", []string{"alice@example.org"}, lmtptest.Message("three"))
		if rcpt[0].Code == 250 {
			if lmtptest.Codes(data)[0] != 250 {
				t.Fatalf("after restart: DATA replies %v, want 250", data)
			}
			break
		}
		if rcpt[0].Code != 451 {
			t.Fatalf("after restart: RCPT = %v, want 250 or 451", rcpt[0])
		}
		if time.Now().After(deadline) {
			t.Fatalf("after restart: RCPT still %v", rcpt[0])
		}
		time.Sleep(100 * time.Millisecond)
	}
	if got := len(stored(t, e.store, "alice@example.org", store.Inbox)); got != 2 {
		t.Errorf("INBOX has %d messages, want 2", got)
	}
}

// TestPipelining: a client that sends LHLO, MAIL, RCPTs, DATA and the
// message in one write (RFC 2920; RFC 2033 section 4.2 requires PIPELINING)
// gets every reply, in order.
func TestPipelining(t *testing.T) {
	e := startEnv(t, startAuth(t), nil)
	c := dial(t, e.addr)
	c.Send("LHLO mta.test",
		"MAIL FROM:<s@remote.example>",
		"RCPT TO:<alice@example.org>",
		"RCPT TO:<nobody@example.org>",
		"RCPT TO:<carol@example.org>",
		"DATA",
		"Subject: pipelined",
		"",
		"body",
		".",
		"MAIL FROM:<s@remote.example>",
		"RCPT TO:<alice@example.org>",
		"DATA",
		"Subject: second",
		"",
		"body",
		".",
		"QUIT")
	want := []string{"250 ", "250 2.0.0", "250 2.0.0", "550 5.1.1", "250 2.0.0", "354 ", "250 2.0.0 <alice@example.org>", "250 2.0.0 <carol@example.org>",
		"250 2.0.0", "250 2.0.0", "354 ", "250 2.0.0 <alice@example.org>", "221 "}
	for i, w := range want {
		if got := c.Reply().String(); !strings.HasPrefix(got, w) {
			t.Errorf("reply #%d = %q, want %q", i+1, got, w)
		}
	}
	if got := len(stored(t, e.store, "alice@example.org", store.Inbox)); got != 2 {
		t.Errorf("alice's INBOX has %d messages, want 2", got)
	}
}

// TestBDAT: CHUNKING (RFC 3030) works in LMTP too, with one status per
// recipient after BDAT LAST.
func TestBDAT(t *testing.T) {
	e := startEnv(t, nil, nil)
	c := dial(t, e.addr)
	c.LHLO()
	part1, part2 := "Subject: chunks\r\n\r\n", "one\r\ntwo\r\n"
	c.Send("MAIL FROM:<s@remote.example>", "RCPT TO:<alice@example.org>", fmt.Sprintf("BDAT %d", len(part1)))
	c.Expect(250, "")
	c.Expect(250, "")
	c.Write(part1)
	c.Expect(250, "")
	c.Send(fmt.Sprintf("BDAT %d LAST", len(part2)))
	c.Write(part2)
	c.Expect(250, "<alice@example.org>")
	got := stored(t, e.store, "alice@example.org", store.Inbox)
	if want := traceHeader("s@remote.example", "alice@example.org") + part1 + part2; len(got) != 1 || got[0] != want {
		t.Errorf("stored %q, want [%q]", got, want)
	}
}

// TestBDATCutShort: a connection that ends inside the chunk of BDAT LAST
// delivers nothing. go-smtp v0.25.1 passed such a chunk on as complete and
// so stored the truncated message (fixed in third_party/go-smtp).
func TestBDATCutShort(t *testing.T) {
	e := startEnv(t, nil, nil)
	c := dial(t, e.addr)
	c.LHLO()
	c.Send("MAIL FROM:<s@remote.example>", "RCPT TO:<alice@example.org>", "BDAT 100 LAST")
	c.Expect(250, "")
	c.Expect(250, "")
	c.Write("Subject: cut\r\n\r\nonly forty of the hundred bytes\r\n")
	c.Conn.Close()

	// A whole message afterwards, then time for the cut one to show up
	// if it were going to.
	c = dial(t, e.addr)
	c.LHLO()
	if _, data := c.Transaction("s@remote.example", []string{"alice@example.org"}, lmtptest.Message("whole")); lmtptest.Codes(data)[0] != 250 {
		t.Fatalf("DATA replies = %v, want 250", data)
	}
	time.Sleep(200 * time.Millisecond)
	got := stored(t, e.store, "alice@example.org", store.Inbox)
	if len(got) != 1 || strings.Contains(got[0], "cut") {
		t.Errorf("stored %q, want only the whole message", got)
	}
}

// TestOversize: a message over MaxMessageBytes gets 552 5.3.4, declared
// (MAIL SIZE=) or not; nothing is stored and the session goes on.
func TestOversize(t *testing.T) {
	e := startEnv(t, nil, func(o *Options) { o.MaxMessageBytes = 1000 })
	c := dial(t, e.addr)
	c.LHLO()
	c.Send("MAIL FROM:<s@remote.example> SIZE=5000")
	c.Expect(552, "5.3.4")

	_, data := c.Transaction("s@remote.example", []string{"alice@example.org"}, lmtptest.Message(strings.Repeat("x", 2000)))
	if len(data) != 1 || data[0].Code != 552 || !strings.HasPrefix(data[0].Text, "5.3.4") {
		t.Errorf("oversize DATA replies = %v, want 552 5.3.4", data)
	}
	if _, data := c.Transaction("s@remote.example", []string{"alice@example.org"}, lmtptest.Message("small")); lmtptest.Codes(data)[0] != 250 {
		t.Errorf("after the oversize message: DATA replies = %v, want 250", data)
	}
	if got := len(stored(t, e.store, "alice@example.org", store.Inbox)); got != 1 {
		t.Errorf("INBOX has %d messages, want 1 (the small one)", got)
	}
}

// TestTooManyRecipients: past MaxRecipients RCPT answers 452 4.5.3 (RFC
// 5321 section 4.5.3.1.10) and the accepted ones are still delivered.
func TestTooManyRecipients(t *testing.T) {
	e := startEnv(t, nil, func(o *Options) { o.MaxRecipients = 2 })
	c := dial(t, e.addr)
	c.LHLO()
	rcpt, data := c.Transaction("s@remote.example", []string{"alice@example.org", "alice@example.org", "alice@example.org"}, lmtptest.Message("x"))
	if got, want := lmtptest.Codes(rcpt), []int{250, 250, 452}; !reflect.DeepEqual(got, want) {
		t.Errorf("RCPT codes = %v, want %v", got, want)
	}
	if got, want := lmtptest.Codes(data), []int{250, 250}; !reflect.DeepEqual(got, want) {
		t.Errorf("DATA codes = %v, want %v", got, want)
	}
	// The same mailbox twice in one transaction: one copy.
	if got := len(stored(t, e.store, "alice@example.org", store.Inbox)); got != 1 {
		t.Errorf("INBOX has %d messages, want 1", got)
	}
}

// TestMalformed: bad commands get 5xx replies and the server goes on
// serving.
func TestMalformed(t *testing.T) {
	e := startEnv(t, nil, nil)
	tests := []struct {
		line string
		lhlo bool // greet first
		code int
	}{
		{"FROB", false, 500},
		{"\xff\xfe garbage \x00", false, 501},
		{"HELO mta.test", false, 500},
		{"LHLO", false, 501},
		{"MAIL FROM:<s@remote.example>", false, 502},
		{"DATA", false, 502},
		{"RCPT TO:<alice@example.org>", true, 502},
		{"MAIL TO:<x>", true, 501},
		{"MAIL FROM:<s@remote.example> BOGUS=1", true, 500},
		{"MAIL FROM:<\x01bad@remote.example>", true, 553},
		{"DATA extra", true, 501},
		{"BDAT x", true, 501},
	}
	for _, tt := range tests {
		c := dial(t, e.addr)
		if tt.lhlo {
			c.LHLO()
		}
		c.Send(tt.line)
		if r := c.Reply(); r.Code != tt.code {
			t.Errorf("%q: reply %v, want %d", tt.line, r, tt.code)
		}
	}
	// After too many errors go-smtp hangs up on that client only.
	c := dial(t, e.addr)
	c.Send("FROB", "FROB", "FROB", "FROB", "FROB")
	for range 4 {
		c.Expect(500, "")
	}
	c.Expect(500, "Too many errors")
	if !c.Closed() {
		t.Errorf("connection open after too many errors")
	}
	// A nested MAIL is refused, and the transaction keeps its recipients.
	c = dial(t, e.addr)
	c.LHLO()
	c.Send("MAIL FROM:<a@remote.example>", "RCPT TO:<alice@example.org>", "MAIL FROM:<b@remote.example>", "DATA")
	c.Expect(250, "")
	c.Expect(250, "")
	c.Expect(503, "5.5.1")
	c.Expect(354, "")
	c.SendData(lmtptest.Message("x"))
	c.Expect(250, "<alice@example.org>")
	if got := stored(t, e.store, "alice@example.org", store.Inbox); len(got) != 1 || !strings.HasPrefix(got[0], "Return-Path: <a@remote.example>") {
		t.Errorf("stored %q, want one message from a@remote.example", got)
	}
}

// failingStore makes Append fail with the error set for a user.
type failingStore struct {
	store.Store
	errs map[string]error
}

func (f *failingStore) User(ctx context.Context, addr string) (store.Mailboxes, error) {
	m, err := f.Store.User(ctx, addr)
	if err != nil || f.errs[addr] == nil {
		return m, err
	}
	return failingMailboxes{m, f.errs[addr]}, nil
}

type failingMailboxes struct {
	store.Mailboxes
	err error
}

func (f failingMailboxes) Append(_ context.Context, _ string, r io.Reader, _ store.AppendOptions) (store.AppendResult, error) {
	io.Copy(io.Discard, r)
	return store.AppendResult{}, f.err
}

// TestStoreErrors: each store failure gets its reply, per recipient, in
// one transaction.
func TestStoreErrors(t *testing.T) {
	users := []struct {
		addr string
		err  error
		want string
	}{
		{"ok@example.org", nil, "250 2.0.0"},
		{"quota@example.org", fmt.Errorf("append: %w", store.ErrQuotaExceeded), "552 5.2.2"},
		{"big@example.org", fmt.Errorf("append: %w", store.ErrTooBig), "552 5.3.4"},
		{"full@example.org", fmt.Errorf("spool: %w", &os.PathError{Op: "write", Path: "tmp/x", Err: syscall.ENOSPC}), "452 4.3.1"},
		{"fsquota@example.org", fmt.Errorf("spool: %w", syscall.EDQUOT), "452 4.3.1"},
		{"io@example.org", fmt.Errorf("spool: %w", syscall.EIO), "451 4.3.0"},
		{"gone@example.org", errors.New("volume lost"), "451 4.3.0"},
	}
	resolver := fakeResolver{}
	errs := map[string]error{}
	var rcpts []string
	for _, u := range users {
		local, domain, _ := strings.Cut(u.addr, "@")
		resolver[u.addr] = recipientOf(u.addr, local, domain)
		errs[u.addr] = u.err
		rcpts = append(rcpts, u.addr)
	}
	e := startEnv(t, nil, func(o *Options) {
		o.Resolver = resolver
		o.Store = &failingStore{Store: o.Store, errs: errs}
	})
	c := dial(t, e.addr)
	c.LHLO()
	_, data := c.Transaction("s@remote.example", rcpts, lmtptest.Message("x"))
	if len(data) != len(users) {
		t.Fatalf("DATA replies = %v, want %d", data, len(users))
	}
	for i, u := range users {
		if got := data[i].String(); !strings.HasPrefix(got, u.want+" <"+u.addr+">") {
			t.Errorf("Append error %v: reply %q, want %q", u.err, got, u.want)
		}
	}
}

// TestSpoolFile: a message above SpoolMemory goes through a temporary
// file, which is unlinked at once: nothing is left in the spool directory.
func TestSpoolFile(t *testing.T) {
	spoolDir := t.TempDir()
	e := startEnv(t, nil, func(o *Options) { o.SpoolMemory = 100; o.SpoolDir = spoolDir })
	c := dial(t, e.addr)
	c.LHLO()
	msg := lmtptest.Message(strings.Repeat("0123456789\n", 500))
	if _, data := c.Transaction("s@remote.example", []string{"alice@example.org", "alice@example.org"}, msg); !reflect.DeepEqual(lmtptest.Codes(data), []int{250, 250}) {
		t.Fatalf("DATA replies = %v, want 250 250", data)
	}
	if got := stored(t, e.store, "alice@example.org", store.Inbox); len(got) != 1 || !strings.HasSuffix(got[0], msg) {
		t.Errorf("stored %d messages, want the one sent", len(got))
	}
	if left, _ := os.ReadDir(spoolDir); len(left) != 0 {
		t.Errorf("spool directory holds %v, want nothing", left)
	}
}

// TestGracefulShutdown: Shutdown ends idle sessions with a 421 at once,
// lets a transaction that is receiving its message finish and get its
// 250, and returns when it has.
func TestGracefulShutdown(t *testing.T) {
	e := startEnv(t, nil, nil)
	idle := dial(t, e.addr)
	idle.LHLO()
	busy := dial(t, e.addr)
	busy.LHLO()
	busy.Send("MAIL FROM:<s@remote.example>", "RCPT TO:<alice@example.org>", "DATA")
	busy.Expect(250, "")
	busy.Expect(250, "")
	busy.Expect(354, "")
	busy.Write("Subject: in flight\r\n\r\nfirst half\r\n")

	done := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		done <- e.srv.Shutdown(ctx)
	}()
	idle.Expect(421, "")
	select {
	case err := <-done:
		t.Fatalf("Shutdown() = %v before the transaction in flight ended", err)
	case <-time.After(200 * time.Millisecond):
	}
	busy.SendData("second half\r\n")
	busy.Expect(250, "<alice@example.org>")
	busy.Expect(421, "")
	if err := <-done; err != nil {
		t.Errorf("Shutdown() = %v, want nil", err)
	}
	if got := stored(t, e.store, "alice@example.org", store.Inbox); len(got) != 1 || !strings.Contains(got[0], "first half\r\nsecond half") {
		t.Errorf("stored %q, want the message that was in flight", got)
	}
	if _, err := dialErr(e.addr); err == nil {
		t.Errorf("dial after Shutdown succeeded, want refused")
	}
}

// TestShutdownTimeout: a transaction that does not finish is cut when the
// Shutdown context ends.
func TestShutdownTimeout(t *testing.T) {
	e := startEnv(t, nil, nil)
	c := dial(t, e.addr)
	c.LHLO()
	c.Send("MAIL FROM:<s@remote.example>", "RCPT TO:<alice@example.org>", "DATA")
	c.Expect(250, "")
	c.Expect(250, "")
	c.Expect(354, "")
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	if err := e.srv.Shutdown(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Shutdown() = %v, want context.DeadlineExceeded", err)
	}
	if !c.Closed() {
		t.Errorf("connection still open after the forced shutdown")
	}
	if got := len(stored(t, e.store, "alice@example.org", store.Inbox)); got != 0 {
		t.Errorf("INBOX has %d messages, want 0", got)
	}
}

// TestNew: the required options are checked and zero limits get the
// defaults (go-smtp's own defaults are unlimited).
func TestNew(t *testing.T) {
	if _, err := New(Options{}); err == nil {
		t.Errorf("New(Options{}) = nil error, want one")
	}
	e := startEnv(t, nil, nil)
	got := e.srv.smtp
	if got.MaxMessageBytes != DefaultMaxMessageBytes || got.MaxRecipients != DefaultMaxRecipients || got.MaxLineLength != DefaultMaxLineLength ||
		got.ReadTimeout != DefaultReadTimeout || got.WriteTimeout != DefaultWriteTimeout || !got.LMTP {
		t.Errorf("New() limits = %d %d %d %v %v (LMTP %v), want the defaults", got.MaxMessageBytes, got.MaxRecipients, got.MaxLineLength, got.ReadTimeout, got.WriteTimeout, got.LMTP)
	}
}

func recipientOf(addr, local, domain string) authclient.Recipient {
	return authclient.Recipient{Kind: authclient.Deliver, Address: addr,
		Mailboxes: []authclient.Mailbox{{Address: addr, Domain: domain, LocalPart: local}}}
}

func dialErr(addr string) (net.Conn, error) {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err == nil {
		c.Close()
	}
	return c, err
}

// TestMaxConnections: a client over the limit is told 421 4.3.2 and hung
// up on; once a slot is free the next one is served.
func TestMaxConnections(t *testing.T) {
	e := startEnv(t, nil, func(o *Options) { o.MaxConnections = 1 })
	first := dial(t, e.addr)
	first.LHLO()
	over, err := net.Dial("tcp", e.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer over.Close()
	over.SetDeadline(time.Now().Add(5 * time.Second))
	got, _ := io.ReadAll(over)
	if !strings.HasPrefix(string(got), "421 4.3.2 ") {
		t.Errorf("greeting over the limit = %q, want 421 4.3.2", got)
	}
	first.Send("QUIT")
	first.Expect(221, "")
	deadline := time.Now().Add(5 * time.Second)
	for {
		c, err := net.Dial("tcp", e.addr)
		if err != nil {
			t.Fatal(err)
		}
		c.SetDeadline(time.Now().Add(5 * time.Second))
		line := make([]byte, 3)
		_, err = io.ReadFull(c, line)
		c.Close()
		if err == nil && string(line) == "220" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after the first client left: greeting %q, %v; want 220", line, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
