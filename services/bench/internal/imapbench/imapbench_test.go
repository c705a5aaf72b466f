package imapbench

import (
	"context"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/postcove/postcove/services/bench/internal/dovecot"
	"github.com/postcove/postcove/services/bench/internal/load"
	"github.com/postcove/postcove/services/bench/internal/postcove"
	"github.com/postcove/postcove/services/bench/internal/report"
	"github.com/postcove/postcove/services/internal/testlib"
)

// scriptsDir is the repository's scripts/, seen from this package.
var scriptsDir = filepath.Join("..", "..", "..", "..", "scripts")

// workDir is a temporary directory dovecot's unprivileged processes can
// enter.
func workDir(t *testing.T) string {
	t.Helper()
	dir := testlib.TempDir(t)
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// TestWorkloadOnDovecot runs every operation against a real dovecot on a
// small corpus: the checks accept a correct server's answers, and fail
// when the expectation is off by one message.
func TestWorkloadOnDovecot(t *testing.T) {
	bin := testlib.RequireTool(t, dovecot.DefaultBin)
	testlib.RequireTool(t, "/usr/lib/dovecot/imap")
	var log strings.Builder
	b := &bench{
		opts: Options{
			Servers:  postcove.Servers{DovecotBin: bin, ScriptsDir: scriptsDir, Log: &log},
			Messages: 240, SelectMessages: 300, Seed: 9,
			Plan: load.Plan{Duration: 150 * time.Millisecond},
		},
		Paths: postcove.Paths{Root: workDir(t)}, password: "pw",
		res: &Result{Report: &report.Report{}},
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	dcDir := filepath.Join(b.Root, "dovecot")
	if err := b.writeMail(ctx, filepath.Join(dcDir, "mail")); err != nil {
		t.Fatal(err)
	}
	srv, err := b.startDovecot(ctx, dcDir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := srv.Stop(); err != nil {
			t.Error(err)
		}
	})
	s := &side{name: "dovecot", addr: srv.Addr("imap")}
	if d, err := b.coldSelect(ctx, s); err != nil || d <= 0 {
		t.Fatalf("coldSelect() = %v, %v\n%s", d, err, srv.LogTail())
	}
	if s.uids, err = b.listUIDs(ctx, s); err != nil {
		t.Fatal(err)
	}
	if b.small.withWord == 0 || b.small.seen == 0 {
		t.Fatalf("corpus of 240 has %+v: nothing for SEARCH or FLAGS to check", b.small)
	}
	for _, o := range b.ops() {
		res, err := b.run(ctx, s, o, 2)
		if err != nil {
			t.Fatalf("%s: %v", o.label, err)
		}
		if res.Errors > 0 || res.Calls == 0 {
			t.Errorf("%s: %d calls, %d errors, first: %v\n%s", o.label, res.Calls, res.Errors, res.FirstError, srv.LogTail())
		}
	}

	// Each check fails on an answer that is off by one.
	c, err := b.session(ctx, s, fetchUser)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	right := b.small
	for name, wrong := range map[string]func(e *expected){
		"search":   func(e *expected) { e.withWord++ },
		"seen":     func(e *expected) { e.seen-- },
		"messages": func(e *expected) { e.messages++ },
	} {
		b.small = right
		wrong(&b.small)
		err1 := b.searchText(ctx, s, c, nil)
		err2 := b.fetchFlags(ctx, s, c, nil)
		if name == "search" && err1 == nil || name != "search" && err2 == nil {
			t.Errorf("%s off by one: SEARCH %v, FETCH FLAGS %v; want an error", name, err1, err2)
		}
	}
	b.small = right
	b.corpus.msgs[0].crc++
	s.uids = s.uids[:1] // a fetch of message 0 alone
	if err := b.fetchBodies(ctx, s, c, rand.New(rand.NewPCG(1, 1))); err == nil || !strings.Contains(err.Error(), "CRC-32C") {
		t.Errorf("fetchBodies() with a wrong CRC = %v, want an error", err)
	}
}

// TestRunTiny runs the whole benchmark briefly on freshly built binaries
// and a real dovecot.
func TestRunTiny(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binaries and runs both servers")
	}
	dovecotBin := testlib.RequireTool(t, dovecot.DefaultBin)
	testlib.RequireTool(t, "/usr/lib/dovecot/imap")
	authBin, mailboxBin, err := postcove.BuildServices(filepath.Join(scriptsDir, ".."), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	var log strings.Builder
	res, err := Run(ctx, Options{
		Servers: postcove.Servers{
			AuthBin: authBin, MailboxBin: mailboxBin, DovecotBin: dovecotBin,
			ScriptsDir: scriptsDir, TempDir: workDir(t), Log: &log,
		},
		Messages: 200, SelectMessages: 400,
		Plan: load.Plan{Concurrency: []int{2}, Duration: 200 * time.Millisecond, NoWarmup: true},
	})
	if err != nil && strings.Contains(err.Error(), "does not serve IMAP") {
		// The mailbox service of this tree has no IMAP server yet.
		testlib.Unavailable(t, err.Error())
	}
	if err != nil {
		t.Fatalf("Run() = %v\nlog:\n%s", err, log.String())
	}
	rows := res.Report.Tables[0].Rows
	if len(rows) != len((&bench{opts: Options{SelectMessages: 400}}).ops())+1 {
		t.Fatalf("%d rows, want one per op and the cold SELECT", len(rows))
	}
	for _, r := range rows {
		if r.Ours.Calls == 0 || r.Theirs.Calls == 0 {
			t.Errorf("%s: calls postcove %d, dovecot %d, want both > 0", r.Op, r.Ours.Calls, r.Theirs.Calls)
		}
	}
	// postcove's two processes, auth alone, dovecot's tree.
	if m := res.Report.Memory; len(m) != 3 || m[0].Config != postcoveConfig || m[0].Peak.LiveHWMKiB == 0 || m[1].Peak.LiveHWMKiB == 0 || m[2].Peak.LiveHWMKiB == 0 {
		t.Errorf("memory = %+v, want postcove's peak, auth's alone and dovecot's", m)
	}
	var md strings.Builder
	if err := res.Report.Markdown(&md); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"| FETCH 1:* (FLAGS) | 2 |", "| SELECT 400 msgs, first (cold: builds the index) | 1 |", "Peak memory ratio"} {
		if !strings.Contains(md.String(), want) {
			t.Errorf("report lacks %q:\n%s", want, md.String())
		}
	}
}
