// Package dsn writes delivery status notifications: the RFC 3464 bounce
// the queue sends a sender whose message could not be delivered, and the
// warning it sends when delivery is delayed (when enabled). The
// message is an RFC 6522 multipart/report of three parts: a text for
// people, the machine-readable message/delivery-status (RFC 3464 §2), and
// the original message (message/rfc822) or only its header
// (text/rfc822-headers), as the sender's RET asked (RFC 3461 §4.3).
//
// The notification is sent with the null reverse-path (RFC 5321 §4.5.5),
// so that a notification that cannot be delivered is never answered by
// another one: that is the queue's job, this package only writes the
// message.
package dsn

import (
	"bufio"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"strings"
	"time"
)

// Actions (RFC 3464 §2.3.3). The queue reports failures and delays.
const (
	ActionFailed    = "failed"
	ActionDelayed   = "delayed"
	ActionDelivered = "delivered"
)

// maxHeader bounds the original header section returned: a header larger
// than this is cut at a line boundary.
const maxHeader = 256 << 10

// Report is the content of one DSN.
type Report struct {
	// ReportingMTA is this MTA's host name (Reporting-MTA, and the domain
	// of the From address and Message-ID).
	ReportingMTA string
	// Sender is the reverse-path of the original message: the DSN's
	// recipient.
	Sender string
	// EnvID is the RFC 3461 ENVID the sender gave, "" for none.
	EnvID string
	// QueueID names the original message in the queue (for the operator).
	QueueID string
	// ArrivalDate is when the original message was queued.
	ArrivalDate time.Time
	// HeadersOnly returns only the original's header section
	// (RET=HDRS, or no RET), else the whole message (RET=FULL).
	HeadersOnly bool
	Recipients  []Recipient
}

// Recipient is the per-recipient part of a DSN (RFC 3464 §2.3).
type Recipient struct {
	Final      string // Final-Recipient: the address delivery was attempted to
	Orig       string // Original-Recipient: the RCPT TO it came from, "" if unknown
	Action     string // ActionFailed, ...
	Status     string // RFC 3463 status code, "5.1.1"
	RemoteMTA  string // the host that answered, "" for none
	Diagnostic string // the answer, "550 5.1.1 no such user"; "" for none
	// WillRetryUntil is when the queue gives up (RFC 3464 §2.3.9), for
	// ActionDelayed; zero for none.
	WillRetryUntil time.Time
}

// delayed reports whether rep is a warning: every recipient delayed.
func (rep Report) delayed() bool {
	for _, r := range rep.Recipients {
		if r.Action != ActionDelayed {
			return false
		}
	}
	return len(rep.Recipients) > 0
}

// Write writes the DSN message for rep to w, with the original message
// (CRLF lines) read from original. now is its Date.
func Write(w io.Writer, rep Report, original io.Reader, now time.Time) error {
	bw := bufio.NewWriter(w)
	boundary := newBoundary()
	host := rep.ReportingMTA
	var msgID [12]byte
	rand.Read(msgID[:])

	h := &lineWriter{w: bw}
	h.line("From: Mail Delivery System <MAILER-DAEMON@%s>", host)
	h.line("To: <%s>", rep.Sender)
	if rep.delayed() {
		h.line("Subject: Delayed Mail (still being retried)")
	} else {
		h.line("Subject: Undelivered Mail Returned to Sender")
	}
	h.line("Date: %s", now.Format(time.RFC1123Z))
	h.line("Message-ID: <%s.dsn@%s>", hex.EncodeToString(msgID[:]), host)
	// RFC 3834 §5: an automatic response; well-behaved responders do not
	// answer it.
	h.line("Auto-Submitted: auto-replied")
	h.line("MIME-Version: 1.0")
	h.line("Content-Type: multipart/report; report-type=delivery-status;")
	h.line("\tboundary=\"%s\"", boundary)
	h.line("")
	h.line("This is a MIME-encapsulated message.")
	h.line("")

	// Part 1: for people.
	h.line("--%s", boundary)
	h.line("Content-Type: text/plain; charset=utf-8")
	h.line("Content-Transfer-Encoding: 8bit")
	h.line("")
	h.line("This is the mail system at host %s.", host)
	h.line("")
	if rep.delayed() {
		h.line("Your message could not be delivered yet to one or more recipients.")
		h.line("The mail system keeps trying; you do not need to send it again.")
		h.line("Its header is attached below.")
	} else {
		h.line("Your message could not be delivered to one or more recipients.")
		h.line("It is attached below.")
	}
	h.line("")
	for _, r := range rep.Recipients {
		switch {
		case r.Action == ActionDelayed && !r.WillRetryUntil.IsZero():
			h.line("<%s>: %s; trying until %s", r.Final, orStatus(r), r.WillRetryUntil.Format(time.RFC1123Z))
		case r.Action == ActionDelayed:
			h.line("<%s>: %s; still trying", r.Final, orStatus(r))
		case r.Diagnostic != "":
			h.line("<%s>: %s", r.Final, r.Diagnostic)
		default:
			h.line("<%s>: delivery failed (%s)", r.Final, r.Status)
		}
	}
	h.line("")

	// Part 2: for programs (RFC 3464 §2.2 per-message, §2.3
	// per-recipient fields).
	h.line("--%s", boundary)
	h.line("Content-Type: message/delivery-status")
	h.line("")
	h.line("Reporting-MTA: dns; %s", host)
	if rep.QueueID != "" {
		h.line("X-Postcove-Queue-ID: %s", rep.QueueID)
	}
	if rep.EnvID != "" {
		h.line("Original-Envelope-Id: %s", rep.EnvID)
	}
	if !rep.ArrivalDate.IsZero() {
		h.line("Arrival-Date: %s", rep.ArrivalDate.Format(time.RFC1123Z))
	}
	for _, r := range rep.Recipients {
		h.line("")
		h.line("Final-Recipient: rfc822; %s", r.Final)
		if r.Orig != "" {
			h.line("Original-Recipient: rfc822; %s", r.Orig)
		}
		h.line("Action: %s", r.Action)
		h.line("Status: %s", r.Status)
		if r.RemoteMTA != "" {
			h.line("Remote-MTA: dns; %s", r.RemoteMTA)
		}
		if r.Diagnostic != "" {
			h.line("Diagnostic-Code: smtp; %s", r.Diagnostic)
		}
		if !r.WillRetryUntil.IsZero() {
			h.line("Will-Retry-Until: %s", r.WillRetryUntil.Format(time.RFC1123Z))
		}
	}
	h.line("")

	// Part 3: the original.
	h.line("--%s", boundary)
	if rep.HeadersOnly {
		h.line("Content-Type: text/rfc822-headers")
	} else {
		h.line("Content-Type: message/rfc822")
		h.line("Content-Transfer-Encoding: 8bit")
	}
	h.line("")
	if h.err != nil {
		return fmt.Errorf("write DSN: %w", h.err)
	}
	if err := copyOriginal(bw, original, rep.HeadersOnly); err != nil {
		return fmt.Errorf("write DSN: original message: %w", err)
	}
	h.line("")
	h.line("--%s--", boundary)
	if h.err != nil {
		return fmt.Errorf("write DSN: %w", h.err)
	}
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("write DSN: %w", err)
	}
	return nil
}

// orStatus is r's diagnostic, or its status code when it has none.
func orStatus(r Recipient) string {
	if r.Diagnostic != "" {
		return r.Diagnostic
	}
	return "status " + r.Status
}

// copyOriginal copies the original message, or its header section only,
// ending with a line break.
func copyOriginal(w *bufio.Writer, original io.Reader, headersOnly bool) error {
	r := bufio.NewReader(original)
	if !headersOnly {
		// The queue's bodies end with CRLF; the CRLF before the closing
		// boundary belongs to the boundary (RFC 2046 §5.1.1).
		_, err := io.Copy(w, r)
		return err
	}
	n := 0
	for {
		line, err := r.ReadString('\n')
		if strings.TrimRight(line, "\r\n") == "" && (err == nil || line == "") {
			return nil // the blank line ending the header, or the end
		}
		if n+len(line) > maxHeader {
			return nil
		}
		n += len(line)
		if !strings.HasSuffix(line, "\n") {
			line += "\r\n"
		}
		if _, werr := w.WriteString(line); werr != nil {
			return werr
		}
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

// newBoundary returns a MIME boundary (RFC 2046 §5.1.1). "=_" cannot
// occur in quoted-printable or base64 text, and the random part in
// anything else by chance.
func newBoundary() string {
	var b [16]byte
	rand.Read(b[:])
	return "=_dsn_" + hex.EncodeToString(b[:])
}

// lineWriter writes CRLF-terminated lines and keeps the first error.
type lineWriter struct {
	w   *bufio.Writer
	err error
}

func (l *lineWriter) line(format string, args ...any) {
	if l.err != nil {
		return
	}
	if _, err := fmt.Fprintf(l.w, format, args...); err != nil {
		l.err = err
		return
	}
	_, l.err = l.w.WriteString("\r\n")
}
