package smtpd

import (
	"crypto/tls"
	"fmt"
	"strconv"
	"strings"
	"testing"
)

// smuggled is what an SMTP smuggling attack hides after a fake end of
// data: a second transaction, which a server that took the fake end for
// the real one would run as if the client had sent it.
const smuggled = "MAIL FROM:<ceo@example.org>\r\nRCPT TO:<alice@example.org>\r\nDATA\r\nFrom: ceo@example.org\r\nSubject: smuggled\r\n\r\nPay now.\r\n"

// TestSmuggling: every end-of-data variant that is not CRLF "." CRLF is
// refused (550 5.5.2, one reply, nothing queued, the hidden commands
// never run). The real end of data is then what ends the transaction.
func TestSmuggling(t *testing.T) {
	a := startAuth(t)
	e := startServer(t, a, Inbound, nil)
	for _, fakeEnd := range []string{"\n.\r\n", "\r.\r\n", "\n.\n", "\r\n.\n", "\n.\r", "\r.\n", "\r\n.\r", "\r\n.\rX"} {
		t.Run(strconv.Quote(fakeEnd), func(t *testing.T) {
			c := dial(t, e)
			c.cmd("EHLO client.test", "250")
			if r := smuggle(c, fakeEnd); !strings.HasPrefix(r, "550 5.5.2 ") {
				t.Errorf("end of data: %q, want 550 5.5.2", r)
			}
			if n := len(e.spool.all()); n != 0 {
				t.Errorf("queued %d messages, want none", n)
			}
		})
	}
}

// TestSmugglingTLS: inside TLS go-smtp's reader drops a CRLF "." CR not
// followed by LF (the one variant it hides), and what follows stays
// content of the one message the client sent: nothing is smuggled.
func TestSmugglingTLS(t *testing.T) {
	a := startAuth(t)
	e := startServer(t, a, Inbound, nil)
	c := dial(t, e)
	c.cmd("EHLO client.test", "250")
	c.startTLS(e)
	c.cmd("EHLO client.test", "250")
	if r := smuggle(c, "\r\n.\r"); !strings.HasPrefix(r, "250 ") {
		t.Fatalf("end of data: %q, want 250", r)
	}
	msgs := e.spool.all()
	if len(msgs) != 1 || len(msgs[0].env.Recipients) != 1 || msgs[0].env.Recipients[0].Address != "bob@example.org" ||
		!strings.Contains(msgs[0].body, "\r\nSubject: legit\r\n") || !strings.Contains(msgs[0].body, "\r\nMAIL FROM:<ceo@example.org>\r\n") {
		t.Errorf("queued %+v, want the one message to bob, the hidden commands in its body", msgs)
	}
}

// smuggle sends a message to bob with fakeEnd and a hidden transaction
// after it, then the real end of data, and returns the reply. The next
// reply must then answer NOOP: a reply to a hidden MAIL, RCPT or DATA
// would come first.
func smuggle(c *client, fakeEnd string) string {
	c.t.Helper()
	c.cmd("MAIL FROM:<a@remote.example>", "250 ")
	c.cmd("RCPT TO:<bob@example.org>", "250 ")
	c.cmd("DATA", "354 ")
	c.send("From: a@remote.example\r\nSubject: legit\r\n\r\nhello" + fakeEnd + smuggled + ".\r\n")
	r := c.reply()
	c.cmd("NOOP", "250 2.0.0 I have successfully done nothing")
	return r
}

// TestBareLineEndings: bare CR or LF anywhere in DATA or BDAT is
// refused; CRLF-only messages, dots unstuffed, pass.
func TestBareLineEndings(t *testing.T) {
	a := startAuth(t)
	e := startServer(t, a, Inbound, nil)
	c := dial(t, e)
	c.cmd("EHLO client.test", "250")
	for _, tt := range []struct{ name, body, want string }{
		{"bare LF in header", "Subject: a\nFrom: b@remote.example\r\n\r\nx\r\n", "550 5.5.2 "},
		{"bare CR in body", "Subject: a\r\n\r\nx\ry\r\n", "550 5.5.2 "},
		{"bare LF in body", "Subject: a\r\n\r\nx\ny\r\n", "550 5.5.2 "},
		{"CRLF only", "Subject: a\r\n\r\n..dot\r\nx\r\n", "250 "},
	} {
		if r := c.transaction("a@remote.example", "alice@example.org", tt.body); !strings.HasPrefix(r, tt.want) {
			t.Errorf("%s: %q, want %q", tt.name, r, tt.want)
		}
	}
	if m := e.spool.one(t); !strings.HasSuffix(m.body, "\r\n\r\n.dot\r\nx\r\n") {
		t.Errorf("body = %q, want the dot unstuffed", m.body)
	}

	// BDAT (RFC 3030) carries the bytes as they are, no dot stuffing.
	for _, tt := range []struct{ name, chunk, want string }{
		{"BDAT bare LF", "Subject: a\r\n\r\nx\n.\r\n", "550 5.5.2 "},
		{"BDAT bare CR", "Subject: a\r\n\r\nx\r.\r\n", "550 5.5.2 "},
		{"BDAT CRLF", "Subject: b\r\n\r\nx\r\n.\r\n", "250 "},
	} {
		c.cmd("MAIL FROM:<a@remote.example>", "250 ")
		c.cmd("RCPT TO:<alice@example.org>", "250 ")
		c.send(fmt.Sprintf("BDAT %d LAST\r\n%s", len(tt.chunk), tt.chunk))
		if r := c.reply(); !strings.HasPrefix(r, tt.want) {
			t.Errorf("%s: %q, want %q", tt.name, r, tt.want)
		}
	}
	if n := len(e.spool.all()); n != 2 {
		t.Errorf("queued %d messages, want 2", n)
	}
}

// TestStartTLSInjection: commands pipelined after STARTTLS in the same
// packet were sent in the clear and must not run inside TLS
// (CVE-2011-0411).
func TestStartTLSInjection(t *testing.T) {
	a := startAuth(t)
	e := startServer(t, a, Inbound, nil)
	c := dial(t, e)
	c.cmd("EHLO client.test", "250")
	c.send("STARTTLS\r\nMAIL FROM:<injected@remote.example>\r\n")
	c.expect("220 ")
	tc := tls.Client(c.conn, &tls.Config{RootCAs: e.ca, ServerName: "localhost"})
	if err := tc.Handshake(); err != nil {
		t.Fatalf("handshake: %v", err)
	}
	c.conn, c.r = tc, newReader(tc)
	// A reply to the injected MAIL would come before this one.
	ehlo := c.cmd("EHLO client.test", "250-")
	if strings.Contains(ehlo, "STARTTLS") {
		t.Errorf("STARTTLS offered again inside TLS:\n%s", ehlo)
	}
	// And the injected MAIL left no transaction behind.
	c.cmd("RCPT TO:<alice@example.org>", "502 5.5.1 ")
	if got := c.transaction("s@remote.example", "alice@example.org", message("s@remote.example", "tls")); !strings.HasPrefix(got, "250 ") {
		t.Fatalf("DATA over TLS: %q", got)
	}
	if m := e.spool.one(t); !strings.Contains(m.body, "with ESMTPS\r\n\t(TLS 1.3 ") {
		t.Errorf("Received field lacks the TLS details:\n%s", m.body)
	}
}

// TestLoop: 51 Received fields are a loop (554 5.4.6); 50 pass.
func TestLoop(t *testing.T) {
	a := startAuth(t)
	e := startServer(t, a, Inbound, nil)
	c := dial(t, e)
	c.cmd("EHLO client.test", "250")
	hops := func(n int) string {
		return strings.Repeat("Received: from a by b; Thu, 26 Nov 2026 10:00:00 +0000\r\n", n) + message("s@remote.example", "loop")
	}
	if r := c.transaction("s@remote.example", "alice@example.org", hops(51)); !strings.HasPrefix(r, "554 5.4.6 ") {
		t.Errorf("51 Received: %q, want 554 5.4.6", r)
	}
	if r := c.transaction("s@remote.example", "alice@example.org", hops(50)); !strings.HasPrefix(r, "250 ") {
		t.Errorf("50 Received: %q, want 250", r)
	}
	if m := e.spool.one(t); strings.Count(m.body, "Received:") != 51 {
		t.Errorf("queued message has %d Received fields, want 51 (ours added)", strings.Count(m.body, "Received:"))
	}
}

// TestSize: a message over the limit is refused with 552 5.3.4 when SIZE=
// announces it, and when it arrives anyway; the header has a limit too.
func TestSize(t *testing.T) {
	a := startAuth(t)
	e := startServer(t, a, Inbound, func(o *Options) {
		o.MaxMessageBytes = 10 << 10
		o.MaxHeaderBytes = 2 << 10
	})
	c := dial(t, e)
	if ehlo := c.cmd("EHLO client.test", "250"); !strings.Contains(ehlo, "SIZE 10240") {
		t.Errorf("EHLO does not announce the limit:\n%s", ehlo)
	}
	c.cmd("MAIL FROM:<s@remote.example> SIZE=10241", "552 5.3.4 ")
	c.cmd("MAIL FROM:<s@remote.example> SIZE=10240", "250 ")
	c.cmd("RCPT TO:<alice@example.org>", "250 ")
	c.cmd("DATA", "354 ")
	c.send(message("s@remote.example", "big") + strings.Repeat(strings.Repeat("x", 98)+"\r\n", 110) + ".\r\n")
	c.expect("552 5.3.4 ")
	big := "Subject: big header\r\nX-Filler: " + strings.Repeat("y", 900) + "\r\n"
	if r := c.transaction("s@remote.example", "alice@example.org", big+big+big+"\r\nbody\r\n"); !strings.HasPrefix(r, "552 5.3.4 ") {
		t.Errorf("header over the limit: %q, want 552 5.3.4", r)
	}
	// BDAT over the limit, in one chunk.
	c.cmd("MAIL FROM:<s@remote.example>", "250 ")
	c.cmd("RCPT TO:<alice@example.org>", "250 ")
	// (In lines: go-smtp discards a refused chunk under the line
	// length limit.)
	chunk := strings.Repeat(strings.Repeat("z", 98)+"\r\n", 110)
	c.send(fmt.Sprintf("BDAT %d LAST\r\n%s", len(chunk), chunk))
	c.expect("552 5.3.4 ")
	c.cmd("NOOP", "250 ")
	if n := len(e.spool.all()); n != 0 {
		t.Errorf("queued %d messages, want 0", n)
	}
}

// TestHeaderChecks: control characters in the header are refused;
// Authentication-Results claiming our name are removed, others kept.
func TestHeaderChecks(t *testing.T) {
	a := startAuth(t)
	e := startServer(t, a, Inbound, nil)
	c := dial(t, e)
	c.cmd("EHLO client.test", "250")
	for _, bad := range []string{"Subject: a\x00b\r\n\r\nx\r\n", "Subject: a\x1bb\r\n\r\nx\r\n", "not a header line\r\n\r\nx\r\n", " continuation first\r\n\r\nx\r\n"} {
		if r := c.transaction("s@remote.example", "alice@example.org", bad); !strings.HasPrefix(r, "554 5.6.0 ") {
			t.Errorf("header %q: %q, want 554 5.6.0", bad, r)
		}
	}
	// Envelope addresses with control characters (a quoted local part
	// can carry them) are refused too.
	c.cmd("MAIL FROM:<\"a\x01b\"@remote.example>", "553 5.1.7 ")
	c.cmd("MAIL FROM:<s@remote.example>", "250 ")
	c.cmd("RCPT TO:<\"a\x01b\"@example.org>", "553 5.1.3 ")
	c.cmd("RSET", "250 ")

	msg := "Authentication-Results: " + testHost + "; dkim=pass header.d=example.org\r\n" +
		"Authentication-Results: (comment) MX.Example.ORG;\r\n spf=pass\r\n" +
		"Authentication-Results: other.example; spf=fail\r\n" + message("s@remote.example", "ar")
	if r := c.transaction("s@remote.example", "alice@example.org", msg); !strings.HasPrefix(r, "250 ") {
		t.Fatalf("DATA: %q", r)
	}
	body := e.spool.one(t).body
	if n := strings.Count(body, "Authentication-Results:"); n != 1 || !strings.Contains(body, "Authentication-Results: other.example; spf=fail\r\n") {
		t.Errorf("want only other.example's Authentication-Results kept:\n%s", body)
	}
}

// TestLimits: connections over the per-IP limit get 421; lines over the
// limit end the session; a silent client is dropped after the timeout.
func TestLimits(t *testing.T) {
	a := startAuth(t)
	e := startServer(t, a, Inbound, func(o *Options) {
		o.MaxConnectionsPerIP = 2
		o.MaxLineLength = 1000
		o.MaxRecipients = 2
	})
	c1 := dial(t, e)
	dial(t, e)
	c3 := dialRaw(t, e)
	c3.expect("421 4.7.0 ")
	if !c3.closed() {
		t.Error("refused connection left open")
	}

	c1.cmd("EHLO client.test", "250")
	c1.cmd("MAIL FROM:<s@remote.example>", "250 ")
	c1.cmd("RCPT TO:<alice@example.org>", "250 ")
	c1.cmd("RCPT TO:<bob@example.org>", "250 ")
	c1.cmd("RCPT TO:<team@example.org>", "452 4.5.3 ")
	c1.send("NOOP " + strings.Repeat("x", 1000) + "\r\n")
	c1.expect("500 5.4.0 ")
	if !c1.closed() {
		t.Error("session with an overlong line left open")
	}
}

// TestIdleTimeout: a client that says nothing is told 421 and dropped.
func TestIdleTimeout(t *testing.T) {
	a := startAuth(t)
	e := startServer(t, a, Inbound, func(o *Options) { o.ReadTimeout = 300 * 1e6 })
	c := dial(t, e)
	c.expect("421 4.4.2 ")
	if !c.closed() {
		t.Error("idle session left open")
	}
}
