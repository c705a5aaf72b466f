package lmtpbench_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/postcove/postcove/services/bench/internal/dovecot"
	"github.com/postcove/postcove/services/bench/internal/lmtpbench"
	"github.com/postcove/postcove/services/internal/testlib"
)

// buildBinary builds a postcove service from the workspace into dir.
func buildBinary(t *testing.T, dir, name string) string {
	t.Helper()
	out := filepath.Join(dir, name)
	cmd := exec.Command("go", "build", "-o", out, "./services/"+name+"/cmd/"+name)
	cmd.Dir = filepath.Join("..", "..", "..", "..")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build %s: %v\n%s", name, err, b)
	}
	return out
}

func TestRunTiny(t *testing.T) {
	dovecotBin := testlib.RequireTool(t, dovecot.DefaultBin)
	testlib.RequireTool(t, "/usr/lib/dovecot/lmtp")
	dir := testlib.TempDir(t)
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	bins := t.TempDir()
	authBin := buildBinary(t, bins, "auth")
	mailboxBin := buildBinary(t, bins, "mailbox")

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var log strings.Builder
	res, err := lmtpbench.Run(ctx, lmtpbench.Options{
		AuthBin: authBin, MailboxBin: mailboxBin, DovecotBin: dovecotBin,
		Users: 3, Concurrency: []int{1}, Sizes: []int{2048},
		Duration: 200 * time.Millisecond, NoWarmup: true,
		TempDir: dir, Log: &log,
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
