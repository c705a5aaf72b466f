package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/emersion/go-msgauth/dkim"
	"github.com/emersion/go-smtp"

	"github.com/postcove/postcove/services/internal/dkimkey"
	"github.com/postcove/postcove/services/internal/grpcx"
	"github.com/postcove/postcove/services/internal/testlib"
	"github.com/postcove/postcove/services/mta/internal/deliver/smtpsink"
)

// TestBadConfigNamesTheField: a bad file key, value or environment value
// stops the service before it starts, with a message naming it.
func TestBadConfigNamesTheField(t *testing.T) {
	testlib.CheckConfigErrors(t, run, []testlib.ConfigError{
		{Name: "unknown key", File: "[queue]\ndri = \"x\"\n", Want: "queue.dri"},
		{Name: "bad duration", File: "[limits]\nread_timeout = 30\n", Want: "limits.read_timeout"},
		{Name: "bad env", Env: []string{"POSTCOVE_MTA_LIMITS_MAX_RECIPIENTS=many"}, Want: "POSTCOVE_MTA_LIMITS_MAX_RECIPIENTS"},
		{Name: "few recipients", Env: []string{"POSTCOVE_MTA_LIMITS_MAX_RECIPIENTS=10"}, Want: "limits.max_recipients"},
		{Name: "bad listen", Env: []string{"POSTCOVE_MTA_LISTEN_SMTP=localhost"}, Want: "listen.smtp"},
		{Name: "465 without certificate", Env: []string{"POSTCOVE_MTA_LISTEN_SUBMISSIONS=127.0.0.1:2465"}, Want: "listen.submissions"},
		{Name: "bad hostname", Env: []string{"POSTCOVE_MTA_HOSTNAME=mx example"}, Want: "hostname"},
		{Name: "retry caps", Env: []string{"POSTCOVE_MTA_QUEUE_RETRY_MAX=1m"}, Want: "queue.retry_max"},
		{Name: "no lmtp", Env: []string{"POSTCOVE_MTA_LMTP_ADDRS="}, Want: "lmtp.addrs"},
		{Name: "relay password", Env: []string{"POSTCOVE_MTA_RELAY_HOST=smtp.example:587", "POSTCOVE_MTA_RELAY_USERNAME=u"}, Want: "relay.password_file"},
		{Name: "missing file", Args: []string{"-config", "/nonexistent/mta.toml"}, Want: "mta.toml"},
		{Name: "unknown command", Args: []string{"frobnicate"}, Want: `unknown command "frobnicate"`},
		{Name: "extra argument", Args: []string{"version", "now"}, Want: `unexpected argument "now"`},
	})
}

// proc is a service binary running in a subprocess, with its log shown
// when the test fails.
type proc struct {
	t      *testing.T
	name   string
	bin    string
	env    []string
	grpc   string // its health address
	log    string
	cmd    *exec.Cmd
	exited chan struct{}
	err    error // of Wait, once exited is closed
}

// build builds pkg (a package path in the workspace) into a temp dir.
func build(t *testing.T, pkg, name string) string {
	t.Helper()
	bin := filepath.Join(testlib.TempDir(t), name)
	if out, err := exec.Command("go", "build", "-o", bin, pkg).CombinedOutput(); err != nil {
		t.Fatalf("go build %s: %v\n%s", pkg, err, out)
	}
	return bin
}

func newProc(t *testing.T, name, bin, grpc string, env ...string) *proc {
	t.Helper()
	p := &proc{t: t, name: name, bin: bin, grpc: grpc, env: append(os.Environ(), env...),
		log: filepath.Join(testlib.TempDir(t), name+".log")}
	t.Cleanup(func() {
		if p.cmd != nil {
			p.cmd.Process.Kill() // our own child, by pid
			<-p.exited
		}
		if t.Failed() {
			data, _ := os.ReadFile(p.log)
			t.Logf("%s log:\n%s", name, data)
		}
	})
	return p
}

// start runs the process and waits until its gRPC health says SERVING.
func (p *proc) start() {
	p.t.Helper()
	logFile, err := os.OpenFile(p.log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		p.t.Fatal(err)
	}
	defer logFile.Close()
	cmd := exec.Command(p.bin)
	cmd.Env, cmd.Stdout, cmd.Stderr = p.env, logFile, logFile
	if err := cmd.Start(); err != nil {
		p.t.Fatal(err)
	}
	p.cmd, p.exited = cmd, make(chan struct{})
	go func(exited chan struct{}) {
		p.err = cmd.Wait()
		close(exited)
	}(p.exited)
	waitFor(p.t, p.name+" SERVING", func() bool {
		select {
		case <-p.exited:
			p.t.Fatalf("%s exited during startup: %v", p.name, p.err)
		default:
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		return grpcx.CheckHealth(ctx, p.grpc, nil, "") == nil
	})
}

// stop sends SIGTERM and returns how the process exited.
func (p *proc) stop() error {
	p.t.Helper()
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.exited:
	case <-time.After(30 * time.Second):
		p.t.Fatalf("%s still running 30s after SIGTERM", p.name)
	}
	p.cmd = nil
	return p.err
}

// waitFor polls cond until it holds, failing after 30 seconds.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// kill sends SIGKILL (by pid) and waits until the process is gone.
func (p *proc) kill() {
	p.t.Helper()
	p.cmd.Process.Kill()
	<-p.exited
	p.cmd = nil
}

// remoteZone is the loopback DNS of the stack: remote.example's MX is the
// sink. Tests adding records serve it too.
const remoteZone = "remote.example. IN MX 10 mx.remote.example.\nmx.remote.example. IN A 127.0.0.1\n"

// stack is auth, mailbox and mta running as processes, with a remote
// domain (remote.example) whose MX is a sink on loopback, found through a
// loopback DNS server, and a DKIM key for example.org.
type stack struct {
	auth                      *testlib.Auth
	mailbox, mta              *proc
	sink                      *smtpsink.Sink
	dns                       *testlib.DNSServer
	sinkReply                 atomic.Pointer[func(smtpsink.Stage, string) error]
	mailRoot, queueDir        string
	smtpAddr, subAddr, mtaRPC string
	dkimRecord                string
}

func startStack(t *testing.T) *stack {
	t.Helper()
	st := &stack{auth: testlib.StartAuth(t)}
	st.auth.Domain(t, "example.org")
	st.auth.User(t, "alice@example.org", "alice-pw", 0)
	st.auth.User(t, "bob@example.org", "bob-pw", 0)

	st.mailRoot = filepath.Join(testlib.TempDir(t), "mail")
	lmtpAddr, mbGRPC := testlib.FreeAddr(t), testlib.FreeAddr(t)
	st.mailbox = newProc(t, "mailbox", build(t, "github.com/postcove/postcove/services/mailbox/cmd/mailbox", "mailbox"), mbGRPC,
		"POSTCOVE_MAILBOX_LISTEN_LMTP="+lmtpAddr, "POSTCOVE_MAILBOX_LISTEN_GRPC="+mbGRPC,
		"POSTCOVE_MAILBOX_LISTEN_POP3=", "POSTCOVE_MAILBOX_LISTEN_IMAP=", "POSTCOVE_MAILBOX_LISTEN_METRICS=",
		"POSTCOVE_MAILBOX_AUTH_ADDR="+st.auth.Addr, "POSTCOVE_MAILBOX_AUTH_HEALTH_INTERVAL=100ms",
		"POSTCOVE_MAILBOX_STORE_ROOT="+st.mailRoot, "POSTCOVE_MAILBOX_LOG_LEVEL=debug")
	st.mailbox.start()

	st.sink = smtpsink.Start(t, smtpsink.Options{Reply: func(stage smtpsink.Stage, arg string) error {
		if f := st.sinkReply.Load(); f != nil {
			return (*f)(stage, arg)
		}
		return nil
	}})
	_, sinkPort, _ := strings.Cut(st.sink.Addr, ":")
	st.dns = testlib.StartDNS(t, remoteZone)
	certs := testlib.NewCerts(t)
	keys := testlib.TempDir(t)
	dkimKey, err := dkimkey.Generate(dkimkey.RSA2048)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := dkimkey.Write(keys, "example.org", "e2e", dkimKey, false); err != nil {
		t.Fatal(err)
	}
	if st.dkimRecord, err = dkimkey.Record(dkimKey.Public()); err != nil {
		t.Fatal(err)
	}
	st.smtpAddr, st.subAddr, st.mtaRPC = testlib.FreeAddr(t), testlib.FreeAddr(t), testlib.FreeAddr(t)
	st.queueDir = filepath.Join(testlib.TempDir(t), "queue")
	st.mta = newProc(t, "mta", build(t, ".", "mta"), st.mtaRPC,
		"POSTCOVE_MTA_HOSTNAME=mx.example.org",
		"POSTCOVE_MTA_LISTEN_SMTP="+st.smtpAddr, "POSTCOVE_MTA_LISTEN_SUBMISSION="+st.subAddr,
		"POSTCOVE_MTA_LISTEN_SUBMISSIONS=", "POSTCOVE_MTA_LISTEN_GRPC="+st.mtaRPC, "POSTCOVE_MTA_LISTEN_METRICS=",
		"POSTCOVE_MTA_TLS_CERT_FILE="+certs.ServerCert, "POSTCOVE_MTA_TLS_KEY_FILE="+certs.ServerKey,
		"POSTCOVE_MTA_AUTH_ADDR="+st.auth.Addr, "POSTCOVE_MTA_AUTH_HEALTH_INTERVAL=100ms",
		"POSTCOVE_MTA_QUEUE_DIR="+st.queueDir, "POSTCOVE_MTA_QUEUE_RETRY_MIN=200ms", "POSTCOVE_MTA_QUEUE_RETRY_MAX=1s",
		"POSTCOVE_MTA_LMTP_ADDRS="+lmtpAddr, "POSTCOVE_MTA_REMOTE_PORT="+sinkPort,
		"POSTCOVE_MTA_DNS_RESOLVER="+st.dns.Addr, "POSTCOVE_MTA_DKIM_KEYS_DIR="+keys, "POSTCOVE_MTA_LOG_LEVEL=debug")
	st.mta.start()
	return st
}

// swaks sends one message with swaks (a client nobody here wrote).
func swaks(t *testing.T, args ...string) string {
	t.Helper()
	out, err := runSwaks(t, args...)
	if err != nil {
		t.Fatalf("swaks %q: %v\n%s", args, err, out)
	}
	return out
}

// runSwaks runs swaks and returns its transcript; the error says it
// failed (exited non-zero: a refusal among others).
func runSwaks(t *testing.T, args ...string) (string, error) {
	t.Helper()
	bin := testlib.RequireTool(t, "swaks")
	out, err := exec.Command(bin, append([]string{"--helo", "client.test", "--timeout", "20"}, args...)...).CombinedOutput()
	return string(out), err
}

// inbound sends a message from outside to port 25.
func (st *stack) inbound(t *testing.T, to, subject string) {
	t.Helper()
	swaks(t, "--server", st.smtpAddr, "--from", "someone@remote.example", "--to", to, "--header", "Subject: "+subject)
}

// submit sends a message as bob over 587 with STARTTLS and AUTH.
func (st *stack) submit(t *testing.T, to, subject string) {
	t.Helper()
	swaks(t, "--server", st.subAddr, "--tls", "--auth", "PLAIN", "--auth-user", "bob@example.org", "--auth-password", "bob-pw",
		"--from", "bob@example.org", "--to", to, "--header", "Subject: "+subject)
}

// count returns how many messages in local's INBOX contain text.
func (st *stack) count(local, text string) int { return st.countIn(local, "", text) }

// countIn returns how many messages in one of local's Maildir folders
// (".Junk"; "" is INBOX) contain text.
func (st *stack) countIn(local, folder, text string) int {
	n := 0
	for _, sub := range []string{"new", "cur"} {
		files, _ := filepath.Glob(filepath.Join(st.mailRoot, "example.org", local, "Maildir", folder, sub, "*"))
		for _, f := range files {
			if b, err := os.ReadFile(f); err == nil && strings.Contains(string(b), text) {
				n++
			}
		}
	}
	return n
}

// queueEmpty reports whether no message is queued any more: no message
// file of the current spool format (ID.msg) nor of the older one (ID.env).
func (st *stack) queueEmpty() bool {
	for _, pattern := range []string{"*.msg", "*.env"} {
		if files, _ := filepath.Glob(filepath.Join(st.queueDir, pattern)); len(files) > 0 {
			return false
		}
	}
	return true
}

// TestEndToEnd runs auth, mailbox and mta as processes: mail from outside
// on port 25 and mail a user submits on 587 land in the Maildirs, mail to
// another domain reaches its MX DKIM-signed, a remote 4xx is retried and
// a 5xx bounces to the sender's mailbox, mail waits while mailbox is down,
// a kill -9 after the 250 loses nothing, and SIGTERM stops the MTA
// cleanly.
func TestEndToEnd(t *testing.T) {
	testlib.RequireTool(t, "swaks")
	st := startStack(t)

	st.inbound(t, "alice@example.org", "e2e inbound")
	st.submit(t, "alice@example.org,carol@remote.example", "e2e submitted")
	waitFor(t, "the inbound message in alice's Maildir", func() bool { return st.count("alice", "Subject: e2e inbound") == 1 })
	waitFor(t, "the submitted message in alice's Maildir", func() bool { return st.count("alice", "Subject: e2e submitted") == 1 })
	waitFor(t, "the submitted message at remote.example's MX", func() bool { return len(st.sink.Messages()) == 1 })
	m := st.sink.Messages()[0]
	if m.From != "bob@example.org" || len(m.To) != 1 || m.To[0] != "carol@remote.example" ||
		!strings.Contains(m.Data, "Subject: e2e submitted") || !strings.Contains(m.Data, "by mx.example.org (postcove) with ESMTPSA") {
		t.Errorf("remote MX got %+v", m)
	}
	// Signed by our domain's key, and the signature verifies there.
	vs, err := dkim.VerifyWithOptions(strings.NewReader(m.Data), &dkim.VerifyOptions{
		LookupTXT: func(name string) ([]string, error) {
			if strings.TrimSuffix(name, ".") == dkimkey.RecordName("example.org", "e2e") {
				return []string{st.dkimRecord}, nil
			}
			return nil, fmt.Errorf("no TXT record %s", name)
		},
	})
	if err != nil || len(vs) != 1 || vs[0].Err != nil || vs[0].Domain != "example.org" {
		t.Errorf("DKIM at the remote MX: %+v, %v", vs, err)
	}

	t.Run("remote 4xx then 250", func(t *testing.T) {
		var tries atomic.Int32
		reply := func(stage smtpsink.Stage, arg string) error {
			if stage == smtpsink.StageRcpt && tries.Add(1) == 1 {
				return &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 7, 1}, Message: "greylisted"}
			}
			return nil
		}
		st.sinkReply.Store(&reply)
		defer st.sinkReply.Store(nil)
		before := len(st.sink.Messages())
		st.submit(t, "dave@remote.example", "e2e greylisted")
		waitFor(t, "the retried message at the MX", func() bool { return len(st.sink.Messages()) == before+1 })
		if n := tries.Load(); n != 2 {
			t.Errorf("RCPT tried %d times, want 2", n)
		}
	})

	t.Run("remote 5xx bounces to the sender", func(t *testing.T) {
		reply := func(stage smtpsink.Stage, arg string) error {
			if stage == smtpsink.StageRcpt {
				return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "no such user"}
			}
			return nil
		}
		st.sinkReply.Store(&reply)
		defer st.sinkReply.Store(nil)
		st.submit(t, "nobody@remote.example", "e2e bounced")
		waitFor(t, "the DSN in bob's Maildir", func() bool { return st.count("bob", "nobody@remote.example") >= 1 })
		if n := st.count("bob", "multipart/report"); n != 1 {
			t.Errorf("bob has %d reports, want 1", n)
		}
	})

	t.Run("mailbox down, mail waits", func(t *testing.T) {
		if err := st.mailbox.stop(); err != nil {
			t.Fatalf("mailbox exit: %v", err)
		}
		st.inbound(t, "alice@example.org", "e2e while down")
		st.mailbox.start()
		waitFor(t, "the message once mailbox is back", func() bool { return st.count("alice", "Subject: e2e while down") == 1 })
	})

	t.Run("kill -9 after 250", func(t *testing.T) {
		if err := st.mailbox.stop(); err != nil { // so that it stays queued
			t.Fatalf("mailbox exit: %v", err)
		}
		st.inbound(t, "alice@example.org", "e2e killed")
		st.mta.kill()
		st.mailbox.start()
		st.mta.start()
		waitFor(t, "the message after the restart", func() bool { return st.count("alice", "Subject: e2e killed") >= 1 })
		waitFor(t, "an empty queue", st.queueEmpty)
		if n := st.count("alice", "Subject: e2e killed"); n != 1 {
			t.Errorf("delivered %d times, want once", n)
		}
	})

	t.Setenv("POSTCOVE_MTA_LISTEN_SMTP", st.smtpAddr)
	t.Setenv("POSTCOVE_MTA_LISTEN_GRPC", st.mtaRPC)
	t.Setenv("POSTCOVE_MTA_LISTEN_SUBMISSIONS", "")
	if err := run([]string{"healthcheck"}); err != nil {
		t.Errorf("healthcheck: %v", err)
	}
	if err := st.mta.stop(); err != nil {
		t.Errorf("mta exit after SIGTERM: %v", err)
	}
}
