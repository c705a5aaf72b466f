package queue

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/postcove/postcove/services/internal/testlib"
)

// testOptions are options for a fast queue in dir: retries after
// milliseconds, frequent scans.
func testOptions(dir string) Options {
	return Options{
		Dir:          dir,
		RetryMin:     20 * time.Millisecond,
		RetryMax:     80 * time.Millisecond,
		ScanInterval: 50 * time.Millisecond,
		Workers:      4,
		Hostname:     "mx.test.example",
	}
}

func openQueue(t *testing.T, opts Options) *Queue {
	t.Helper()
	q, err := Open(opts)
	if err != nil {
		t.Fatalf("Open(%+v) = %v", opts, err)
	}
	return q
}

func testEnvelope(rcpts ...string) Envelope {
	env := Envelope{Sender: "alice@example.org"}
	for _, r := range rcpts {
		env.Recipients = append(env.Recipients, Recipient{Address: r, Orig: r, Route: RouteRemote})
	}
	return env
}

func enqueue(t *testing.T, q *Queue, env Envelope, body string) string {
	t.Helper()
	id, err := q.Enqueue(context.Background(), env, strings.NewReader(body))
	if err != nil {
		t.Fatalf("Enqueue = %v", err)
	}
	return id
}

// spoolFiles lists the names in the spool directory (not corrupt/).
func spoolFiles(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		if !e.IsDir() {
			names = append(names, e.Name())
		}
	}
	return names
}

func TestCRLFWriter(t *testing.T) {
	tests := []struct{ in, want string }{
		{"", ""},
		{"a\r\nb\r\n", "a\r\nb\r\n"},
		{"a\nb\n", "a\r\nb\r\n"},
		{"a\rb\r", "a\r\nb\r\n"},
		{"a\r\r\nb", "a\r\n\r\nb\r\n"},
		{"a\n\rb", "a\r\n\r\nb\r\n"},
		{"x\r\n.\nq\r.\r\n", "x\r\n.\r\nq\r\n.\r\n"}, // smuggling shapes made plain
		{"no end", "no end\r\n"},
		{"\r", "\r\n"},
		{"\r\r", "\r\n\r\n"},
	}
	for _, tt := range tests {
		// Whole, and one byte per Write: a CR split from its LF by a
		// write boundary must not become two line ends.
		for _, step := range []int{len(tt.in) + 1, 1} {
			var buf bytes.Buffer
			w := &crlfWriter{w: &buf}
			for i := 0; i < len(tt.in); i += step {
				if _, err := w.Write([]byte(tt.in[i:min(i+step, len(tt.in))])); err != nil {
					t.Fatal(err)
				}
			}
			if err := w.Close(); err != nil {
				t.Fatal(err)
			}
			if got := buf.String(); got != tt.want {
				t.Errorf("crlfWriter(%q, step %d) = %q, want %q", tt.in, step, got, tt.want)
			}
		}
	}
}

func TestEnqueueList(t *testing.T) {
	dir := testlib.TempDir(t)
	q := openQueue(t, testOptions(dir))
	env := testEnvelope("bob@remote.example", "carol@remote.example", "BOB@remote.example")
	env.Recipients[0].Status = Delivered // ignored: Enqueue sets the state
	env.AuthUser, env.Ret, env.EnvID, env.Junk = "alice@example.org", "FULL", "env-1", true
	id := enqueue(t, q, env, "Subject: hi\n\nbare\rlines\n")

	msgs, err := q.List(context.Background())
	if err != nil {
		t.Fatalf("List = %v", err)
	}
	if len(msgs) != 1 {
		t.Fatalf("List = %d messages, want 1", len(msgs))
	}
	m := msgs[0]
	if m.ID != id || m.Sender != env.Sender || m.AuthUser != env.AuthUser || m.Ret != "FULL" || m.EnvID != "env-1" || !m.Junk {
		t.Errorf("List()[0] = %+v, want the envelope enqueued as %s", m.Envelope, id)
	}
	var addrs []string
	for _, r := range m.Recipients {
		addrs = append(addrs, r.Address)
		if r.Status != Pending || r.Attempts != 0 {
			t.Errorf("recipient %s: status %v, %d attempts; want pending, 0", r.Address, r.Status, r.Attempts)
		}
	}
	if want := []string{"bob@remote.example", "carol@remote.example"}; !slices.Equal(addrs, want) {
		t.Errorf("recipients = %q, want %q (duplicates once)", addrs, want)
	}
	body := readBody(t, dir, id)
	if want := "Subject: hi\r\n\r\nbare\r\nlines\r\n"; string(body) != want {
		t.Errorf("body = %q, want %q", body, want)
	}
	if m.Size != int64(len(body)) || !m.Next.IsZero() {
		t.Errorf("Size, Next = %d, %v; want %d, due now", m.Size, m.Next, len(body))
	}
	if got := spoolFiles(t, dir); !slices.Equal(got, []string{id + msgExt}) {
		t.Errorf("spool = %q, want the one message file", got)
	}
}

func TestEnqueueRefuses(t *testing.T) {
	dir := testlib.TempDir(t)
	q := openQueue(t, testOptions(dir))
	for name, env := range map[string]Envelope{
		"no recipients": {Sender: "a@example.org"},
		"CRLF in rcpt":  testEnvelope("bob@example.org\r\nRCPT TO:<x@evil.example>"),
		"NUL in sender": {Sender: "a\x00@example.org", Recipients: []Recipient{{Address: "b@example.org"}}},
		"bad route":     {Recipients: []Recipient{{Address: "b@example.org", Route: 7}}},
		"bad RET":       {Ret: "ALL", Recipients: []Recipient{{Address: "b@example.org"}}},
		"empty rcpt":    testEnvelope(""),
		"LF in ENVID":   {EnvID: "a\nb", Recipients: []Recipient{{Address: "b@example.org"}}},
		"LF in NOTIFY":  {Recipients: []Recipient{{Address: "b@example.org", Notify: "FAILURE\n"}}},
		"huge address":  testEnvelope(strings.Repeat("a", 2000) + "@example.org"),
	} {
		if id, err := q.Enqueue(context.Background(), env, strings.NewReader("x\r\n")); err == nil {
			t.Errorf("Enqueue(%s) = %s, nil; want an error", name, id)
		}
	}
	if got := spoolFiles(t, dir); len(got) != 0 {
		t.Errorf("spool after refused enqueues = %q, want empty", got)
	}
}

// failingWriter fails with err after limit bytes.
type failingWriter struct {
	w     io.Writer
	limit int
	err   error
}

func (f *failingWriter) Write(p []byte) (int, error) {
	if len(p) > f.limit {
		n, _ := f.w.Write(p[:f.limit])
		f.limit = 0
		return n, f.err
	}
	f.limit -= len(p)
	return f.w.Write(p)
}

func TestEnqueueDiskFull(t *testing.T) {
	for _, tt := range []struct {
		err    error
		wantNS bool
	}{{syscall.ENOSPC, true}, {syscall.EDQUOT, true}, {syscall.EIO, false}} {
		dir := testlib.TempDir(t)
		q := openQueue(t, testOptions(dir))
		q.wrapBody = func(w io.Writer) io.Writer { return &failingWriter{w: w, limit: 100 << 10, err: tt.err} }
		_, err := q.Enqueue(context.Background(), testEnvelope("b@example.org"), strings.NewReader(strings.Repeat("line\r\n", 100<<10)))
		if err == nil || errors.Is(err, ErrNoSpace) != tt.wantNS {
			t.Errorf("Enqueue with writes failing %v = %v; want an error, ErrNoSpace %v", tt.err, err, tt.wantNS)
		}
		if got := spoolFiles(t, dir); len(got) != 0 {
			t.Errorf("spool after %v = %q, want nothing partial", tt.err, got)
		}
	}
}

func TestEnqueueCancelled(t *testing.T) {
	dir := testlib.TempDir(t)
	q := openQueue(t, testOptions(dir))
	ctx, cancel := context.WithCancel(context.Background())
	pr, pw := io.Pipe()
	go func() {
		pw.Write([]byte("Subject: half\r\n"))
		cancel()
		pw.Write([]byte("more\r\n"))
		pw.Close()
	}()
	if _, err := q.Enqueue(ctx, testEnvelope("b@example.org"), pr); err == nil {
		t.Error("Enqueue with a cancelled context = nil, want an error")
	}
	if got := spoolFiles(t, dir); len(got) != 0 {
		t.Errorf("spool = %q, want empty", got)
	}
}

// TestLeftoversRemoved: what an Enqueue killed midway leaves (a body
// without an envelope, temporary files) is removed by Open, never
// delivered; a message being enqueued right now (its lock held) is left
// alone.
func TestLeftoversRemoved(t *testing.T) {
	dir := testlib.TempDir(t)
	write := func(name, data string) {
		t.Helper()
		if err := os.WriteFile(filepath.Join(dir, name), []byte(data), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	// A crash between the body's rename and the envelope's.
	write("0000000000001-aaaaaaaaaaaaaaaa.body", "half a message")
	write("0000000000001-aaaaaaaaaaaaaaaa.lock", "")
	// A crash while writing the body.
	write("0000000000002-bbbbbbbbbbbbbbbb.body.tmp", "half")
	write("0000000000002-bbbbbbbbbbbbbbbb.lock", "")
	// An Enqueue in progress in another process.
	live, err := createLock(dir, "0000000000003-cccccccccccccccc")
	if err != nil {
		t.Fatal(err)
	}
	defer live.release()
	write("0000000000003-cccccccccccccccc.body.tmp", "being written")
	// A stray lock file, just created: left for now.
	write("0000000000004-dddddddddddddddd.lock", "")
	// Format 2: a crash while writing the message file; one between the
	// removal of a finished message file and its state file.
	write("0000000000005-eeeeeeeeeeeeeeee.msg.tmp", "half")
	write("0000000000006-ffffffffffffffff.state", "{}")
	// A format-2 Enqueue in progress in another process.
	liveMsg, err := createLocked(filepath.Join(dir, "0000000000007-aaaaaaaaaaaaaaaa.msg.tmp"))
	if err != nil {
		t.Fatal(err)
	}
	defer liveMsg.Close()

	q := openQueue(t, testOptions(dir))
	got := spoolFiles(t, dir)
	want := []string{"0000000000003-cccccccccccccccc.body.tmp", "0000000000003-cccccccccccccccc.lock", "0000000000004-dddddddddddddddd.lock", "0000000000007-aaaaaaaaaaaaaaaa.msg.tmp"}
	if !slices.Equal(got, want) {
		t.Errorf("spool after Open = %q, want %q", got, want)
	}
	if msgs, err := q.List(context.Background()); err != nil || len(msgs) != 0 {
		t.Errorf("List = %d messages, %v; want none", len(msgs), err)
	}
}

// TestCorruptEnvelope: a message that cannot be used — a format-1
// envelope that does not parse or has no body, a format-2 message file
// whose CRC does not match, or whose state file does not parse — is moved
// to corrupt/ and never delivered.
func TestCorruptEnvelope(t *testing.T) {
	dir := testlib.TempDir(t)
	q := openQueue(t, testOptions(dir))
	id := writeV1(t, dir, testEnvelope("b@example.org"), "x\r\n")
	if err := os.WriteFile(filepath.Join(dir, id+envExt), []byte(`{"version":1,"id":"`), 0o600); err != nil {
		t.Fatal(err)
	}
	id2 := writeV1(t, dir, testEnvelope("b@example.org"), "y\r\n")
	if err := os.Remove(filepath.Join(dir, id2+bodyExt)); err != nil {
		t.Fatal(err)
	}
	id3 := enqueue(t, q, testEnvelope("b@example.org"), "damaged\r\n")
	f, err := os.OpenFile(filepath.Join(dir, id3+msgExt), os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt([]byte("D"), 0); err != nil {
		t.Fatal(err)
	}
	f.Close()
	id4 := enqueue(t, q, testEnvelope("b@example.org"), "bad state\r\n")
	if err := os.WriteFile(filepath.Join(dir, id4+stateExt), []byte(`{"version":1,`), 0o600); err != nil {
		t.Fatal(err)
	}
	d := &recorder{}
	runQueue(t, q, d)
	waitFor(t, "the spool to empty", func() bool { return len(spoolFiles(t, dir)) == 0 })
	if _, err := q.scan(); err != nil { // scanning again leaves corrupt/ alone
		t.Fatal(err)
	}
	if n := d.count(); n != 0 {
		t.Errorf("%d deliveries, want none", n)
	}
	for _, name := range []string{id + envExt, id + bodyExt, id2 + envExt, id3 + msgExt, id4 + msgExt, id4 + stateExt} {
		if _, err := os.Stat(filepath.Join(dir, "corrupt", name)); err != nil {
			t.Errorf("corrupt/%s: %v", name, err)
		}
	}
}

// TestFormat1Delivered: a spool written by the two-file format of earlier
// versions (ID.env, ID.body, ID.lock) is listed, delivered and emptied
// after an upgrade, and its deferred state is kept in place.
func TestFormat1Delivered(t *testing.T) {
	dir := testlib.TempDir(t)
	id := writeV1(t, dir, testEnvelope("b@example.org", "later@example.org"), "Subject: old\r\n\r\nkept\r\n")
	q := openQueue(t, testOptions(dir))
	msgs, err := q.List(context.Background())
	if err != nil || len(msgs) != 1 || msgs[0].ID != id || msgs[0].Size != int64(len("Subject: old\r\n\r\nkept\r\n")) {
		t.Fatalf("List = %+v, %v; want %s", msgs, err, id)
	}
	// later@ is deferred twice: its state must be kept between the
	// attempts (in ID.env, as format 1 does), so that b@ gets it once.
	d := &recorder{answer: func(env Envelope, r Recipient, attempt int) Result {
		if r.Address == "later@example.org" && attempt < 3 {
			return Result{Code: 451, Text: "later"}
		}
		return Result{Code: 250, Text: "ok"}
	}}
	runQueue(t, q, d)
	waitFor(t, "the spool to empty", func() bool { return len(spoolFiles(t, dir)) == 0 })
	calls := d.snapshot()
	if len(calls) != 3 || calls[0].env.ID != id || calls[0].body != "Subject: old\r\n\r\nkept\r\n" ||
		!slices.Equal(calls[0].rcpts, []string{"b@example.org", "later@example.org"}) || !slices.Equal(calls[2].rcpts, []string{"later@example.org"}) {
		t.Errorf("deliveries = %+v, want both, then later@example.org twice", calls)
	}
}

// writeV1 writes a message in format 1, as earlier versions queued it, and
// returns its ID.
func writeV1(t *testing.T, dir string, env Envelope, body string) string {
	t.Helper()
	env.ID = newID(time.Now())
	env.ReceivedAt = time.Now().UTC()
	env.Recipients = cleanRecipients(env.Recipients)
	data, err := marshalEnvelope(env)
	if err != nil {
		t.Fatal(err)
	}
	for ext, content := range map[string]string{bodyExt: body, lockExt: "", envExt: string(data)} {
		if err := os.WriteFile(filepath.Join(dir, env.ID+ext), []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return env.ID
}

// readBody returns the body of format-2 message id.
func readBody(t *testing.T, dir, id string) []byte {
	t.Helper()
	f, err := os.Open(filepath.Join(dir, id+msgExt))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	_, n, err := readMsgFile(f, nil)
	if err != nil {
		t.Fatal(err)
	}
	b := make([]byte, n)
	if _, err := f.ReadAt(b, 0); err != nil {
		t.Fatal(err)
	}
	return b
}

func TestBackoff(t *testing.T) {
	q := openQueue(t, Options{Dir: testlib.TempDir(t), RetryMin: 5 * time.Minute, RetryMax: time.Hour})
	q.opts.jitter = func(d time.Duration) time.Duration { return d }
	want := []time.Duration{5 * time.Minute, 10 * time.Minute, 20 * time.Minute, 40 * time.Minute, time.Hour, time.Hour}
	for i, w := range want {
		if got := q.backoff(i + 1); got != w {
			t.Errorf("backoff(%d) = %v, want %v", i+1, got, w)
		}
	}
	for range 100 {
		if d := jitter(time.Hour); d < 54*time.Minute || d > 66*time.Minute {
			t.Fatalf("jitter(1h) = %v, want within 10%%", d)
		}
	}
}

func TestFlushDelete(t *testing.T) {
	dir := testlib.TempDir(t)
	q := openQueue(t, testOptions(dir))
	ctx := context.Background()
	id := enqueue(t, q, testEnvelope("b@example.org"), "x\r\n")
	// Defer it far into the future, as after failed attempts.
	l, err := tryLock(dir, id)
	if err != nil {
		t.Fatal(err)
	}
	m, err := q.open(id, l)
	if err != nil {
		t.Fatal(err)
	}
	env := m.env
	env.Recipients[0].Status, env.Recipients[0].Retry = Deferred, time.Now().Add(time.Hour)
	if err := q.writeEnvelope(l, env); err != nil {
		t.Fatal(err)
	}
	if err := q.Flush(ctx, id); err != nil {
		t.Errorf("Flush of a locked message = %v, want nil (it is being tried now)", err)
	}
	if err := q.Delete(ctx, id); !errors.Is(err, ErrBusy) {
		t.Errorf("Delete of a locked message = %v, want ErrBusy", err)
	}
	l.release()
	msgs, _ := q.List(ctx)
	if len(msgs) != 1 || msgs[0].Next.IsZero() {
		t.Fatalf("List = %+v, want one message due in an hour", msgs)
	}
	if err := q.Flush(ctx, ""); err != nil {
		t.Fatalf("Flush(all) = %v", err)
	}
	if msgs, _ := q.List(ctx); len(msgs) != 1 || !msgs[0].Next.IsZero() {
		t.Errorf("after Flush, List = %+v, want the message due now", msgs)
	}
	if err := q.Flush(ctx, "0000000000000-0000000000000000"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Flush(unknown) = %v, want ErrNotFound", err)
	}
	if err := q.Delete(ctx, "../../etc/passwd"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Delete(path) = %v, want ErrNotFound", err)
	}
	if err := q.Delete(ctx, id); err != nil {
		t.Fatalf("Delete = %v", err)
	}
	if got := spoolFiles(t, dir); len(got) != 0 {
		t.Errorf("spool after Delete = %q, want empty", got)
	}
	if err := q.Delete(ctx, id); !errors.Is(err, ErrNotFound) {
		t.Errorf("second Delete = %v, want ErrNotFound", err)
	}
}

// recorder is a Deliverer answering from a script and recording calls.
type recorder struct {
	mu      sync.Mutex
	answer  func(env Envelope, r Recipient, attempt int) Result // nil: 250
	calls   []call
	tries   map[string]int // by message ID and address
	delay   time.Duration
	active  map[string]bool // message IDs being delivered now
	overlap bool            // one message was delivered by two workers at once
}

type call struct {
	env   Envelope
	rcpts []string
	body  string
}

func (d *recorder) Deliver(ctx context.Context, env Envelope, rcpts []Recipient, body Body) []Result {
	d.mu.Lock()
	if d.active == nil {
		d.active, d.tries = map[string]bool{}, map[string]int{}
	}
	if d.active[env.ID] {
		d.overlap = true
	}
	d.active[env.ID] = true
	d.mu.Unlock()
	b, _ := io.ReadAll(io.NewSectionReader(body, 0, body.Size()))
	time.Sleep(d.delay) // a slow next hop, widening any race
	d.mu.Lock()
	defer d.mu.Unlock()
	delete(d.active, env.ID)
	c := call{env: env, body: string(b)}
	out := make([]Result, len(rcpts))
	for i, r := range rcpts {
		c.rcpts = append(c.rcpts, r.Address)
		key := env.ID + " " + r.Address
		d.tries[key]++
		out[i] = Result{Code: 250, Enhanced: "2.0.0", Text: "ok"}
		if d.answer != nil {
			out[i] = d.answer(env, r, d.tries[key])
		}
	}
	d.calls = append(d.calls, c)
	return out
}

func (d *recorder) count() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return len(d.calls)
}

func (d *recorder) snapshot() []call {
	d.mu.Lock()
	defer d.mu.Unlock()
	return slices.Clone(d.calls)
}

// runQueue runs q with d until the test ends.
func runQueue(t *testing.T, q *Queue, d Deliverer) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- q.Run(ctx, d) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run = %v", err)
		}
	})
}

// waitFor polls cond for up to 10 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestRunDelivers: a message is delivered as soon as it is queued, not at
// the next scan of the spool.
func TestRunDelivers(t *testing.T) {
	dir := testlib.TempDir(t)
	opts := testOptions(dir)
	opts.ScanInterval = time.Hour
	reg := prometheus.NewRegistry()
	opts.Registerer = reg
	q := openQueue(t, opts)
	d := &recorder{}
	runQueue(t, q, d)
	id := enqueue(t, q, testEnvelope("b@example.org", "c@example.org"), "Subject: x\r\n\r\nhi\r\n")
	waitFor(t, "the spool to empty", func() bool { return len(spoolFiles(t, dir)) == 0 })
	values := map[string]float64{}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			values[mf.GetName()] += m.GetCounter().GetValue() + m.GetGauge().GetValue()
		}
	}
	if values["postcove_queue_enqueued_total"] != 1 || values["postcove_queue_recipient_results_total"] != 2 {
		t.Errorf("metrics = %v, want 1 enqueued, 2 recipient results", values)
	}
	calls := d.snapshot()
	if len(calls) != 1 || calls[0].env.ID != id || !slices.Equal(calls[0].rcpts, []string{"b@example.org", "c@example.org"}) || calls[0].body != "Subject: x\r\n\r\nhi\r\n" {
		t.Errorf("deliveries = %+v, want one of %s to both recipients", calls, id)
	}
}

// TestRetryThenDeliver: a recipient answered 451 is tried again after the
// backoff and only it; the one answered 250 is not delivered again.
func TestRetryThenDeliver(t *testing.T) {
	dir := testlib.TempDir(t)
	q := openQueue(t, testOptions(dir))
	d := &recorder{answer: func(env Envelope, r Recipient, attempt int) Result {
		if r.Address == "later@example.org" && attempt < 3 {
			return Result{Code: 451, Enhanced: "4.7.1", Text: "greylisted", RemoteMTA: "mx.example.org"}
		}
		return Result{Code: 250, Text: "ok"}
	}}
	runQueue(t, q, d)
	enqueue(t, q, testEnvelope("now@example.org", "later@example.org"), "x\r\n")
	waitFor(t, "the spool to empty", func() bool { return len(spoolFiles(t, dir)) == 0 })
	var got [][]string
	for _, c := range d.snapshot() {
		got = append(got, c.rcpts)
	}
	want := [][]string{{"now@example.org", "later@example.org"}, {"later@example.org"}, {"later@example.org"}}
	if !slices.EqualFunc(got, want, slices.Equal) {
		t.Errorf("deliveries = %q, want %q", got, want)
	}
}

// TestStatePersisted: a restarted queue resumes a deferred message and
// does not deliver again to the recipient that got 250.
func TestStatePersisted(t *testing.T) {
	dir := testlib.TempDir(t)
	opts := testOptions(dir)
	opts.RetryMin, opts.RetryMax = time.Hour, time.Hour
	q := openQueue(t, opts)
	d := &recorder{answer: func(env Envelope, r Recipient, attempt int) Result {
		if r.Address == "later@example.org" {
			return Result{Code: 421, Text: "try later"}
		}
		return Result{Code: 250}
	}}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- q.Run(ctx, d) }()
	id := enqueue(t, q, testEnvelope("now@example.org", "later@example.org"), "x\r\n")
	waitFor(t, "the first attempt", func() bool {
		msgs, _ := q.List(ctx)
		return len(msgs) == 1 && msgs[0].Recipients[1].Status == Deferred
	})
	cancel()
	<-done

	msgs, err := openQueue(t, opts).List(context.Background())
	if err != nil || len(msgs) != 1 {
		t.Fatalf("List after restart = %d messages, %v", len(msgs), err)
	}
	r := msgs[0].Recipients
	if r[0].Status != Delivered || r[1].Status != Deferred || r[1].Attempts != 1 || r[1].Last.Code != 421 || msgs[0].Next.Before(time.Now().Add(50*time.Minute)) {
		t.Errorf("state after restart = %+v, next %v; want delivered, deferred (421) for about an hour", r, msgs[0].Next)
	}

	q2 := openQueue(t, opts)
	d2 := &recorder{}
	runQueue(t, q2, d2)
	if err := q2.Flush(context.Background(), id); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the spool to empty", func() bool { return len(spoolFiles(t, dir)) == 0 })
	if calls := d2.snapshot(); len(calls) != 1 || !slices.Equal(calls[0].rcpts, []string{"later@example.org"}) {
		t.Errorf("deliveries after restart = %+v, want later@example.org only", calls)
	}
}

// TestTwoQueuesShareSpool: two queues on one directory (as two mta
// processes on one volume) deliver every message exactly once, never one
// message by both at the same time.
func TestTwoQueuesShareSpool(t *testing.T) {
	dir := testlib.TempDir(t)
	opts := testOptions(dir)
	opts.ScanInterval = 5 * time.Millisecond // both scan all the time
	q1, q2 := openQueue(t, opts), openQueue(t, opts)
	d := &recorder{delay: 10 * time.Millisecond}
	const n = 40
	var ids []string
	for i := range n {
		q := []*Queue{q1, q2}[i%2]
		ids = append(ids, enqueue(t, q, testEnvelope("b@example.org"), fmt.Sprintf("message %d\r\n", i)))
	}
	runQueue(t, q1, d)
	runQueue(t, q2, d)
	waitFor(t, "the spool to empty", func() bool { return len(spoolFiles(t, dir)) == 0 })
	seen := map[string]int{}
	for _, c := range d.snapshot() {
		seen[c.env.ID]++
	}
	for _, id := range ids {
		if seen[id] != 1 {
			t.Errorf("message %s delivered %d times, want once", id, seen[id])
		}
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.overlap {
		t.Error("a message was delivered by both queues at once")
	}
}

func TestLifetimeExpires(t *testing.T) {
	dir := testlib.TempDir(t)
	opts := testOptions(dir)
	opts.Lifetime = 300 * time.Millisecond
	q := openQueue(t, opts)
	d := &recorder{answer: func(env Envelope, r Recipient, attempt int) Result {
		if env.Sender == "" {
			return Result{Code: 250} // the bounce
		}
		return Result{Code: 451, Enhanced: "4.4.1", Text: "connection refused", RemoteMTA: "mx.example.org"}
	}}
	runQueue(t, q, d)
	id := enqueue(t, q, testEnvelope("b@example.org"), "Subject: old\r\n\r\nx\r\n")
	waitFor(t, "the bounce", func() bool {
		for _, c := range d.snapshot() {
			if c.env.Sender == "" {
				return true
			}
		}
		return false
	})
	waitFor(t, "the spool to empty", func() bool { return len(spoolFiles(t, dir)) == 0 })
	var attempts int
	var bounce call
	for _, c := range d.snapshot() {
		if c.env.ID == id {
			attempts++
		} else {
			bounce = c
		}
	}
	if attempts < 2 {
		t.Errorf("%d attempts before expiry, want several", attempts)
	}
	if !slices.Equal(bounce.rcpts, []string{"alice@example.org"}) {
		t.Errorf("bounce recipients = %q, want the sender", bounce.rcpts)
	}
	for _, want := range []string{"Status: 4.4.7", "Final-Recipient: rfc822; b@example.org", "Diagnostic-Code: smtp; 451 4.4.1 connection refused", "Remote-MTA: dns; mx.example.org", "Subject: old"} {
		if !strings.Contains(bounce.body, want) {
			t.Errorf("bounce lacks %q:\n%s", want, bounce.body)
		}
	}
}

// TestBounce: a 5xx recipient is reported to the sender at once, with a
// DSN from the null sender routed by Resolve; other recipients go on. The
// DSN failing in turn is not bounced (no bounce loop), and NOTIFY=NEVER is
// honoured.
func TestBounce(t *testing.T) {
	dir := testlib.TempDir(t)
	opts := testOptions(dir)
	var resolved []string
	var mu sync.Mutex
	opts.Resolve = func(ctx context.Context, addr string) ([]Recipient, error) {
		mu.Lock()
		resolved = append(resolved, addr)
		mu.Unlock()
		return []Recipient{{Address: "alice@mail.example.org", Route: RouteLocal}}, nil
	}
	q := openQueue(t, opts)
	d := &recorder{answer: func(env Envelope, r Recipient, attempt int) Result {
		switch {
		case env.Sender == "":
			return Result{Code: 550, Text: "the bounce fails too"}
		case r.Address == "ok@example.org":
			return Result{Code: 250}
		}
		return Result{Code: 550, Enhanced: "5.1.1", Text: "no such user", RemoteMTA: "mx.example.org"}
	}}
	runQueue(t, q, d)
	env := testEnvelope("ok@example.org", "gone@example.org", "quiet@example.org")
	env.Recipients[2].Notify = "NEVER"
	env.Ret = "FULL"
	enqueue(t, q, env, "Subject: hello\r\n\r\nthe body\r\n")
	waitFor(t, "the spool to empty", func() bool { return len(spoolFiles(t, dir)) == 0 })
	calls := d.snapshot()
	if len(calls) != 2 {
		t.Fatalf("%d deliveries, want the message and one bounce: %+v", len(calls), calls)
	}
	b := calls[1]
	if b.env.Sender != "" || len(b.env.Recipients) != 1 || b.env.Recipients[0].Route != RouteLocal || b.rcpts[0] != "alice@mail.example.org" {
		t.Errorf("bounce envelope = %+v, want null sender to the resolved sender", b.env)
	}
	if !slices.Equal(resolved, []string{"alice@example.org"}) {
		t.Errorf("Resolve calls = %q, want the sender once", resolved)
	}
	for _, want := range []string{"Final-Recipient: rfc822; gone@example.org", "Status: 5.1.1", "Action: failed", "the body", "Content-Type: message/rfc822"} {
		if !strings.Contains(b.body, want) {
			t.Errorf("bounce lacks %q:\n%s", want, b.body)
		}
	}
	for _, not := range []string{"quiet@example.org", "ok@example.org"} {
		if strings.Contains(b.body, not) {
			t.Errorf("bounce mentions %s:\n%s", not, b.body)
		}
	}
}

// TestBounceRetried: when the bounce cannot be routed yet (auth down), the
// failed message stays queued until it can.
func TestBounceRetried(t *testing.T) {
	dir := testlib.TempDir(t)
	opts := testOptions(dir)
	var mu sync.Mutex
	authUp, tries := false, 0
	opts.Resolve = func(ctx context.Context, addr string) ([]Recipient, error) {
		mu.Lock()
		defer mu.Unlock()
		tries++
		if !authUp {
			return nil, errors.New("auth unavailable")
		}
		return []Recipient{{Address: addr, Route: RouteLocal}}, nil
	}
	q := openQueue(t, opts)
	d := &recorder{answer: func(env Envelope, r Recipient, attempt int) Result {
		if env.Sender == "" {
			return Result{Code: 250}
		}
		return Result{Code: 554, Text: "rejected"}
	}}
	runQueue(t, q, d)
	enqueue(t, q, testEnvelope("b@example.org"), "x\r\n")
	waitFor(t, "three tries to route the bounce", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return tries >= 3
	})
	if msgs, _ := q.List(context.Background()); len(msgs) != 1 {
		t.Fatalf("List = %+v, want the failed message still queued", msgs)
	}
	mu.Lock()
	authUp = true
	mu.Unlock()
	waitFor(t, "the spool to empty", func() bool { return len(spoolFiles(t, dir)) == 0 })
	if calls := d.snapshot(); len(calls) != 2 || calls[1].env.Sender != "" {
		t.Errorf("deliveries = %+v, want the message then its bounce", calls)
	}
}

// TestExpiredTriedOnce: a message older than the lifetime (the MTA was
// stopped for days) is still tried once: delivered if it can be, failed
// with 4.4.7 if the answer is temporary again.
func TestExpiredTriedOnce(t *testing.T) {
	dir := testlib.TempDir(t)
	q := openQueue(t, testOptions(dir)) // default 5-day lifetime
	d := &recorder{answer: func(env Envelope, r Recipient, attempt int) Result {
		if r.Address == "later@example.org" {
			return Result{Code: 451, Text: "still down"}
		}
		return Result{Code: 250}
	}}
	runQueue(t, q, d)
	env := testEnvelope("ok@example.org", "later@example.org")
	env.ReceivedAt = time.Now().Add(-6 * 24 * time.Hour)
	id := enqueue(t, q, env, "x\r\n")
	waitFor(t, "the spool to empty", func() bool { return len(spoolFiles(t, dir)) == 0 })
	calls := d.snapshot()
	if len(calls) != 2 || calls[0].env.ID != id || len(calls[0].rcpts) != 2 || calls[1].env.Sender != "" {
		t.Fatalf("deliveries = %+v, want one attempt for both, then the bounce", calls)
	}
	if b := calls[1].body; !strings.Contains(b, "Status: 4.4.7") || !strings.Contains(b, "later@example.org") || strings.Contains(b, "ok@example.org") {
		t.Errorf("bounce = %s, want 4.4.7 for later@ only", b)
	}
}

// TestFlushDuringAttempt: a flush that arrives while the message is being
// tried (locked by its worker) is not lost: once the attempt ends
// deferred, the message is tried again at once, not after the backoff.
func TestFlushDuringAttempt(t *testing.T) {
	dir := testlib.TempDir(t)
	opts := testOptions(dir)
	opts.RetryMin, opts.RetryMax, opts.ScanInterval = time.Hour, time.Hour, time.Hour
	q := openQueue(t, opts)
	d := &recorder{delay: 300 * time.Millisecond, answer: func(Envelope, Recipient, int) Result {
		return Result{Code: 451, Text: "greylisted"}
	}}
	runQueue(t, q, d)
	id := enqueue(t, q, testEnvelope("b@example.org"), "x\r\n")
	waitFor(t, "the first attempt to start", func() bool {
		d.mu.Lock()
		defer d.mu.Unlock()
		return d.active[id]
	})
	if err := q.Flush(context.Background(), id); err != nil {
		t.Fatalf("Flush during the attempt = %v", err)
	}
	waitFor(t, "a second attempt, brought forward by the flush", func() bool { return d.count() >= 2 })
}

// TestFlushWhileLockedElsewhere flushes a message that another mta process
// sharing the spool holds. That process writes its own next attempt (an
// hour away) when it lets go, so the flush must be applied after that,
// not dropped.
func TestFlushWhileLockedElsewhere(t *testing.T) {
	dir := testlib.TempDir(t)
	opts := testOptions(dir)
	opts.RetryMin, opts.RetryMax, opts.ScanInterval = time.Hour, time.Hour, time.Hour
	q := openQueue(t, opts)
	id := enqueue(t, q, testEnvelope("b@example.org"), "x\r\n")
	other, err := tryLock(dir, id) // a separate open file: another process to flock(2)
	if err != nil {
		t.Fatal(err)
	}
	m, err := q.open(id, other)
	if err != nil {
		t.Fatal(err)
	}
	env := m.env
	m.close()
	env.Recipients[0].Status, env.Recipients[0].Retry = Deferred, time.Now().Add(time.Hour)

	d := &recorder{}
	runQueue(t, q, d)
	if err := q.Flush(context.Background(), id); err != nil {
		t.Fatalf("Flush of a message locked elsewhere = %v, want nil", err)
	}
	time.Sleep(300 * time.Millisecond)
	if n := d.count(); n != 0 {
		t.Fatalf("%d deliveries while another process held the message", n)
	}
	// The other process ends its attempt: a deferral an hour away.
	if err := q.writeEnvelope(other, env); err != nil {
		t.Fatal(err)
	}
	other.release()
	waitFor(t, "the delivery the flush brought forward", func() bool { return d.count() == 1 })
}

// TestDelayWarning: a recipient deferred longer than DelayWarning earns
// the sender one "delayed" DSN (header only, with Will-Retry-Until), and
// only one however many attempts follow; NOTIFY without DELAY and the null
// sender get none.
func TestDelayWarning(t *testing.T) {
	dir := testlib.TempDir(t)
	opts := testOptions(dir)
	opts.DelayWarning, opts.Lifetime = 100*time.Millisecond, time.Hour
	opts.Resolve = func(ctx context.Context, addr string) ([]Recipient, error) {
		return []Recipient{{Address: addr, Route: RouteLocal}}, nil
	}
	q := openQueue(t, opts)
	d := &recorder{answer: func(env Envelope, r Recipient, attempt int) Result {
		if r.Address == "alice@example.org" { // the sender: warnings arrive
			return Result{Code: 250}
		}
		return Result{Code: 451, Enhanced: "4.7.1", Text: "greylisted", RemoteMTA: "mx.example.org"}
	}}
	runQueue(t, q, d)
	env := testEnvelope("slow@example.org", "failonly@example.org")
	env.Recipients[1].Notify = "FAILURE"
	enqueue(t, q, env, "Subject: hello\r\n\r\nthe body\r\n")
	bounceEnv := testEnvelope("bounced@example.org")
	bounceEnv.Sender = ""
	enqueue(t, q, bounceEnv, "Subject: a bounce\r\n\r\nx\r\n")

	warnings := func() []call {
		var w []call
		for _, c := range d.snapshot() {
			if c.env.Sender == "" && strings.Contains(c.body, "Action: delayed") {
				w = append(w, c)
			}
		}
		return w
	}
	waitFor(t, "a delay warning", func() bool { return len(warnings()) > 0 })
	// Several more attempts (RetryMax is 80 ms), and still one warning.
	time.Sleep(500 * time.Millisecond)
	w := warnings()
	if len(w) != 1 {
		t.Fatalf("%d delay warnings, want 1", len(w))
	}
	body := w[0].body
	if w[0].rcpts[0] != "alice@example.org" {
		t.Errorf("warning sent to %q, want the sender", w[0].rcpts)
	}
	for _, want := range []string{"Subject: Delayed Mail (still being retried)", "Final-Recipient: rfc822; slow@example.org",
		"Status: 4.7.1", "Will-Retry-Until: ", "Content-Type: text/rfc822-headers", "Subject: hello"} {
		if !strings.Contains(body, want) {
			t.Errorf("warning lacks %q:\n%s", want, body)
		}
	}
	for _, not := range []string{"failonly@example.org", "the body", "Subject: a bounce"} {
		if strings.Contains(body, not) {
			t.Errorf("warning holds %q:\n%s", not, body)
		}
	}
	msgs, err := q.List(context.Background())
	if err != nil || len(msgs) != 2 {
		t.Errorf("List = %d messages, %v; want both still queued", len(msgs), err)
	}
}
