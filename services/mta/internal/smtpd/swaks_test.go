package smtpd

import (
	"os/exec"
	"strings"
	"testing"

	"github.com/postcove/postcove/services/internal/testlib"
)

// swaks runs swaks (https://jetmore.org/john/code/swaks/), a client
// nobody here wrote, against e and returns its transcript. swaks exits
// non-zero when the server refuses something; the transcript is what
// the tests check.
func swaks(t *testing.T, e *env, args ...string) string {
	t.Helper()
	bin := testlib.RequireTool(t, "swaks")
	args = append([]string{"--server", e.addr, "--helo", "client.test", "--timeout", "20"}, args...)
	out, err := exec.Command(bin, args...).CombinedOutput()
	if _, exit := err.(*exec.ExitError); err != nil && !exit {
		t.Fatalf("swaks: %v", err)
	}
	return string(out)
}

// TestSwaksInbound: mail from another server over STARTTLS to a local
// user is queued; an unknown user and a relay attempt are refused at RCPT.
func TestSwaksInbound(t *testing.T) {
	a := startAuth(t)
	e := startServer(t, a, Inbound, nil)
	out := swaks(t, e, "--tls", "--from", "sender@remote.example", "--to", "alice@example.org", "--header", "Subject: swaks inbound")
	if !strings.Contains(out, "250 2.0.0 OK: queued as Q1") || !strings.Contains(out, "<-  220 2.0.0 Ready to start TLS") {
		t.Errorf("swaks transcript lacks the TLS start or the queue ID:\n%s", out)
	}
	m := e.spool.one(t)
	if !strings.Contains(m.body, "Subject: swaks inbound\r\n") || !strings.Contains(m.body, "X-Mailer: swaks") {
		t.Errorf("queued body is not swaks's message:\n%s", m.body)
	}
	if out := swaks(t, e, "--from", "sender@remote.example", "--to", "nobody@example.org"); !strings.Contains(out, "550 5.1.1 No such user here") {
		t.Errorf("unknown user: transcript:\n%s", out)
	}
	if out := swaks(t, e, "--from", "sender@remote.example", "--to", "victim@remote.example"); !strings.Contains(out, "554 5.7.1 Relay access denied") {
		t.Errorf("relay: transcript:\n%s", out)
	}
	if n := len(e.spool.all()); n != 1 {
		t.Errorf("queued %d messages, want 1", n)
	}
}

// TestSwaksSubmission: a user submits over 587 with STARTTLS and AUTH
// (PLAIN, then LOGIN) and over 465 with implicit TLS; AUTH without TLS
// and a forged From are refused.
func TestSwaksSubmission(t *testing.T) {
	a := startAuth(t)
	e := startServer(t, a, Submission, nil)
	out := swaks(t, e, "--tls", "--auth", "PLAIN", "--auth-user", "alice@example.org", "--auth-password", "alice-pw",
		"--from", "alice@example.org", "--to", "carol@remote.example")
	if !strings.Contains(out, "235 2.0.0 Authentication succeeded") || !strings.Contains(out, "250 2.0.0 OK: queued as Q1") {
		t.Errorf("PLAIN submission transcript:\n%s", out)
	}
	out = swaks(t, e, "--tls", "--auth", "LOGIN", "--auth-user", "bob@example.org", "--auth-password", "bob-pw",
		"--from", "bob@example.org", "--to", "alice@example.org")
	if !strings.Contains(out, "235 2.0.0 Authentication succeeded") || !strings.Contains(out, "250 2.0.0 OK: queued as Q2") {
		t.Errorf("LOGIN submission transcript:\n%s", out)
	}
	// Without --tls swaks tries AUTH in the clear, which is not even
	// offered.
	out = swaks(t, e, "--auth", "PLAIN", "--auth-user", "alice@example.org", "--auth-password", "alice-pw",
		"--from", "alice@example.org", "--to", "bob@example.org")
	if strings.Contains(out, "235 2.0.0 Authentication succeeded") || strings.Contains(out, "queued as") {
		t.Errorf("AUTH without TLS succeeded:\n%s", out)
	}
	out = swaks(t, e, "--tls", "--auth", "PLAIN", "--auth-user", "bob@example.org", "--auth-password", "bob-pw",
		"--from", "bob@example.org", "--to", "carol@remote.example", "--header", "From: alice@example.org")
	if !strings.Contains(out, "553 5.7.1 You may not send as <alice@example.org>") {
		t.Errorf("forged From: transcript:\n%s", out)
	}
	if n := len(e.spool.all()); n != 2 {
		t.Errorf("queued %d messages, want 2", n)
	}
	msgs := e.spool.all()
	if msgs[0].env.Recipients[0].Address != "carol@remote.example" || msgs[1].env.AuthUser != "bob@example.org" {
		t.Errorf("queued %+v", msgs)
	}

	e465 := startServer(t, a, Submission, func(o *Options) { o.ImplicitTLS = true })
	out = swaks(t, e465, "--tls-on-connect", "--auth", "PLAIN", "--auth-user", "alice@example.org", "--auth-password", "alice-pw",
		"--from", "alice@example.org", "--to", "bob@example.org")
	if !strings.Contains(out, "250 2.0.0 OK: queued as Q1") {
		t.Errorf("implicit TLS transcript:\n%s", out)
	}
}
