package queue

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/postcove/postcove/services/internal/testlib"
)

// The kill tests run this test binary again as a helper process (the
// environment variable selects what it does), and kill -9 it.
const helperEnv = "POSTCOVE_QUEUE_HELPER"

// TestHelperProcess is not a test: it is the helper process of the kill
// tests. "enqueue": enqueue a message, print its ID, then wait to be
// killed. "half": start an Enqueue, print "writing" once half the body is
// written, then block forever in the middle of it.
func TestHelperProcess(t *testing.T) {
	mode := os.Getenv(helperEnv)
	if mode == "" {
		t.Skip("helper process for the kill tests")
	}
	q, err := Open(Options{Dir: os.Getenv("POSTCOVE_QUEUE_DIR")})
	if err != nil {
		fmt.Println("error:", err)
		os.Exit(1)
	}
	env := Envelope{Sender: "alice@example.org", Recipients: []Recipient{{Address: "bob@example.org", Route: RouteLocal}}}
	switch mode {
	case "enqueue":
		id, err := q.Enqueue(context.Background(), env, strings.NewReader(killBody))
		if err != nil {
			fmt.Println("error:", err)
			os.Exit(1)
		}
		fmt.Println("queued", id)
	case "half":
		pr, pw := io.Pipe()
		go func() {
			pw.Write([]byte(strings.Repeat("half of a message\r\n", 1000)))
			fmt.Println("writing")
			select {} // never ends the body
		}()
		q.Enqueue(context.Background(), env, pr)
	}
	select {} // wait for kill -9
}

const killBody = "Subject: survive\r\n\r\nkill -9 after 250\r\n"

// startHelper runs the helper process in mode on dir and returns it and
// the first line it printed.
func startHelper(t *testing.T, mode, dir string) (*exec.Cmd, string) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperProcess$")
	cmd.Env = append(os.Environ(), helperEnv+"="+mode, "POSTCOVE_QUEUE_DIR="+dir)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	line := make(chan string, 1)
	go func() {
		l, _ := bufio.NewReader(out).ReadString('\n')
		line <- strings.TrimSpace(l)
	}()
	select {
	case l := <-line:
		return cmd, l
	case <-time.After(30 * time.Second):
		t.Fatalf("helper %s printed nothing", mode)
	}
	return nil, ""
}

// kill9 kills the helper process with SIGKILL and waits for it.
func kill9(t *testing.T, cmd *exec.Cmd) {
	t.Helper()
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	cmd.Wait()
}

// TestKillAfterEnqueue: a message whose Enqueue returned survives kill -9
// of its process, and is delivered once by the next one.
func TestKillAfterEnqueue(t *testing.T) {
	dir := testlib.TempDir(t)
	cmd, line := startHelper(t, "enqueue", dir)
	id, ok := strings.CutPrefix(line, "queued ")
	if !ok {
		t.Fatalf("helper said %q, want queued ID", line)
	}
	kill9(t, cmd)

	q := openQueue(t, testOptions(dir))
	d := &recorder{}
	runQueue(t, q, d)
	waitFor(t, "the spool to empty", func() bool { return len(spoolFiles(t, dir)) == 0 })
	calls := d.snapshot()
	if len(calls) != 1 || calls[0].env.ID != id || calls[0].body != killBody || calls[0].rcpts[0] != "bob@example.org" {
		t.Errorf("deliveries after kill -9 = %+v, want %s once", calls, id)
	}
}

// TestKillDuringEnqueue: an Enqueue killed midway leaves nothing that is
// ever delivered, and its files are removed when the queue next opens.
func TestKillDuringEnqueue(t *testing.T) {
	dir := testlib.TempDir(t)
	cmd, line := startHelper(t, "half", dir)
	if line != "writing" {
		t.Fatalf("helper said %q, want writing", line)
	}
	if got := spoolFiles(t, dir); len(got) == 0 {
		t.Fatal("no file in the spool while the helper writes")
	}
	kill9(t, cmd)

	q := openQueue(t, testOptions(dir))
	if got := spoolFiles(t, dir); len(got) != 0 {
		t.Errorf("spool after reopening = %q, want the half message removed", got)
	}
	if msgs, err := q.List(context.Background()); err != nil || len(msgs) != 0 {
		t.Errorf("List = %+v, %v; want nothing", msgs, err)
	}
}
