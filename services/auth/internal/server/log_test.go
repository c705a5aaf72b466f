package server_test

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"google.golang.org/grpc/codes"

	"github.com/postcove/postcove/services/internal/testlib"
)

// syncBuffer is a bytes.Buffer safe for the server's goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestFailureLogLine: each failed login is one JSON line with service, ip
// and user, and the fail2ban filter shipped in deploy/fail2ban matches
// exactly those lines (checked with fail2ban's own fail2ban-regex).
func TestFailureLogLine(t *testing.T) {
	var logs syncBuffer
	e := start(t, openSQLite(t), options{logs: &logs})
	e.mustDomain(t, "example.org")
	e.mustUser(t, "alice@example.org", "right")
	wantCode(t, "bad password", e.login("alice@example.org", "wrong", "192.0.2.1"), codes.Unauthenticated)
	wantCode(t, "unknown user", e.login("nobody@example.org", "x", "2001:db8::7"), codes.Unauthenticated)
	wantCode(t, "good login", e.login("alice@example.org", "right", "192.0.2.9"), codes.OK)

	var failures []map[string]any
	for _, line := range strings.Split(strings.TrimSpace(logs.String()), "\n") {
		var rec map[string]any
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Fatalf("log line %q is not JSON: %v", line, err)
		}
		if rec["msg"] == "authentication failed" {
			failures = append(failures, rec)
		}
	}
	want := []map[string]string{
		{"service": "imap", "ip": "192.0.2.1", "user": "alice@example.org"},
		{"service": "imap", "ip": "2001:db8::7", "user": "nobody@example.org"},
	}
	if len(failures) != len(want) {
		t.Fatalf("%d failure lines, want %d:\n%s", len(failures), len(want), logs.String())
	}
	for i, w := range want {
		for k, v := range w {
			if failures[i][k] != v {
				t.Errorf("failure line %d: %s = %v, want %q", i, k, failures[i][k], v)
			}
		}
	}

	regex := testlib.RequireTool(t, "fail2ban-regex")
	logFile := filepath.Join(t.TempDir(), "auth.log")
	if err := os.WriteFile(logFile, []byte(logs.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(regex, logFile, "../../../../deploy/fail2ban/postcove-auth.conf").CombinedOutput()
	if err != nil {
		t.Fatalf("fail2ban-regex: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), ", 2 matched,") {
		t.Errorf("fail2ban-regex did not match exactly the 2 failure lines:\n%s", out)
	}
}
