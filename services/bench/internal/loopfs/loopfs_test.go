package loopfs

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

func TestMount(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("mounting needs root (CI runs as root)")
	}
	parent := t.TempDir()
	dir := filepath.Join(parent, "server")
	fs, err := Mount(dir, 256<<20)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "mail"), []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	var p, d syscall.Stat_t
	if err := syscall.Stat(parent, &p); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Stat(dir, &d); err != nil {
		t.Fatal(err)
	}
	if p.Dev == d.Dev {
		t.Errorf("%s is on its parent's filesystem", dir)
	}
	if fi, err := os.Stat(dir); err != nil || fi.Mode().Perm() != 0o755 {
		t.Errorf("mount point mode = %v, %v; want 0755", fi.Mode().Perm(), err)
	}
	if err := fs.Unmount(false); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "mail")); !os.IsNotExist(err) {
		t.Errorf("after Unmount the file is still there: %v", err)
	}
	if _, err := os.Stat(dir + ".img"); !os.IsNotExist(err) {
		t.Errorf("after Unmount the image is still there: %v", err)
	}
}

func TestMountFails(t *testing.T) {
	// No such parent: an error, and nothing left behind.
	if _, err := Mount(filepath.Join(t.TempDir(), "missing", "server"), 1<<20); err == nil {
		t.Fatal("Mount under a missing directory succeeded")
	}
}
