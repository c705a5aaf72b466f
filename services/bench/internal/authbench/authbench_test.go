package authbench

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/postcove/postcove/services/bench/internal/dovecot"
	"github.com/postcove/postcove/services/internal/testlib"
)

func TestWorkloadSameSequence(t *testing.T) {
	users, err := newUserSet(50)
	if err != nil {
		t.Fatal(err)
	}
	wl := workload{op: opResolve, users: users, seed: 7}
	a, b := wl.generator(3), wl.generator(3)
	other := wl.generator(4)
	unknown, differs := 0, false
	const n = 2000
	for range n {
		ra, rb, ro := a(), b(), other()
		if ra.address() != rb.address() {
			t.Fatalf("two generators for worker 3 diverge: %s vs %s", ra.address(), rb.address())
		}
		if ra.address() != ro.address() {
			differs = true
		}
		if ra.user == nil {
			unknown++
			if !slices.Contains(users.unknown, ra.unknown) {
				t.Fatalf("unknown address %q is not in the set", ra.unknown)
			}
		}
	}
	if !differs {
		t.Error("workers 3 and 4 draw the same sequence")
	}
	// 10% ± a margin that a correct generator misses with negligible odds.
	if unknown < n*6/100 || unknown > n*14/100 {
		t.Errorf("%d of %d lookups for unknown addresses, want about 10%%", unknown, n)
	}

	login := workload{op: opAuthenticate, users: users, seed: 7}.generator(0)
	for range 200 {
		if r := login(); r.user == nil || r.user.password == "" {
			t.Fatalf("login request %+v without a user and password", r)
		}
	}
}

func TestCleanEnv(t *testing.T) {
	got := cleanEnv([]string{"PATH=/bin", "POSTCOVE_AUTH_CONFIG=/etc/x.toml", "POSTCOVE_AUTH_DATABASE_DSN=x", "POSTCOVE_TEST_MYSQL_DSN=y"})
	want := []string{"PATH=/bin", "POSTCOVE_TEST_MYSQL_DSN=y"}
	if !slices.Equal(got, want) {
		t.Errorf("cleanEnv() = %q, want %q", got, want)
	}
}

func TestOptionsDefaults(t *testing.T) {
	o := Options{AuthBin: "bin/auth"}
	if err := o.defaults(); err != nil {
		t.Fatal(err)
	}
	if o.Users != DefaultUsers || o.Duration != DefaultDuration || !slices.Equal(o.Concurrency, []int{1, 8, 32}) || o.DovecotBin != dovecot.DefaultBin {
		t.Errorf("defaults() = %+v", o)
	}
	for _, bad := range []Options{
		{},
		{AuthBin: "x", Users: -1},
		{AuthBin: "x", Concurrency: []int{0}},
		{AuthBin: "x", Duration: -time.Second},
	} {
		if err := bad.defaults(); err == nil {
			t.Errorf("defaults(%+v) = nil error, want one", bad)
		}
	}
}

func TestMissingDovecot(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "auth")
	if err := os.WriteFile(bin, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	_, err := Run(context.Background(), Options{AuthBin: bin, DovecotBin: "/nonexistent/dovecot"})
	if err == nil || !strings.Contains(err.Error(), "apt-get install dovecot-core") {
		t.Errorf("Run() without dovecot = %v, want the apt-get hint", err)
	}
}

// TestRunSmall runs the whole benchmark at a tiny size against a freshly
// built auth binary and a real dovecot, and MariaDB when
// POSTCOVE_TEST_MYSQL_DSN is set.
func TestRunSmall(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the auth binary and runs both servers")
	}
	testlib.RequireTool(t, dovecot.DefaultBin)
	goBin := testlib.RequireTool(t, "go")
	dir := testlib.TempDir(t)
	if err := os.Chmod(dir, 0o755); err != nil { // dovecot's auth process reads files below
		t.Fatal(err)
	}
	authBin := filepath.Join(dir, "auth")
	build := exec.Command(goBin, "build", "-o", authBin, "github.com/postcove/postcove/services/auth/cmd/auth")
	if out, err := build.CombinedOutput(); err != nil {
		// Outside the go.work workspace the auth module is not reachable.
		testlib.Unavailable(t, "cannot build the auth binary (run inside the go.work workspace): "+err.Error()+"\n"+string(out))
	}

	var log strings.Builder
	opts := Options{
		AuthBin:     authBin,
		MySQLDSN:    os.Getenv(testlib.MySQLDSNEnv),
		Users:       6,
		Concurrency: []int{1, 3},
		Duration:    200 * time.Millisecond,
		Warmup:      50 * time.Millisecond,
		TempDir:     dir,
		ScriptsDir:  filepath.Join("..", "..", "..", "..", "scripts"),
		Log:         &log,
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	rep, err := Run(ctx, opts)
	if err != nil {
		t.Fatalf("Run() = %v\nlog:\n%s", err, log.String())
	}
	wantTables := 1
	if opts.MySQLDSN != "" {
		wantTables = 2
	}
	if len(rep.Tables) != wantTables {
		t.Fatalf("Run() made %d tables, want %d", len(rep.Tables), wantTables)
	}
	for _, tb := range rep.Tables {
		// Authenticate at 2 concurrencies, ResolveRecipient with the cache
		// on and off at 2 concurrencies.
		if len(tb.Rows) != 6 {
			t.Errorf("table %q has %d rows, want 6", tb.Title, len(tb.Rows))
		}
		for _, r := range tb.Rows {
			if r.Ours.Calls == 0 || r.Theirs.Calls == 0 || r.Ours.Errors+r.Theirs.Errors > 0 {
				t.Errorf("%s row %s at %d: %+v vs %+v, want calls and no errors", tb.Title, r.Op, r.Conc, r.Ours, r.Theirs)
			}
		}
	}
	servers := map[string]bool{}
	for _, m := range rep.Memory {
		servers[m.Server] = true
		if m.Peak.HWMKiB <= 0 {
			t.Errorf("memory of %s (%s) = %+v, want a peak", m.Server, m.Config, m.Peak)
		}
		if m.Server == "dovecot" && m.Peak.Processes < 2 {
			t.Errorf("dovecot's tree had %d processes, want the master and its children", m.Peak.Processes)
		}
	}
	if !servers["dovecot"] || !servers["postcove (sqlite)"] {
		t.Errorf("memory measured for %v, want dovecot and postcove (sqlite)", servers)
	}
	var md strings.Builder
	if err := rep.Markdown(&md); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(md.String(), "| op | conc | postcove calls/s | dovecot calls/s | ratio | postcove p50/p99 | dovecot p50/p99 |") {
		t.Errorf("Markdown() lacks the table header:\n%s", md.String())
	}
	// The run's directory is removed on success.
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), "postcove-bench-auth-") {
			t.Errorf("run directory %s left behind", e.Name())
		}
	}
}
