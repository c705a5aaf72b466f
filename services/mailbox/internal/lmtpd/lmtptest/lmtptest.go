// Package lmtptest is a raw LMTP client for tests (RFC 2033): it writes
// the lines it is given and reads replies one by one, so that a test sees
// exactly what a server answers, pipelining included. Failures to talk end
// the test; replies, whatever their code, are returned.
package lmtptest

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/textproto"
	"strings"
	"testing"
	"time"
)

// Timeout bounds a whole test connection.
const Timeout = 30 * time.Second

// Client is one LMTP connection.
type Client struct {
	t    testing.TB
	Conn net.Conn
	r    *textproto.Reader
}

// Reply is one server reply; Text holds the enhanced status code and the
// text, lines of a multi-line reply joined by "\n".
type Reply struct {
	Code int
	Text string
}

func (r Reply) String() string { return fmt.Sprintf("%d %s", r.Code, r.Text) }

// Dial connects to addr, reads the 220 greeting and closes the connection
// when the test ends.
func Dial(t testing.TB, addr string) *Client {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	conn.SetDeadline(time.Now().Add(Timeout))
	c := &Client{t: t, Conn: conn, r: textproto.NewReader(bufio.NewReader(conn))}
	c.Expect(220, "LMTP")
	return c
}

// Send writes lines, each ended with CRLF, in one write: several lines
// are a pipelined batch (RFC 2920).
func (c *Client) Send(lines ...string) {
	c.t.Helper()
	c.Write(strings.Join(lines, "\r\n") + "\r\n")
}

// Write writes s as it is.
func (c *Client) Write(s string) {
	c.t.Helper()
	if _, err := io.WriteString(c.Conn, s); err != nil {
		c.t.Fatalf("write: %v", err)
	}
}

// Reply reads one reply.
func (c *Client) Reply() Reply {
	c.t.Helper()
	code, text, err := c.r.ReadResponse(0)
	if err != nil {
		c.t.Fatalf("read reply: %v", err)
	}
	return Reply{code, text}
}

// Expect reads a reply and checks its code and that its text contains
// want.
func (c *Client) Expect(code int, want string) Reply {
	c.t.Helper()
	r := c.Reply()
	if r.Code != code || !strings.Contains(r.Text, want) {
		c.t.Fatalf("reply = %v, want %d containing %q", r, code, want)
	}
	return r
}

// Closed reports whether the server has closed the connection: the next
// read finds the end of the stream (or a reset) instead of a line.
func (c *Client) Closed() bool {
	_, err := c.r.ReadLine()
	return err != nil
}

// LHLO greets and returns the capabilities.
func (c *Client) LHLO() Reply {
	c.t.Helper()
	c.Send("LHLO mta.test")
	return c.Expect(250, "PIPELINING")
}

// Transaction sends MAIL and each RCPT and, when at least one RCPT was
// accepted, DATA with msg; else RSET. It returns the RCPT replies and the
// DATA replies, one per accepted recipient (RFC 2033 section 4.2).
func (c *Client) Transaction(from string, rcpts []string, msg string) (rcptReplies, dataReplies []Reply) {
	c.t.Helper()
	c.Send("MAIL FROM:<" + from + ">")
	c.Expect(250, "")
	accepted := 0
	for _, r := range rcpts {
		c.Send("RCPT TO:<" + r + ">")
		rep := c.Reply()
		rcptReplies = append(rcptReplies, rep)
		if rep.Code == 250 {
			accepted++
		}
	}
	if accepted == 0 {
		c.Send("RSET")
		c.Expect(250, "")
		return rcptReplies, nil
	}
	c.Send("DATA")
	c.Expect(354, "")
	c.SendData(msg)
	for range accepted {
		dataReplies = append(dataReplies, c.Reply())
	}
	return rcptReplies, dataReplies
}

// SendData writes msg dot-stuffed (RFC 5321 section 4.5.2), then the
// end-of-data line.
func (c *Client) SendData(msg string) {
	c.t.Helper()
	var b strings.Builder
	for _, line := range strings.SplitAfter(msg, "\r\n") {
		if strings.HasPrefix(line, ".") {
			b.WriteString(".")
		}
		b.WriteString(line)
	}
	if !strings.HasSuffix(msg, "\r\n") {
		b.WriteString("\r\n")
	}
	b.WriteString(".\r\n")
	c.Write(b.String())
}

// Codes returns the codes of replies, for comparisons.
func Codes(rs []Reply) []int {
	out := make([]int, len(rs))
	for i, r := range rs {
		out[i] = r.Code
	}
	return out
}

// Message builds a message with CRLF line ends: a From, a Subject and a
// unique Message-ID, then the header lines given, then body (whose "\n"
// become CRLF).
func Message(body string, header ...string) string {
	header = append([]string{
		"From: sender@remote.example",
		"Subject: test",
		fmt.Sprintf("Message-ID: <%d@remote.example>", time.Now().UnixNano()),
	}, header...)
	return strings.Join(header, "\r\n") + "\r\n\r\n" + strings.ReplaceAll(body, "\n", "\r\n")
}
