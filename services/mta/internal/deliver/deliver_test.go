package deliver_test

import (
	"context"
	"io"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/postcove/postcove/services/internal/dnsclient"
	"github.com/postcove/postcove/services/internal/testlib"
	"github.com/postcove/postcove/services/mta/internal/deliver"
	"github.com/postcove/postcove/services/mta/internal/deliver/lmtp"
	"github.com/postcove/postcove/services/mta/internal/deliver/remote"
	"github.com/postcove/postcove/services/mta/internal/deliver/smtpsink"
	"github.com/postcove/postcove/services/mta/internal/queue"
)

// world is a queue delivering with the real LMTP and SMTP clients: local
// mail to an LMTP address, remote mail to example.net, whose MX (served by
// a loopback DNS server) is an SMTP sink.
type world struct {
	q        *queue.Queue
	dir      string
	lmtpAddr string
}

func newWorld(t *testing.T, lmtpAddr string, smtpSink *smtpsink.Sink) *world {
	t.Helper()
	dns := testlib.StartDNS(t, "$TTL 300\nexample.net. MX 10 mx.example.net.\nmx.example.net. A 127.0.0.1\n")
	res, err := dnsclient.New([]string{dns.Addr}, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	_, port, _ := net.SplitHostPort(smtpSink.Addr)
	p, _ := strconv.Atoi(port)
	rc, err := remote.New(remote.Options{Hostname: "mx.example.org", Port: p, Resolver: res, DialTimeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	lc, err := lmtp.New(lmtp.Options{Addrs: []string{lmtpAddr}, Hostname: "mx.example.org", DialTimeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { lc.Close() })
	dir := testlib.TempDir(t)
	q, err := queue.Open(queue.Options{
		Dir: dir, RetryMin: 50 * time.Millisecond, RetryMax: 100 * time.Millisecond, ScanInterval: 50 * time.Millisecond,
		Hostname: "mx.example.org",
		// Our domain is example.org: its senders are local.
		Resolve: func(ctx context.Context, addr string) ([]queue.Recipient, error) {
			route := queue.RouteRemote
			if strings.HasSuffix(addr, "@example.org") {
				route = queue.RouteLocal
			}
			return []queue.Recipient{{Address: addr, Route: route}}, nil
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- q.Run(ctx, deliver.Router{Local: lc, Remote: rc}) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run = %v", err)
		}
	})
	return &world{q: q, dir: dir, lmtpAddr: lmtpAddr}
}

func (w *world) enqueue(t *testing.T, env queue.Envelope, body string) string {
	t.Helper()
	id, err := w.q.Enqueue(context.Background(), env, strings.NewReader(body))
	if err != nil {
		t.Fatalf("Enqueue = %v", err)
	}
	return id
}

// waitEmpty waits until the queue has delivered everything.
func (w *world) waitEmpty(t *testing.T) {
	t.Helper()
	waitFor(t, "the queue to empty", func() bool {
		msgs, err := w.q.List(context.Background())
		return err == nil && len(msgs) == 0
	})
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

const body = "From: alice@example.org\r\nTo: bob@example.net\r\nSubject: hello\r\n\r\nhi Bob\r\n"

func from(sender string, rcpts ...queue.Recipient) queue.Envelope {
	return queue.Envelope{Sender: sender, Recipients: rcpts}
}

// TestRemoteRetried: the remote server answers 451, then 250: delivered on
// the second attempt, once.
func TestRemoteRetried(t *testing.T) {
	var mu sync.Mutex
	rcpts := 0
	sink := smtpsink.Start(t, smtpsink.Options{Reply: func(stage smtpsink.Stage, arg string) error {
		mu.Lock()
		defer mu.Unlock()
		if stage == smtpsink.StageRcpt {
			if rcpts++; rcpts == 1 {
				return &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 7, 1}, Message: "greylisted, come back later"}
			}
		}
		return nil
	}})
	mbox := smtpsink.Start(t, smtpsink.Options{LMTP: true})
	w := newWorld(t, mbox.Addr, sink)
	w.enqueue(t, from("alice@example.org", queue.Recipient{Address: "bob@example.net", Route: queue.RouteRemote}), body)
	w.waitEmpty(t)
	got := sink.Messages()
	if len(got) != 1 || got[0].Data != body || !slices.Equal(got[0].To, []string{"bob@example.net"}) || rcpts != 2 {
		t.Errorf("remote got %+v after %d RCPTs, want the message once, on the second attempt", got, rcpts)
	}
	if n := len(mbox.Messages()); n != 0 {
		t.Errorf("the mailbox got %d messages, want no bounce", n)
	}
}

// TestRemoteRefusedBounces: a 550 from the remote server sends the local
// sender a DSN, delivered to their mailbox over LMTP with the null
// sender; a local recipient of the same message gets it.
func TestRemoteRefusedBounces(t *testing.T) {
	sink := smtpsink.Start(t, smtpsink.Options{Reply: func(stage smtpsink.Stage, arg string) error {
		if stage == smtpsink.StageRcpt {
			return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "no such user here"}
		}
		return nil
	}})
	mbox := smtpsink.Start(t, smtpsink.Options{LMTP: true})
	w := newWorld(t, mbox.Addr, sink)
	w.enqueue(t, from("alice@example.org",
		queue.Recipient{Address: "bob@example.net", Orig: "bob@example.net", Route: queue.RouteRemote},
		queue.Recipient{Address: "carol@example.org", Route: queue.RouteLocal}), body)
	w.waitEmpty(t)
	got := mbox.Messages()
	if len(got) != 2 {
		t.Fatalf("the mailbox got %d messages, want the copy for carol and the bounce for alice: %+v", len(got), got)
	}
	var dsn smtpsink.Message
	for _, m := range got {
		if m.From == "" {
			dsn = m
		} else if !slices.Equal(m.To, []string{"carol@example.org"}) || m.Data != body {
			t.Errorf("local copy = %+v, want the message for carol", m)
		}
	}
	if !slices.Equal(dsn.To, []string{"alice@example.org"}) {
		t.Fatalf("bounce = %+v, want one from <> to alice", dsn)
	}
	for _, want := range []string{
		"multipart/report; report-type=delivery-status", "Reporting-MTA: dns; mx.example.org",
		"Final-Recipient: rfc822; bob@example.net", "Action: failed", "Status: 5.1.1",
		"Remote-MTA: dns; mx.example.net", "Diagnostic-Code: smtp; 550 5.1.1 no such user here",
		"Subject: hello", // the original's header (RET defaults to HDRS)
	} {
		if !strings.Contains(dsn.Data, want) {
			t.Errorf("bounce lacks %q:\n%s", want, dsn.Data)
		}
	}
	if strings.Contains(dsn.Data, "hi Bob") {
		t.Error("bounce holds the original body; want headers only without RET=FULL")
	}
}

// TestMailboxDownThenUp: with the mailbox service down the message stays
// queued (no bounce), and is delivered once it comes back.
func TestMailboxDownThenUp(t *testing.T) {
	addr := testlib.FreeAddr(t)
	sink := smtpsink.Start(t, smtpsink.Options{})
	w := newWorld(t, addr, sink)
	id := w.enqueue(t, from("someone@example.net", queue.Recipient{Address: "carol@example.org", Route: queue.RouteLocal}), body)
	waitFor(t, "two failed attempts", func() bool {
		msgs, _ := w.q.List(context.Background())
		return len(msgs) == 1 && msgs[0].Recipients[0].Attempts >= 2
	})
	msgs, _ := w.q.List(context.Background())
	if r := msgs[0].Recipients[0]; r.Status != queue.Deferred || r.Last.Code/100 != 4 {
		t.Errorf("recipient while the mailbox is down = %+v, want deferred with a 4xx", r)
	}
	mbox := smtpsink.Start(t, smtpsink.Options{LMTP: true, Addr: addr})
	w.waitEmpty(t)
	got := mbox.Messages()
	if len(got) != 1 || got[0].Data != body || got[0].From != "someone@example.net" {
		t.Errorf("mailbox got %+v, want message %s once", got, id)
	}
	if n := len(sink.Messages()); n != 0 {
		t.Errorf("%d messages went out to the remote sender, want no bounce", n)
	}
}

// recorder is a Deliverer that records the addresses it was given.
type recorder struct {
	mu    sync.Mutex
	addrs []string
	code  int
}

func (r *recorder) Deliver(ctx context.Context, env queue.Envelope, rcpts []queue.Recipient, body queue.Body) []queue.Result {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]queue.Result, len(rcpts))
	for i, rc := range rcpts {
		r.addrs = append(r.addrs, rc.Address)
		out[i] = queue.Result{Code: r.code, Text: rc.Address}
	}
	return out
}

func TestRouter(t *testing.T) {
	l, r := &recorder{code: 250}, &recorder{code: 451}
	rcpts := []queue.Recipient{
		{Address: "a@local", Route: queue.RouteLocal}, {Address: "b@remote", Route: queue.RouteRemote},
		{Address: "c@local", Route: queue.RouteLocal}, {Address: "d@remote", Route: queue.RouteRemote},
	}
	b := io.NewSectionReader(strings.NewReader("x\r\n"), 0, 3)
	res := deliver.Router{Local: l, Remote: r}.Deliver(context.Background(), queue.Envelope{}, rcpts, b)
	for i, want := range []struct {
		code int
		text string
	}{{250, "a@local"}, {451, "b@remote"}, {250, "c@local"}, {451, "d@remote"}} {
		if res[i].Code != want.code || res[i].Text != want.text {
			t.Errorf("result %d = %+v, want %d for %s", i, res[i], want.code, want.text)
		}
	}
	if !slices.Equal(l.addrs, []string{"a@local", "c@local"}) || !slices.Equal(r.addrs, []string{"b@remote", "d@remote"}) {
		t.Errorf("local got %q, remote got %q", l.addrs, r.addrs)
	}
	// No remote deliverer: temporary, never a bounce.
	res = deliver.Router{Local: l}.Deliver(context.Background(), queue.Envelope{}, rcpts[1:2], b)
	if res[0].Code/100 != 4 {
		t.Errorf("remote recipient without a remote deliverer = %+v, want 4xx", res[0])
	}
}
