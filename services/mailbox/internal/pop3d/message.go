package pop3d

import (
	"bytes"
	"errors"
	"io"
	"sync"
)

// Messages go out as RFC 1939 section 3 multi-line responses: every line
// ends in CRLF, a line that begins with "." gets one more "." in front
// (byte-stuffing), and ".\r\n" ends the response. The store keeps messages
// as they arrived: LMTP (go-smtp's DATA reader) and IMAP APPEND hand over
// CRLF text, but a Maildir imported from dovecot, which writes LF, or an
// APPEND from a sloppy client holds bare LF (and, rarely, bare CR). The
// wire form therefore turns every bare LF and bare CR into CRLF, and ends
// an unterminated last line with CRLF.
//
// Sizes in STAT and LIST must be the octets a RETR sends (RFC 1939 section
// 10: the count is of the message with CRLF line ends, before byte-stuffing
// and without the terminating ".\r\n"). Message.Size is the stored size,
// which is that number exactly when the message is already pure CRLF text.
// Since the store cannot say so, the server measures each message once by
// running it through the same wire encoder (wireWriter with counting only)
// and remembers the answer in a sizeCache keyed by the message's stable ID.

// errStop ends a copy through a wireWriter once TOP has written the lines
// it wants; it is not an error to report.
var errStop = errors.New("enough lines")

// wireWriter turns a stored message into its POP3 wire form as it is
// written to it: line ends normalised to CRLF and, when stuff is set,
// leading dots doubled. It counts the octets of the message as sent (n,
// without the stuffing dots), and with bodyLines >= 0 it stops (errStop)
// after the header, the blank line and that many body lines (TOP).
type wireWriter struct {
	w     io.Writer // nil: count only
	stuff bool

	bodyLines int  // -1: all
	inBody    bool // the blank line after the header has been written
	written   int  // body lines written

	n         int64 // octets of the message as sent, without stuffing
	lineLen   int   // octets in the current line so far
	pendingCR bool  // the last input byte was a CR not yet written
	stopped   bool
	buf       []byte // one chunk of output, reused
}

// newWireWriter returns a wireWriter onto w (nil to count only).
func newWireWriter(w io.Writer, stuff bool, bodyLines int) *wireWriter {
	return &wireWriter{w: w, stuff: stuff, bodyLines: bodyLines}
}

// Write implements io.Writer. It reports len(p) unless it fails or stops.
func (ww *wireWriter) Write(p []byte) (int, error) {
	if ww.stopped {
		return 0, errStop
	}
	ww.buf = ww.buf[:0]
	consumed := len(p)
	for i := 0; i < len(p); {
		if ww.pendingCR {
			ww.pendingCR = false
			if p[i] == '\n' {
				i++
			}
			// CRLF, or a bare CR made into one.
			if ww.endLine() {
				consumed = i
				break
			}
			continue
		}
		if ww.lineLen == 0 && p[i] == '.' && ww.stuff {
			ww.buf = append(ww.buf, '.')
		}
		j := bytes.IndexAny(p[i:], "\r\n")
		if j < 0 {
			ww.text(p[i:])
			break
		}
		ww.text(p[i : i+j])
		i += j
		if p[i] == '\r' {
			ww.pendingCR = true
			i++
			continue
		}
		i++ // a bare LF
		if ww.endLine() {
			consumed = i
			break
		}
	}
	if err := ww.flush(); err != nil {
		return 0, err
	}
	if ww.stopped {
		return consumed, errStop
	}
	return len(p), nil
}

// text appends line content.
func (ww *wireWriter) text(b []byte) {
	ww.buf = append(ww.buf, b...)
	ww.lineLen += len(b)
	ww.n += int64(len(b))
}

// endLine appends CRLF and reports whether TOP has all the lines it wants.
func (ww *wireWriter) endLine() bool {
	ww.buf = append(ww.buf, '\r', '\n')
	ww.n += 2
	empty := ww.lineLen == 0
	ww.lineLen = 0
	if ww.bodyLines < 0 {
		return false
	}
	switch {
	case !ww.inBody:
		ww.inBody = empty
	default:
		ww.written++
	}
	ww.stopped = ww.inBody && ww.written >= ww.bodyLines
	return ww.stopped
}

func (ww *wireWriter) flush() error {
	if ww.w == nil || len(ww.buf) == 0 {
		return nil
	}
	_, err := ww.w.Write(ww.buf)
	return err
}

// Close ends the message: a pending CR or an unterminated last line gets
// its CRLF. It does not write the ".\r\n" terminator.
func (ww *wireWriter) Close() error {
	if ww.stopped {
		return nil
	}
	ww.buf = ww.buf[:0]
	if ww.pendingCR || ww.lineLen > 0 {
		ww.pendingCR = false
		ww.endLine()
	}
	return ww.flush()
}

// copyWire copies the message in r to ww and closes ww: the common path of
// RETR, TOP and size measuring.
func copyWire(ww *wireWriter, r io.Reader) error {
	if _, err := io.Copy(ww, r); err != nil && !errors.Is(err, errStop) {
		return err
	}
	return ww.Close()
}

// wireSize returns the octets r's message has on the wire.
func wireSize(r io.Reader) (int64, error) {
	ww := newWireWriter(nil, false, -1)
	if err := copyWire(ww, r); err != nil {
		return 0, err
	}
	return ww.n, nil
}

// maxCachedSizes bounds a sizeCache. Entries are small (an ID and a number);
// at this bound the cache holds a few tens of megabytes.
const maxCachedSizes = 1 << 18

// sizeCache remembers wire sizes across sessions, so that a client that
// leaves its mail on the server and checks every few minutes does not make
// the server read the whole maildrop at every login. A message's content
// never changes under its ID (a copy gets a new ID), so entries never go
// stale; the stored size is part of the key all the same, as a guard
// against a file replaced by hand under the same name.
type sizeCache struct {
	mu    sync.Mutex // protects sizes
	sizes map[sizeKey]int64
}

type sizeKey struct {
	user, id   string
	storedSize int64
}

func (c *sizeCache) get(k sizeKey) (int64, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	n, ok := c.sizes[k]
	return n, ok
}

func (c *sizeCache) put(k sizeKey, n int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.sizes == nil || len(c.sizes) >= maxCachedSizes {
		// Dropping everything is crude but bounded, and a miss costs one
		// read of the message.
		c.sizes = make(map[sizeKey]int64)
	}
	c.sizes[k] = n
}
