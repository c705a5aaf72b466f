package maildir

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/postcove/postcove/services/internal/testlib"
	"github.com/postcove/postcove/services/mailbox/internal/store"
	"github.com/postcove/postcove/services/mailbox/internal/store/storetest"
)

// The tests below run this test binary again as helper processes
// (helperEnv names the job), so that two real OS processes share a Maildir
// and one of them can be killed with SIGKILL.
const helperEnv = "POSTCOVE_MAILDIR_HELPER"

func TestMain(m *testing.M) {
	if job := os.Getenv(helperEnv); job != "" {
		if err := runHelper(job); err != nil {
			fmt.Fprintln(os.Stderr, "helper:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// runHelper runs a job "<kind> <root> <tag> <count>": "deliver" appends
// count messages tagged tag to INBOX, printing "ok <uid> <i>" after each
// returns; "churn" does the same and expunges each third one it delivered,
// printing "x <uid> <i>".
func runHelper(job string) error {
	f := strings.Fields(job)
	if len(f) != 4 {
		return fmt.Errorf("bad job %q", job)
	}
	kind, root, tag := f[0], f[1], f[2]
	count, err := strconv.Atoi(f[3])
	if err != nil {
		return err
	}
	s, err := Open(Options{Root: root})
	if err != nil {
		return err
	}
	ctx := context.Background()
	m, err := s.User(ctx, "alice@example.org")
	if err != nil {
		return err
	}
	var mb store.Mailbox
	if kind == "churn" {
		if mb, err = m.Select(ctx, "INBOX"); err != nil {
			return err
		}
	}
	out := bufio.NewWriter(os.Stdout)
	for i := range count {
		res, err := m.Append(ctx, "INBOX", strings.NewReader(helperMsg(tag, i)), store.AppendOptions{})
		if err != nil {
			return err
		}
		fmt.Fprintf(out, "ok %d %d\n", res.UID, i)
		out.Flush()
		if kind == "churn" && i%3 == 0 {
			if _, err := mb.SetFlags(ctx, []store.UID{res.UID}, store.FlagsAdd, []string{store.FlagDeleted}, 0); err != nil {
				return err
			}
			if _, err := mb.Expunge(ctx, []store.UID{res.UID}); err != nil {
				return err
			}
			if _, err := mb.Poll(ctx, true); err != nil {
				return err
			}
			fmt.Fprintf(out, "x %d %d\n", res.UID, i)
			out.Flush()
		}
	}
	return nil
}

func helperMsg(tag string, i int) string {
	return fmt.Sprintf("Subject: %s %d\r\n\r\n%s-%d\r\n", tag, i, tag, i)
}

func helper(t *testing.T, job string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), helperEnv+"="+job)
	cmd.Stderr = os.Stderr
	return cmd
}

// inboxBodies opens root fresh and returns INBOX's bodies by UID, after
// checking that the index and the files agree.
func inboxBodies(t *testing.T, root string) map[store.UID]string {
	t.Helper()
	s := openStore(t, root, Options{})
	m, err := s.User(t.Context(), "alice@example.org")
	if err != nil {
		t.Fatal(err)
	}
	mb := storetest.Select(t, m, "INBOX")
	bodies := map[store.UID]string{}
	var last store.UID
	for _, uid := range mb.UIDs() {
		if uid <= last {
			t.Errorf("UIDs not ascending: %d after %d", uid, last)
		}
		last = uid
		bodies[uid] = storetest.Body(t, mb, uid)
	}
	files, _ := filepath.Glob(filepath.Join(root, "example.org", "alice", "Maildir", "cur", "*"))
	if len(files) != len(bodies) {
		t.Errorf("%d files in cur/, %d messages in the index", len(files), len(bodies))
	}
	return bodies
}

func TestTwoProcesses(t *testing.T) {
	root := testlib.TempDir(t)
	const n = 60
	s := openStore(t, root, Options{})
	m, err := s.User(t.Context(), "alice@example.org")
	if err != nil {
		t.Fatal(err)
	}
	watcher := storetest.Select(t, m, "INBOX")

	var cmds []*exec.Cmd
	var outs []*bufio.Scanner
	for _, tag := range []string{"a", "b"} {
		cmd := helper(t, fmt.Sprintf("churn %s %s %d", root, tag, n))
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		cmds = append(cmds, cmd)
		outs = append(outs, bufio.NewScanner(stdout))
	}
	// The watcher hears about the other processes' changes.
	storetest.WaitUpdate(t, watcher, 5*time.Second)
	want := map[string]bool{} // bodies that must remain
	for k, tag := range []string{"a", "b"} {
		expunged := map[int]bool{}
		delivered := 0
		for outs[k].Scan() {
			f := strings.Fields(outs[k].Text())
			i, _ := strconv.Atoi(f[2])
			if f[0] == "x" {
				expunged[i] = true
			} else {
				delivered++
			}
		}
		if err := cmds[k].Wait(); err != nil {
			t.Fatalf("helper %s: %v", tag, err)
		}
		if delivered != n {
			t.Errorf("helper %s delivered %d, want %d", tag, delivered, n)
		}
		for i := range n {
			if !expunged[i] {
				want[helperMsg(tag, i)] = true
			}
		}
	}
	bodies := inboxBodies(t, root)
	count := map[string]int{}
	for _, b := range bodies {
		count[b]++
	}
	for b := range want {
		if count[b] != 1 {
			t.Errorf("message %q present %d times, want once", b, count[b])
		}
	}
	if len(bodies) != len(want) {
		t.Errorf("%d messages, want %d (expunged ones gone)", len(bodies), len(want))
	}
	storetest.PollUntil(t, watcher, 5*time.Second, func(store.Changes) bool {
		return len(watcher.UIDs()) == len(want)
	})
}

// TestKilledAfterDeliver kills a delivering process with SIGKILL, at once
// after an Append returned and at other moments, and checks that every
// acknowledged message is there exactly once and the index is sound.
func TestKilledAfterDeliver(t *testing.T) {
	root := testlib.TempDir(t)
	acked := map[string]bool{}
	for round, killAfter := range []int{1, 5, 0, 17} {
		tag := fmt.Sprintf("r%d", round)
		cmd := helper(t, fmt.Sprintf("deliver %s %s %d", root, tag, 1000))
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(stdout)
		if killAfter == 0 {
			// Somewhere in the middle of a delivery, not right after one.
			time.Sleep(30 * time.Millisecond)
			cmd.Process.Signal(syscall.SIGKILL)
		}
		for sc.Scan() {
			f := strings.Fields(sc.Text())
			i, _ := strconv.Atoi(f[2])
			acked[helperMsg(tag, i)] = true
			if killAfter > 0 && i+1 == killAfter {
				cmd.Process.Signal(syscall.SIGKILL)
				break
			}
		}
		cmd.Wait()
	}
	bodies := inboxBodies(t, root)
	count := map[string]int{}
	for _, b := range bodies {
		count[b]++
	}
	for b := range acked {
		if count[b] != 1 {
			t.Errorf("acknowledged message %q present %d times, want exactly once", b, count[b])
		}
	}
	for b, c := range count {
		if c != 1 {
			t.Errorf("message %q present %d times", b, c)
		}
	}
	// A second reopen changes nothing: the first one repaired everything.
	again := inboxBodies(t, root)
	if len(again) != len(bodies) {
		t.Errorf("second reopen: %d messages, first %d", len(again), len(bodies))
	}
}
