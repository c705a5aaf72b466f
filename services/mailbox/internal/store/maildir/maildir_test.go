package maildir

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/postcove/postcove/services/internal/testlib"
	"github.com/postcove/postcove/services/mailbox/internal/store"
	"github.com/postcove/postcove/services/mailbox/internal/store/storetest"
)

func openStore(t testing.TB, root string, opts Options) *Store {
	t.Helper()
	opts.Root = root
	if opts.PollInterval == 0 {
		opts.PollInterval = 20 * time.Millisecond
	}
	s, err := Open(opts)
	if err != nil {
		t.Fatalf("Open(%q) = %v", root, err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestStore(t *testing.T) {
	storetest.Run(t, func(t *testing.T, opts storetest.Options) store.Store {
		return openStore(t, testlib.TempDir(t), Options{MaxMessageSize: opts.MaxMessageSize})
	})
}

// TestStoreTwoStores runs the suite with every User call going to one of
// two Stores on the same root, alternately: what two mailbox processes on
// one volume do, minus the process boundary (TestTwoProcesses has that).
func TestStoreTwoStores(t *testing.T) {
	storetest.Run(t, func(t *testing.T, opts storetest.Options) store.Store {
		root := testlib.TempDir(t)
		a := openStore(t, root, Options{MaxMessageSize: opts.MaxMessageSize})
		b := openStore(t, root, Options{MaxMessageSize: opts.MaxMessageSize})
		return &alternating{stores: []store.Store{a, b}}
	})
}

type alternating struct {
	stores []store.Store
	n      atomic.Int64
}

func (a *alternating) User(ctx context.Context, address string) (store.Mailboxes, error) {
	return a.stores[a.n.Add(1)%int64(len(a.stores))].User(ctx, address)
}

func (a *alternating) Close() error { return nil }

func TestLayout(t *testing.T) {
	root := testlib.TempDir(t)
	s := openStore(t, root, Options{Hostname: "mx1:2/a,b"})
	m, err := s.User(t.Context(), "alice@example.org")
	if err != nil {
		t.Fatal(err)
	}
	md := filepath.Join(root, "example.org", "alice", "Maildir")
	for _, p := range []string{"cur", "new", "tmp", ".Sent/cur", ".Drafts/new", ".Junk/tmp", ".Trash/cur", ".Sent/maildirfolder", "subscriptions"} {
		if _, err := os.Stat(filepath.Join(md, p)); err != nil {
			t.Errorf("stat %s: %v", p, err)
		}
	}
	if err := m.Create(t.Context(), "Entwürfe/Alt & Neu"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(md, ".Entw&APw-rfe.Alt &- Neu", "cur")); err != nil {
		t.Errorf("modified UTF-7 folder: %v", err)
	}
	storetest.Append(t, m, "INBOX", storetest.Msg(1), store.FlagSeen, store.FlagAnswered)
	storetest.Append(t, m, "INBOX", "a\nb\n")
	files, _ := filepath.Glob(filepath.Join(md, "cur", "*"))
	if len(files) != 2 {
		t.Fatalf("cur/ has %v, want 2 files", files)
	}
	var names []string
	for _, f := range files {
		names = append(names, filepath.Base(f))
	}
	joined := strings.Join(names, " ")
	// "a\nb\n" is 4 bytes, 6 with CRLF line ends; ",U=" is the UID.
	for _, want := range []string{`.mx1\0722\057a\054b,S=`, ",S=4,W=6,U=2:2,", ":2,RS", ",S=" + itoa(len(storetest.Msg(1))) + ",W=" + itoa(len(storetest.Msg(1))) + ",U=1:2,RS"} {
		if !strings.Contains(joined, want) {
			t.Errorf("file names %q lack %q", joined, want)
		}
	}
	data, err := os.ReadFile(filepath.Join(md, "subscriptions"))
	if err != nil || !strings.HasPrefix(string(data), "V\t2\n\n") {
		t.Errorf("subscriptions = %q, %v, want dovecot's version 2 format", data, err)
	}
	q, err := os.ReadFile(filepath.Join(md, "maildirsize"))
	if err != nil || !strings.HasPrefix(string(q), "0S\n") {
		t.Errorf("maildirsize = %q, %v", q, err)
	}
}

func itoa(n int) string { return strconv.Itoa(n) }

// TestTraversalStaysInside creates and renames with hostile names and
// checks that nothing appeared outside the user's Maildir.
func TestTraversalStaysInside(t *testing.T) {
	root := testlib.TempDir(t)
	s := openStore(t, root, Options{})
	m, err := s.User(t.Context(), "alice@example.org")
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range storetest.TraversalNames() {
		_ = m.Create(t.Context(), name)
		_ = m.Rename(t.Context(), "Trash", name)
		_ = m.Delete(t.Context(), name)
		_, _ = m.Append(t.Context(), name, strings.NewReader("x"), store.AppendOptions{})
	}
	md := filepath.Join(root, "example.org", "alice", "Maildir")
	err = filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if p == root || p == filepath.Dir(filepath.Dir(md)) || p == filepath.Dir(md) || p == md || strings.HasPrefix(p, md+"/") {
			return nil
		}
		t.Errorf("%s is outside the user's Maildir", p)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, addr := range []string{"../x@example.org", "a@..", "a/b@example.org", "@example.org", "a@", ".a@example.org", "a@b/c", "a\x00@example.org", "noat"} {
		if _, err := s.User(t.Context(), addr); !errors.Is(err, store.ErrInvalidName) {
			t.Errorf("User(%q) = %v, want ErrInvalidName", addr, err)
		}
	}
}

// TestSizeCounter checks the CRLF size (dovecot's W=) of messages written
// in chunks that split a CRLF, against a byte-by-byte count.
func TestSizeCounter(t *testing.T) {
	for _, msg := range []string{"", "a", "\n", "\r\n", "a\nb\r\nc\n", "\r\r\n\n\r", "x\r", strings.Repeat("ab\r\ncd\n", 50)} {
		var want int64
		for i := 0; i < len(msg); i++ {
			if msg[i] == '\n' && (i == 0 || msg[i-1] != '\r') {
				want++
			}
		}
		want += int64(len(msg))
		for chunk := 1; chunk <= len(msg)+1; chunk++ {
			var sink strings.Builder
			c := &sizeCounter{w: &sink}
			for i := 0; i < len(msg); i += chunk {
				c.Write([]byte(msg[i:min(i+chunk, len(msg))]))
			}
			if c.vsize != want || c.size != int64(len(msg)) || sink.String() != msg {
				t.Errorf("sizeCounter(%q in chunks of %d) = size %d vsize %d, want %d %d", msg, chunk, c.size, c.vsize, len(msg), want)
			}
		}
	}
}
