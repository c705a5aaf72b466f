package proc_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/postcove/postcove/services/bench/internal/proc"
	"github.com/postcove/postcove/services/internal/testlib"
)

func TestStopOnSIGTERM(t *testing.T) {
	sh := testlib.RequireTool(t, "sh")
	p, err := proc.Start("sleeper", exec.Command(sh, "-c", "exec sleep 30"))
	if err != nil {
		t.Fatal(err)
	}
	if p.Pid() <= 0 || p.Name() != "sleeper" {
		t.Errorf("Pid() = %d, Name() = %q", p.Pid(), p.Name())
	}
	start := time.Now()
	if err := p.Stop(5 * time.Second); err != nil {
		t.Errorf("Stop() = %v, want nil for a process that exits on SIGTERM", err)
	}
	if took := time.Since(start); took > 4*time.Second {
		t.Errorf("Stop() took %v: SIGTERM was not enough?", took)
	}
	select {
	case <-p.Done():
	default:
		t.Error("Done() not closed after Stop")
	}
	// Stopping again is harmless.
	if err := p.Stop(time.Second); err != nil {
		t.Errorf("second Stop() = %v", err)
	}
}

func TestStopKillsWhatIgnoresSIGTERM(t *testing.T) {
	sh := testlib.RequireTool(t, "sh")
	// The trap is set before "ready" is printed, so the SIGTERM cannot
	// arrive before it.
	cmd := exec.Command(sh, "-c", `trap "" TERM; echo ready; while :; do sleep 0.05; done`)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	p, err := proc.Start("stubborn", cmd)
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 6)
	if _, err := out.Read(buf); err != nil || string(buf) != "ready\n" {
		t.Fatalf("read %q, %v", buf, err)
	}
	err = p.Stop(200 * time.Millisecond)
	if err == nil || !strings.Contains(err.Error(), "killed") {
		t.Errorf("Stop() = %v, want a 'killed' error", err)
	}
}

func TestExitedOnItsOwn(t *testing.T) {
	sh := testlib.RequireTool(t, "sh")
	p, err := proc.Start("failing", exec.Command(sh, "-c", "exit 3"))
	if err != nil {
		t.Fatal(err)
	}
	<-p.Done()
	if p.ExitErr() == nil {
		t.Error("ExitErr() = nil for exit status 3")
	}
	if err := p.Stop(time.Second); err == nil {
		t.Error("Stop() of a process that had failed = nil, want the failure")
	}
}

func TestStartError(t *testing.T) {
	if _, err := proc.Start("missing", exec.Command("/nonexistent/binary")); err == nil {
		t.Error("Start(/nonexistent/binary) = nil error")
	}
}

func TestLogTail(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "server.log")
	if err := os.WriteFile(path, []byte(strings.Repeat("x", 5000)+"the end\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	got := proc.LogTail(path)
	if !strings.HasSuffix(got, "the end") || len(got) > 3000 {
		t.Errorf("LogTail() = %d bytes ending %q, want at most 3000 ending with the end", len(got), got[max(0, len(got)-10):])
	}
	if got := proc.LogTail(filepath.Join(dir, "missing")); got != "" {
		t.Errorf("LogTail(missing) = %q, want empty", got)
	}
}
