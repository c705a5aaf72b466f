package maildir

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// lockFile is a file used only for flock(2) (whole-file, exclusive). Locks
// are taken on files that are never replaced, because a lock on a file
// renamed over protects nothing. flock is per open file description, so
// goroutines of one process also need a mutex of their own around it.
type lockFile struct {
	path string
	f    *os.File
}

// lock takes the lock, opening (creating) the file if needed. If the path
// was replaced while we waited (a folder deleted and created again), it
// locks the file that is there now.
func (l *lockFile) lock() error {
	for {
		if l.f == nil {
			f, err := os.OpenFile(l.path, os.O_RDWR|os.O_CREATE, 0o600)
			if err != nil {
				return fmt.Errorf("open lock: %w", err)
			}
			l.f = f
		}
		if err := flock(l.f, unix.LOCK_EX); err != nil {
			return fmt.Errorf("lock %s: %w", l.path, err)
		}
		var held, now unix.Stat_t
		if err := unix.Fstat(int(l.f.Fd()), &held); err != nil {
			l.unlock()
			return fmt.Errorf("stat lock: %w", err)
		}
		err := unix.Stat(l.path, &now)
		if err == nil && held.Ino == now.Ino && held.Dev == now.Dev {
			return nil
		}
		l.unlock()
		l.close()
		if err != nil && !errors.Is(err, unix.ENOENT) {
			return fmt.Errorf("stat lock: %w", err)
		}
		// Replaced or removed: open again (which fails with ENOENT if the
		// directory itself is gone).
	}
}

func (l *lockFile) unlock() {
	if l.f != nil {
		_ = flock(l.f, unix.LOCK_UN)
	}
}

func (l *lockFile) close() {
	if l.f != nil {
		l.f.Close()
		l.f = nil
	}
}

func flock(f *os.File, how int) error {
	for {
		err := unix.Flock(int(f.Fd()), how)
		if !errors.Is(err, unix.EINTR) {
			return err
		}
	}
}

// withLock runs fn holding an flock on path (a short-lived lock: the user's
// namespace lock, the quota lock, the UIDVALIDITY counter).
func withLock(path string, fn func() error) error {
	l := lockFile{path: path}
	if err := l.lock(); err != nil {
		return err
	}
	defer l.close()
	defer l.unlock()
	return fn()
}

// syncDir fsyncs a directory, making the entries created, renamed or
// removed in it durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("fsync %s: %w", dir, err)
	}
	return nil
}

// writeFileSync writes a file crash-safely: a temporary file in the same
// directory, fsynced, renamed over path, and the directory fsynced.
func writeFileSync(path string, data []byte) error {
	return replaceFile(path, data, true)
}

// replaceFile writes data to a temporary file in path's directory and
// renames it over path, so readers see the old content or the new; with
// durable, the file and then the directory are fsynced too.
func replaceFile(path string, data []byte, durable bool) error {
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		os.Remove(tmp)
		return err
	}
	if durable {
		if err := f.Sync(); err != nil {
			f.Close()
			os.Remove(tmp)
			return err
		}
	}
	if err := f.Close(); err != nil {
		os.Remove(tmp)
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return err
	}
	if !durable {
		return nil
	}
	return syncDir(filepath.Dir(path))
}
