package policy

import (
	"bytes"
	"fmt"
	"io"
)

// CRLFReader passes a message through and fails with a *Violation at the
// first CR not followed by LF or LF not preceded by CR, so that only
// messages made of CRLF lines are accepted (RFC 5321 section 2.3.8).
//
// For DATA it reads what go-smtp's dot-unstuffing reader returns. That
// reader ends the data only at CRLF "." CRLF, so the other end-of-data
// variants reach us as content: "\n.\r\n" and "\n.\n" as a bare LF,
// "\r.\r\n" as a bare CR, "\r\n.\n" as "\r\n\n" (the dot unstuffed,
// then a bare LF). The one variant it hides is "\r\n.\r" followed by
// anything but LF: it drops the ".\r" and carries on, so the bytes after it
// stay message content and are never read as commands; the SMTP server
// watches its raw connection for that one (smtpd's trackedConn). For BDAT
// the reader sees the chunks exactly as sent.
type CRLFReader struct {
	r      io.Reader
	prevCR bool  // the last byte read was CR
	line   int   // 1-based line of the next byte, for the Detail
	err    error // the violation found, sticky
}

// NewCRLFReader checks the message read from r.
func NewCRLFReader(r io.Reader) *CRLFReader {
	return &CRLFReader{r: r, line: 1}
}

func (c *CRLFReader) Read(p []byte) (int, error) {
	if c.err != nil {
		return 0, c.err
	}
	n, err := c.r.Read(p)
	if !c.clean(p[:n]) {
		if i := c.check(p[:n]); c.err != nil {
			// The bytes before the violation are good; the caller sees
			// the error on this call, before using any of them as a
			// complete message.
			return i, c.err
		}
	}
	if err == io.EOF && c.prevCR {
		c.err = &Violation{Reason: BareCR, Detail: "at the end of the message"}
		return n, c.err
	}
	return n, err
}

// clean reports whether b, read after the bytes seen so far, holds CRLF
// line ends only (a CR at its very end may pair with the next read), and
// then takes b as seen. It looks at each LF and counts the CRs, both with
// the vectorised bytes functions: the byte-by-byte check was a tenth of
// the mta's CPU on 100 KiB messages. When it says no, check finds where.
func (c *CRLFReader) clean(b []byte) bool {
	if len(b) == 0 {
		return true
	}
	pairs, lines := 0, 0 // CRLFs with their CR in b; LFs in b
	for i := 0; ; i++ {
		j := bytes.IndexByte(b[i:], '\n')
		if j < 0 {
			break
		}
		i += j
		switch {
		case i > 0 && b[i-1] == '\r':
			pairs++
		case i == 0 && c.prevCR:
			// its CR ended the previous read
		default:
			return false // a bare LF
		}
		lines++
	}
	endCR := b[len(b)-1] == '\r'
	crs := bytes.Count(b, []byte{'\r'})
	if endCR {
		crs--
	}
	if crs != pairs || c.prevCR && b[0] != '\n' {
		return false // a bare CR
	}
	c.line += lines
	c.prevCR = endCR
	return true
}

// check walks b byte by byte, finds the first violation and records it in
// c.err with its line, returning the count of the good bytes before it.
func (c *CRLFReader) check(b []byte) int {
	for i, x := range b {
		switch {
		case c.prevCR && x != '\n':
			c.err = &Violation{Reason: BareCR, Detail: fmt.Sprintf("line %d", c.line)}
		case !c.prevCR && x == '\n':
			c.err = &Violation{Reason: BareLF, Detail: fmt.Sprintf("line %d", c.line)}
		}
		if c.err != nil {
			return i
		}
		if x == '\n' {
			c.line++
		}
		c.prevCR = x == '\r'
	}
	return len(b)
}
