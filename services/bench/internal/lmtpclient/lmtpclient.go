// Package lmtpclient is a small LMTP client (RFC 2033) for the benchmarks:
// LHLO once, then any number of sequential transactions (MAIL, RCPT...,
// DATA) on the same connection, reading one DATA reply per accepted
// recipient. Replies are returned whatever their code; an error means the
// connection can no longer be trusted and should be closed.
//
// The same client speaks SMTP (RFC 5321, DialSMTP), the protocol LMTP is
// derived from: EHLO instead of LHLO, and one DATA reply for the whole
// transaction (RFC 2033 section 4.2 is the difference). No extension is
// used (no PIPELINING, no AUTH, no STARTTLS): each command waits for its
// reply.
package lmtpclient

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/textproto"
	"strings"
	"time"
)

// Reply is one server reply; Text holds the lines of a multi-line reply
// joined by "\n".
type Reply struct {
	Code int
	Text string
}

func (r Reply) String() string { return fmt.Sprintf("%d %s", r.Code, r.Text) }

// OK reports whether the reply is a 2xx.
func (r Reply) OK() bool { return r.Code >= 200 && r.Code < 300 }

// Client is one LMTP or SMTP connection.
type Client struct {
	conn  net.Conn
	r     *textproto.Reader
	w     *bufio.Writer
	proto string // "lmtp" or "smtp", in messages
	smtp  bool   // one DATA reply per transaction, not one per recipient
	// dataWait is how long the last Deliver waited, after the end of its
	// data was sent, for the first DATA reply.
	dataWait time.Duration
}

// Dial connects to an LMTP server at addr, reads the 220 greeting and
// sends LHLO name.
func Dial(ctx context.Context, addr, name string) (*Client, error) {
	return dial(ctx, addr, "lmtp", "LHLO "+name)
}

// DialSMTP connects to an SMTP server at addr, reads the 220 greeting and
// sends EHLO name.
func DialSMTP(ctx context.Context, addr, name string) (*Client, error) {
	return dial(ctx, addr, "smtp", "EHLO "+name)
}

func dial(ctx context.Context, addr, proto, hello string) (*Client, error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", proto, err)
	}
	c := &Client{conn: conn, r: textproto.NewReader(bufio.NewReader(conn)), w: bufio.NewWriterSize(conn, 64<<10), proto: proto, smtp: proto == "smtp"}
	c.deadline(ctx)
	if err := c.expect("greeting", 220); err != nil {
		conn.Close()
		return nil, err
	}
	verb, _, _ := strings.Cut(hello, " ")
	if err := c.cmd(hello); err != nil {
		conn.Close()
		return nil, err
	}
	if err := c.expect(verb, 250); err != nil {
		conn.Close()
		return nil, err
	}
	return c, nil
}

// DataWait is how long the last Deliver waited for the server's answer to
// the message: from the end of the data (the "." line) being sent to the
// first DATA reply. For an SMTP server that is the time it takes to
// accept the message (queue it durably) before its 250.
func (c *Client) DataWait() time.Duration { return c.dataWait }

// Close sends QUIT (not waiting long for its reply) and closes the
// connection.
func (c *Client) Close() error {
	c.conn.SetDeadline(time.Now().Add(time.Second))
	if c.cmd("QUIT") == nil {
		c.r.ReadResponse(0) //nolint:errcheck // best effort
	}
	return c.conn.Close()
}

func (c *Client) deadline(ctx context.Context) {
	if d, ok := ctx.Deadline(); ok {
		c.conn.SetDeadline(d)
	} else {
		c.conn.SetDeadline(time.Time{})
	}
}

func (c *Client) cmd(line string) error {
	if _, err := c.w.WriteString(line + "\r\n"); err != nil {
		return fmt.Errorf("%s: write: %w", c.proto, err)
	}
	if err := c.w.Flush(); err != nil {
		return fmt.Errorf("%s: write: %w", c.proto, err)
	}
	return nil
}

func (c *Client) reply() (Reply, error) {
	code, text, err := c.r.ReadResponse(0)
	if err != nil {
		var perr *textproto.Error
		if errors.As(err, &perr) {
			return Reply{perr.Code, perr.Msg}, nil
		}
		return Reply{}, fmt.Errorf("%s: read reply: %w", c.proto, err)
	}
	return Reply{code, text}, nil
}

// ReplyError is an unexpected reply to a command.
type ReplyError struct {
	Proto string // "lmtp" or "smtp"
	Cmd   string
	Reply Reply
}

func (e *ReplyError) Error() string { return fmt.Sprintf("%s: %s: %s", e.Proto, e.Cmd, e.Reply) }

func (c *Client) expect(what string, code int) error {
	r, err := c.reply()
	if err != nil {
		return err
	}
	if r.Code != code {
		return &ReplyError{c.proto, what, r}
	}
	return nil
}

// Deliver runs one transaction: MAIL FROM:<from>, RCPT TO:<r> for each
// recipient, and when at least one was accepted, DATA with msg
// (dot-stuffed, line ends made CRLF). It returns one reply per recipient,
// in order: the RCPT reply for those refused, the DATA reply for the
// others (over SMTP the one DATA reply, for each of them). A refused MAIL
// is a *ReplyError; when no recipient is accepted the transaction is
// reset (RSET) so the connection stays usable.
func (c *Client) Deliver(ctx context.Context, from string, rcpts []string, msg []byte) ([]Reply, error) {
	c.deadline(ctx)
	if err := c.cmd("MAIL FROM:<" + from + ">"); err != nil {
		return nil, err
	}
	if err := c.expect("MAIL", 250); err != nil {
		return nil, err
	}
	replies := make([]Reply, len(rcpts))
	var accepted []int
	for i, r := range rcpts {
		if err := c.cmd("RCPT TO:<" + r + ">"); err != nil {
			return nil, err
		}
		rep, err := c.reply()
		if err != nil {
			return nil, err
		}
		replies[i] = rep
		if rep.OK() {
			accepted = append(accepted, i)
		}
	}
	if len(accepted) == 0 {
		if err := c.cmd("RSET"); err != nil {
			return nil, err
		}
		return replies, c.expect("RSET", 250)
	}
	if err := c.cmd("DATA"); err != nil {
		return nil, err
	}
	if err := c.expect("DATA", 354); err != nil {
		return nil, err
	}
	if err := writeDotStuffed(c.w, msg); err != nil {
		return nil, fmt.Errorf("%s: write: %w", c.proto, err)
	}
	if err := c.w.Flush(); err != nil {
		return nil, fmt.Errorf("%s: write: %w", c.proto, err)
	}
	sent := time.Now()
	for n, i := range accepted {
		if c.smtp && n > 0 {
			replies[i] = replies[accepted[0]]
			continue
		}
		rep, err := c.reply()
		if err != nil {
			return nil, err
		}
		if n == 0 {
			c.dataWait = time.Since(sent)
		}
		replies[i] = rep
	}
	return replies, nil
}

// writeDotStuffed writes msg as DATA content: every line ended with CRLF,
// a leading "." doubled (RFC 5321 4.5.2), then the "." line.
func writeDotStuffed(w *bufio.Writer, msg []byte) error {
	for len(msg) > 0 {
		line := msg
		rest := []byte(nil)
		if i := bytes.IndexByte(msg, '\n'); i >= 0 {
			line, rest = msg[:i], msg[i+1:]
		}
		line = bytes.TrimSuffix(line, []byte("\r"))
		if len(line) > 0 && line[0] == '.' {
			w.WriteByte('.')
		}
		w.Write(line)
		w.WriteString("\r\n")
		msg = rest
	}
	_, err := w.WriteString(".\r\n")
	return err
}
