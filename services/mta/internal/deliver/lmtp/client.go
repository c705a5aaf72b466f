package lmtp

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/postcove/postcove/services/mta/internal/deliver"
	"github.com/postcove/postcove/services/mta/internal/queue"
)

// writeBufferSize is a connection's write buffer: the commands of a
// transaction and a small message leave in one write.
const writeBufferSize = 64 << 10

// conn is an LMTP session with one mailbox server.
type conn struct {
	nc     net.Conn
	r      *bufio.Reader // the server's replies, at most maxReplyLine a line
	w      *bufio.Writer // our commands and messages
	addr   string
	ext    map[string]string // LHLO extension keywords, upper case, and their parameters
	usedAt time.Time
}

func (cn *conn) close() { cn.nc.Close() }

// offers reports whether the server named the extension keyword kw
// (upper case) in its LHLO reply.
func (cn *conn) offers(kw string) bool {
	_, ok := cn.ext[kw]
	return ok
}

// dial connects to addr, reads the greeting and says LHLO.
func (c *Client) dial(ctx context.Context, addr string) (*conn, error) {
	d := net.Dialer{Timeout: c.opts.DialTimeout}
	nc, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	stop := deliver.CloseOnDone(ctx, nc)
	defer stop()
	cn := &conn{
		nc:   nc,
		r:    bufio.NewReaderSize(nc, maxReplyLine),
		w:    bufio.NewWriterSize(nc, writeBufferSize),
		addr: addr,
	}
	if err := cn.hello(c.opts.Hostname, c.opts.CommandTimeout); err != nil {
		nc.Close()
		return nil, fmt.Errorf("%s: %w", addr, err)
	}
	return cn, nil
}

// hello reads the server's greeting (220, RFC 5321 §4.3.1) and says LHLO
// (RFC 2033 §4.1), keeping the extensions the server offers.
func (cn *conn) hello(hostname string, timeout time.Duration) error {
	greeting, err := cn.read(timeout)
	if err != nil {
		return fmt.Errorf("greeting: %w", err)
	}
	if greeting.code != 220 {
		return fmt.Errorf("greeting: %w", greeting.smtpError())
	}
	rep, err := cn.command(timeout, "LHLO "+hostname)
	if err != nil {
		return fmt.Errorf("LHLO: %w", err)
	}
	if !rep.positive() {
		return fmt.Errorf("LHLO: %w", rep.smtpError())
	}
	// The first line greets; each further one is an extension keyword,
	// maybe with parameters (RFC 5321 §4.1.1.1). Keywords are
	// case-insensitive.
	cn.ext = make(map[string]string)
	for _, line := range rep.lines[1:] {
		kw, params, _ := strings.Cut(strings.TrimSpace(line), " ")
		if kw != "" {
			cn.ext[strings.ToUpper(kw)] = params
		}
	}
	return nil
}

// command sends one command line and reads its reply, each within timeout.
func (cn *conn) command(timeout time.Duration, line string) (reply, error) {
	verb, _, _ := strings.Cut(line, " ")
	cn.nc.SetWriteDeadline(time.Now().Add(timeout))
	cn.w.WriteString(line)
	cn.w.WriteString("\r\n")
	if err := cn.w.Flush(); err != nil {
		return reply{}, fmt.Errorf("send %s: %w", verb, err)
	}
	rep, err := cn.read(timeout)
	if err != nil {
		return reply{}, fmt.Errorf("%s: %w", verb, err)
	}
	return rep, nil
}

// read reads a reply within timeout.
func (cn *conn) read(timeout time.Duration) (reply, error) {
	cn.nc.SetReadDeadline(time.Now().Add(timeout))
	return readReply(cn.r)
}

// mailCommand is MAIL FROM for sender ("" is the null reverse path <>),
// with the message size when the server takes SIZE (RFC 1870), and
// BODY=8BITMIME when it takes 8BITMIME (RFC 6152): a queued message may
// have 8-bit bytes, and says so.
func (cn *conn) mailCommand(sender string, size int64) string {
	cmd := "MAIL FROM:<" + sender + ">"
	if cn.offers("SIZE") {
		cmd += " SIZE=" + strconv.FormatInt(size, 10)
	}
	if cn.offers("8BITMIME") {
		cmd += " BODY=8BITMIME"
	}
	return cmd
}

// rcptCommand is RCPT TO for addr.
func rcptCommand(addr string) string { return "RCPT TO:<" + addr + ">" }

// safeAddress reports whether addr can go between the angle brackets of
// MAIL FROM or RCPT TO as it is: a CR or LF would end the command line
// there and start another one (RFC 5321 §2.3.8), a '>' would end the
// path. smtpd refuses such addresses; this is the last guard against a
// byte smuggling a command to the mailbox.
func safeAddress(addr string) bool {
	return !strings.ContainsAny(addr, "\r\n>")
}

// message is what the mailbox receives, the Junk mark first when the
// envelope says Junk, and its size.
func message(env queue.Envelope, body queue.Body) (io.Reader, int64) {
	var r io.Reader = io.NewSectionReader(body, 0, body.Size())
	size := body.Size()
	if env.Junk {
		r = io.MultiReader(strings.NewReader(JunkHeader), r)
		size += int64(len(JunkHeader))
	}
	return r, size
}

// outcome is what the server answered in one transaction, in order, and
// why the answers stop short when they do.
type outcome struct {
	mail *reply  // nil: no answer at all
	rcpt []reply // one per recipient answered so far, in order
	// whole is one reply for the message instead of one per accepted
	// recipient: DATA refused, or BDAT refused as a whole.
	whole *reply
	data  []reply // one per accepted recipient after the message (RFC 2033 §4.2)
	// err says why the answers stop short; nil when all came.
	err error
	// broken says the connection must not be reused although every answer
	// came: the server's state is in doubt.
	broken bool
}

// accepted counts the RCPTs the server accepted.
func (o *outcome) accepted() int {
	n := 0
	for _, r := range o.rcpt {
		if r.positive() {
			n++
		}
	}
	return n
}

// reusable says another transaction may follow on the connection: every
// answer came, and none was 421, the server closing the connection (RFC
// 5321 §3.8), whatever the command it answers.
func (o *outcome) reusable() bool {
	closing := func(r reply) bool { return r.code == 421 }
	switch {
	case o.err != nil, o.broken:
		return false
	case o.mail != nil && closing(*o.mail), o.whole != nil && closing(*o.whole):
		return false
	}
	return !slices.ContainsFunc(o.rcpt, closing) && !slices.ContainsFunc(o.data, closing)
}

// stale says the transaction failed at once, as on a connection the server
// had closed while it was idle: no answer at all, or a 421 to the first
// command. Nothing was received, and the transaction can be tried again
// on a new connection.
func (o *outcome) stale() bool {
	return o.mail == nil || o.mail.code == 421
}

// results turns the answers into one result per recipient.
func (o *outcome) results(rcpts []queue.Recipient, remote string) []queue.Result {
	cause := o.err
	if cause == nil {
		cause = errors.New("no answer") // not reached: a missing answer sets err
	}
	res := make([]queue.Result, len(rcpts))
	k := 0 // the accepted recipients so far
	for i := range rcpts {
		switch {
		case o.mail == nil:
			res[i] = deliver.FromError(cause, remote)
		case !o.mail.positive():
			res[i] = o.mail.result(remote)
		case i >= len(o.rcpt):
			res[i] = deliver.FromError(cause, remote)
		case !o.rcpt[i].positive():
			res[i] = o.rcpt[i].result(remote)
		default:
			res[i] = o.answer(k, cause, remote)
			k++
		}
	}
	return res
}

// answer is the result of the k-th accepted recipient.
func (o *outcome) answer(k int, cause error, remote string) queue.Result {
	switch {
	case o.whole != nil:
		return o.whole.result(remote)
	case k < len(o.data):
		return o.data[k].recipientResult(remote)
	}
	// The connection ended before this recipient's answer: the message
	// may or may not be stored. Trying again risks a duplicate, never a
	// loss.
	return queue.Result{Code: 451, Enhanced: "4.4.2", Text: fmt.Sprintf("connection lost before the answer: %v", cause), RemoteMTA: remote}
}

// transaction delivers to rcpts on cn: pipelined with BDAT when the server
// offers both PIPELINING and CHUNKING, else one command at a time with
// DATA. ok says cn can be reused; stale says it failed before the server
// answered anything, as on a connection the server had closed.
func (c *Client) transaction(ctx context.Context, cn *conn, env queue.Envelope, rcpts []queue.Recipient, body queue.Body) (res []queue.Result, ok, stale bool) {
	stop := deliver.CloseOnDone(ctx, cn.nc)
	var o outcome
	if cn.offers("PIPELINING") && cn.offers("CHUNKING") {
		o = c.pipelined(cn, env, rcpts, body)
	} else {
		o = c.lockstep(cn, env, rcpts, body)
	}
	// A context done at the very end has closed the connection anyway;
	// bytes from the server that no command asked for mean that we are
	// out of step with it.
	closed := !stop()
	ok = o.reusable() && !closed && cn.r.Buffered() == 0
	return o.results(rcpts, cn.addr), ok, o.stale()
}

// pipelined runs a transaction with PIPELINING (RFC 2920) and CHUNKING
// (RFC 3030), all in one write: MAIL, each RCPT, "BDAT <size>" and the
// message as it is, then "BDAT 0 LAST". Then come the replies in the same
// order: MAIL's, one per RCPT, one for the chunk, and for BDAT LAST one
// per accepted recipient (RFC 2033 §4.2, as after DATA).
//
// BDAT may follow the RCPTs before their answers (RFC 3030 §2, and the
// example of §4.2). When the server refuses the chunk (every RCPT
// refused, or the message as a whole), it answers it once and discards
// it, and answers the BDAT LAST behind it once more (RFC 3030 §2: BDAT
// segments already in the pipeline after a failed one are discarded). So
// the replies can always be counted, and each goes to its recipient.
//
// The message is not sent as "BDAT <size> LAST" because go-smtp's server
// (v0.25) takes a chunk cut short by a lost connection for a whole one:
// with LAST it would deliver the truncated message. Without LAST it
// waits for the next BDAT, and a lost connection makes it drop the
// message.
func (c *Client) pipelined(cn *conn, env queue.Envelope, rcpts []queue.Recipient, body queue.Body) outcome {
	// The writing goes on while the replies are read, as RFC 2920 §3.1
	// allows: the server answers the RCPTs before it reads the message,
	// and many replies left unread while we write could fill the socket
	// buffers both ways and stall both ends.
	written := make(chan error, 1)
	go func() {
		err := cn.writePipelined(env, rcpts, body, c.opts.DataTimeout)
		if err != nil {
			cn.close() // no reply will come: end the reads
		}
		written <- err
	}()
	o := cn.readPipelined(len(rcpts), c.opts.CommandTimeout, c.opts.DataTimeout)
	if !o.reusable() {
		cn.close() // so that a write the server no longer reads ends
	}
	if err := <-written; err != nil {
		o.broken = true
		// The writer's failure (the message could not be read, say) is
		// why the reads ended, unless it failed on the connection closed
		// after them.
		if o.err != nil && !errors.Is(err, net.ErrClosed) {
			o.err = err
		}
	}
	if o.reusable() && o.mail.positive() && o.whole != nil {
		// The message was refused after MAIL was accepted: end the
		// transaction (RFC 5321 §4.1.1.5). go-smtp's server keeps the
		// MAIL when it refuses a chunk for want of recipients, and the
		// next MAIL would be a nested one.
		o.broken = !cn.reset(c.opts.CommandTimeout)
	}
	return o
}

// writePipelined writes a whole pipelined transaction, within timeout.
func (cn *conn) writePipelined(env queue.Envelope, rcpts []queue.Recipient, body queue.Body, timeout time.Duration) error {
	msg, size := message(env, body)
	cn.nc.SetWriteDeadline(time.Now().Add(timeout))
	cn.w.WriteString(cn.mailCommand(env.Sender, size) + "\r\n")
	for _, r := range rcpts {
		cn.w.WriteString(rcptCommand(r.Address) + "\r\n")
	}
	// The chunk is exactly size bytes, with no dot-stuffing and no end
	// marker (RFC 3030 §2).
	cn.w.WriteString("BDAT " + strconv.FormatInt(size, 10) + "\r\n")
	n, err := io.Copy(cn.w, msg)
	if err != nil {
		return fmt.Errorf("send the message: %w", err)
	}
	if n != size {
		return fmt.Errorf("send the message: %d bytes read, %d announced", n, size)
	}
	cn.w.WriteString("BDAT 0 LAST\r\n")
	if err := cn.w.Flush(); err != nil {
		return fmt.Errorf("send the message: %w", err)
	}
	return nil
}

// readPipelined reads the replies to what writePipelined sent for n
// recipients: MAIL's and each RCPT's within commandTimeout, then the
// chunk's within dataTimeout (the message has to arrive), then those to
// BDAT LAST within dataTimeout again (the mailbox stores each copy).
func (cn *conn) readPipelined(n int, commandTimeout, dataTimeout time.Duration) (o outcome) {
	mail, err := cn.read(commandTimeout)
	if err != nil {
		o.err = fmt.Errorf("MAIL: %w", err)
		return o
	}
	o.mail = &mail
	for range n {
		rep, err := cn.read(commandTimeout)
		if err != nil {
			o.err = fmt.Errorf("RCPT: %w", err)
			return o
		}
		o.rcpt = append(o.rcpt, rep)
	}
	chunk, err := cn.read(dataTimeout)
	if err != nil {
		o.err = fmt.Errorf("BDAT: %w", err)
		return o
	}
	accepted := o.accepted()
	if !chunk.positive() {
		// Refused: the answer of every accepted recipient (there may be
		// none: go-smtp says "502 5.5.1 Missing RCPT TO command"). BDAT
		// LAST gets one refusal of its own.
		o.whole = &chunk
		last, err := cn.read(commandTimeout)
		switch {
		case err != nil:
			o.err = fmt.Errorf("BDAT LAST: %w", err)
		case last.positive():
			o.broken = true // a message taken without its first part: out of step
		}
		return o
	}
	if accepted == 0 {
		// A chunk taken for nobody: how BDAT LAST will be answered is
		// anyone's guess.
		o.whole = &chunk
		o.broken = true
		return o
	}
	o.data, o.err = cn.readFinal(accepted, dataTimeout, "BDAT LAST")
	return o
}

// lockstep runs a transaction one command at a time, the message with
// DATA (RFC 5321 §4.1.1.4), for a server without PIPELINING or CHUNKING.
func (c *Client) lockstep(cn *conn, env queue.Envelope, rcpts []queue.Recipient, body queue.Body) (o outcome) {
	timeout := c.opts.CommandTimeout
	msg, size := message(env, body)
	mail, err := cn.command(timeout, cn.mailCommand(env.Sender, size))
	if err != nil {
		o.err = err
		return o
	}
	o.mail = &mail
	if !mail.positive() {
		return o
	}
	for _, r := range rcpts {
		rep, err := cn.command(timeout, rcptCommand(r.Address))
		if err != nil {
			o.err = err
			return o
		}
		o.rcpt = append(o.rcpt, rep)
	}
	accepted := o.accepted()
	if accepted == 0 {
		// The server still holds the MAIL: end the transaction (RFC
		// 5321 §4.1.1.5).
		o.broken = !cn.reset(timeout)
		return o
	}
	data, err := cn.command(timeout, "DATA")
	switch {
	case err != nil:
		o.err = err
		return o
	case data.code == 354:
	case data.positive():
		o.err = fmt.Errorf("DATA: %d instead of 354", data.code)
		return o
	default:
		// Refused for all: the transaction's state is in doubt, as
		// before with go-smtp's client.
		o.whole = &data
		o.broken = true
		return o
	}
	if err := cn.writeData(msg, c.opts.DataTimeout); err != nil {
		o.err = err
		return o
	}
	o.data, o.err = cn.readFinal(accepted, c.opts.DataTimeout, "DATA")
	return o
}

// readFinal reads the n replies LMTP gives at the end of the data, one per
// accepted recipient (RFC 2033 §4.2), all within timeout; after an error,
// the replies read before it.
func (cn *conn) readFinal(n int, timeout time.Duration, what string) ([]reply, error) {
	cn.nc.SetReadDeadline(time.Now().Add(timeout))
	replies := make([]reply, 0, n)
	for range n {
		rep, err := readReply(cn.r)
		if err != nil {
			return replies, fmt.Errorf("%s: %w", what, err)
		}
		replies = append(replies, rep)
	}
	return replies, nil
}

// reset sends RSET and reports whether the server took it.
func (cn *conn) reset(timeout time.Duration) bool {
	rep, err := cn.command(timeout, "RSET")
	return err == nil && rep.positive()
}

// writeData writes the message after DATA's 354, dot-stuffed, and the
// end-of-data line, within timeout.
func (cn *conn) writeData(msg io.Reader, timeout time.Duration) error {
	cn.nc.SetWriteDeadline(time.Now().Add(timeout))
	dw := &dotWriter{w: cn.w, ends: crlfEnded}
	if _, err := io.Copy(dw, msg); err != nil {
		return fmt.Errorf("send the message: %w", err)
	}
	// The data ends with CRLF "." CRLF (RFC 5321 §4.1.1.4): a message
	// whose last line has no CRLF gets one.
	end := ".\r\n"
	if dw.ends != crlfEnded {
		end = "\r\n.\r\n"
	}
	cn.w.WriteString(end)
	if err := cn.w.Flush(); err != nil {
		return fmt.Errorf("send the message: %w", err)
	}
	return nil
}

// How the bytes a dotWriter wrote so far end.
const (
	midLine   = iota // not in a line ending
	crEnded          // in a CR
	crlfEnded        // in a CRLF, or nothing written yet: a line begins
)

// dotWriter dot-stuffs a message for DATA (RFC 5321 §4.5.2): a line that
// begins with a period gets another one in front, so that no line of the
// message reads as the end of the data. The queue keeps messages as CRLF
// lines (no bare CR or LF), so a line begins after each CRLF; they are
// found with bytes.Index, and the bytes between them copied as they are.
type dotWriter struct {
	w    *bufio.Writer
	ends int // midLine, crEnded, crlfEnded
}

var crlfDot = []byte("\r\n.")

func (d *dotWriter) Write(p []byte) (int, error) {
	n := len(p)
	if n == 0 {
		return 0, nil
	}
	ends := d.endsAfter(p)
	// A line that the previous write began, or was about to begin.
	switch {
	case d.ends == crlfEnded && p[0] == '.':
		if err := d.w.WriteByte('.'); err != nil {
			return 0, err
		}
	case d.ends == crEnded && len(p) > 1 && p[0] == '\n' && p[1] == '.':
		if _, err := d.w.WriteString("\n."); err != nil {
			return 0, err
		}
		p = p[1:] // the period follows
	}
	for {
		i := bytes.Index(p, crlfDot)
		if i < 0 {
			break
		}
		if _, err := d.w.Write(p[:i+len(crlfDot)]); err != nil {
			return 0, err
		}
		if err := d.w.WriteByte('.'); err != nil {
			return 0, err
		}
		p = p[i+len(crlfDot):]
	}
	if _, err := d.w.Write(p); err != nil {
		return 0, err
	}
	d.ends = ends
	return n, nil
}

// endsAfter is how the bytes written will end once p is.
func (d *dotWriter) endsAfter(p []byte) int {
	switch last := len(p) - 1; {
	case p[last] == '\r':
		return crEnded
	case p[last] != '\n':
		return midLine
	case last > 0 && p[last-1] == '\r', last == 0 && d.ends == crEnded:
		return crlfEnded
	}
	return midLine
}
