package queue

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"

	"golang.org/x/sys/unix"
)

// Spent message files are recycled: a delivered message's file is renamed
// into free/ instead of being unlinked, and a later Enqueue renames it back
// and writes over it. A busy queue creates and unlinks one file per
// message otherwise, and creating a file is the costly part: the inode
// allocator walks the free inodes of the directory's block group, and ext4
// without a journal (as on this project's CI machines) skips, one table
// lookup each, every inode freed in the last minute or more, so at a few
// hundred messages a second each creation walks thousands. Measured on the
// end-to-end benchmark, openat(O_CREAT) was a third of the mta's CPU.
// Reuse also overwrites the file's blocks in place instead of freeing and
// allocating them again.
//
// Safety rests on the message file format (msgfile.go): a recycled file is
// only ever read as message ID if its CRC-checked envelope says ID, so old
// content resurfacing after a power loss, before the new content's fsync,
// is never delivered (and was never acknowledged). free/ is not a place
// the scan looks: a file there is not a message. Files there still hold
// the content of delivered messages until reused, like freed disk blocks;
// the spool directory is the mta's alone (0700).
const (
	freeDirName = "free"
	// maxFree bounds the files kept for reuse, and maxFreeSize the size of
	// one: a large message is rare and its creation cost small next to
	// its writing, and keeping it would hold its disk space.
	maxFree     = 256
	maxFreeSize = 1 << 20
)

// freeFiles is this process's list of recycled files in free/. Processes
// sharing the spool each keep their own; a file two lists name (after a
// restart adopted it) goes to whoever renames it first.
type freeFiles struct {
	dir string // the spool's free/

	mu    sync.Mutex
	names []string
}

// openFreeFiles creates dir if needed and adopts the files in it, removing
// those over the limit.
func openFreeFiles(dir string) (*freeFiles, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	ff := &freeFiles{dir: dir}
	for _, e := range entries {
		if !e.Type().IsRegular() {
			continue
		}
		if len(ff.names) < maxFree {
			ff.names = append(ff.names, e.Name())
		} else {
			os.Remove(filepath.Join(dir, e.Name()))
		}
	}
	return ff, nil
}

// retire moves the file of finished message id, at path and open as f
// under the caller's lock, into free/. It reports false when the file was
// not kept (the list is full, the file too big, or the rename failed): the
// caller removes it as before.
func (ff *freeFiles) retire(id, path string, f *os.File) bool {
	if ff == nil {
		return false
	}
	fi, err := f.Stat()
	if err != nil || fi.Size() > maxFreeSize {
		return false
	}
	ff.mu.Lock()
	defer ff.mu.Unlock()
	if len(ff.names) >= maxFree {
		return false
	}
	if err := os.Rename(path, filepath.Join(ff.dir, id)); err != nil {
		return false
	}
	ff.names = append(ff.names, id)
	return true
}

// take renames a free file to path and returns it open for writing and
// flocked, or nil when there is none. The lock is taken before the rename,
// so a scan never finds path unlocked.
func (ff *freeFiles) take(path string) *os.File {
	if ff == nil {
		return nil
	}
	for {
		ff.mu.Lock()
		n := len(ff.names)
		if n == 0 {
			ff.mu.Unlock()
			return nil
		}
		name := ff.names[n-1]
		ff.names = ff.names[:n-1]
		ff.mu.Unlock()
		if f := ff.claim(filepath.Join(ff.dir, name), path); f != nil {
			return f
		}
	}
}

// claim opens, locks and renames one free file; nil when another process
// (or the last holder of the retired message, still letting go) got it.
func (ff *freeFiles) claim(from, to string) *os.File {
	f, err := os.OpenFile(from, os.O_RDWR, 0)
	if err != nil {
		return nil
	}
	// Blocking: the only other holder is one about to let go (a worker
	// that lost the race for the old message, or a process claiming it too,
	// which renames it away — checked next).
	if unix.Flock(int(f.Fd()), unix.LOCK_EX) == nil && sameFile(f, from) && os.Rename(from, to) == nil {
		return f
	}
	f.Close()
	return nil
}

// sameFile reports whether f is still the file at path.
func sameFile(f *os.File, path string) bool {
	held, err1 := f.Stat()
	now, err2 := os.Stat(path)
	return err1 == nil && err2 == nil && os.SameFile(held, now)
}

// truncateHere cuts f, a recycled file just written from its start, where
// the writing ended: what followed is the previous message's.
func truncateHere(f *os.File) error {
	end, err := f.Seek(0, io.SeekCurrent)
	if err != nil {
		return err
	}
	if err := f.Truncate(end); err != nil {
		return fmt.Errorf("truncate recycled message file: %w", err)
	}
	return nil
}
