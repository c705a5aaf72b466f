package lmtpd

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
)

// errSpoolWrite marks a failure to write the spool file (as opposed to a
// failure to read the message from the client).
var errSpoolWrite = errors.New("spool write failed")

// spooled is a received message, read once from the client and then
// replayed for each recipient. Small messages stay in memory; larger ones
// go to a temporary file that is unlinked at once, so that a crash leaves
// nothing to clean up: the store writes its own durable copy.
type spooled struct {
	buf  *bytes.Buffer // the message in memory, or nil
	file *os.File      // the message in a file, or nil
	size int64

	spooler *spooler // buf goes back to it on Close
}

// spooler spools messages in dir, up to memLimit bytes in memory. Its
// buffers are reused: a 100 KiB message read into a fresh buffer grows it
// nine times, and the copies and the garbage were a tenth of the mailbox's
// CPU at a thousand such deliveries a second.
type spooler struct {
	dir      string
	memLimit int64
	buffers  sync.Pool // of *bytes.Buffer
}

// spool reads the whole message from r. Read errors (the size limit, a
// broken connection) are returned as they are; write errors wrap
// errSpoolWrite and keep their cause (ENOSPC).
func (sp *spooler) spool(r io.Reader) (*spooled, error) {
	buf, _ := sp.buffers.Get().(*bytes.Buffer)
	if buf == nil {
		buf = new(bytes.Buffer)
	}
	buf.Reset()
	n, err := buf.ReadFrom(io.LimitReader(r, sp.memLimit+1))
	if err != nil {
		sp.release(buf)
		return nil, err
	}
	if n <= sp.memLimit {
		return &spooled{buf: buf, size: n, spooler: sp}, nil
	}
	defer sp.release(buf)
	f, err := os.CreateTemp(sp.dir, "lmtp-spool-")
	if err != nil {
		return nil, fmt.Errorf("%w: %w", errSpoolWrite, err)
	}
	// Unlinked while open: the data lives until f is closed.
	if err := os.Remove(f.Name()); err != nil {
		f.Close()
		return nil, fmt.Errorf("%w: %w", errSpoolWrite, err)
	}
	msg := &spooled{file: f}
	if _, err := f.Write(buf.Bytes()); err != nil {
		msg.Close()
		return nil, fmt.Errorf("%w: %w", errSpoolWrite, err)
	}
	rest, err := io.Copy(writerOnly{f}, r)
	if err != nil {
		msg.Close()
		var we *writeError
		if errors.As(err, &we) {
			return nil, fmt.Errorf("%w: %w", errSpoolWrite, we.err)
		}
		return nil, err
	}
	msg.size = n + rest
	return msg, nil
}

// release gives buf back for another message, unless it grew past what
// a message in memory needs (the ReadFrom that found a larger one).
func (sp *spooler) release(buf *bytes.Buffer) {
	if int64(buf.Cap()) <= 2*(sp.memLimit+1) {
		sp.buffers.Put(buf)
	}
}

// writerOnly hides *os.File's ReadFrom (so io.Copy reads from the client
// itself) and tags write errors, which io.Copy does not tell from read
// errors.
type writerOnly struct{ f *os.File }

func (w writerOnly) Write(p []byte) (int, error) {
	n, err := w.f.Write(p)
	if err != nil {
		return n, &writeError{err}
	}
	return n, nil
}

type writeError struct{ err error }

func (e *writeError) Error() string { return e.err.Error() }
func (e *writeError) Unwrap() error { return e.err }

// reader returns the message from its start; readers are independent.
func (s *spooled) reader() io.Reader {
	if s.file == nil {
		return bytes.NewReader(s.buf.Bytes())
	}
	return io.NewSectionReader(s.file, 0, s.size)
}

// Close releases the spool file or buffer; the message must not be read
// after.
func (s *spooled) Close() error {
	if s.file != nil {
		return s.file.Close()
	}
	if s.buf != nil {
		s.spooler.release(s.buf)
		s.buf = nil
	}
	return nil
}
