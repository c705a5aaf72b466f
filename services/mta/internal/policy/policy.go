// Package policy holds the checks the MTA applies to a message as it
// arrives over SMTP, independent of the SMTP library: line endings (SMTP
// smuggling), the header block (size, syntax, control characters, loops)
// and the Authentication-Results fields a sender may not forge.
//
// Every check returns a *Violation, which names what is wrong; the SMTP
// server maps it to a reply. Nothing here does I/O besides reading the
// message it is given.
package policy

import "fmt"

// Reason classifies a Violation, for replies and metrics labels.
type Reason string

// The reasons a message is refused.
const (
	// BareLF and BareCR: a line ending other than CRLF (RFC 5321 section
	// 2.3.8). Accepting them is what makes SMTP smuggling possible: a
	// server downstream may read "\n.\r\n" or "\r.\r\n" as the end of
	// the data where we did not.
	BareLF Reason = "bare_lf"
	BareCR Reason = "bare_cr"
	// HeaderTooLarge: the header block exceeds the configured limit.
	HeaderTooLarge Reason = "header_too_large"
	// HeaderSyntax: a header line that is neither a field nor a
	// continuation (RFC 5322 section 2.2).
	HeaderSyntax Reason = "header_syntax"
	// ControlChar: NUL or another control character in the header (RFC
	// 5322 section 2.2 allows printable characters and WSP only).
	ControlChar Reason = "control_char"
	// Loop: more Received fields than MaxReceived (RFC 5321 section 6.3).
	Loop Reason = "loop"
)

// Violation is a message refused by a check.
type Violation struct {
	Reason Reason
	Detail string // for the reply and the log, e.g. "line 3"
}

func (v *Violation) Error() string {
	if v.Detail == "" {
		return string(v.Reason)
	}
	return fmt.Sprintf("%s: %s", v.Reason, v.Detail)
}
