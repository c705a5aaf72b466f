package postfix_test

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/postcove/postcove/services/bench/internal/lmtpclient"
	"github.com/postcove/postcove/services/bench/internal/postfix"
	"github.com/postcove/postcove/services/internal/testlib"
)

var scriptsDir = filepath.Join("..", "..", "..", "..", "scripts")

func TestCheckInstalled(t *testing.T) {
	err := postfix.CheckInstalled("/nonexistent/postfix")
	if err == nil || !strings.Contains(err.Error(), "apt-get install postfix") {
		t.Errorf("CheckInstalled(missing) = %v, want the install hint", err)
	}
}

// TestStart runs the script's postfix with its LMTP next hop down: mail
// for a listed user is queued (and deferred, said the log), an unknown
// user is refused at RCPT, other domains are not relayed, and Stop takes
// the listener down with the master's daemons.
func TestStart(t *testing.T) {
	bin := testlib.RequireTool(t, postfix.DefaultBin)
	if os.Geteuid() != 0 {
		testlib.Unavailable(t, "postfix's master must start as root")
	}
	dir := testlib.TempDir(t)
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	lmtpAddr := testlib.FreeAddr(t) // nothing listens there
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	s, err := postfix.Start(ctx, postfix.Options{
		Bin: bin, ScriptsDir: scriptsDir, Dir: filepath.Join(dir, "postfix"),
		Domain: "example.org", Recipients: []string{"user1@example.org", "user2@example.org"}, LMTPAddr: lmtpAddr,
	})
	if err != nil {
		t.Fatal(err)
	}
	stopped := false
	defer func() {
		if !stopped {
			s.Stop()
		}
	}()

	c, err := lmtpclient.DialSMTP(ctx, s.Addr(), "client.test")
	if err != nil {
		t.Fatal(err)
	}
	msg := []byte("From: <s@example.net>\r\nTo: <user1@example.org>\r\nSubject: t\r\nMessage-ID: <t1@client.test>\r\n\r\nhello\r\n")
	for _, tt := range []struct {
		rcpt string
		code int
	}{
		{"user1@example.org", 250},
		{"nobody@example.org", 550},  // not in virtual_mailbox_maps
		{"someone@example.net", 554}, // relay access denied
	} {
		replies, err := c.Deliver(ctx, "s@example.net", []string{tt.rcpt}, msg)
		if err != nil {
			t.Fatalf("Deliver(%s): %v", tt.rcpt, err)
		}
		if replies[0].Code != tt.code {
			t.Errorf("Deliver(%s) = %v, want %d", tt.rcpt, replies[0], tt.code)
		}
	}
	c.Close()

	// The accepted message goes to the LMTP next hop, which is down.
	_, lmtpPort, _ := net.SplitHostPort(lmtpAddr)
	want := "connect to 127.0.0.1[127.0.0.1]:" + lmtpPort
	deadline := time.Now().Add(20 * time.Second)
	for !strings.Contains(readFile(s.LogPath()), want) {
		if time.Now().After(deadline) {
			t.Fatalf("the log never says %q:\n%s", want, s.LogTail())
		}
		time.Sleep(50 * time.Millisecond) // polling the log: no event to wait on
	}

	if err := s.Stop(); err != nil {
		t.Errorf("Stop() = %v", err)
	}
	stopped = true
	if log := readFile(s.LogPath()); strings.Contains(log, "fatal:") {
		t.Errorf("the log has a fatal error:\n%s", s.LogTail())
	}
	// smtpd processes hold the listening socket too: it closes only when
	// the last of the master's daemons has gone.
	for {
		conn, err := net.DialTimeout("tcp", s.Addr(), time.Second)
		if err != nil {
			break
		}
		conn.Close()
		if time.Now().After(deadline) {
			t.Fatalf("%s still accepts connections after Stop", s.Addr())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func readFile(path string) string {
	b, _ := os.ReadFile(path)
	return string(b)
}
