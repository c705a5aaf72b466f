package smtpbench_test

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/postcove/postcove/services/bench/internal/benchtest"
	"github.com/postcove/postcove/services/bench/internal/postcove"
	"github.com/postcove/postcove/services/bench/internal/postfix"
	"github.com/postcove/postcove/services/bench/internal/smtpbench"
	"github.com/postcove/postcove/services/internal/testlib"
)

// TestRunTiny runs the whole benchmark on a few messages: both sides
// accept and deliver every one of them, once, and the report has its
// rows.
func TestRunTiny(t *testing.T) {
	postfixBin := testlib.RequireTool(t, postfix.DefaultBin)
	if os.Geteuid() != 0 {
		testlib.Unavailable(t, "postfix's master must start as root")
	}
	var log strings.Builder
	servers := benchtest.Servers(t, "lmtp", &log)
	mtaBin, err := postcove.BuildService(benchtest.RepoRoot, t.TempDir(), "mta")
	if err != nil {
		t.Fatal(err)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	res, err := smtpbench.Run(ctx, smtpbench.Options{
		Servers: servers, MTABin: mtaBin, PostfixBin: postfixBin,
		Users: 3, Sizes: []int{2048}, Messages: []int{6}, Concurrency: []int{2}, WarmupMessages: 2,
		DrainTimeout: time.Minute,
	})
	if err != nil {
		t.Fatalf("Run() = %v\nlog:\n%s", err, log.String())
	}
	rows := res.Report.Tables[0].Rows
	if len(rows) != 2 {
		t.Fatalf("%d rows, want 2 (accept, end to end)", len(rows))
	}
	for _, row := range rows {
		if row.Ours.Calls != 6 || row.Theirs.Calls != 6 || row.Ours.PerSecond <= 0 || row.Theirs.PerSecond <= 0 {
			t.Errorf("row %q: postcove %d msgs at %.1f/s, postfix+dovecot %d at %.1f/s; want 6 each, rates > 0",
				row.Op, row.Ours.Calls, row.Ours.PerSecond, row.Theirs.Calls, row.Theirs.PerSecond)
		}
	}
	if accept := rows[0]; accept.Ours.P50 <= 0 || accept.Theirs.P50 <= 0 {
		t.Errorf("accept latencies: postcove p50 %v, postfix+dovecot %v; want both > 0", accept.Ours.P50, accept.Theirs.P50)
	}
	for _, side := range []string{"postcove", "postfix+dovecot"} {
		c := res.Checks[side]
		if c.Accepted != 8 || c.Delivered != 8 || c.Err(side) != nil {
			t.Errorf("%s: %+v, want 8 messages (2 warmup + 6) accepted and delivered once", side, c)
		}
	}
	var md strings.Builder
	if err := res.Report.Markdown(&md); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"| accept 2 KiB | 2 |", "| deliver 2 KiB end to end | 2 |", "| postcove | mta |", "| postfix+dovecot | postfix: master", "| postcove | all: mta + mailbox + auth |"} {
		if !strings.Contains(md.String(), want) {
			t.Errorf("report lacks %q:\n%s", want, md.String())
		}
	}
}
