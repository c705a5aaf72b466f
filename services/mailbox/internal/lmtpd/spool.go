package lmtpd

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
)

// errSpoolWrite marks a failure to write the spool file (as opposed to a
// failure to read the message from the client).
var errSpoolWrite = errors.New("spool write failed")

// spooled is a received message, read once from the client and then
// replayed for each recipient. Small messages stay in memory; larger ones
// go to a temporary file that is unlinked at once, so that a crash leaves
// nothing to clean up: the store writes its own durable copy.
type spooled struct {
	mem  []byte
	file *os.File // nil for a message in memory
	size int64
}

// spool reads the whole message from r. Read errors (the size limit, a
// broken connection) are returned as they are; write errors wrap
// errSpoolWrite and keep their cause (ENOSPC).
func spool(r io.Reader, dir string, memLimit int64) (*spooled, error) {
	var buf bytes.Buffer
	n, err := buf.ReadFrom(io.LimitReader(r, memLimit+1))
	if err != nil {
		return nil, err
	}
	if n <= memLimit {
		return &spooled{mem: buf.Bytes(), size: n}, nil
	}
	f, err := os.CreateTemp(dir, "lmtp-spool-")
	if err != nil {
		return nil, fmt.Errorf("%w: %w", errSpoolWrite, err)
	}
	// Unlinked while open: the data lives until f is closed.
	if err := os.Remove(f.Name()); err != nil {
		f.Close()
		return nil, fmt.Errorf("%w: %w", errSpoolWrite, err)
	}
	sp := &spooled{file: f}
	if _, err := f.Write(buf.Bytes()); err != nil {
		sp.Close()
		return nil, fmt.Errorf("%w: %w", errSpoolWrite, err)
	}
	rest, err := io.Copy(writerOnly{f}, r)
	if err != nil {
		sp.Close()
		var we *writeError
		if errors.As(err, &we) {
			return nil, fmt.Errorf("%w: %w", errSpoolWrite, we.err)
		}
		return nil, err
	}
	sp.size = n + rest
	return sp, nil
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
		return bytes.NewReader(s.mem)
	}
	return io.NewSectionReader(s.file, 0, s.size)
}

// Close releases the spool file.
func (s *spooled) Close() error {
	if s.file == nil {
		return nil
	}
	return s.file.Close()
}
