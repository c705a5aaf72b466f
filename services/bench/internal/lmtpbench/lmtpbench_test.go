package lmtpbench_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/postcove/postcove/services/bench/internal/dovecot"
	"github.com/postcove/postcove/services/bench/internal/lmtpbench"
	"github.com/postcove/postcove/services/bench/internal/load"
	"github.com/postcove/postcove/services/bench/internal/postcove"
	"github.com/postcove/postcove/services/internal/testlib"
)

// repoRoot is the repository, seen from this package.
var repoRoot = filepath.Join("..", "..", "..", "..")

func TestRunTiny(t *testing.T) {
	dovecotBin := testlib.RequireTool(t, dovecot.DefaultBin)
	testlib.RequireTool(t, "/usr/lib/dovecot/lmtp")
	dir := testlib.TempDir(t)
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	authBin, mailboxBin, err := postcove.BuildServices(repoRoot, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var log strings.Builder
	res, err := lmtpbench.Run(ctx, lmtpbench.Options{
		Servers: postcove.Servers{
			AuthBin: authBin, MailboxBin: mailboxBin, DovecotBin: dovecotBin,
			ScriptsDir: filepath.Join(repoRoot, "scripts"), TempDir: dir, Log: &log,
		},
		Users: 3, Sizes: []int{2048},
		Plan: load.Plan{Concurrency: []int{1}, Duration: 200 * time.Millisecond, NoWarmup: true},
	})
	if err != nil {
		t.Fatalf("Run() = %v\nlog:\n%s", err, log.String())
	}
	rows := res.Report.Tables[0].Rows
	if len(rows) != 1 {
		t.Fatalf("%d rows, want 1", len(rows))
	}
	if rows[0].Ours.Calls == 0 || rows[0].Theirs.Calls == 0 {
		t.Errorf("calls: postcove %d, dovecot %d, want both > 0", rows[0].Ours.Calls, rows[0].Theirs.Calls)
	}
	for _, side := range []string{"postcove", "dovecot"} {
		if res.Delivered[side] == 0 || res.Delivered[side] != res.Files[side] {
			t.Errorf("%s: %d deliveries, %d files", side, res.Delivered[side], res.Files[side])
		}
	}
	var md strings.Builder
	if err := res.Report.Markdown(&md); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(md.String(), "| deliver 2 KiB | 1 |") {
		t.Errorf("report lacks the row:\n%s", md.String())
	}
}
