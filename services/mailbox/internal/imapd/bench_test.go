package imapd

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/emersion/go-imap/v2"

	"github.com/postcove/postcove/services/mailbox/internal/store"
)

// benchStore is the store the benchmarks use: "maildir", as production
// (filling it takes a while: every delivery is synced), or "memstore".
const benchStore = "maildir"

// fillInbox appends n messages to the test user's INBOX; one in five is
// unseen.
func fillInbox(b *testing.B, ts *testServer, n int) {
	b.Helper()
	mbs := ts.user(b)
	for i := range n {
		msg := plainMsg(fmt.Sprintf("message %d", i), strings.Repeat("lorem ipsum dolor sit amet ", 40))
		opts := store.AppendOptions{Flags: []string{store.FlagSeen}}
		if i%5 == 1 {
			opts.Flags = nil
		}
		if _, err := mbs.Append(context.Background(), store.Inbox, strings.NewReader(msg), opts); err != nil {
			b.Fatal(err)
		}
	}
}

// benchMailbox fills INBOX of a benchStore store with n messages and
// returns a session that has it selected.
func benchMailbox(b *testing.B, n int) *client {
	b.Helper()
	ts := startServer(b, benchStore, nil)
	fillInbox(b, ts, n)
	return ts.selectInbox(b)
}

// rawMailbox fills INBOX of a memory store with n messages and returns a
// raw IMAP4rev1 session that has it selected: what the server itself
// costs, without a disk or a client library's parsing.
func rawMailbox(b *testing.B, n int) *raw {
	b.Helper()
	ts := startServer(b, "memstore", nil)
	fillInbox(b, ts, n)
	r := ts.raw(b)
	r.ok("LOGIN " + testUser + ` "` + testPass + `"`)
	r.ok("SELECT INBOX")
	return r
}

// BenchmarkFetchFlags is a client's resynchronisation: FETCH 1:* (UID
// FLAGS) on 10,000 messages, one metadata call and no body read.
func BenchmarkFetchFlags(b *testing.B) {
	c := benchMailbox(b, 10000)
	b.ResetTimer()
	for range b.N {
		msgs, err := c.Fetch(imap.SeqSet{{Start: 1, Stop: 0}}, &imap.FetchOptions{UID: true, Flags: true}).Collect()
		if err != nil || len(msgs) != 10000 {
			b.Fatalf("FETCH = %d messages, %v", len(msgs), err)
		}
	}
}

// BenchmarkSearchText reads every body of 2,000 messages, one at a time.
func BenchmarkSearchText(b *testing.B) {
	c := benchMailbox(b, 2000)
	b.ResetTimer()
	for range b.N {
		if _, err := c.Search(&imap.SearchCriteria{Text: []string{"message 1999"}}, nil).Wait(); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkSelectLarge selects a mailbox of 100,000 messages again, as
// an IMAP4rev1 client (which is told the first unseen one).
func BenchmarkSelectLarge(b *testing.B) {
	r := rawMailbox(b, 100000)
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		if got := strings.Join(r.ok("SELECT INBOX"), "\n"); !strings.Contains(got, "* 100000 EXISTS") {
			b.Fatalf("SELECT = %s, want 100000 EXISTS", got)
		}
	}
}

// BenchmarkFetchBodies is a client downloading 100 whole messages in one
// command.
func BenchmarkFetchBodies(b *testing.B) {
	r := rawMailbox(b, 1000)
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		n := 0
		for _, l := range r.ok("UID FETCH 101:200 (BODY.PEEK[])") {
			if strings.Contains(l, " FETCH (UID ") {
				n++
			}
		}
		if n != 100 {
			b.Fatalf("UID FETCH 101:200 = %d responses, want 100", n)
		}
	}
}
