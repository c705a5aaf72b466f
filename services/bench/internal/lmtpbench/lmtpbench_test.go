package lmtpbench_test

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/postcove/postcove/services/bench/internal/benchtest"
	"github.com/postcove/postcove/services/bench/internal/lmtpbench"
	"github.com/postcove/postcove/services/bench/internal/load"
)

func TestRunTiny(t *testing.T) {
	var log strings.Builder
	servers := benchtest.Servers(t, "lmtp", &log)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	res, err := lmtpbench.Run(ctx, lmtpbench.Options{
		Servers: servers,
		Users:   3, Sizes: []int{2048},
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
	// As root (CI), each server's mail is on a filesystem of its own.
	if os.Geteuid() == 0 && !strings.Contains(md.String(), "postcove-mail, dovecot: each a fresh ext4 of its own") {
		t.Errorf("report does not say each server had a filesystem of its own:\n%s\nlog:\n%s", md.String(), log.String())
	}
}
