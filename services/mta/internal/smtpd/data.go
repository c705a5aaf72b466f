package smtpd

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/mail"
	"strings"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/postcove/postcove/services/mta/internal/policy"
	"github.com/postcove/postcove/services/mta/internal/queue"
)

// Data reads the message, checks it, completes its header and queues it.
// The 250 carries the queue ID and is said only once Enqueue returned,
// i.e. once the message is on disk (DESIGN.md invariant 1).
func (s *session) Data(r io.Reader) error {
	s.deadline(s.srv.opts.DataTimeout)
	// Everything read goes through the line-ending check; header and
	// body are read from the same buffer.
	br := bufio.NewReader(policy.NewCRLFReader(r))
	h, err := policy.ReadHeader(br, s.srv.opts.MaxHeaderBytes)
	if err != nil {
		return s.readError(err)
	}
	body, err := spoolBody(br, s.srv.opts.SpoolDir, s.srv.opts.SpoolMemory, &s.srv.bodyPool)
	if err != nil {
		return s.readError(err)
	}
	defer body.Close()

	if s.tracked != nil && s.tracked.smuggled.Load() {
		// Seen on the raw connection (trackedConn.Read): refused like
		// a bare CR. The mark stays: every later message on this
		// connection is refused too.
		return s.refuse(string(policy.BareCR), 550, smtp.EnhancedCode{5, 5, 2}, "Bare <CR> or <LF> in message: lines must end with <CR><LF>", errors.New(`CRLF "." CR without LF`))
	}
	if err := policy.CheckLoop(h); err != nil {
		// RFC 3463: 5.4.6 routing loop detected.
		return s.refuse("loop", 554, smtp.EnhancedCode{5, 4, 6}, "Too many Received fields: mail loop", err)
	}
	if n := policy.StripAuthResults(h, s.srv.opts.Hostname); n > 0 {
		s.log.Info("removed forged Authentication-Results", "count", n)
	}

	if s.srv.opts.Mode == Submission {
		author, err := s.checkFrom(h)
		if err != nil {
			return err
		}
		// RFC 6409 section 8.2 and 8.3: the submission server may add
		// what the client left out.
		if len(h.Values("Message-Id")) == 0 {
			h.Append("Message-ID", s.newMessageID())
		}
		if len(h.Values("Date")) == 0 {
			h.Append("Date", time.Now().Format(time.RFC1123Z))
		}
		if d := s.srv.opts.DKIM; d != nil {
			// Signed as the author's domain, which aligns for DMARC;
			// a broken key is a temporary failure, not unsigned mail
			// that the domain's DMARC policy would have rejected.
			sigs, err := d.Sign(author, h.Bytes(), body.reader())
			if err != nil {
				return s.refuse("dkim_failed", 451, smtp.EnhancedCode{4, 3, 0}, "Temporary failure signing the message, try again later", err)
			}
			for i := len(sigs) - 1; i >= 0; i-- {
				h.PrependRaw(sigs[i])
			}
		}
	} else if v := s.srv.opts.Verifier; v != nil {
		verdict, err := v.Verify(context.Background(), &Message{
			RemoteIP: s.remoteAddr(), Helo: s.conn.Hostname(), Sender: s.env.Sender,
			Header: h, Body: body.reader(),
		})
		if err != nil {
			return s.refuse("verify_failed", 451, smtp.EnhancedCode{4, 7, 0}, "Temporary failure checking the message, try again later", err)
		}
		if verdict.Reject != nil {
			return s.refuse("policy", verdict.Reject.Code, verdict.Reject.EnhancedCode, verdict.Reject.Message, nil)
		}
		if verdict.AuthResults != "" {
			h.Prepend("Authentication-Results", verdict.AuthResults)
		}
		s.env.Junk = verdict.Junk
	}
	h.Prepend("Received", s.received())

	env := s.env
	env.ReceivedAt = time.Now()
	id, err := s.srv.opts.Spool.Enqueue(context.Background(), env, io.MultiReader(bytes.NewReader(h.Bytes()), body.reader()))
	switch {
	case errors.Is(err, queue.ErrNoSpace):
		return s.refuse("no_space", 452, smtp.EnhancedCode{4, 3, 1}, "Insufficient system storage, try again later", err)
	case err != nil:
		return s.refuse("queue_error", 451, smtp.EnhancedCode{4, 3, 0}, "Temporary failure queueing the message, try again later", err)
	}
	s.srv.metrics.accept(s.srv.name)
	s.log.Info("queued", "id", id, "from", env.Sender, "recipients", len(env.Recipients), "size", body.size)
	// go-smtp writes whatever reply Data returns; a 250 carrying the
	// queue ID is how postfix answers too.
	return &smtp.SMTPError{Code: 250, EnhancedCode: smtp.EnhancedCode{2, 0, 0}, Message: "OK: queued as " + id}
}

// readError turns a failure to read the message into its reply.
func (s *session) readError(err error) error {
	var v *policy.Violation
	var se *smtp.SMTPError
	switch {
	case errors.As(err, &v):
		switch v.Reason {
		case policy.BareLF, policy.BareCR:
			// RFC 5321 section 2.3.8; the reply postfix gives for
			// smtpd_forbid_bare_newline.
			return s.refuse(string(v.Reason), 550, smtp.EnhancedCode{5, 5, 2}, "Bare <CR> or <LF> in message: lines must end with <CR><LF>", err)
		case policy.HeaderTooLarge:
			return s.refuse(string(v.Reason), 552, smtp.EnhancedCode{5, 3, 4}, "Message header too large", err)
		}
		return s.refuse(string(v.Reason), 554, smtp.EnhancedCode{5, 6, 0}, "Malformed message header: "+v.Detail, err)
	case errors.As(err, &se):
		// go-smtp's own: ErrDataTooLarge (552 5.3.4), a BDAT reset.
		return s.refuse("too_large", se.Code, se.EnhancedCode, se.Message, nil)
	case errors.Is(err, smtp.ErrTooLongLine):
		return s.refuse("line_too_long", 500, smtp.EnhancedCode{5, 5, 6}, "Line too long", err)
	case errors.Is(err, errSpoolWrite):
		return s.refuse("spool_error", 451, smtp.EnhancedCode{4, 3, 0}, "Temporary local problem, try again later", err)
	}
	// The connection broke or timed out: nobody reads the reply.
	s.log.Info("message not received", "err", err)
	return err
}

// checkFrom applies the send-as rule to the From field too: RFC 5322
// asks for exactly one, and every address in it must be the user's. It
// returns the first address, the author.
func (s *session) checkFrom(h *policy.Header) (string, error) {
	froms := h.Values("From")
	if len(froms) != 1 {
		return "", s.refuse("bad_from", 550, smtp.EnhancedCode{5, 6, 0}, "Message must have exactly one From field (RFC 5322 section 3.6)", nil)
	}
	list, err := mail.ParseAddressList(froms[0])
	if err != nil || len(list) == 0 {
		return "", s.refuse("bad_from", 550, smtp.EnhancedCode{5, 6, 0}, "From field is not a valid address list", err)
	}
	for _, a := range list {
		if err := s.checkSendAs(a.Address); err != nil {
			return "", err
		}
	}
	return list[0].Address, nil
}

// received builds the trace field (RFC 5321 section 4.4): who we got the
// message from (the name the client gave and its IP, as postfix writes
// it), over what (RFC 3848 protocol names; TLS version and cipher as a
// comment), and for whom when there is a single RCPT (naming several
// would disclose the Bcc ones).
func (s *session) received() string {
	proto := "ESMTP"
	if s.utf8 {
		proto = "UTF8SMTP" // RFC 6531 section 3.7.3
	}
	if s.tls != nil {
		proto += "S"
	}
	if s.user != "" {
		proto += "A"
	}
	var b strings.Builder
	fmt.Fprintf(&b, "from %s ([%s])\r\n\tby %s (postcove) with %s", traceText(s.conn.Hostname()), s.remoteIP, s.srv.opts.Hostname, proto)
	if s.tls != nil {
		fmt.Fprintf(&b, "\r\n\t(%s %s)", tls.VersionName(s.tls.Version), tls.CipherSuiteName(s.tls.CipherSuite))
	}
	if len(s.rcpts) == 1 {
		fmt.Fprintf(&b, "\r\n\tfor <%s>", s.rcpts[0])
	}
	fmt.Fprintf(&b, ";\r\n\t%s", time.Now().Format(time.RFC1123Z))
	return b.String()
}

// traceText makes a client-supplied name safe inside a header field:
// anything but letters, digits and . - _ : [ ] becomes "?".
func traceText(s string) string {
	if s == "" {
		return "unknown"
	}
	return strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', strings.ContainsRune(".-_:[]", r):
			return r
		}
		return '?'
	}, s)
}

// newMessageID returns a unique Message-ID (RFC 5322 section 3.6.4).
func (s *session) newMessageID() string {
	var b [16]byte
	rand.Read(b[:])
	return "<" + hex.EncodeToString(b[:]) + "@" + s.srv.opts.Hostname + ">"
}
