package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net/textproto"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/postcove/postcove/services/internal/grpcx"
	"github.com/postcove/postcove/services/internal/testlib"
	"github.com/postcove/postcove/services/mailbox/internal/lmtpd/lmtptest"
	"github.com/postcove/postcove/services/mailbox/internal/store"
	"github.com/postcove/postcove/services/mailbox/internal/store/maildir"
)

// TestBadConfigNamesTheField: a bad file key, file value or environment
// value stops the service before it starts, with a message naming it.
func TestBadConfigNamesTheField(t *testing.T) {
	testlib.CheckConfigErrors(t, run, []testlib.ConfigError{
		{Name: "unknown key", File: "[store]\nrot = \"x\"\n", Want: `store.rot`},
		{Name: "bad duration", File: "[limits]\nread_timeout = 30\n", Want: "limits.read_timeout"},
		{Name: "bad env", Env: []string{"POSTCOVE_MAILBOX_LIMITS_MAX_RECIPIENTS=many"}, Want: "POSTCOVE_MAILBOX_LIMITS_MAX_RECIPIENTS"},
		{Name: "bad listen", Env: []string{"POSTCOVE_MAILBOX_LISTEN_LMTP=localhost"}, Want: "listen.lmtp"},
		{Name: "empty store", Env: []string{"POSTCOVE_MAILBOX_STORE_ROOT="}, Want: "store.root"},
		{Name: "missing file", Args: []string{"-config", "/nonexistent/mailbox.toml"}, Want: "mailbox.toml"},
		{Name: "unknown command", Args: []string{"frobnicate"}, Want: `unknown command "frobnicate"`},
		{Name: "extra argument", Args: []string{"version", "now"}, Want: `unexpected argument "now"`},
	})
}

// service is the mailbox binary running in a subprocess.
type service struct {
	t      *testing.T
	bin    string
	env    []string
	log    string // file the process writes to
	cmd    *exec.Cmd
	exited chan struct{}
}

// buildMailbox builds this command into a temporary directory.
func buildMailbox(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(testlib.TempDir(t), "mailbox")
	out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

func newService(t *testing.T, bin, authAddr string) *service {
	t.Helper()
	dir := testlib.TempDir(t)
	s := &service{t: t, bin: bin, log: filepath.Join(dir, "mailbox.log")}
	s.env = append(os.Environ(),
		"POSTCOVE_MAILBOX_LISTEN_LMTP="+testlib.FreeAddr(t),
		"POSTCOVE_MAILBOX_LISTEN_GRPC="+testlib.FreeAddr(t),
		// Not the default 2143, which a `make run` may hold.
		"POSTCOVE_MAILBOX_LISTEN_IMAP="+testlib.FreeAddr(t),
		"POSTCOVE_MAILBOX_LISTEN_METRICS=",
		"POSTCOVE_MAILBOX_AUTH_ADDR="+authAddr,
		"POSTCOVE_MAILBOX_AUTH_HEALTH_INTERVAL=100ms",
		"POSTCOVE_MAILBOX_STORE_ROOT="+filepath.Join(dir, "mail"),
		"POSTCOVE_MAILBOX_LOG_LEVEL=debug",
	)
	t.Cleanup(func() {
		s.kill()
		if t.Failed() {
			data, _ := os.ReadFile(s.log)
			t.Logf("mailbox log:\n%s", data)
		}
	})
	return s
}

// get returns the value the service's environment gives key.
func (s *service) get(key string) string {
	for i := len(s.env) - 1; i >= 0; i-- {
		if v, ok := strings.CutPrefix(s.env[i], key+"="); ok {
			return v
		}
	}
	return ""
}

// start runs the service and waits until its health says SERVING.
func (s *service) start() {
	s.t.Helper()
	logFile, err := os.OpenFile(s.log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		s.t.Fatal(err)
	}
	defer logFile.Close()
	s.cmd = exec.Command(s.bin)
	s.cmd.Env = s.env
	s.cmd.Stdout, s.cmd.Stderr = logFile, logFile
	if err := s.cmd.Start(); err != nil {
		s.t.Fatal(err)
	}
	s.exited = make(chan struct{})
	go func(cmd *exec.Cmd, exited chan struct{}) {
		cmd.Wait()
		close(exited)
	}(s.cmd, s.exited)
	deadline := time.Now().Add(20 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		err := grpcx.CheckHealth(ctx, s.get("POSTCOVE_MAILBOX_LISTEN_GRPC"), nil, "")
		cancel()
		if err == nil {
			return
		}
		select {
		case <-s.exited:
			s.t.Fatalf("mailbox exited during startup")
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("mailbox not SERVING: %v", err)
		}
	}
}

// kill sends SIGKILL to our child (by pid, never by name) and waits.
func (s *service) kill() {
	if s.cmd == nil {
		return
	}
	s.cmd.Process.Kill()
	<-s.exited
	s.cmd = nil
}

// dialLMTP connects and greets.
func dialLMTP(t *testing.T, addr string) *lmtptest.Client {
	t.Helper()
	c := lmtptest.Dial(t, addr)
	c.LHLO()
	return c
}

// subjects counts the messages of alice's INBOX by Subject.
func subjects(t *testing.T, root string) map[string]int {
	t.Helper()
	st, err := maildir.Open(maildir.Options{Root: root})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	ctx := context.Background()
	user, err := st.User(ctx, "alice@example.org")
	if err != nil {
		t.Fatal(err)
	}
	mb, err := user.Select(ctx, store.Inbox)
	if err != nil {
		t.Fatal(err)
	}
	defer mb.Close()
	out := map[string]int{}
	for _, uid := range mb.UIDs() {
		body, err := mb.Open(ctx, uid)
		if err != nil {
			t.Fatal(err)
		}
		h, _ := textproto.NewReader(bufio.NewReader(body)).ReadMIMEHeader()
		body.Close()
		out[h.Get("Subject")]++
	}
	return out
}

// TestBinary runs the built command: version, kill -9 right after a 250
// (the message is there exactly once after a restart), SIGTERM with a
// delivery in flight (it finishes), and the healthcheck subcommand.
func TestBinary(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the mailbox and auth binaries")
	}
	bin := buildMailbox(t)

	t.Run("version", func(t *testing.T) {
		out, err := exec.Command(bin, "version").Output()
		if err != nil || strings.TrimSpace(string(out)) != "dev" {
			t.Errorf("mailbox version = %q, %v; want dev", out, err)
		}
	})

	a := testlib.StartAuth(t)
	a.Domain(t, "example.org")
	a.User(t, "alice@example.org", "pw", 0)

	t.Run("kill -9 after 250", func(t *testing.T) {
		s := newService(t, bin, a.Addr)
		root := s.get("POSTCOVE_MAILBOX_STORE_ROOT")
		acked := map[string]bool{}
		// Killed right after the 10th 250, then a little later each round,
		// so that the kill also lands in the middle of later appends.
		for round, delay := range []time.Duration{0, 2 * time.Millisecond, 10 * time.Millisecond} {
			s.start()
			c := dialLMTP(t, s.get("POSTCOVE_MAILBOX_LISTEN_LMTP"))
			// Many transactions in one write, so that deliveries are
			// still arriving when the process dies.
			const n, killAfter = 40, 10
			var batch strings.Builder
			for i := range n {
				fmt.Fprintf(&batch, "MAIL FROM:<s@remote.example>\r\nRCPT TO:<alice@example.org>\r\nDATA\r\nSubject: r%d-msg-%d\r\n\r\n%s\r\n.\r\n",
					round, i, strings.Repeat("body line\r\n", 200))
			}
			go io.WriteString(c.Conn, batch.String())
			for i := range killAfter {
				c.Expect(250, "") // MAIL
				c.Expect(250, "") // RCPT
				c.Expect(354, "")
				c.Expect(250, "") // the message is durable
				acked[fmt.Sprintf("r%d-msg-%d", round, i)] = true
			}
			time.Sleep(delay)
			s.kill()

			s.start()
			got := subjects(t, root)
			t.Logf("round %d: killed %v after the 10th 250; %d messages stored, %d acknowledged", round, delay, len(got), len(acked))
			for subj := range acked {
				if got[subj] != 1 {
					t.Errorf("acknowledged %s is stored %d times after kill -9, want exactly once", subj, got[subj])
				}
			}
			for subj, count := range got {
				if count > 1 {
					t.Errorf("%s is stored %d times, want at most once", subj, count)
				}
			}
			// The restarted service delivers, and the index goes on.
			c = dialLMTP(t, s.get("POSTCOVE_MAILBOX_LISTEN_LMTP"))
			fmt.Fprintf(c.Conn, "MAIL FROM:<s@remote.example>\r\nRCPT TO:<alice@example.org>\r\nDATA\r\nSubject: r%d-after\r\n\r\nx\r\n.\r\n", round)
			c.Expect(250, "")
			c.Expect(250, "")
			c.Expect(354, "")
			c.Expect(250, "")
			acked[fmt.Sprintf("r%d-after", round)] = true
			s.kill()
		}
	})

	t.Run("SIGTERM lets a delivery finish", func(t *testing.T) {
		s := newService(t, bin, a.Addr)
		s.start()
		c := dialLMTP(t, s.get("POSTCOVE_MAILBOX_LISTEN_LMTP"))
		fmt.Fprintf(c.Conn, "MAIL FROM:<s@remote.example>\r\nRCPT TO:<alice@example.org>\r\nDATA\r\n")
		c.Expect(250, "")
		c.Expect(250, "")
		c.Expect(354, "")
		fmt.Fprintf(c.Conn, "Subject: in flight\r\n\r\nfirst half\r\n")
		if err := s.cmd.Process.Signal(syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		time.Sleep(200 * time.Millisecond) // the service has begun shutting down
		fmt.Fprintf(c.Conn, "second half\r\n.\r\n")
		c.Expect(250, "")
		c.Expect(421, "")
		select {
		case <-s.exited:
			if code := s.cmd.ProcessState.ExitCode(); code != 0 {
				t.Errorf("mailbox exited with %d after SIGTERM, want 0", code)
			}
			s.cmd = nil
		case <-time.After(20 * time.Second):
			t.Fatalf("mailbox still running 20s after SIGTERM")
		}
		if got := subjects(t, s.get("POSTCOVE_MAILBOX_STORE_ROOT")); got["in flight"] != 1 {
			t.Errorf("message in flight at SIGTERM stored %d times, want 1", got["in flight"])
		}
	})

	t.Run("healthcheck", func(t *testing.T) {
		s := newService(t, bin, a.Addr)
		s.start()
		check := func() (string, error) {
			cmd := exec.Command(bin, "healthcheck")
			cmd.Env = s.env
			out, err := cmd.CombinedOutput()
			return string(out), err
		}
		if out, err := check(); err != nil || !strings.Contains(out, "SERVING") {
			t.Errorf("mailbox healthcheck = %q, %v; want SERVING and exit 0", out, err)
		}
		a.Stop()
		defer a.Start()
		deadline := time.Now().Add(10 * time.Second)
		for {
			out, err := check()
			var exit *exec.ExitError
			if errors.As(err, &exit) && exit.ExitCode() == 1 && strings.Contains(out, "not healthy") {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("mailbox healthcheck with auth down = %q, %v; want exit 1, not healthy", out, err)
			}
			time.Sleep(100 * time.Millisecond)
		}
	})
}
