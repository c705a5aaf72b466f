package postcove_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/postcove/postcove/services/bench/internal/postcove"
	"github.com/postcove/postcove/services/internal/testlib"
)

func TestInFrameChecks(t *testing.T) {
	tests := []struct {
		name    string
		servers postcove.Servers
		want    string
	}{
		{"no auth binary", postcove.Servers{AuthBin: "/nonexistent/auth", MailboxBin: "/bin/true"}, "run make build"},
		{"no mailbox binary", postcove.Servers{AuthBin: "/bin/true", MailboxBin: "/nonexistent/mailbox"}, "postcove mailbox binary"},
		{"no dovecot", postcove.Servers{AuthBin: "/bin/true", MailboxBin: "/bin/true", DovecotBin: "/nonexistent/dovecot"}, "apt-get install dovecot-core"},
	}
	for _, tt := range tests {
		called := false
		var p postcove.Paths
		err := tt.servers.InFrame("imap", &p, func() error { called = true; return nil })
		if err == nil || !strings.Contains(err.Error(), tt.want) || called {
			t.Errorf("%s: InFrame() = %v, run called %v; want an error with %q and no run", tt.name, err, called, tt.want)
		}
	}
}

// TestInFrameDirectory checks that the run's directory is removed after
// a run that went well and kept after one that failed.
func TestInFrameDirectory(t *testing.T) {
	bin := testlib.RequireTool(t, "/usr/sbin/dovecot")
	testlib.RequireTool(t, "/usr/lib/dovecot/imap")
	parent := testlib.TempDir(t)
	if err := os.Chmod(parent, 0o755); err != nil {
		t.Fatal(err)
	}
	s := postcove.Servers{AuthBin: "/bin/true", MailboxBin: "/bin/true", DovecotBin: bin, TempDir: parent}
	if err := s.Defaults(); err != nil {
		t.Fatal(err)
	}
	failed := errors.New("measurement failed")
	for _, runErr := range []error{nil, failed} {
		var p postcove.Paths
		err := s.InFrame("imap", &p, func() error {
			if !strings.HasPrefix(p.Root, parent) || p.AuthBin != "/bin/true" {
				t.Errorf("paths %+v: want a directory in %s", p, parent)
			}
			return runErr
		})
		if !errors.Is(err, runErr) {
			t.Errorf("InFrame() = %v, want %v", err, runErr)
		}
		_, statErr := os.Stat(p.Root)
		if kept := statErr == nil; kept != (runErr != nil) {
			t.Errorf("run error %v: directory kept = %v", runErr, kept)
		}
	}
}

// TestArgon2: the implementation comes from auth's "auth serving" line.
func TestArgon2(t *testing.T) {
	dir := t.TempDir()
	log := filepath.Join(dir, "auth.log")
	lines := `{"level":"INFO","msg":"opening database"}
{"level":"INFO","msg":"auth serving","grpc":"127.0.0.1:1","argon2":"libsodium"}
`
	if err := os.WriteFile(log, []byte(lines), 0o600); err != nil {
		t.Fatal(err)
	}
	if got := postcove.Argon2(log); got != "libsodium" {
		t.Errorf("Argon2 = %q, want libsodium", got)
	}
	if got := postcove.Argon2(filepath.Join(dir, "missing.log")); got != "unknown" {
		t.Errorf("Argon2 of no log = %q, want unknown", got)
	}
}
