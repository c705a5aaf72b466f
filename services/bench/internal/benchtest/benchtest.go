// Package benchtest sets up the real runs in the benchmarks' tests: the
// Debian servers they compare with, or a skip (a failure in CI, see
// testlib.RequireTool), and postcove's services built from the tree under
// test. Only tests import it.
package benchtest

import (
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/postcove/postcove/services/bench/internal/dovecot"
	"github.com/postcove/postcove/services/bench/internal/postcove"
	"github.com/postcove/postcove/services/internal/testlib"
)

// RepoRoot is the repository, seen from a package of
// services/bench/internal, where tests run.
var RepoRoot = filepath.Join("..", "..", "..", "..")

// Servers requires dovecot with its server of protocol ("lmtp"), builds
// auth and mailbox, and returns the servers of a run in a fresh temporary
// directory (kept when the test fails), with progress written to log.
func Servers(t *testing.T, protocol string, log io.Writer) postcove.Servers {
	t.Helper()
	dovecotBin := testlib.RequireTool(t, dovecot.DefaultBin)
	testlib.RequireTool(t, "/usr/lib/dovecot/"+protocol)
	dir := testlib.TempDir(t)
	// dovecot's unprivileged processes must reach the run's directory.
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	authBin, mailboxBin, err := postcove.BuildServices(RepoRoot, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return postcove.Servers{
		AuthBin: authBin, MailboxBin: mailboxBin, DovecotBin: dovecotBin,
		ScriptsDir: filepath.Join(RepoRoot, "scripts"), TempDir: dir, Log: log,
	}
}
