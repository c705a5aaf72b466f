package admin

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	mtav1 "github.com/postcove/postcove/proto/postcove/mta/v1"
	"github.com/postcove/postcove/services/internal/grpcx"
	"github.com/postcove/postcove/services/internal/testlib"
	"github.com/postcove/postcove/services/mta/internal/queue"
)

// nextHop is a Deliverer standing in for LMTP and SMTP: local recipients
// are accepted, remote ones get the scripted answer, and a message from
// holdSender is held until the test releases it (to catch it mid-delivery).
type nextHop struct {
	mu       sync.Mutex // protects remote and calls
	remote   queue.Result
	calls    map[string]int // Deliver calls by message ID
	started  chan string    // receives the ID of a held message
	release  chan struct{}  // closed to let held deliveries finish
	released sync.Once
}

const holdSender = "hold@sender.example"

func newNextHop() *nextHop {
	return &nextHop{
		remote:  queue.Result{Code: 451, Enhanced: "4.3.0", Text: "greylisted, try again later", RemoteMTA: "mx.remote.example"},
		calls:   map[string]int{},
		started: make(chan string, 1),
		release: make(chan struct{}),
	}
}

func (h *nextHop) Deliver(ctx context.Context, env queue.Envelope, rcpts []queue.Recipient, _ queue.Body) []queue.Result {
	if env.Sender == holdSender {
		h.started <- env.ID
		select {
		case <-h.release:
		case <-ctx.Done():
		}
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	h.calls[env.ID]++
	out := make([]queue.Result, len(rcpts))
	for i, r := range rcpts {
		out[i] = queue.Result{Code: 250, Enhanced: "2.0.0", Text: "ok", RemoteMTA: "mailbox.internal"}
		if r.Route == queue.RouteRemote {
			out[i] = h.remote
		}
	}
	return out
}

func (h *nextHop) answerRemote(r queue.Result) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.remote = r
}

func (h *nextHop) releaseHeld() { h.released.Do(func() { close(h.release) }) }

// fixture is a real queue in a temp dir, delivering with a nextHop, and
// the admin service over a real gRPC socket.
type fixture struct {
	q      *queue.Queue
	dir    string
	hop    *nextHop
	client mtav1.QueueAdminClient
}

func start(t *testing.T) *fixture {
	t.Helper()
	f := &fixture{dir: filepath.Join(testlib.TempDir(t), "queue"), hop: newNextHop()}
	q, err := queue.Open(queue.Options{
		Dir: f.dir, RetryMin: time.Hour, RetryMax: 2 * time.Hour, Workers: 2,
		DrainTimeout: 5 * time.Second, Hostname: "mx.example.org",
		// Run may miss a flush's wake-up when it comes as a worker hands
		// the message back; the next scan catches it. Short here so that
		// waits stay short, long enough never to retry a 1h deferral.
		ScanInterval: time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	f.q = q
	ctx, cancel := context.WithCancel(context.Background())
	ran := make(chan error, 1)
	go func() { ran <- q.Run(ctx, f.hop) }()

	srv, _ := grpcx.NewServer(grpcx.ServerOptions{})
	admin := New(q, nil)
	admin.busyWait = time.Second // the wait for a held message, shortened
	mtav1.RegisterQueueAdminServer(srv, admin)
	lis, err := net.Listen("tcp", testlib.FreeAddr(t))
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- grpcx.Serve(ctx, srv, lis, 5*time.Second) }()
	conn, err := grpcx.Dial(lis.Addr().String(), nil)
	if err != nil {
		t.Fatal(err)
	}
	f.client = mtav1.NewQueueAdminClient(conn)
	t.Cleanup(func() {
		conn.Close()
		f.hop.releaseHeld()
		cancel()
		for _, c := range []chan error{ran, served} {
			if err := <-c; err != nil {
				t.Errorf("stop: %v", err)
			}
		}
	})
	return f
}

func callCtx(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// enqueue queues a message from sender to a local and a remote recipient.
func (f *fixture) enqueue(t *testing.T, sender string) string {
	t.Helper()
	body := "From: <" + sender + ">\r\nSubject: test\r\n\r\nhello\r\n"
	id, err := f.q.Enqueue(callCtx(t), queue.Envelope{
		Sender: sender,
		Recipients: []queue.Recipient{
			{Address: "alice@example.org", Route: queue.RouteLocal},
			{Address: "bob@remote.example", Orig: "team@example.org", Route: queue.RouteRemote},
		},
		AuthUser: "carol@example.org",
	}, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	return id
}

func (f *fixture) list(t *testing.T) []*mtav1.QueuedMessage {
	t.Helper()
	res, err := f.client.ListQueue(callCtx(t), &mtav1.ListQueueRequest{})
	if err != nil {
		t.Fatalf("ListQueue = %v", err)
	}
	return res.GetMessages()
}

// find returns the listed message id, nil when it is not queued.
func (f *fixture) find(t *testing.T, id string) *mtav1.QueuedMessage {
	t.Helper()
	for _, m := range f.list(t) {
		if m.GetId() == id {
			return m
		}
	}
	return nil
}

// waitFor polls the queue listing until cond holds for message id (m is
// nil when the message is gone).
func (f *fixture) waitFor(t *testing.T, what, id string, cond func(m *mtav1.QueuedMessage) bool) *mtav1.QueuedMessage {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		m := f.find(t, id)
		if cond(m) {
			return m
		}
		if time.Now().After(deadline) {
			t.Fatalf("message %s: not %s after 20s; last listed as %v", id, what, m)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// remoteAttempts is the attempt count of the remote recipient, -1 when
// the message is not queued.
func remoteAttempts(m *mtav1.QueuedMessage) int32 {
	if m == nil || len(m.GetRecipients()) != 2 {
		return -1
	}
	return m.GetRecipients()[1].GetAttempts()
}

func wantCode(t *testing.T, call string, err error, want codes.Code, msgHas string) {
	t.Helper()
	if status.Code(err) != want || !strings.Contains(status.Convert(err).Message(), msgHas) {
		t.Errorf("%s = %v, want %v containing %q", call, err, want, msgHas)
	}
}

// TestListFlushDelete: a message deferred by a 451 is listed with each
// recipient's state and last reply; flushing it retries it at once,
// flushing everything after the remote end relents delivers it, and a
// deleted message is gone without a delivery.
func TestListFlushDelete(t *testing.T) {
	f := start(t)
	if got := f.list(t); len(got) != 0 {
		t.Fatalf("ListQueue on an empty queue = %v", got)
	}
	before := time.Now().Unix()
	id := f.enqueue(t, "sender@example.org")
	m := f.waitFor(t, "deferred", id, func(m *mtav1.QueuedMessage) bool { return remoteAttempts(m) == 1 })

	if m.GetSender() != "sender@example.org" || m.GetAuthUser() != "carol@example.org" {
		t.Errorf("sender, auth user = %q, %q", m.GetSender(), m.GetAuthUser())
	}
	if r := m.GetReceivedUnix(); r < before-1 || r > time.Now().Unix() {
		t.Errorf("received_unix = %d, want about %d", r, before)
	}
	if want := int64(len("From: <sender@example.org>\r\nSubject: test\r\n\r\nhello\r\n")); m.GetSizeBytes() != want {
		t.Errorf("size_bytes = %d, want %d", m.GetSizeBytes(), want)
	}
	// RetryMin is an hour, ±10% jitter.
	if next := m.GetNextAttemptUnix() - time.Now().Unix(); next < 50*60 || next > 70*60 {
		t.Errorf("next attempt in %ds, want about an hour", next)
	}
	local, remote := m.GetRecipients()[0], m.GetRecipients()[1]
	if local.GetAddress() != "alice@example.org" || local.GetRoute() != mtav1.Route_ROUTE_LOCAL ||
		local.GetStatus() != mtav1.RecipientStatus_RECIPIENT_STATUS_DELIVERED || local.GetAttempts() != 1 ||
		local.GetLastReply().GetCode() != 250 || local.GetOrig() != "" {
		t.Errorf("local recipient = %v", local)
	}
	wantReply := &mtav1.Reply{Code: 451, Enhanced: "4.3.0", Text: "greylisted, try again later", RemoteMta: "mx.remote.example"}
	if remote.GetAddress() != "bob@remote.example" || remote.GetOrig() != "team@example.org" ||
		remote.GetRoute() != mtav1.Route_ROUTE_REMOTE || remote.GetStatus() != mtav1.RecipientStatus_RECIPIENT_STATUS_DEFERRED ||
		!proto.Equal(remote.GetLastReply(), wantReply) {
		t.Errorf("remote recipient = %v, want deferred with %v", remote, wantReply)
	}

	// Flushing the message tries it again now: a second 451.
	if _, err := f.client.FlushQueue(callCtx(t), &mtav1.FlushQueueRequest{Id: id}); err != nil {
		t.Fatalf("FlushQueue(%s) = %v", id, err)
	}
	f.waitFor(t, "retried", id, func(m *mtav1.QueuedMessage) bool { return remoteAttempts(m) == 2 })

	// The remote end relents; flushing everything delivers it.
	f.hop.answerRemote(queue.Result{Code: 250, Enhanced: "2.0.0", Text: "queued as 42", RemoteMTA: "mx.remote.example"})
	if _, err := f.client.FlushQueue(callCtx(t), &mtav1.FlushQueueRequest{}); err != nil {
		t.Fatalf("FlushQueue(all) = %v", err)
	}
	f.waitFor(t, "delivered", id, func(m *mtav1.QueuedMessage) bool { return m == nil })

	// A deleted message is gone and never delivered.
	f.hop.answerRemote(queue.Result{Code: 421, Text: "connection refused"})
	id2 := f.enqueue(t, "other@example.org")
	f.waitFor(t, "deferred", id2, func(m *mtav1.QueuedMessage) bool { return remoteAttempts(m) == 1 })
	res, err := f.client.DeleteMessage(callCtx(t), &mtav1.DeleteMessageRequest{Id: id2})
	if err != nil {
		t.Fatalf("DeleteMessage(%s) = %v", id2, err)
	}
	if d := res.GetMessage(); d.GetId() != id2 || d.GetSender() != "other@example.org" || len(d.GetRecipients()) != 2 {
		t.Errorf("DeleteMessage(%s) returned %v", id2, d)
	}
	if got := f.list(t); len(got) != 0 {
		t.Errorf("ListQueue after delete = %v, want empty", got)
	}
	f.hop.answerRemote(queue.Result{Code: 250, Text: "ok"})
	if _, err := f.client.FlushQueue(callCtx(t), &mtav1.FlushQueueRequest{}); err != nil {
		t.Fatalf("FlushQueue(all) = %v", err)
	}
	f.hop.mu.Lock()
	calls := f.hop.calls[id2]
	f.hop.mu.Unlock()
	if calls != 1 {
		t.Errorf("deleted message was tried %d times, want only the 1 before the delete", calls)
	}
}

// TestErrors: each failure has its own code, never a blanket INTERNAL.
func TestErrors(t *testing.T) {
	f := start(t)
	ctx := callCtx(t)
	missing := "19ac6f0e2b1-0000000000000000"

	_, err := f.client.DeleteMessage(ctx, &mtav1.DeleteMessageRequest{})
	wantCode(t, "DeleteMessage(\"\")", err, codes.InvalidArgument, "id is required")
	_, err = f.client.DeleteMessage(ctx, &mtav1.DeleteMessageRequest{Id: missing})
	wantCode(t, "DeleteMessage(missing)", err, codes.NotFound, missing)
	_, err = f.client.DeleteMessage(ctx, &mtav1.DeleteMessageRequest{Id: "../../etc/passwd"})
	wantCode(t, "DeleteMessage(path)", err, codes.NotFound, "no queued message")
	_, err = f.client.FlushQueue(ctx, &mtav1.FlushQueueRequest{Id: missing})
	wantCode(t, "FlushQueue(missing)", err, codes.NotFound, missing)

	// A message being delivered cannot be deleted; flushing it is
	// remembered and tries it again as soon as this attempt ends.
	id := f.enqueue(t, holdSender)
	select {
	case got := <-f.hop.started:
		if got != id {
			t.Fatalf("held %s, want %s", got, id)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("the message was not picked up for delivery")
	}
	_, err = f.client.DeleteMessage(ctx, &mtav1.DeleteMessageRequest{Id: id})
	wantCode(t, "DeleteMessage(busy)", err, codes.FailedPrecondition, "being delivered")
	if _, err := f.client.FlushQueue(ctx, &mtav1.FlushQueueRequest{Id: id}); err != nil {
		t.Errorf("FlushQueue(busy) = %v, want nil", err)
	}
	f.hop.releaseHeld()
	f.waitFor(t, "deferred twice (the attempt, then the flush)", id, func(m *mtav1.QueuedMessage) bool { return remoteAttempts(m) == 2 })
	if _, err := f.client.DeleteMessage(ctx, &mtav1.DeleteMessageRequest{Id: id}); err != nil {
		t.Errorf("DeleteMessage after delivery ended = %v", err)
	}

	// The spool volume gone: UNAVAILABLE, until it is back.
	away := f.dir + ".away"
	if err := os.Rename(f.dir, away); err != nil {
		t.Fatal(err)
	}
	_, err = f.client.ListQueue(ctx, &mtav1.ListQueueRequest{})
	wantCode(t, "ListQueue(no spool)", err, codes.Unavailable, "cannot be read")
	_, err = f.client.FlushQueue(ctx, &mtav1.FlushQueueRequest{})
	wantCode(t, "FlushQueue(no spool)", err, codes.Unavailable, "cannot be read")
	_, err = f.client.DeleteMessage(ctx, &mtav1.DeleteMessageRequest{Id: missing})
	wantCode(t, "DeleteMessage(no spool)", err, codes.Unavailable, "cannot be read")
	if err := os.Rename(away, f.dir); err != nil {
		t.Fatal(err)
	}
	if got := f.list(t); len(got) != 0 {
		t.Errorf("ListQueue after the spool came back = %v", got)
	}
}

// TestMessageProto: every state and route has its own enum value, and an
// unknown one maps to UNSPECIFIED rather than a wrong state.
func TestMessageProto(t *testing.T) {
	for _, tt := range []struct {
		in   queue.Status
		want mtav1.RecipientStatus
	}{
		{queue.Pending, mtav1.RecipientStatus_RECIPIENT_STATUS_PENDING},
		{queue.Deferred, mtav1.RecipientStatus_RECIPIENT_STATUS_DEFERRED},
		{queue.Delivered, mtav1.RecipientStatus_RECIPIENT_STATUS_DELIVERED},
		{queue.Failed, mtav1.RecipientStatus_RECIPIENT_STATUS_FAILED},
		{queue.Status(42), mtav1.RecipientStatus_RECIPIENT_STATUS_UNSPECIFIED},
	} {
		if got := statusProto(tt.in); got != tt.want {
			t.Errorf("statusProto(%v) = %v, want %v", tt.in, got, tt.want)
		}
	}
	for _, tt := range []struct {
		in   queue.Route
		want mtav1.Route
	}{
		{queue.RouteLocal, mtav1.Route_ROUTE_LOCAL},
		{queue.RouteRemote, mtav1.Route_ROUTE_REMOTE},
		{queue.Route(7), mtav1.Route_ROUTE_UNSPECIFIED},
	} {
		if got := routeProto(tt.in); got != tt.want {
			t.Errorf("routeProto(%v) = %v, want %v", tt.in, got, tt.want)
		}
	}
	// A pending recipient has no last reply, and a message due now no
	// next attempt.
	m := messageProto(queue.Message{Envelope: queue.Envelope{ID: "x", Recipients: []queue.Recipient{{Address: "a@b.example", Orig: "a@b.example"}}}})
	if r := m.GetRecipients()[0]; r.GetLastReply() != nil || r.GetOrig() != "" || m.GetNextAttemptUnix() != 0 {
		t.Errorf("messageProto(pending) = %v", m)
	}
}
