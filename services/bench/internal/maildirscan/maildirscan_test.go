package maildirscan_test

import (
	"maps"
	"os"
	"path/filepath"
	"testing"

	"github.com/postcove/postcove/services/bench/internal/maildirscan"
	"github.com/postcove/postcove/services/internal/testlib"
)

func write(t *testing.T, path, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestScan(t *testing.T) {
	root := testlib.TempDir(t)
	md := func(user string, parts ...string) string {
		return filepath.Join(append([]string{root, "example.org", user, "Maildir"}, parts...)...)
	}
	write(t, md("a", "new", "1"), "Message-ID: <1@x>\r\nSubject: one\r\n\r\nbody\r\n")
	write(t, md("a", "cur", "2:2,S"), "Subject: two\r\nMessage-Id:\r\n <2@x>\r\n\r\nMessage-ID: <not-a-header@x>\r\n")
	write(t, md("b", "new", "3"), "message-id: <1@x>\r\n\r\n") // a duplicate
	write(t, md("b", "new", "4"), "Subject: no id\r\n\r\n")
	write(t, md("b", "tmp", "5"), "Message-ID: <in-progress@x>\r\n\r\n")           // not delivered yet
	write(t, md("b", "dovecot-uidlist"), "Message-ID: <index@x>\r\n\r\n")          // not a message
	write(t, md("b", ".Junk", "new", "6"), "Message-ID: <other-folder@x>\r\n\r\n") // not the INBOX
	if err := os.MkdirAll(md("c"), 0o755); err != nil {                            // no new/ nor cur/ yet
		t.Fatal(err)
	}

	n, err := maildirscan.Count(root)
	if err != nil || n != 4 {
		t.Errorf("Count() = %d, %v, want 4", n, err)
	}
	ids, err := maildirscan.MessageIDs(root)
	want := map[string]int{"<1@x>": 2, "<2@x>": 1, "": 1}
	if err != nil || !maps.Equal(ids, want) {
		t.Errorf("MessageIDs() = %v, %v, want %v", ids, err, want)
	}
}

func TestScanEmpty(t *testing.T) {
	root := testlib.TempDir(t)
	if n, err := maildirscan.Count(filepath.Join(root, "missing")); err != nil || n != 0 {
		t.Errorf("Count(missing root) = %d, %v, want 0, nil", n, err)
	}
}
