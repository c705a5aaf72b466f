// Package dnsrecord parses the DNS TXT records a mail domain publishes, for
// diagnostics: `mailctl dns check` explains what is wrong with a record, and
// the MTA's policy checks can reuse the parsed structures. One file per
// record type:
//
//   - SPF, RFC 7208 (spf.go): syntax and structure only. Evaluating SPF
//     (check_host, §4) is the job of a maintained SPF library.
//   - DMARC, RFC 7489 §6.3 (dmarc.go): the tags are parsed by
//     github.com/emersion/go-msgauth/dmarc; this package adds the checks that
//     parser leaves out (tag order, duplicates, unknown tags, report URIs).
//   - DKIM key records, RFC 6376 §3.6.1 and RFC 8463 (dkim.go).
//   - MTA-STS, RFC 8461 §3.1 (TXT record) and §3.2 (policy file)
//     (mtasts.go).
//   - TLS-RPT, RFC 8460 §3 (tlsrpt.go).
//
// The parsers are strict where the RFCs make a sender or receiver discard a
// record (a syntax error in SPF is a permerror, RFC 7208 §4.6), and report
// everything else as a Warning, so that a diagnostic never calls a record
// broken that receivers accept. Every error is an *Error naming the term or
// tag at fault and its byte offset in the record.
package dnsrecord

import (
	"fmt"
	"strings"
)

// Error is a record that receivers would reject: what is wrong and where.
type Error struct {
	// Record names the record type: "spf", "dmarc", "dkim", "mta-sts",
	// "mta-sts policy" or "tls-rpt".
	Record string
	// Term is the SPF term, tag or policy field at fault; empty when the
	// error is about the record as a whole (a missing tag, say).
	Term string
	// Pos is the byte offset of Term in the record, or -1 when Term is
	// empty.
	Pos int
	// Msg says in plain words what is wrong.
	Msg string
	// Err is the underlying error, if any (a base64 or key decoding error).
	Err error
}

// Error implements the error interface.
func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString(e.Record)
	if e.Term != "" {
		fmt.Fprintf(&b, ": %s %q at position %d", e.termWord(), e.Term, e.Pos)
	}
	b.WriteString(": ")
	b.WriteString(e.Msg)
	if e.Err != nil {
		b.WriteString(": ")
		b.WriteString(e.Err.Error())
	}
	return b.String()
}

// Unwrap returns the underlying error.
func (e *Error) Unwrap() error { return e.Err }

func (e *Error) termWord() string {
	switch e.Record {
	case "spf":
		return "term"
	case "mta-sts", "mta-sts policy", "tls-rpt":
		return "field" // RFC 8461 and RFC 8460 call them fields
	}
	return "tag"
}

// Warning is something receivers accept but an operator should look at: an
// unknown tag that is probably a typo, a value only lenient receivers
// understand.
type Warning struct {
	// Term is the term or tag concerned, empty for the record as a whole.
	Term string
	// Pos is the byte offset of Term in the record, or -1.
	Pos int
	// Msg says what to look at and why.
	Msg string
}

// String formats the warning like an Error.
func (w Warning) String() string {
	if w.Term == "" {
		return w.Msg
	}
	return fmt.Sprintf("%q at position %d: %s", w.Term, w.Pos, w.Msg)
}

// isWSP reports whether c is white space inside a TXT record: SP and HTAB
// (RFC 5234 WSP), plus CR and LF because the DKIM tag-list syntax allows
// folding white space (RFC 6376 §2.8) and DNS tools sometimes leave it in.
func isWSP(c byte) bool {
	return c == ' ' || c == '\t' || c == '\r' || c == '\n'
}

func isAlpha(c byte) bool { return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' }

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

// allDigits reports whether s is non-empty and only ASCII digits: stricter
// than strconv.Atoi, which also takes a sign.
func allDigits(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !isDigit(s[i]) {
			return false
		}
	}
	return true
}
