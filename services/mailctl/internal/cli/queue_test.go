package cli

import (
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/smtp"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	gosmtp "github.com/emersion/go-smtp"

	mtav1 "github.com/postcove/postcove/proto/postcove/mta/v1"
	"github.com/postcove/postcove/services/internal/testlib"
)

// remoteMX is an SMTP server standing in for another domain's MX: it
// answers RCPT with 451 (greylisting, say) until told to accept.
type remoteMX struct {
	addr   string
	accept atomic.Bool

	mu    sync.Mutex     // protects rcpts and got
	rcpts map[string]int // RCPT commands seen, by envelope sender
	got   []string       // the messages accepted
}

func startRemoteMX(t *testing.T) *remoteMX {
	t.Helper()
	mx := &remoteMX{rcpts: map[string]int{}}
	srv := gosmtp.NewServer(mx)
	srv.Domain = "mx.remote.example"
	srv.ReadTimeout, srv.WriteTimeout = 30*time.Second, 30*time.Second
	srv.MaxMessageBytes, srv.MaxRecipients = 1<<20, 10
	lis, err := net.Listen("tcp", testlib.FreeAddr(t))
	if err != nil {
		t.Fatal(err)
	}
	mx.addr = lis.Addr().String()
	served := make(chan error, 1)
	go func() { served <- srv.Serve(lis) }()
	t.Cleanup(func() {
		srv.Close()
		if err := <-served; err != nil && !errors.Is(err, gosmtp.ErrServerClosed) {
			t.Errorf("remote MX: %v", err)
		}
	})
	return mx
}

func (mx *remoteMX) NewSession(*gosmtp.Conn) (gosmtp.Session, error) { return &mxSession{mx: mx}, nil }

// tries returns how many times mail from sender was offered.
func (mx *remoteMX) tries(sender string) int {
	mx.mu.Lock()
	defer mx.mu.Unlock()
	return mx.rcpts[sender]
}

func (mx *remoteMX) messages() []string {
	mx.mu.Lock()
	defer mx.mu.Unlock()
	return append([]string(nil), mx.got...)
}

type mxSession struct {
	mx   *remoteMX
	from string
}

func (s *mxSession) Reset()        {}
func (s *mxSession) Logout() error { return nil }

func (s *mxSession) Mail(from string, _ *gosmtp.MailOptions) error {
	s.from = from
	return nil
}

func (s *mxSession) Rcpt(string, *gosmtp.RcptOptions) error {
	s.mx.mu.Lock()
	s.mx.rcpts[s.from]++
	s.mx.mu.Unlock()
	if !s.mx.accept.Load() {
		return &gosmtp.SMTPError{Code: 451, EnhancedCode: gosmtp.EnhancedCode{4, 7, 1}, Message: "greylisted, come back later"}
	}
	return nil
}

func (s *mxSession) Data(r io.Reader) error {
	b, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	s.mx.mu.Lock()
	s.mx.got = append(s.mx.got, string(b))
	s.mx.mu.Unlock()
	return nil
}

// mta is the mta binary running for one test.
type mta struct {
	smtp, grpc string
	queueDir   string
}

// startMTA runs the mta binary with its auth at authAddr, remote.example's
// MX at mxAddr (found through a loopback DNS server), retries an hour
// apart (so that only a flush retries within a test), and waits until it
// reports SERVING. It is stopped with SIGTERM when the test ends.
func startMTA(t *testing.T, authAddr, mxAddr string) mta {
	t.Helper()
	_, mxPort, _ := strings.Cut(mxAddr, ":")
	dns := testlib.StartDNS(t, "remote.example. 300 IN MX 10 mx.remote.example.\nmx.remote.example. 300 IN A 127.0.0.1\n")
	dir := testlib.TempDir(t)
	m := mta{smtp: testlib.FreeAddr(t), grpc: testlib.FreeAddr(t), queueDir: filepath.Join(dir, "queue")}
	cmd := exec.Command(mtaBin)
	cmd.Env = append(os.Environ(),
		"POSTCOVE_MTA_HOSTNAME=mx.example.org",
		"POSTCOVE_MTA_LISTEN_SMTP="+m.smtp, "POSTCOVE_MTA_LISTEN_GRPC="+m.grpc,
		"POSTCOVE_MTA_LISTEN_SUBMISSION=", "POSTCOVE_MTA_LISTEN_SUBMISSIONS=", "POSTCOVE_MTA_LISTEN_METRICS=",
		"POSTCOVE_MTA_AUTH_ADDR="+authAddr, "POSTCOVE_MTA_AUTH_HEALTH_INTERVAL=100ms",
		"POSTCOVE_MTA_QUEUE_DIR="+m.queueDir,
		"POSTCOVE_MTA_QUEUE_RETRY_MIN=1h", "POSTCOVE_MTA_QUEUE_RETRY_MAX=2h",
		"POSTCOVE_MTA_LMTP_ADDRS="+testlib.FreeAddr(t), // no local mail in these tests
		"POSTCOVE_MTA_REMOTE_PORT="+mxPort, "POSTCOVE_MTA_DNS_RESOLVER="+dns.Addr,
		"POSTCOVE_MTA_DKIM_KEYS_DIR=", "POSTCOVE_MTA_SHUTDOWN_TIMEOUT=5s", "POSTCOVE_MTA_LOG_LEVEL=debug",
	)
	logPath := filepath.Join(dir, "mta.log")
	logFile, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	defer logFile.Close() // the child has its own copy
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() {
		cmd.Wait()
		close(exited)
	}()
	t.Cleanup(func() {
		// Our own child, by its pid.
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(20 * time.Second):
			t.Errorf("mta %d still running 20s after SIGTERM: killed", cmd.Process.Pid)
			cmd.Process.Kill()
			<-exited
		}
		if t.Failed() {
			log, _ := os.ReadFile(logPath)
			t.Logf("mta log:\n%s", log)
		}
	})
	waitHealthy(t, "mta", m.grpc, nil, exited)
	return m
}

// sendInbound hands a message from outside to the MTA's port 25.
func sendInbound(t *testing.T, addr, from, to, subject string) {
	t.Helper()
	msg := "From: <" + from + ">\r\nTo: <" + to + ">\r\nSubject: " + subject + "\r\nMessage-ID: <" + subject + "@sender.example>\r\nDate: Fri, 27 Nov 2026 10:00:00 +0000\r\n\r\nhello\r\n"
	if err := smtp.SendMail(addr, nil, from, []string{to}, []byte(msg)); err != nil {
		t.Fatalf("send %q to %s: %v", subject, addr, err)
	}
}

// queueState lists the queue with `mailctl queue list --json`.
func queueState(t *testing.T, env map[string]string) []queueMessage {
	t.Helper()
	r := mailctlEnv(t, env, "", "queue", "list", "--json")
	if r.code != 0 {
		t.Fatalf("queue list --json: exit %d, stderr %q", r.code, r.stderr)
	}
	var msgs []queueMessage
	if err := json.Unmarshal([]byte(r.stdout), &msgs); err != nil {
		t.Fatalf("queue list --json: %v\n%s", err, r.stdout)
	}
	return msgs
}

// waitQueue polls `queue list --json` until cond holds.
func waitQueue(t *testing.T, env map[string]string, what string, cond func([]queueMessage) bool) []queueMessage {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		msgs := queueState(t, env)
		if cond(msgs) {
			return msgs
		}
		if time.Now().After(deadline) {
			t.Fatalf("queue not %s after 30s: %+v", what, msgs)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// triedTimes returns a condition: one message queued, from sender, whose
// one recipient was tried n times.
func triedTimes(sender string, n int32) func([]queueMessage) bool {
	return func(msgs []queueMessage) bool {
		return len(msgs) == 1 && msgs[0].Sender == sender && len(msgs[0].Recipients) == 1 && msgs[0].Recipients[0].Attempts == n
	}
}

// TestMailctlQueue runs auth and mta as processes and a remote MX that
// greylists: `queue list` shows the message deferred with the 451, `queue
// flush ID` retries it at once, `queue flush` after the MX relents
// delivers it, and `queue delete` removes another for good.
func TestMailctlQueue(t *testing.T) {
	authAddr := startAuth(t)
	mx := startRemoteMX(t)
	m := startMTA(t, authAddr, mx.addr)
	env := map[string]string{"MAILCTL_AUTH_ADDR": authAddr, "MAILCTL_MTA_ADDR": m.grpc}
	run := func(args ...string) result { t.Helper(); return mailctlEnv(t, env, "", args...) }

	want(t, run("domain", "add", "example.org"), 0, "added", "")
	want(t, run("alias", "add", "team@example.org", "carol@remote.example"), 0, "team@example.org -> carol@remote.example", "")
	want(t, run("queue", "list"), 0, "the queue is empty", "")
	if got := queueState(t, env); len(got) != 0 {
		t.Fatalf("queue list --json on an empty queue = %+v", got)
	}

	// A message for the alias goes to carol at remote.example, whose MX
	// says 451.
	const sender = "someone@sender.example"
	sendInbound(t, m.smtp, sender, "team@example.org", "queue-e2e-1")
	msgs := waitQueue(t, env, "deferred", triedTimes(sender, 1))
	msg, rcpt := msgs[0], msgs[0].Recipients[0]
	if rcpt.Address != "carol@remote.example" || rcpt.Orig != "team@example.org" || rcpt.Route != "remote" || rcpt.Status != "deferred" ||
		rcpt.LastReply == nil || rcpt.LastReply.Code != 451 || rcpt.LastReply.Enhanced != "4.7.1" || !strings.Contains(rcpt.LastReply.Text, "greylisted") {
		t.Errorf("queued recipient = %+v, last reply %+v; want carol@remote.example deferred by the 451", rcpt, rcpt.LastReply)
	}
	if msg.SizeBytes < int64(len("Subject: queue-e2e-1")) || msg.NextRetry == nil || time.Until(*msg.NextRetry) < 30*time.Minute ||
		time.Since(msg.ReceivedAt) > time.Minute || msg.AgeSeconds < 0 {
		t.Errorf("queued message = %+v, want received just now, retried in about an hour", msg)
	}
	r := run("queue", "list")
	t.Logf("mailctl queue list:\n%s", r.stdout)
	for _, part := range []string{"ID", "LAST REPLY", msg.ID, sender, "carol@remote.example (for team@example.org)", "remote", "deferred, 1 try, retry in", "451 4.7.1 greylisted, come back later", "-- 1 message,"} {
		if !strings.Contains(r.stdout, part) {
			t.Errorf("queue list lacks %q:\n%s", part, r.stdout)
		}
	}

	// flush ID: tried again now (the MX still says 451).
	want(t, run("queue", "flush", msg.ID), 0, "message "+msg.ID+" flushed", "")
	waitQueue(t, env, "retried", triedTimes(sender, 2))
	if n := mx.tries(sender); n != 2 {
		t.Errorf("the MX was offered the message %d times, want 2", n)
	}

	// The MX relents; flushing everything delivers it.
	mx.accept.Store(true)
	want(t, run("queue", "flush"), 0, "queue flushed", "")
	waitQueue(t, env, "empty", func(msgs []queueMessage) bool { return len(msgs) == 0 })
	if got := mx.messages(); len(got) != 1 || !strings.Contains(got[0], "Subject: queue-e2e-1") {
		t.Errorf("the MX received %d messages, want the flushed one: %q", len(got), got)
	}

	// A deleted message is gone and not retried.
	mx.accept.Store(false)
	const sender2 = "other@sender.example"
	sendInbound(t, m.smtp, sender2, "team@example.org", "queue-e2e-2")
	id := waitQueue(t, env, "deferred", triedTimes(sender2, 1))[0].ID
	r = run("queue", "delete", id)
	t.Logf("mailctl queue delete: %s", r.stdout)
	want(t, r, 0, "message "+id+" deleted: from "+sender2, "")
	want(t, run("queue", "list"), 0, "the queue is empty", "")
	want(t, run("queue", "flush"), 0, "queue flushed", "")
	if n := mx.tries(sender2); n != 1 {
		t.Errorf("the deleted message was offered %d times, want 1 (before the delete)", n)
	}

	// Errors say what to do next.
	want(t, run("queue", "delete", id), 1, "", "mailctl queue list")
	want(t, run("queue", "flush", "no-such-message"), 1, "", "no queued message")
	want(t, run("--mta", authAddr, "queue", "list"), 1, "", "does not offer")
	// The MTA answers but its spool is gone: not a reachability problem.
	if err := os.Rename(m.queueDir, m.queueDir+".away"); err != nil {
		t.Fatal(err)
	}
	r = run("queue", "list")
	want(t, r, 1, "", "the MTA at "+m.grpc+" cannot do that now")
	want(t, r, 1, "", "see the mta log")
	if err := os.Rename(m.queueDir+".away", m.queueDir); err != nil {
		t.Fatal(err)
	}
	want(t, run("queue", "list"), 0, "the queue is empty", "")
}

// TestMailctlQueueMTADown: nothing listening at the MTA address says so,
// and how to point mailctl elsewhere.
func TestMailctlQueueMTADown(t *testing.T) {
	addr := testlib.FreeAddr(t)
	r := mailctlEnv(t, map[string]string{"MAILCTL_MTA_ADDR": addr}, "", "--timeout", "3s", "queue", "list")
	want(t, r, 1, "", "cannot reach the MTA at "+addr)
	want(t, r, 1, "", "--mta or MAILCTL_MTA_ADDR")
}

func TestMailctlQueueUsage(t *testing.T) {
	for _, args := range [][]string{
		{"queue", "list", "extra"}, {"queue", "flush", "a", "b"}, {"queue", "delete"}, {"queue", "delete", "a", "b"},
		{"queue", "list", "--frobnicate"}, {"queue", "purge"},
	} {
		r := mailctlEnv(t, map[string]string{"MAILCTL_MTA_ADDR": testlib.FreeAddr(t)}, "", args...)
		if r.code != 2 || !strings.Contains(r.stderr, "mailctl help") {
			t.Errorf("mailctl %q: exit %d, stderr %q; want exit 2 and the usage hint", args, r.code, r.stderr)
		}
	}
	want(t, mailctl(t, "", "", "help"), 0, "queue delete ID", "")
}

func TestPrintQueue(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	msgs := []*mtav1.QueuedMessage{{
		Id: "19ac6f0e2b1-9f3c2a7d41e0b6c8", Sender: "", ReceivedUnix: now.Add(-3*time.Hour - 5*time.Minute).Unix(),
		SizeBytes: 4200, NextAttemptUnix: now.Add(57 * time.Minute).Unix(),
		Recipients: []*mtav1.QueuedRecipient{
			{Address: "bob@remote.example", Route: mtav1.Route_ROUTE_REMOTE, Status: mtav1.RecipientStatus_RECIPIENT_STATUS_DEFERRED, Attempts: 2,
				LastReply: &mtav1.Reply{Code: 451, Enhanced: "4.3.0", Text: "try later\x1b[2J", RemoteMta: "mx.remote.example"}},
			{Address: "alice@example.org", Orig: "team@example.org", Route: mtav1.Route_ROUTE_LOCAL, Status: mtav1.RecipientStatus_RECIPIENT_STATUS_DELIVERED, Attempts: 1,
				LastReply: &mtav1.Reply{Code: 250, Text: "ok"}},
			{Address: "new@example.org", Route: mtav1.Route_ROUTE_LOCAL, Status: mtav1.RecipientStatus_RECIPIENT_STATUS_PENDING},
		},
	}}
	var out strings.Builder
	a := &app{env: Env{Stdout: &out}}
	if err := a.printQueue(msgs, now); err != nil {
		t.Fatal(err)
	}
	wantLines := []string{
		"ID                            AGE   SIZE  SENDER  RECIPIENT                                 ROUTE   STATE                            LAST REPLY",
		"19ac6f0e2b1-9f3c2a7d41e0b6c8  3h5m  4.1K  <>      bob@remote.example                        remote  deferred, 2 tries, retry in 57m  451 4.3.0 try later?[2J (mx.remote.example)",
		"                                                  alice@example.org (for team@example.org)  local   delivered                        250 ok",
		"                                                  new@example.org                           local   pending                          -",
		"-- 1 message, 4.1K",
	}
	if got := strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n"); strings.Join(got, "\n") != strings.Join(wantLines, "\n") {
		t.Errorf("printQueue =\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(wantLines, "\n"))
	}
}

func TestFormatAgeBytes(t *testing.T) {
	for _, tt := range []struct {
		d    time.Duration
		want string
	}{
		{-time.Second, "0s"}, {45 * time.Second, "45s"}, {12*time.Minute + 30*time.Second, "12m"},
		{3*time.Hour + 5*time.Minute, "3h5m"}, {52 * time.Hour, "2d4h"},
	} {
		if got := formatAge(tt.d); got != tt.want {
			t.Errorf("formatAge(%v) = %q, want %q", tt.d, got, tt.want)
		}
	}
	for _, tt := range []struct {
		n    int64
		want string
	}{{0, "0B"}, {512, "512B"}, {1024, "1K"}, {4200, "4.1K"}, {100 << 10, "100K"}, {3 << 19, "1.5M"}, {5 << 30, "5G"}} {
		if got := formatBytes(tt.n); got != tt.want {
			t.Errorf("formatBytes(%d) = %q, want %q", tt.n, got, tt.want)
		}
	}
}
