package maildir

import (
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/postcove/postcove/services/internal/testlib"
	"github.com/postcove/postcove/services/mailbox/internal/store"
	"github.com/postcove/postcove/services/mailbox/internal/store/storetest"
)

// bigInbox makes alice's INBOX hold n messages, written straight into cur/
// the way another MDA would (which is much faster than n fsynced Appends),
// every third one \Seen, then indexes it once and closes the store.
func bigInbox(tb testing.TB, root string, n int) {
	tb.Helper()
	s, m := openAlice(tb, root)
	cur := filepath.Join(root, "example.org", "alice", "Maildir", "cur")
	for i := range n {
		body := storetest.Msg(i)
		letters := ""
		if i%3 == 0 {
			letters = "S"
		}
		name := fmt.Sprintf("%d.M%06dP1Q%d.bench,S=%d,W=%d:2,%s", 1700000000+i/1000, i%1000, i, len(body), len(body), letters)
		if err := os.WriteFile(filepath.Join(cur, name), []byte(body), 0o600); err != nil {
			tb.Fatal(err)
		}
	}
	selectInbox(tb, m, n)
	s.Close()
}

// selectInbox selects the INBOX, checks it holds n messages and closes it.
func selectInbox(tb testing.TB, m store.Mailboxes, n int) {
	tb.Helper()
	mb, err := m.Select(tb.Context(), store.Inbox)
	if err != nil {
		tb.Fatal(err)
	}
	if got := len(mb.UIDs()); got != n {
		tb.Fatalf("indexed %d messages, want %d", got, n)
	}
	mb.Close()
}

// openAlice opens a Store on root and alice's mailboxes in it; the caller
// closes the Store (some tests close it early, as a crash would).
func openAlice(tb testing.TB, root string) (*Store, store.Mailboxes) {
	tb.Helper()
	return openAliceWith(tb, Options{Root: root})
}

// openAliceWith is openAlice with more options than the root.
func openAliceWith(tb testing.TB, opts Options) (*Store, store.Mailboxes) {
	tb.Helper()
	s, err := Open(opts)
	if err != nil {
		tb.Fatal(err)
	}
	m, err := s.User(tb.Context(), "alice@example.org")
	if err != nil {
		s.Close()
		tb.Fatal(err)
	}
	return s, m
}

// BenchmarkSelect100k measures what an IMAP SELECT of a 100,000-message
// INBOX costs in a process that has not opened it yet (the index read from
// disk, warm page cache), and the FETCH 1:* FLAGS that usually follows:
// "quiet" when cur/ has not changed since it was last scanned, "changed"
// when it has (a delivery since), which costs a scan of cur/.
func BenchmarkSelect100k(b *testing.B) {
	const n = 100_000
	root := b.TempDir()
	bigInbox(b, root, n)
	cur := filepath.Join(root, "example.org", "alice", "Maildir", "cur")
	for _, changed := range []bool{false, true} {
		name := "quiet"
		if changed {
			name = "changed"
		}
		b.Run(name, func(b *testing.B) { benchSelect(b, root, cur, n, changed) })
	}
}

func benchSelect(b *testing.B, root, cur string, n int, changed bool) {
	quiet := time.Now().Add(-time.Hour)
	for b.Loop() {
		b.StopTimer()
		when := quiet
		if changed {
			when = time.Now().Add(-time.Minute).Add(time.Duration(rand.Int64N(int64(time.Minute))))
		}
		if err := os.Chtimes(cur, when, when); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		s, m := openAlice(b, root)
		mb, err := m.Select(b.Context(), store.Inbox)
		if err != nil {
			b.Fatal(err)
		}
		msgs, err := mb.Messages(b.Context(), mb.UIDs())
		if err != nil || len(msgs) != n {
			b.Fatalf("Messages() = %d messages, %v; want %d", len(msgs), err, n)
		}
		mb.Close()
		s.Close()
	}
}

// BenchmarkMessages10k measures Messages for 10,000 UIDs of an open
// mailbox: FETCH 1:* FLAGS.
func BenchmarkMessages10k(b *testing.B) {
	const n = 10_000
	root := b.TempDir()
	bigInbox(b, root, n)
	s, m := openAlice(b, root)
	defer s.Close()
	mb := storetest.Select(b, m, store.Inbox)
	defer mb.Close()
	uids := mb.UIDs()
	b.ResetTimer()
	for b.Loop() {
		msgs, err := mb.Messages(b.Context(), uids)
		if err != nil || len(msgs) != n {
			b.Fatalf("Messages() = %d messages, %v; want %d", len(msgs), err, n)
		}
	}
}

// TestSelectLarge checks what BenchmarkSelect100k measures, on a smaller
// folder: a fresh process sees every message with its UID and flags, and
// after a restart with changes made meanwhile (a flag change and an
// expunge by us, a foreign delivery into new/) the same UIDs.
func TestSelectLarge(t *testing.T) {
	const n = 3000
	root := testlib.TempDir(t)
	bigInbox(t, root, n)
	s := openStore(t, root, Options{})
	m, err := s.User(t.Context(), "alice@example.org")
	if err != nil {
		t.Fatal(err)
	}
	mb := storetest.Select(t, m, store.Inbox)
	uids := mb.UIDs()
	msgs, err := mb.Messages(t.Context(), uids)
	if err != nil || len(msgs) != n {
		t.Fatalf("Messages() = %d messages, %v; want %d", len(msgs), err, n)
	}
	for i, msg := range msgs {
		if msg.UID != store.UID(i+1) {
			t.Fatalf("message %d has UID %d, want %d", i, msg.UID, i+1)
		}
		if seen := store.HasFlag(msg.Flags, store.FlagSeen); seen != (i%3 == 0) {
			t.Fatalf("message %d flags %v", i, msg.Flags)
		}
		if !strings.Contains(msg.ID, ".bench") || msg.Size != int64(len(storetest.Msg(i))) {
			t.Fatalf("message %d = %+v", i, msg)
		}
	}
	if _, err := mb.SetFlags(t.Context(), []store.UID{5, 7}, store.FlagsAdd, []string{store.FlagDeleted, "Later"}, 0); err != nil {
		t.Fatal(err)
	}
	if _, err := mb.Expunge(t.Context(), []store.UID{7}); err != nil {
		t.Fatal(err)
	}
	mb.Close()
	s.Close()
	inbox := filepath.Join(root, "example.org", "alice", "Maildir")
	if err := os.WriteFile(filepath.Join(inbox, "new", "1800000000.M1P1.other"), []byte(storetest.Msg(n)), 0o600); err != nil {
		t.Fatal(err)
	}

	s2 := openStore(t, root, Options{})
	m2, err := s2.User(t.Context(), "alice@example.org")
	if err != nil {
		t.Fatal(err)
	}
	mb2 := storetest.Select(t, m2, store.Inbox)
	got := mb2.UIDs()
	if len(got) != n || got[5] != 6 || got[6] != 8 || got[n-1] != store.UID(n+1) {
		t.Fatalf("after restart %d UIDs (%v ... %v), want %d with 7 gone and %d new", len(got), got[:8], got[len(got)-2:], n, n+1)
	}
	five, err := mb2.Messages(t.Context(), []store.UID{5})
	if err != nil || len(five) != 1 || !store.HasFlag(five[0].Flags, "Later") || !store.HasFlag(five[0].Flags, store.FlagDeleted) {
		t.Errorf("UID 5 after restart = %+v, %v; want \\Deleted and Later", five, err)
	}
	if storetest.Body(t, mb2, store.UID(n+1)) != storetest.Msg(n) {
		t.Errorf("foreign delivery has the wrong body")
	}
}

// BenchmarkDeliver measures what LMTP delivery asks of the store for one
// message: User, SetQuotaLimit, Append to INBOX, for one of 100 users at
// random, from parallel goroutines.
func BenchmarkDeliver(b *testing.B) {
	for _, size := range []int{4096, 102400} {
		b.Run(fmt.Sprintf("%dB", size), func(b *testing.B) {
			s, err := Open(Options{Root: b.TempDir()})
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			body := strings.Repeat(strings.Repeat("x", 77)+"\r\n", size/79+1)[:size]
			var n atomic.Uint64
			b.SetBytes(int64(size))
			b.SetParallelism(8)
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					user := fmt.Sprintf("user%03d@example.org", n.Add(1)%100)
					m, err := s.User(b.Context(), user)
					if err == nil {
						err = m.SetQuotaLimit(b.Context(), 1<<30)
					}
					if err == nil {
						_, err = m.Append(b.Context(), store.Inbox, strings.NewReader(body), store.AppendOptions{})
					}
					if err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}
