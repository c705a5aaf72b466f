package queue

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"syscall"

	"golang.org/x/sys/unix"
)

// Spool layout: one flat directory, files named by message ID. Messages
// are written in format 2 (ID.msg, see msgfile.go); format 1, below, is
// still read and delivered, so that a spool written by an earlier version
// drains after an upgrade. Format 1, one message = three files:
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
	// errBodyMissing: a format-1 envelope without its body.
	errBodyMissing = errors.New("message body missing")
)

// lease is a held lock on one message.
type lease struct {
	f *os.File
	// msg: f is the format-2 message file ID.msg, locked itself;
	// otherwise format 1's ID.lock.
	msg bool
}

// tryLock takes the lock of message id without waiting: the flock of its
// message file ID.msg, or of format 1's ID.lock. It fails with errBusy
// when someone holds it and errGone when the message is gone: the file was
// removed, or replaced, while we waited for it (the holder finishing a
// message removes the file before releasing it, so a lock won on the old
// file means nothing).
func tryLock(dir, id string) (*lease, error) {
	l, err := lockPath(filepath.Join(dir, id+msgExt), os.O_RDONLY)
	if err == nil {
		l.msg = true
	}
	if !errors.Is(err, errGone) {
		return l, err
	}
	return lockPath(filepath.Join(dir, id+lockExt), os.O_RDWR)
}

// lockPath opens and flocks path.
func lockPath(path string, flag int) (*lease, error) {
	f, err := os.OpenFile(path, flag, 0)
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
	if !sameFile(f, path) {
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
//
// Mail from SMTP arrives with CRLF lines already (smtpd refuses bare CR
// and LF), so the common case is a clean input: it is found with
// bytes.IndexByte a line at a time and written on as is, without a copy or
// a loop over every byte.
type crlfWriter struct {
	w    io.Writer
	cr   bool  // the last byte seen was a CR not yet known to be followed by LF
	last byte  // the last byte written out
	n    int64 // bytes written out
}

func (c *crlfWriter) Write(p []byte) (int, error) {
	n := len(p)
	if c.cr && len(p) > 0 {
		// The CR held back from the previous write ends a line either
		// way: with its LF, or bare.
		c.cr = false
		if p[0] == '\n' {
			p = p[1:]
		}
		if err := c.emit([]byte("\r\n")); err != nil {
			return 0, err
		}
	}
	for len(p) > 0 {
		i := cleanPrefix(p)
		if err := c.emit(p[:i]); err != nil {
			return 0, err
		}
		p = p[i:]
		if len(p) == 0 {
			break
		}
		// p[0] is a bare LF, a bare CR, or a CR ending p whose LF may
		// come with the next write.
		if p[0] == '\r' && len(p) == 1 {
			c.cr = true
			break
		}
		if err := c.emit([]byte("\r\n")); err != nil {
			return 0, err
		}
		p = p[1:]
	}
	return n, nil
}

// cleanPrefix returns the length of the longest prefix of p that needs no
// change: whole CRLF lines, then a partial line without CR or LF. The byte
// after it, if any, is a bare LF or a CR not followed by LF within p.
func cleanPrefix(p []byte) int {
	i := 0
	for {
		j := bytes.IndexByte(p[i:], '\n')
		if j < 0 {
			if k := bytes.IndexByte(p[i:], '\r'); k >= 0 {
				return i + k
			}
			return len(p)
		}
		// The line p[i:i+j+1] is clean when its only CR is just before
		// its LF.
		switch k := bytes.IndexByte(p[i:i+j], '\r'); {
		case k < 0:
			return i + j // bare LF
		case k < j-1:
			return i + k // a CR inside the line: bare
		}
		i += j + 1
	}
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
