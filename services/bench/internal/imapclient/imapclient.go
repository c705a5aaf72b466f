// Package imapclient is the IMAP client of the benchmarks: the few
// commands they send (LOGIN, SELECT, FETCH, SEARCH, LOGOUT) as raw
// protocol, IMAP4rev1 (RFC 3501), with responses handed to the caller line
// by line and literals read into memory.
//
// It is deliberately thin, not a general client such as go-imap's: it
// parses no more than framing (tags, literals), so that its own cost per
// response is small next to the server's and the same for every server it
// measures. The caller parses what it checks.
package imapclient

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"time"
)

// Client is one IMAP connection. It is not safe for concurrent use.
type Client struct {
	conn net.Conn
	r    *bufio.Reader
	w    *bufio.Writer
	tag  int
	line []byte // reused by readLine
}

// Dial connects to addr and reads the server's greeting, which must be OK
// (RFC 3501 section 7.1.1; PREAUTH and BYE are refused).
func Dial(ctx context.Context, addr string) (*Client, error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	c := &Client{conn: conn, r: bufio.NewReaderSize(conn, 64<<10), w: bufio.NewWriter(conn)}
	stop := c.watch(ctx)
	defer stop()
	line, err := c.readLine()
	if err == nil && !bytes.HasPrefix(line, []byte("* OK")) {
		err = fmt.Errorf("greeting %q, want * OK", trim(line))
	}
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("imap %s: %w", addr, err)
	}
	return c, nil
}

// Close closes the connection without LOGOUT.
func (c *Client) Close() error { return c.conn.Close() }

// Untagged is one untagged response ("* ..."), valid only during the
// handler's call.
type Untagged struct {
	// Line is the response without its "* " and final CRLF; each literal
	// in it is left as its "{n}" marker followed by CRLF.
	Line []byte
	// Literals are the literals' data, in order.
	Literals [][]byte
}

// StatusError is a command's tagged NO or BAD.
type StatusError struct {
	Command string
	Line    string // the tagged response, tag removed
}

func (e *StatusError) Error() string { return fmt.Sprintf("%s: %s", e.Command, e.Line) }

// Command sends cmd (without tag and CRLF) and reads the responses until
// its tagged one, which must be OK. Every untagged response goes to handle
// (nil: ignored); an error from handle is returned once the command has
// completed, so the connection stays usable.
func (c *Client) Command(ctx context.Context, cmd string, handle func(Untagged) error) error {
	stop := c.watch(ctx)
	defer stop()
	c.tag++
	tag := "b" + strconv.Itoa(c.tag)
	if _, err := fmt.Fprintf(c.w, "%s %s\r\n", tag, cmd); err != nil {
		return err
	}
	if err := c.w.Flush(); err != nil {
		return err
	}
	name, _, _ := strings.Cut(cmd, " ")
	var handleErr error
	for {
		line, err := c.readLine()
		if err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		if rest, ok := bytes.CutPrefix(line, []byte(tag+" ")); ok {
			if !bytes.HasPrefix(rest, []byte("OK")) {
				return &StatusError{Command: name, Line: string(trim(rest))}
			}
			return handleErr
		}
		rest, ok := bytes.CutPrefix(line, []byte("* "))
		if !ok {
			// A continuation request ("+"): nothing here sends literals.
			return fmt.Errorf("%s: unexpected response %q", name, trim(line))
		}
		u := Untagged{Line: rest}
		for {
			n, ok := literalSize(u.Line)
			if !ok {
				break
			}
			lit := make([]byte, n)
			if _, err := io.ReadFull(c.r, lit); err != nil {
				return fmt.Errorf("%s: literal: %w", name, err)
			}
			u.Literals = append(u.Literals, lit)
			// The line goes on after the literal.
			more, err := c.readMore()
			if err != nil {
				return fmt.Errorf("%s: %w", name, err)
			}
			u.Line = more[len("* "):]
		}
		u.Line = trim(u.Line)
		if handle != nil && handleErr == nil {
			handleErr = handle(u)
		}
	}
}

// Login sends LOGIN with user and password as quoted strings.
func (c *Client) Login(ctx context.Context, user, password string) error {
	return c.Command(ctx, "LOGIN "+Quote(user)+" "+Quote(password), nil)
}

// Select selects mailbox and returns its EXISTS count.
func (c *Client) Select(ctx context.Context, mailbox string) (int, error) {
	exists := -1
	err := c.Command(ctx, "SELECT "+Quote(mailbox), func(u Untagged) error {
		if n, ok := bytes.CutSuffix(u.Line, []byte(" EXISTS")); ok {
			v, err := strconv.Atoi(string(n))
			if err != nil {
				return fmt.Errorf("bad EXISTS %q", u.Line)
			}
			exists = v
		}
		return nil
	})
	if err == nil && exists < 0 {
		err = errors.New("SELECT: no EXISTS response")
	}
	return exists, err
}

// Logout sends LOGOUT and closes the connection.
func (c *Client) Logout(ctx context.Context) error {
	return errors.Join(c.Command(ctx, "LOGOUT", nil), c.Close())
}

// Quote makes s an IMAP quoted string (RFC 3501 section 4.3): s may not
// hold CR, LF or NUL, which only a literal can carry.
func Quote(s string) string {
	return `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(s) + `"`
}

// watch makes the connection's reads and writes fail once ctx ends.
func (c *Client) watch(ctx context.Context) (stop func() bool) {
	if dl, ok := ctx.Deadline(); ok {
		c.conn.SetDeadline(dl) //nolint:errcheck // a TCP conn
	} else {
		c.conn.SetDeadline(time.Time{}) //nolint:errcheck // a TCP conn
	}
	return context.AfterFunc(ctx, func() { c.conn.SetDeadline(time.Unix(1, 0)) }) //nolint:errcheck // a TCP conn
}

// readLine reads up to and including LF. The result is valid until the
// next read.
func (c *Client) readLine() ([]byte, error) {
	c.line = c.line[:0]
	more, err := c.readMore()
	c.line = more
	return more, err
}

// readMore appends the next line to c.line and returns all of it.
func (c *Client) readMore() ([]byte, error) {
	for {
		chunk, err := c.r.ReadSlice('\n')
		c.line = append(c.line, chunk...)
		if err == nil {
			return c.line, nil
		}
		if !errors.Is(err, bufio.ErrBufferFull) {
			return nil, err
		}
	}
}

// literalSize reports whether line ends with a literal's "{n}" (RFC 3501
// section 4.3: the data follows the CRLF) and its size.
func literalSize(line []byte) (int, bool) {
	line = trim(line)
	if len(line) < 3 || line[len(line)-1] != '}' {
		return 0, false
	}
	i := bytes.LastIndexByte(line, '{')
	if i < 0 {
		return 0, false
	}
	n, err := strconv.Atoi(string(line[i+1 : len(line)-1]))
	if err != nil || n < 0 {
		return 0, false
	}
	return n, true
}

func trim(line []byte) []byte { return bytes.TrimRight(line, "\r\n") }
