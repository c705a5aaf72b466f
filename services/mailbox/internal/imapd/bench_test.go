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

// benchMailbox fills INBOX of a maildir store with n messages and returns
// a session that has it selected.
func benchMailbox(b *testing.B, n int) *client {
	b.Helper()
	ts := startServer(b, benchStore, nil)
	mbs := ts.user(b)
	for i := range n {
		msg := plainMsg(fmt.Sprintf("message %d", i), strings.Repeat("lorem ipsum dolor sit amet ", 40))
		if _, err := mbs.Append(context.Background(), store.Inbox, strings.NewReader(msg), store.AppendOptions{}); err != nil {
			b.Fatal(err)
		}
	}
	return ts.selectInbox(b)
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
