package dovecot

import (
	"os"

	"golang.org/x/sys/unix"
)

// fsTopDirFlag is FS_TOPDIR_FL (linux/fs.h, "chattr +T"): the directory is
// the top of directory hierarchies. golang.org/x/sys does not name it.
const fsTopDirFlag = 0x00020000

// markTopDir asks ext4 to treat dir as the top of directory hierarchies,
// so that it spreads dir's subdirectories over block groups (the Orlov
// allocator) instead of keeping them near dir. Each server's tree, a
// subdirectory of the work directory, then has block groups of its own,
// and its files get inodes there. That keeps the two sides of a
// comparison apart: ext4 without a journal (CI's machines) skips, on each
// file creation, every inode of the group freed in the last minute or
// more, so a side that unlinks thousands of files (postfix's queue)
// would slow the file creations of the side measured after it. Not ext4,
// or not allowed: nothing changes and TopDir reports false.
func markTopDir(dir string) {
	_ = withFlags(dir, func(fd int, flags uint32) error {
		return unix.IoctlSetPointerInt(fd, unix.FS_IOC_SETFLAGS, int(flags|fsTopDirFlag))
	})
}

// TopDir reports whether dir carries the top-of-hierarchies flag.
func TopDir(dir string) bool {
	return withFlags(dir, func(_ int, flags uint32) error {
		if flags&fsTopDirFlag == 0 {
			return os.ErrNotExist
		}
		return nil
	}) == nil
}

// withFlags calls f with dir open and its inode flags (FS_IOC_GETFLAGS).
func withFlags(dir string, f func(fd int, flags uint32) error) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	flags, err := unix.IoctlGetUint32(int(d.Fd()), unix.FS_IOC_GETFLAGS)
	if err != nil {
		return err
	}
	return f(int(d.Fd()), flags)
}
