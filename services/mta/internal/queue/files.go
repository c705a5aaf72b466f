package queue

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"syscall"

	"golang.org/x/sys/unix"
)

// Spool layout: one flat directory, one message = three files named by its
// ID.
//
//	ID.env   the envelope with per-recipient state (JSON). Its presence is
//	         what makes the message exist: written last by Enqueue, removed
//	         first when the message is done.
//	ID.body  the message, CRLF lines.
//	ID.lock  flock(2)ed by whoever works on the message: Enqueue while it
//	         writes, a worker while it delivers, Flush/Delete. The lock dies
//	         with its process, so kill -9 frees it.
//	*.tmp    files being written, renamed into place once fsynced.
const (
	envExt  = ".env"
	bodyExt = ".body"
	lockExt = ".lock"
	tmpExt  = ".tmp"
)

var (
	// errBusy: another worker (of this process or another) holds the
	// message's lock.
	errBusy = errors.New("message locked by another worker")
	// errGone: the message was finished or deleted meanwhile.
	errGone = errors.New("message gone")
)

// lease is a held lock on one message.
type lease struct{ f *os.File }

// tryLock takes the lock of message id without waiting. It fails with
// errBusy when someone holds it and errGone when the message is gone: the
// lock file was removed, or replaced, while we waited for it (the holder
// finishing a message removes its lock file before releasing it, so a lock
// won on the old file means nothing).
func tryLock(dir, id string) (*lease, error) {
	path := filepath.Join(dir, id+lockExt)
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if errors.Is(err, os.ErrNotExist) {
		return nil, errGone
	}
	if err != nil {
		return nil, fmt.Errorf("open lock: %w", err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			return nil, errBusy
		}
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	held, err1 := f.Stat()
	now, err2 := os.Stat(path)
	if err1 != nil || err2 != nil || !os.SameFile(held, now) {
		f.Close()
		return nil, errGone
	}
	return &lease{f: f}, nil
}

// createLock makes and takes the lock of a new message. O_EXCL: IDs are
// never reused.
func createLock(dir, id string) (*lease, error) {
	f, err := os.OpenFile(filepath.Join(dir, id+lockExt), os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, fmt.Errorf("create lock: %w", err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		f.Close()
		return nil, fmt.Errorf("lock new message: %w", err)
	}
	return &lease{f: f}, nil
}

// release drops the lock.
// Closing the last descriptor of the file drops the flock. Releasing twice
// is harmless.
func (l *lease) release() {
	if l.f != nil {
		l.f.Close()
		l.f = nil
	}
}

// writeFile creates path and writes data to it, returning the file open
// and not yet fsynced. On error it removes the file.
func writeFile(path string, data []byte) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return nil, err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		os.Remove(path)
		return nil, err
	}
	return f, nil
}

// writeFileSync writes a file under a temporary name, fsyncs it and renames
// it to path. The caller fsyncs the directory.
func writeFileSync(path string, data []byte) error {
	tmp := path + tmpExt
	f, err := writeFile(tmp, data)
	if err != nil {
		return err
	}
	err = f.Sync()
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
		return err
	}
	return nil
}

// syncDir fsyncs a directory, making the renames and removals in it
// durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}

// noSpace reports whether err means the disk (or the user's quota) is full.
func noSpace(err error) bool {
	return errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT)
}

// crlfWriter writes its input with every line ending made CRLF: a bare LF
// or a bare CR becomes CRLF, so that what the queue sends on never holds a
// lone CR or LF (the raw material of SMTP smuggling, and RFC 5321 §2.3.8
// forbids them). It streams: only a trailing CR is held between writes.
type crlfWriter struct {
	w      io.Writer
	cr     bool  // the last byte written was a CR not yet known to be followed by LF
	last   byte  // the last byte written out
	n      int64 // bytes written out
	outBuf []byte
}

func (c *crlfWriter) Write(p []byte) (int, error) {
	out := c.outBuf[:0]
	for _, b := range p {
		switch {
		case b == '\n':
			out = append(out, '\r', '\n')
			c.cr = false
		case c.cr:
			// The CR before this byte was bare.
			out = append(out, '\r', '\n')
			c.cr = b == '\r'
			if !c.cr {
				out = append(out, b)
			}
		case b == '\r':
			c.cr = true
		default:
			out = append(out, b)
		}
	}
	c.outBuf = out
	if err := c.emit(out); err != nil {
		return 0, err
	}
	return len(p), nil
}

// Close ends the data: a pending CR becomes CRLF, and a last line without
// an ending gets CRLF so that the message ends with a complete line.
func (c *crlfWriter) Close() error {
	switch {
	case c.cr:
		c.cr = false
		return c.emit([]byte("\r\n"))
	case c.n > 0 && c.last != '\n':
		return c.emit([]byte("\r\n"))
	}
	return nil
}

func (c *crlfWriter) emit(b []byte) error {
	if len(b) == 0 {
		return nil
	}
	n, err := c.w.Write(b)
	c.n += int64(n)
	if n > 0 {
		c.last = b[n-1]
	}
	return err
}
