package lmtpd

import (
	"os/exec"
	"strings"
	"testing"

	"github.com/postcove/postcove/services/internal/testlib"
	"github.com/postcove/postcove/services/mailbox/internal/store"
)

// TestSwaks delivers with swaks (https://jetmore.org/john/code/swaks/), a
// client nobody here wrote, speaking LMTP: a multi-recipient transaction
// with a known user, an unknown one and one over quota, then a spam-marked
// message. Skipped when swaks is not installed (failed in CI).
func TestSwaks(t *testing.T) {
	swaks := testlib.RequireTool(t, "swaks")
	e := startEnv(t, startAuth(t), nil)
	run := func(args ...string) string {
		t.Helper()
		args = append([]string{"--protocol", "LMTP", "--server", e.addr, "--from", "sender@remote.example", "--helo", "mta.test", "--timeout", "20"}, args...)
		out, err := exec.Command(swaks, args...).CombinedOutput()
		// swaks exits non-zero when a recipient is refused; the
		// transcript is what is checked.
		if err != nil {
			if _, ok := err.(*exec.ExitError); !ok {
				t.Fatalf("swaks: %v", err)
			}
		}
		return string(out)
	}

	out := run("--to", "alice@example.org,nobody@example.org,bob@example.org",
		"--body", strings.Repeat("a line of text to take bob over his 1 KiB quota\n", 40))
	// swaks prints server lines with "<-" (or "<**" for errors).
	for _, want := range []string{
		" 250 2.0.0 <alice@example.org>",
		" 550 5.1.1 no such user here",
		" 552 5.2.2 <bob@example.org> mailbox full",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("swaks transcript lacks %q:\n%s", want, out)
		}
	}
	if i, j := strings.Index(out, "<alice@example.org> "), strings.Index(out, "<bob@example.org> mailbox full"); i < 0 || j < 0 || i > j {
		t.Errorf("swaks: statuses not in RCPT order:\n%s", out)
	}

	out = run("--to", "carol@example.org", "--add-header", "X-Spam-Flag: YES")
	if !strings.Contains(out, " 250 2.0.0 <carol@example.org>") {
		t.Errorf("swaks spam delivery transcript lacks a 250:\n%s", out)
	}

	if got := stored(t, e.store, "alice@example.org", store.Inbox); len(got) != 1 || !strings.Contains(got[0], "Delivered-To: alice@example.org\r\n") {
		t.Errorf("alice's INBOX = %q, want swaks's message with Delivered-To", got)
	}
	if got := len(stored(t, e.store, "bob@example.org", store.Inbox)); got != 0 {
		t.Errorf("bob's INBOX has %d messages, want 0 (over quota)", got)
	}
	if got := stored(t, e.store, "carol@example.org", store.Junk); len(got) != 1 || !strings.Contains(got[0], "X-Mailer: swaks") {
		t.Errorf("carol's Junk = %q, want swaks's spam", got)
	}
}
