package smtpd

import (
	"strings"
	"testing"

	"github.com/postcove/postcove/services/mta/internal/queue"
)

// TestSubmissionAuth: no AUTH before TLS (not offered, refused with 538
// 5.7.11), no MAIL before AUTH (530), wrong passwords 535; over TLS
// PLAIN and LOGIN work; AUTH on port 25 is not offered.
func TestSubmissionAuth(t *testing.T) {
	a := startAuth(t)
	e := startServer(t, a, Submission, nil)
	c := dial(t, e)
	if ehlo := c.cmd("EHLO client.test", "250-"); strings.Contains(ehlo, "AUTH") || !strings.Contains(ehlo, "STARTTLS") {
		t.Errorf("EHLO before TLS, want STARTTLS and no AUTH:\n%s", ehlo)
	}
	c.cmd("AUTH PLAIN "+plain("alice@example.org", "alice-pw"), "538 5.7.11 ")
	c.cmd("AUTH LOGIN", "538 5.7.11 ")
	c.cmd("MAIL FROM:<alice@example.org>", "530 5.7.0 ")
	c.startTLS(e)
	if ehlo := c.cmd("EHLO client.test", "250-"); !strings.Contains(ehlo, "AUTH PLAIN LOGIN") {
		t.Errorf("EHLO over TLS lacks AUTH PLAIN LOGIN:\n%s", ehlo)
	}
	c.cmd("MAIL FROM:<alice@example.org>", "530 5.7.0 ")
	c.cmd("AUTH PLAIN "+plain("alice@example.org", "wrong"), "535 5.7.8 ")
	c.cmd("AUTH PLAIN "+plain("nobody@example.org", "alice-pw"), "535 5.7.8 ")
	c.cmd("AUTH PLAIN "+plain("alice@example.org", "alice-pw", "bob@example.org"), "535 5.7.8 ")
	// LOGIN, the user name as initial response, the password asked for.
	c.cmd("AUTH LOGIN "+b64("alice@example.org"), "334 UGFzc3dvcmQ6")
	c.cmd(b64("alice-pw"), "235 ")
	c.cmd("AUTH PLAIN "+plain("alice@example.org", "alice-pw"), "503 ")

	// Authenticated: relaying is allowed, local delivery too.
	c.cmd("MAIL FROM:<alice@example.org>", "250 ")
	c.cmd("RCPT TO:<Carol@Remote.Example>", "250 ")
	c.cmd("RCPT TO:<bob@example.org>", "250 ")
	c.cmd("DATA", "354 ")
	c.send("From: Alice <alice@example.org>\r\nTo: carol@remote.example\r\nSubject: out\r\n\r\nHi.\r\n.\r\n")
	c.expect("250 ")
	m := e.spool.one(t)
	if m.env.AuthUser != "alice@example.org" || m.env.Sender != "alice@example.org" {
		t.Errorf("envelope = %+v", m.env)
	}
	want := []queue.Recipient{
		{Address: "Carol@Remote.Example", Orig: "Carol@Remote.Example", Route: queue.RouteRemote},
		{Address: "bob@example.org", Orig: "bob@example.org", Route: queue.RouteLocal},
	}
	if len(m.env.Recipients) != 2 || m.env.Recipients[0] != want[0] || m.env.Recipients[1] != want[1] {
		t.Errorf("recipients = %+v, want %+v", m.env.Recipients, want)
	}
	// Completed as RFC 6409 section 8 allows: Message-ID and Date.
	for _, f := range []string{"\r\nMessage-ID: <", "\r\nDate: ", "with ESMTPSA"} {
		if !strings.Contains(m.body, f) {
			t.Errorf("submitted message lacks %q:\n%s", f, m.body)
		}
	}
}

// TestAuthFailureLimit: a connection that fails to log in three times is
// closed at the fourth try.
func TestAuthFailureLimit(t *testing.T) {
	a := startAuth(t)
	e := startServer(t, a, Submission, nil)
	c := dial(t, e)
	c.cmd("EHLO client.test", "250")
	c.startTLS(e)
	c.cmd("EHLO client.test", "250")
	for range 3 {
		c.cmd("AUTH PLAIN "+plain("alice@example.org", "guess"), "535 5.7.8 ")
	}
	c.send("AUTH PLAIN " + plain("alice@example.org", "alice-pw") + "\r\n")
	if !c.closed() {
		t.Error("connection still open after a fourth login attempt")
	}
}

// TestSubmissionSpoofing: an authenticated user cannot send as another
// local user, neither in MAIL FROM nor in From:.
func TestSubmissionSpoofing(t *testing.T) {
	a := startAuth(t)
	e := startServer(t, a, Submission, nil)
	c := dial(t, e)
	c.login(e, "bob@example.org", "bob-pw")
	c.cmd("MAIL FROM:<alice@example.org>", "553 5.7.1 ")
	c.cmd("MAIL FROM:<>", "553 5.7.1 ")
	c.cmd("MAIL FROM:<ceo@remote.example>", "553 5.7.1 ")
	for _, tt := range []struct{ from, want string }{
		{"From: alice@example.org\r\n", "553 5.7.1 "},
		{"From: Bob <bob@example.org>, Alice <alice@example.org>\r\n", "553 5.7.1 "},
		{"From: bob@example.org\r\nFrom: alice@example.org\r\n", "550 5.6.0 "},
		{"", "550 5.6.0 "},
		{"From: not an address\r\n", "550 5.6.0 "},
		{"From: \"Alice\" <BOB@example.org>\r\nMessage-ID: <kept@client>\r\nDate: Thu, 26 Nov 2026 10:00:00 +0000\r\n", "250 "},
	} {
		if r := c.transaction("bob@example.org", "alice@example.org", tt.from+"Subject: s\r\n\r\nx\r\n"); !strings.HasPrefix(r, tt.want) {
			t.Errorf("%q: %q, want %q", tt.from, r, tt.want)
		}
	}
	m := e.spool.one(t)
	if strings.Count(m.body, "Message-ID:") != 1 || strings.Count(m.body, "Date:") != 1 {
		t.Errorf("fields the client gave were duplicated:\n%s", m.body)
	}
}

// TestSubmissionAuthDown: auth unreachable or a lockout is a temporary
// 454 at AUTH, never a 535 that makes clients ask for a new password.
func TestSubmissionAuthDown(t *testing.T) {
	a := startAuthLockout(t)
	e := startServer(t, a, Submission, nil)
	c := dial(t, e)
	c.cmd("EHLO client.test", "250")
	c.startTLS(e)
	c.cmd("EHLO client.test", "250")
	a.Stop()
	c.cmd("AUTH PLAIN "+plain("bob@example.org", "bob-pw"), "454 4.7.0 ")
	a.Start()
	c.cmd("AUTH PLAIN "+plain("bob@example.org", "bob-pw"), "235 ")

	c2 := dial(t, e)
	c2.cmd("EHLO client.test", "250")
	c2.startTLS(e)
	c2.cmd("EHLO client.test", "250")
	c2.cmd("AUTH PLAIN "+plain("alice@example.org", "wrong"), "535 5.7.8 ")
	c2.cmd("AUTH PLAIN "+plain("alice@example.org", "wrong"), "535 5.7.8 ")
	// Locked out after two failures from this IP (the auth configured
	// below), even with the right password.
	c2.cmd("AUTH PLAIN "+plain("alice@example.org", "alice-pw"), "454 4.7.0 ")
}

// TestImplicitTLS: port 465 speaks TLS from the first byte and offers AUTH
// at once.
func TestImplicitTLS(t *testing.T) {
	a := startAuth(t)
	e := startServer(t, a, Submission, func(o *Options) { o.ImplicitTLS = true })
	c := dialTLS(t, e)
	if ehlo := c.cmd("EHLO client.test", "250-"); strings.Contains(ehlo, "STARTTLS") || !strings.Contains(ehlo, "AUTH PLAIN LOGIN") {
		t.Errorf("EHLO on implicit TLS:\n%s", ehlo)
	}
	c.cmd("AUTH PLAIN "+plain("alice@example.org", "alice-pw"), "235 ")
	if r := c.transaction("alice@example.org", "bob@example.org", message("alice@example.org", "465")); !strings.HasPrefix(r, "250 ") {
		t.Fatalf("DATA: %q", r)
	}
	e.spool.one(t)
}
