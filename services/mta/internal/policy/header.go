package policy

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"
)

// MaxReceived is the most Received fields a message may carry: more is
// taken for a mail loop (RFC 5321 section 6.3; postfix's hopcount_limit
// has the same default).
const MaxReceived = 50

// Field is one header field exactly as received, so that what we pass on
// is byte for byte what the sender wrote (DKIM signatures cover it).
type Field struct {
	Name string // as written, e.g. "Received"
	Raw  []byte // the whole field: name, colon, value, continuation lines, final CRLF
}

// Value returns the field's value unfolded: the continuation line breaks
// removed and the surrounding white space trimmed (RFC 5322 section 2.2.3).
func (f Field) Value() string {
	_, v, _ := bytes.Cut(f.Raw, []byte(":"))
	v = bytes.ReplaceAll(v, []byte("\r\n"), nil)
	return strings.TrimSpace(string(v))
}

// Header is a message's header block.
type Header struct {
	Fields []Field
}

// ReadHeader reads the header block from r, up to and including the empty
// line that ends it (or the end of the message when there is none; the
// body is then empty). The block may be at most max bytes. Errors other
// than a *Violation come from r.
func ReadHeader(r *bufio.Reader, max int) (*Header, error) {
	h := &Header{}
	size := 0
	for lineNo := 1; ; lineNo++ {
		line, err := readLine(r, max-size)
		size += len(line)
		switch {
		case errors.Is(err, bufio.ErrBufferFull):
			return nil, &Violation{Reason: HeaderTooLarge, Detail: fmt.Sprintf("more than %d bytes", max)}
		case err != nil && err != io.EOF:
			return nil, err
		}
		if len(line) == 0 || string(line) == "\r\n" {
			return h, nil // the end of the header (or of the message)
		}
		if err == io.EOF && !bytes.HasSuffix(line, []byte("\n")) {
			// A message ending in its header without a line break:
			// complete the line, so that Bytes stays well formed.
			line = append(line, "\r\n"...)
		}
		if i := controlChar(line); i >= 0 {
			return nil, &Violation{Reason: ControlChar, Detail: fmt.Sprintf("byte 0x%02x in header line %d", line[i], lineNo)}
		}
		if line[0] == ' ' || line[0] == '\t' {
			if len(h.Fields) == 0 {
				return nil, &Violation{Reason: HeaderSyntax, Detail: "the header starts with a continuation line"}
			}
			last := &h.Fields[len(h.Fields)-1]
			last.Raw = append(last.Raw, line...)
		} else {
			name, _, found := bytes.Cut(line, []byte(":"))
			if !found || !validFieldName(name) {
				return nil, &Violation{Reason: HeaderSyntax, Detail: fmt.Sprintf("header line %d is not a field", lineNo)}
			}
			h.Fields = append(h.Fields, Field{Name: string(name), Raw: bytes.Clone(line)})
		}
		if err == io.EOF {
			return h, nil
		}
	}
}

// readLine reads one line with its line ending, failing with
// bufio.ErrBufferFull when it is longer than max.
func readLine(r *bufio.Reader, max int) ([]byte, error) {
	var line []byte
	for {
		frag, err := r.ReadSlice('\n')
		if len(line)+len(frag) > max {
			return nil, bufio.ErrBufferFull
		}
		line = append(line, frag...)
		if err != bufio.ErrBufferFull {
			return line, err
		}
	}
}

// controlChar returns the index of the first byte RFC 5322 section 2.2
// does not allow in a header line (anything below 0x20 but HTAB, and
// DEL), ignoring the final CRLF; -1 when there is none. Bytes from 0x80
// on are UTF-8 (RFC 6532) and pass.
func controlChar(line []byte) int {
	content := bytes.TrimSuffix(line, []byte("\r\n"))
	for i, b := range content {
		if (b < 0x20 && b != '\t') || b == 0x7f {
			return i
		}
	}
	return -1
}

// validFieldName reports whether name is an RFC 5322 field-name: one or
// more printable US-ASCII characters other than colon.
func validFieldName(name []byte) bool {
	if len(name) == 0 {
		return false
	}
	for _, b := range name {
		if b < 33 || b > 126 {
			return false
		}
	}
	return true
}

// Count returns how many fields are called name (case-insensitively).
func (h *Header) Count(name string) int {
	n := 0
	for _, f := range h.Fields {
		if strings.EqualFold(f.Name, name) {
			n++
		}
	}
	return n
}

// Values returns the unfolded values of the fields called name.
func (h *Header) Values(name string) []string {
	var vs []string
	for _, f := range h.Fields {
		if strings.EqualFold(f.Name, name) {
			vs = append(vs, f.Value())
		}
	}
	return vs
}

// Remove drops the fields for which drop is true and returns how many.
func (h *Header) Remove(drop func(Field) bool) int {
	kept := h.Fields[:0]
	for _, f := range h.Fields {
		if !drop(f) {
			kept = append(kept, f)
		}
	}
	n := len(h.Fields) - len(kept)
	h.Fields = kept
	return n
}

// Prepend adds a field at the top, where trace fields go (RFC 5321
// section 4.4). value may be folded already ("\r\n\t" between parts).
func (h *Header) Prepend(name, value string) {
	h.Fields = append([]Field{newField(name, value)}, h.Fields...)
}

// PrependRaw adds a complete field (name, colon, value, folding and the
// final CRLF, as a signer produces it) at the top.
func (h *Header) PrependRaw(raw string) {
	name, _, _ := strings.Cut(raw, ":")
	h.Fields = append([]Field{{Name: name, Raw: []byte(raw)}}, h.Fields...)
}

// Append adds a field at the end of the header.
func (h *Header) Append(name, value string) {
	h.Fields = append(h.Fields, newField(name, value))
}

func newField(name, value string) Field {
	return Field{Name: name, Raw: []byte(name + ": " + value + "\r\n")}
}

// Bytes returns the header block with the empty line that ends it.
func (h *Header) Bytes() []byte {
	var b bytes.Buffer
	for _, f := range h.Fields {
		b.Write(f.Raw)
	}
	b.WriteString("\r\n")
	return b.Bytes()
}

// CheckLoop refuses a message that has been through more than
// MaxReceived hops.
func CheckLoop(h *Header) error {
	if n := h.Count("Received"); n > MaxReceived {
		return &Violation{Reason: Loop, Detail: fmt.Sprintf("%d Received fields, at most %d", n, MaxReceived)}
	}
	return nil
}

// StripAuthResults removes every Authentication-Results field whose
// authserv-id is ours (case-insensitively) and returns how many: RFC 8601
// section 5 says a border MTA must remove them, since only we may speak
// for our own checks and a forged one would vouch for a spoofed sender.
func StripAuthResults(h *Header, authservID string) int {
	return h.Remove(func(f Field) bool {
		return strings.EqualFold(f.Name, "Authentication-Results") &&
			strings.EqualFold(authservIDOf(f.Value()), authservID)
	})
}

// authservIDOf returns the authserv-id of an Authentication-Results
// value: the first token, after any comments (RFC 8601 section 2.2).
func authservIDOf(v string) string {
	v = skipCFWS(v)
	end := strings.IndexAny(v, "; \t(")
	if end < 0 {
		end = len(v)
	}
	return v[:end]
}

// skipCFWS skips white space and nested comments at the start of s.
func skipCFWS(s string) string {
	depth := 0
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '(':
			depth++
		case c == ')' && depth > 0:
			depth--
		case c == '\\' && depth > 0:
			i++
		case depth == 0 && c != ' ' && c != '\t':
			return s[i:]
		}
	}
	return ""
}
