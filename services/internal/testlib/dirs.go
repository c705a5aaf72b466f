package testlib

import (
	"os"
	"strings"
	"testing"
)

// TempDir returns a new directory that is removed when the test ends, unless
// the test failed: then it is kept and its path logged, so the spool, the
// Maildirs or the logs a failing test left behind can be inspected. (The
// testing package's t.TempDir always removes.) Set POSTCOVE_KEEP_TMP=1 to
// keep it even on success.
func TempDir(t testing.TB) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "postcove-"+dirName(t.Name())+"-")
	if err != nil {
		t.Fatalf("create temp dir: %v", err)
	}
	t.Cleanup(func() {
		if t.Failed() || os.Getenv("POSTCOVE_KEEP_TMP") != "" {
			t.Logf("kept temp dir %s", dir)
			return
		}
		if err := os.RemoveAll(dir); err != nil {
			t.Errorf("remove temp dir: %v", err)
		}
	})
	return dir
}

// dirName makes a test name ("TestX/sub case") usable as a file name part.
func dirName(name string) string {
	const maxLen = 64
	name = strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '-', r == '_':
			return r
		}
		return '_'
	}, name)
	if len(name) > maxLen {
		name = name[:maxLen]
	}
	return name
}
