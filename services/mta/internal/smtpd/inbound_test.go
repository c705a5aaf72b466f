package smtpd

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/postcove/postcove/services/mta/internal/queue"
)

// TestInbound: mail for local users and aliases is queued with its
// routes, duplicates once, with our Received field; unknown users and
// relaying are refused at RCPT.
func TestInbound(t *testing.T) {
	a := startAuth(t)
	e := startServer(t, a, Inbound, nil)
	c := dial(t, e)
	ehlo := c.cmd("EHLO client.test", "250-")
	for _, ext := range []string{"PIPELINING", "8BITMIME", "SMTPUTF8", "SIZE 26214400", "ENHANCEDSTATUSCODES", "STARTTLS", "CHUNKING", "DSN"} {
		if !strings.Contains(ehlo, ext) {
			t.Errorf("EHLO reply lacks %s:\n%s", ext, ehlo)
		}
	}
	if strings.Contains(ehlo, "AUTH") {
		t.Errorf("port 25 offers AUTH:\n%s", ehlo)
	}

	c.cmd("MAIL FROM:<sender@remote.example>", "250 ")
	c.cmd("RCPT TO:<Alice@Example.ORG>", "250 ")
	c.cmd("RCPT TO:<team@example.org> NOTIFY=FAILURE", "250 ")
	c.cmd("RCPT TO:<nobody@example.org>", "550 5.1.1 ")
	c.cmd("RCPT TO:<carol@remote.example>", "554 5.7.1 ")
	c.cmd("RCPT TO:<loop1@example.org>", "451 4.3.0 ")
	c.cmd("DATA", "354 ")
	c.send(message("sender@remote.example", "hi") + ".\r\n")
	if r := c.reply(); !strings.HasPrefix(r, "250 2.0.0 OK: queued as Q1") {
		t.Fatalf("end of DATA: %q, want 250 with the queue ID", r)
	}
	m := e.spool.one(t)
	want := []queue.Recipient{
		{Address: "alice@example.org", Orig: "Alice@Example.ORG", Route: queue.RouteLocal},
		{Address: "bob@example.org", Orig: "team@example.org", Route: queue.RouteLocal, Notify: "FAILURE"},
		{Address: "carol@remote.example", Orig: "team@example.org", Route: queue.RouteRemote, Notify: "FAILURE"},
	}
	if fmt.Sprint(m.env.Recipients) != fmt.Sprint(want) {
		t.Errorf("recipients = %+v, want %+v", m.env.Recipients, want)
	}
	if m.env.Sender != "sender@remote.example" || m.env.AuthUser != "" || m.env.ReceivedAt.IsZero() {
		t.Errorf("envelope = %+v", m.env)
	}
	if !strings.HasPrefix(m.body, "Received: from client.test ([127.0.0.1])\r\n\tby "+testHost+" (postcove) with ESMTP;\r\n\t") {
		t.Errorf("body does not start with our Received field:\n%s", m.body)
	}
	if !strings.HasSuffix(m.body, "\r\nSubject: hi\r\n\r\nHello.\r\n") {
		t.Errorf("body does not end with the message as sent:\n%s", m.body)
	}
	// Inbound mail is not completed: that is the submission server's job.
	if strings.Contains(m.body, "Message-ID:") || strings.Contains(m.body, "Date:") {
		t.Errorf("inbound message got fields added:\n%s", m.body)
	}
}

// TestDataTransparency: DATA arriving in pieces that split lines, CRLFs
// and leading dots anywhere is dot-unstuffed exactly (RFC 5321 section
// 4.5.2) and ends only at CRLF.CRLF: the reader copies runs of a line at
// once (third_party/go-smtp), so every place a read can stop is tried.
func TestDataTransparency(t *testing.T) {
	a := startAuth(t)
	e := startServer(t, a, Inbound, nil)
	text := "From: sender@remote.example\r\nSubject: dots\r\n\r\n" +
		".\r\n" + "..\r\n" + ".. two\r\n" + "a.\r\n" + "\r\n" +
		strings.Repeat("x", 990) + "\r\n" + "end. .\r\n"
	stuffed := strings.ReplaceAll("\r\n"+text, "\r\n.", "\r\n..")[2:]
	for _, step := range []int{1, 2, 3, 7, 64, 997} {
		c := dial(t, e)
		c.cmd("EHLO client.test", "250-")
		c.cmd("MAIL FROM:<sender@remote.example>", "250 ")
		c.cmd("RCPT TO:<alice@example.org>", "250 ")
		c.cmd("DATA", "354 ")
		data := stuffed + ".\r\n"
		for i := 0; i < len(data); i += step {
			c.send(data[i:min(i+step, len(data))])
			if step < 8 && i < 200 {
				time.Sleep(time.Millisecond) // separate segments, separate reads
			}
		}
		c.expect("250 ")
		m := e.spool.all()
		if got := m[len(m)-1].body; !strings.HasSuffix(got, "\r\n"+text) {
			t.Errorf("pieces of %d bytes: queued body ends\n%q\nwant it to end with\n%q", step, got[max(0, len(got)-len(text)-20):], text)
		}
	}
}

// TestOpenRelay: every way of asking port 25 to relay is refused, and
// nothing is queued. Refusals are permanent: a retry would not help.
func TestOpenRelay(t *testing.T) {
	a := startAuth(t)
	e := startServer(t, a, Inbound, nil)
	c := dial(t, e)
	c.cmd("EHLO client.test", "250")
	c.cmd("MAIL FROM:<spammer@remote.example>", "250 ")
	for _, tt := range []struct{ rcpt, want string }{
		{"<carol@remote.example>", "554 5.7.1 "},
		{"<CAROL@Remote.Example>", "554 5.7.1 "},
		// The %-hack: some MTAs route user%other@ourdomain to
		// user@other.
		{"<carol%remote.example@example.org>", "553 5.1.3 "},
		// Quoted local part holding an @: go-smtp unquotes it.
		{`<"carol@remote.example"@example.org>`, "553 5.1.3 "},
		{`<"carol"@example.org>`, "550 5.1.1 "},
		// UUCP bang path.
		{"<remote.example!carol@example.org>", "553 5.1.3 "},
		// Source routes: dropped (RFC 5321 section 4.1.1.3), so the
		// final address is what counts.
		{"<@example.org:carol@remote.example>", "554 5.7.1 "},
		{"<@example.org,@mx.example.org:carol@remote.example>", "554 5.7.1 "},
		// A second @, an address literal, a domain without a dot.
		{"<carol@remote.example@example.org>", "553 5.1.3 "},
		{"<alice@example.org@remote.example>", "553 5.1.3 "},
		{"<carol@[192.0.2.1]>", "553 5.1.3 "},
		{"<carol@localhost>", "553 5.1.3 "},
		{"<postmaster>", "501 5.5.2 "},
	} {
		c.send("RCPT TO:" + tt.rcpt + "\r\n")
		if r := c.reply(); !strings.HasPrefix(r, tt.want) {
			t.Errorf("RCPT TO:%s = %q, want %q", tt.rcpt, r, tt.want)
		}
	}
	c.cmd("DATA", "502 5.5.1 ") // no recipient was accepted
	c.cmd("QUIT", "221 ")
	if n := len(e.spool.all()); n != 0 {
		t.Errorf("queued %d messages, want 0", n)
	}
}

// TestSourceRouteLocal: a source route in front of a local address is
// ignored, the message goes to the local user only.
func TestSourceRouteLocal(t *testing.T) {
	a := startAuth(t)
	e := startServer(t, a, Inbound, nil)
	c := dial(t, e)
	c.cmd("EHLO client.test", "250")
	if r := c.transaction("s@remote.example", "@remote.example:alice@example.org", message("s@remote.example", "route")); !strings.HasPrefix(r, "250 ") {
		t.Fatalf("DATA: %q", r)
	}
	if got := e.spool.one(t).env.Recipients; len(got) != 1 || got[0].Address != "alice@example.org" || got[0].Route != queue.RouteLocal {
		t.Errorf("recipients = %+v, want alice only, local", got)
	}
}

// TestAuthDown: auth unreachable answers 451, never 5xx (DESIGN.md
// invariant 2), and mail flows again once auth is back.
func TestAuthDown(t *testing.T) {
	a := startAuth(t)
	e := startServer(t, a, Inbound, nil)
	c := dial(t, e)
	c.cmd("EHLO client.test", "250")
	c.cmd("MAIL FROM:<s@remote.example>", "250 ")
	a.Stop()
	c.cmd("RCPT TO:<alice@example.org>", "451 4.3.0 ")
	c.cmd("RCPT TO:<carol@remote.example>", "451 4.3.0 ")
	a.Start()
	c.cmd("RCPT TO:<alice@example.org>", "250 ")
	c.cmd("DATA", "354 ")
	c.send(message("s@remote.example", "back") + ".\r\n")
	c.expect("250 ")
	e.spool.one(t)
}

// TestQueueFailure: when the queue cannot store the message the client
// hears 452 (disk full) or 451, never 250.
func TestQueueFailure(t *testing.T) {
	a := startAuth(t)
	e := startServer(t, a, Inbound, nil)
	c := dial(t, e)
	c.cmd("EHLO client.test", "250")
	for _, tt := range []struct {
		err  error
		want string
	}{
		{fmt.Errorf("%w (message x: disk full)", queue.ErrNoSpace), "452 4.3.1 "},
		{errors.New("queue: fsync: input/output error"), "451 4.3.0 "},
	} {
		e.spool.setErr(tt.err)
		if r := c.transaction("s@remote.example", "alice@example.org", message("s@remote.example", "x")); !strings.HasPrefix(r, tt.want) {
			t.Errorf("queue error %v: reply %q, want %q", tt.err, r, tt.want)
		}
	}
	e.spool.setErr(nil)
	if r := c.transaction("s@remote.example", "alice@example.org", message("s@remote.example", "x")); !strings.HasPrefix(r, "250 ") {
		t.Errorf("after the queue recovered: %q", r)
	}
}
