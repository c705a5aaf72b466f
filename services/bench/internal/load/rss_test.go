package load

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/postcove/postcove/services/internal/testlib"
)

// fakeProc writes /proc/PID/{stat,status} under root.
func fakeProc(t *testing.T, root string, pid, ppid int, comm string, start uint64, hwm, rss int64) {
	t.Helper()
	dir := filepath.Join(root, strconv.Itoa(pid))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	// Fields after the command name: state ppid pgrp session tty_nr tpgid
	// flags minflt cminflt majflt cmajflt utime stime cutime cstime
	// priority nice num_threads itrealvalue starttime ...
	stat := strconv.Itoa(pid) + " (" + comm + ") S " + strconv.Itoa(ppid) +
		" 1 1 0 -1 4194560 100 0 0 0 5 3 0 0 20 0 1 0 " + strconv.FormatUint(start, 10) + " 1000 200 18446744073709551615\n"
	status := "Name:\t" + comm + "\nState:\tS (sleeping)\nVmPeak:\t   99999 kB\nVmHWM:\t" +
		strconv.FormatInt(hwm, 10) + " kB\nVmRSS:\t" + strconv.FormatInt(rss, 10) + " kB\nThreads:\t1\n"
	if hwm < 0 { // a kernel thread: no Vm lines
		status = "Name:\t" + comm + "\nState:\tS (sleeping)\n"
	}
	for name, content := range map[string]string{"stat": stat, "status": status} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func TestReadTreeFake(t *testing.T) {
	root := t.TempDir()
	fakeProc(t, root, 1, 0, "init", 1, 1000, 900)
	fakeProc(t, root, 100, 1, "dovecot", 50, 4000, 3000)
	fakeProc(t, root, 101, 100, "auth", 60, 20000, 5000)
	fakeProc(t, root, 102, 100, "log) (x", 61, 3000, 2000) // ')' in the name
	fakeProc(t, root, 103, 101, "auth-worker", 70, 19000, 18000)
	fakeProc(t, root, 200, 1, "dovecot", 80, 99999, 99999) // a dovecot not ours
	fakeProc(t, root, 2, 0, "kthreadd", 1, -1, -1)
	if err := os.Mkdir(filepath.Join(root, "self"), 0o755); err != nil {
		t.Fatal(err)
	}

	got, err := ReadTree(root, 100)
	if err != nil {
		t.Fatal(err)
	}
	if want := int64(4000 + 20000 + 3000 + 19000); got.HWMKiB != want {
		t.Errorf("ReadTree(100).HWMKiB = %d, want %d", got.HWMKiB, want)
	}
	if want := int64(3000 + 5000 + 2000 + 18000); got.RSSKiB != want {
		t.Errorf("ReadTree(100).RSSKiB = %d, want %d", got.RSSKiB, want)
	}
	if len(got.PIDs) != 4 || got.PIDs[0] != 100 {
		t.Errorf("ReadTree(100).PIDs = %v, want 100 first and 4 in all", got.PIDs)
	}
	if _, err := ReadTree(root, 999); err == nil {
		t.Error("ReadTree(999) = nil error for a missing pid, want one")
	}

	// The watcher keeps the peak of a process that has gone since, and
	// counts the one that replaced it in the all-seen sum only.
	w := Watch(root, 100, time.Hour)
	w.Sample()
	if err := os.RemoveAll(filepath.Join(root, "103")); err != nil {
		t.Fatal(err)
	}
	fakeProc(t, root, 104, 100, "lmtp", 90, 15000, 14000)
	w.Sample()
	p, err := w.Stop()
	if err != nil {
		t.Fatal(err)
	}
	if p.HWMKiB != 61000 || p.Processes != 5 || p.RSSKiB != 28000 || p.LiveHWMKiB != 46000 {
		t.Errorf("Watcher peak = %+v, want HWM 61000 over 5 processes, RSS 28000, live HWM 46000", p)
	}
}

func TestPeakPlus(t *testing.T) {
	a := Peak{HWMKiB: 10, RSSKiB: 8, LiveHWMKiB: 9, Processes: 1, Samples: 5}
	b := Peak{HWMKiB: 100, RSSKiB: 80, LiveHWMKiB: 90, Processes: 3, Samples: 4}
	want := Peak{HWMKiB: 110, RSSKiB: 88, LiveHWMKiB: 99, Processes: 4, Samples: 4}
	if got := a.Plus(b); got != want {
		t.Errorf("Plus() = %+v, want %+v", got, want)
	}
	if got := (Peak{}).Plus(a); got != (Peak{HWMKiB: 10, RSSKiB: 8, LiveHWMKiB: 9, Processes: 1}) {
		t.Errorf("zero Plus(a) = %+v", got)
	}
}

func TestParseStat(t *testing.T) {
	tests := []struct {
		line    string
		ppid    int
		start   uint64
		wantErr bool
	}{
		{"42 (sh) S 7 42 42 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 12345 0 0", 7, 12345, false},
		{"42 (a (b) c) R 9 42 42 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 5 0 0", 9, 5, false},
		{"42 sh S 7", 0, 0, true},
		{"42 (sh) S x 42 42 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 5 0 0", 0, 0, true},
		{"42 (sh) S 7 1 2", 0, 0, true},
	}
	for _, tt := range tests {
		ppid, start, err := parseStat([]byte(tt.line))
		if (err != nil) != tt.wantErr || ppid != tt.ppid || start != tt.start {
			t.Errorf("parseStat(%q) = %d, %d, %v, want %d, %d, error %v", tt.line, ppid, start, err, tt.ppid, tt.start, tt.wantErr)
		}
	}
}

// TestReadTreeReal reads a real tree: a shell that runs a child.
func TestReadTreeReal(t *testing.T) {
	if _, err := os.Stat("/proc/self/status"); err != nil {
		testlib.Unavailable(t, "no /proc")
	}
	cmd := exec.Command("/bin/sh", "-c", "sleep 30 & wait")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		cmd.Process.Kill() // our own child, by pid
		cmd.Wait()
	}()
	deadline := time.Now().Add(5 * time.Second)
	for {
		tree, err := ReadTree(DefaultProcRoot, cmd.Process.Pid)
		if err != nil {
			t.Fatal(err)
		}
		if len(tree.PIDs) >= 2 {
			if tree.HWMKiB <= 0 || tree.RSSKiB <= 0 || tree.HWMKiB < tree.RSSKiB {
				t.Errorf("ReadTree(sh) = %+v, want 0 < RSS <= HWM", tree)
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("ReadTree(sh) = %+v: the sleep child never appeared", tree)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
