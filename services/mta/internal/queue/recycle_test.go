package queue

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/postcove/postcove/services/internal/testlib"
)

// inode returns the inode number of path.
func inode(t *testing.T, path string) uint64 {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Sys().(*syscall.Stat_t).Ino
}

// freeNames lists free/.
func freeNames(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(filepath.Join(dir, freeDirName))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names
}

// TestRecycledFile: a delivered message's file goes to free/, the next
// message is written into it (the same inode), cut to its own length, and
// delivered with its own body and envelope.
func TestRecycledFile(t *testing.T) {
	dir := testlib.TempDir(t)
	q := openQueue(t, testOptions(dir))
	long := strings.Repeat("a long first message line\r\n", 400)
	first := enqueue(t, q, testEnvelope("b@example.org"), long)
	ino := inode(t, filepath.Join(dir, first+msgExt)) // before Run delivers it
	d := &recorder{}
	runQueue(t, q, d)
	waitFor(t, "the first message delivered", func() bool { return len(spoolFiles(t, dir)) == 0 })
	if got := freeNames(t, dir); len(got) != 1 || got[0] != first {
		t.Fatalf("free/ = %v, want [%s]", got, first)
	}
	second := enqueue(t, q, testEnvelope("c@example.org"), "Subject: short\r\n\r\nhi\r\n")
	waitFor(t, "the second message delivered", func() bool { return d.count() == 2 && len(spoolFiles(t, dir)) == 0 })
	calls := d.snapshot()
	if c := calls[1]; c.env.ID != second || c.body != "Subject: short\r\n\r\nhi\r\n" || len(c.rcpts) != 1 || c.rcpts[0] != "c@example.org" {
		t.Errorf("second delivery = %+v, want %s to c@example.org with its own body", c, second)
	}
	// The second message was written into the first one's file, and that
	// file is back in free/ under the second's name.
	if got := freeNames(t, dir); len(got) != 1 || got[0] != second {
		t.Fatalf("free/ = %v after the second delivery, want [%s]", got, second)
	}
	if got := inode(t, filepath.Join(dir, freeDirName, second)); got != ino {
		t.Errorf("second message in inode %d, want the recycled %d", got, ino)
	}
}

// TestRecycledStaleContent: a power loss between the reuse of a file and
// its fsync can leave the previous message's content under the new name.
// Its envelope names the old ID, so it is set aside, never delivered.
func TestRecycledStaleContent(t *testing.T) {
	dir := testlib.TempDir(t)
	q := openQueue(t, testOptions(dir))
	old := enqueue(t, q, testEnvelope("b@example.org"), "already delivered\r\n")
	newID := newID(q.opts.now())
	if err := os.Rename(filepath.Join(dir, old+msgExt), filepath.Join(dir, newID+msgExt)); err != nil {
		t.Fatal(err)
	}
	d := &recorder{}
	runQueue(t, q, d)
	waitFor(t, "the spool to empty", func() bool { return len(spoolFiles(t, dir)) == 0 })
	if n := d.count(); n != 0 {
		t.Errorf("%d deliveries of stale content, want none", n)
	}
	if _, err := os.Stat(filepath.Join(dir, "corrupt", newID+msgExt)); err != nil {
		t.Errorf("stale file not in corrupt/: %v", err)
	}
}

// TestFreeFilesAdopted: Open takes over free/ as a restart left it, up to
// maxFree files, and removes the rest; free/ is never read as messages.
func TestFreeFilesAdopted(t *testing.T) {
	dir := testlib.TempDir(t)
	free := filepath.Join(dir, freeDirName)
	if err := os.MkdirAll(free, 0o700); err != nil {
		t.Fatal(err)
	}
	for i := range maxFree + 3 {
		if err := os.WriteFile(filepath.Join(free, fmt.Sprintf("f%04d", i)), []byte("old"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	q := openQueue(t, testOptions(dir))
	if n := len(freeNames(t, dir)); n != maxFree {
		t.Errorf("free/ holds %d files after Open, want %d", n, maxFree)
	}
	if n := len(q.free.names); n != maxFree {
		t.Errorf("%d free files adopted, want %d", n, maxFree)
	}
	d := &recorder{}
	runQueue(t, q, d)
	id := enqueue(t, q, testEnvelope("b@example.org"), "new\r\n")
	waitFor(t, "the message delivered", func() bool { return d.count() == 1 })
	if c := d.snapshot()[0]; c.env.ID != id || c.body != "new\r\n" {
		t.Errorf("delivery = %+v, want %s with body new", c, id)
	}
}

// TestBigFileNotKept: a message over maxFreeSize is removed, not kept.
func TestBigFileNotKept(t *testing.T) {
	dir := testlib.TempDir(t)
	q := openQueue(t, testOptions(dir))
	d := &recorder{}
	runQueue(t, q, d)
	enqueue(t, q, testEnvelope("b@example.org"), strings.Repeat("x", 77)+"\r\n"+strings.Repeat(strings.Repeat("y", 998)+"\r\n", maxFreeSize/1000+1))
	waitFor(t, "the message delivered", func() bool { return len(spoolFiles(t, dir)) == 0 })
	if got := freeNames(t, dir); len(got) != 0 {
		t.Errorf("free/ = %v, want the big file removed", got)
	}
}
