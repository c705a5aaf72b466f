// Package loopfs gives a benchmark's server a filesystem of its own: a
// fresh ext4 in a sparse image file, loop-mounted on the server's
// directory.
//
// Why: on ext4 without a journal (this project's machines), creating a file
// skips, one lookup each, every inode of its block group freed in the last
// minute (five while the inode table is unwritten). dovecot frees an inode
// per delivery (its dovecot-uidlist.lock) and postfix one per message (the
// queue file), so on a shared filesystem one side's deletions slowed the
// other side's file creations, by up to a fifth of the mailbox's CPU, and
// the order of the rows decided who paid. A filesystem per side, made
// afresh for each run, also carries nothing over from earlier runs.
package loopfs

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"time"
)

// MkfsOptions are the mkfs.ext4 options of every filesystem: Debian's
// defaults without a journal, like this project's machines, with the
// inode tables written at once rather than by a kernel thread during the
// run.
var MkfsOptions = []string{"-q", "-F", "-O", "^has_journal", "-m", "0", "-E", "lazy_itable_init=0,lazy_journal_init=0"}

// FS is a mounted filesystem.
type FS struct {
	Dir    string // where it is mounted
	image  string
	device string // /dev/loopN
}

// Mount creates an image of size bytes (sparse) next to dir, makes an
// ext4 in it and mounts it on dir, creating dir. It needs root, mkfs.ext4
// and loop devices; the error says which step failed.
func Mount(dir string, size int64) (_ *FS, err error) {
	image := strings.TrimSuffix(dir, "/") + ".img"
	f, err := os.OpenFile(image, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			os.Remove(image)
		}
	}()
	if err = errors.Join(f.Truncate(size), f.Close()); err != nil {
		return nil, err
	}
	if err = run("mkfs.ext4", append(MkfsOptions, image)...); err != nil {
		return nil, err
	}
	if err = os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	// Direct I/O from the loop device to its image: the mail is cached
	// once, by the filesystem on top, not again as the image's pages.
	device, err := output("losetup", "--direct-io=on", "--find", "--show", image)
	if err != nil {
		return nil, err
	}
	fs := &FS{Dir: dir, image: image, device: device}
	if err = run("mount", device, dir); err != nil {
		run("losetup", "--detach", device)
		return nil, err
	}
	// The new root directory is root's, 0755: dovecot's unprivileged
	// processes must be able to traverse it, as any work directory.
	if err = os.Chmod(dir, 0o755); err != nil {
		return nil, errors.Join(err, fs.Unmount(false))
	}
	return fs, nil
}

// Unmount unmounts the filesystem and removes its image, unless keep is
// set: then the image stays, next to the directory, for a look later
// (mount -o loop). A busy filesystem (a server still exiting) is retried
// for a few seconds.
func (fs *FS) Unmount(keep bool) error {
	var err error
	for range 50 {
		if err = run("umount", fs.Dir); err == nil {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		return err
	}
	if err := run("losetup", "--detach", fs.device); err != nil {
		return err
	}
	if keep {
		return nil
	}
	return os.Remove(fs.image)
}

func run(name string, args ...string) error {
	_, err := output(name, args...)
	return err
}

// output runs a command and returns its output, trimmed.
func output(name string, args ...string) (string, error) {
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return strings.TrimSpace(string(out)), nil
}
