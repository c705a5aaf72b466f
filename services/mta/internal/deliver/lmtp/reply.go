package lmtp

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/emersion/go-smtp"

	"github.com/postcove/postcove/services/mta/internal/deliver"
	"github.com/postcove/postcove/services/mta/internal/queue"
)

// Bounds on a reply. RFC 5321 §4.5.3.1.5 allows 512 octets per reply
// line; the mailbox is ours, and these only make sure that a bug there
// cannot make us buffer without bound.
const (
	maxReplyLine  = 4096 // bytes per line, the line ending included
	maxReplyLines = 100  // lines per reply
)

// reply is one server reply (RFC 5321 §4.2): a code, and the text of each
// of its lines without the code and the separator.
type reply struct {
	code  int
	lines []string
}

// readReply reads one reply from r: "250-text" lines, then the last one,
// "250 text" or "250". Every line must carry the same code. r's buffer
// must hold at least maxReplyLine bytes (bufio.NewReaderSize) so that a
// line of up to the bound is read whole. A malformed reply is an error,
// after which the stream is out of step: the connection must be closed.
func readReply(r *bufio.Reader) (reply, error) {
	var rep reply
	for {
		line, err := r.ReadSlice('\n')
		if errors.Is(err, bufio.ErrBufferFull) || len(line) > maxReplyLine {
			return reply{}, fmt.Errorf("reply line longer than %d bytes: %s", maxReplyLine, quoteStart(line))
		}
		if err != nil {
			if errors.Is(err, io.EOF) && (len(line) > 0 || len(rep.lines) > 0) {
				err = io.ErrUnexpectedEOF // the server went away within a reply
			}
			return reply{}, err
		}
		// Lines end in CRLF; a bare LF is taken as well, as net/textproto
		// does: the end of the line is not in doubt.
		text := bytes.TrimSuffix(line[:len(line)-1], []byte("\r"))
		code, ok := replyCode(text)
		if !ok {
			return reply{}, fmt.Errorf("malformed reply line: %s", quoteStart(line))
		}
		if len(rep.lines) > 0 && code != rep.code {
			// RFC 5321 §4.2.1: each line of a multiline reply carries the
			// same code.
			return reply{}, fmt.Errorf("reply code changes from %d to %d within a reply", rep.code, code)
		}
		rep.code = code
		last := true
		switch {
		case len(text) == 3:
			// "250" alone: a last line without text, which §4.2 allows.
		case text[3] == ' ':
		case text[3] == '-':
			last = false
		default:
			return reply{}, fmt.Errorf("malformed reply line: %s", quoteStart(line))
		}
		rep.lines = append(rep.lines, string(text[min(len(text), 4):]))
		if last {
			return rep, nil
		}
		if len(rep.lines) == maxReplyLines {
			return reply{}, fmt.Errorf("reply longer than %d lines", maxReplyLines)
		}
	}
}

// replyCode parses the three digits a reply line begins with. RFC 5321
// §4.2: the first digit is 2 to 5 (1yz is not used by SMTP), the second
// 0 to 5.
func replyCode(line []byte) (int, bool) {
	if len(line) < 3 || line[0] < '2' || line[0] > '5' || line[1] < '0' || line[1] > '5' || line[2] < '0' || line[2] > '9' {
		return 0, false
	}
	return int(line[0]-'0')*100 + int(line[1]-'0')*10 + int(line[2]-'0'), true
}

// quoteStart quotes the beginning of a bad line for an error message.
func quoteStart(line []byte) string {
	const show = 64
	if len(line) > show {
		return strconv.Quote(string(line[:show])) + "..."
	}
	return strconv.Quote(string(line))
}

// positive reports a 2xx reply.
func (r reply) positive() bool { return r.code/100 == 2 }

// text is the reply's text, its lines joined by "\n" (as go-smtp's client
// gives them), each without its enhanced status code.
func (r reply) text() string {
	lines := make([]string, len(r.lines))
	for i, l := range r.lines {
		lines[i] = withoutEnhanced(l)
	}
	return strings.Join(lines, "\n")
}

// smtpError is the reply as go-smtp's client would return it, for
// deliver.FromSMTP. The enhanced status code (RFC 3463) is the first one
// found: RFC 2034 puts one on every line, go-smtp's server on the last.
func (r reply) smtpError() *smtp.SMTPError {
	se := &smtp.SMTPError{Code: r.code, EnhancedCode: smtp.NoEnhancedCode, Message: r.text()}
	for _, l := range r.lines {
		if code, _, ok := splitEnhanced(l); ok {
			se.EnhancedCode = code
			break
		}
	}
	return se
}

// recipientResult is a recipient's result from its reply after the
// message: any 2xx is "250 2.0.0" delivered, as before with go-smtp's
// client.
func (r reply) recipientResult(remote string) queue.Result {
	if r.positive() {
		return queue.Result{Code: 250, Enhanced: "2.0.0", Text: r.text(), RemoteMTA: remote}
	}
	return r.result(remote)
}

// result is the result a refusing reply gives.
func (r reply) result(remote string) queue.Result {
	return deliver.FromSMTP(r.smtpError(), remote)
}

// splitEnhanced splits an RFC 3463 enhanced status code off the start of
// a reply line's text: class "2", "4" or "5", then subject and detail of
// one to three digits each, then a space or the end of the text.
func splitEnhanced(text string) (code smtp.EnhancedCode, rest string, ok bool) {
	word, rest, _ := strings.Cut(text, " ")
	parts := strings.Split(word, ".")
	if len(parts) != 3 || (parts[0] != "2" && parts[0] != "4" && parts[0] != "5") {
		return code, text, false
	}
	for i, p := range parts {
		if len(p) == 0 || len(p) > 3 || strings.Trim(p, "0123456789") != "" {
			return code, text, false
		}
		code[i], _ = strconv.Atoi(p)
	}
	return code, rest, true
}

// withoutEnhanced drops the enhanced status code (RFC 3463) at the start
// of a reply line's text, so that the logged reply does not say it twice
// (the result carries it on its own).
func withoutEnhanced(text string) string {
	_, rest, ok := splitEnhanced(text)
	if !ok {
		return text
	}
	return rest
}
