package imapd

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/postcove/postcove/services/mailbox/internal/store"
)

// TestFetchMetadataWire checks the FETCH responses written beside the
// library (fetchmeta.go) byte for byte, on both stores.
func TestFetchMetadataWire(t *testing.T) {
	forEachStore(t, func(t *testing.T, ts *testServer) {
		mbs := ts.user(t)
		date := time.Date(2026, 3, 4, 5, 6, 7, 0, time.FixedZone("", -(3*3600+30*60)))
		msg := plainMsg("hello", "body")
		for _, flags := range [][]string{{store.FlagSeen, "$Label1", store.FlagFlagged}, nil} {
			if _, err := mbs.Append(context.Background(), store.Inbox, strings.NewReader(msg), store.AppendOptions{Flags: flags, InternalDate: date}); err != nil {
				t.Fatal(err)
			}
		}
		r := ts.raw(t)
		r.ok("LOGIN " + testUser + ` "` + testPass + `"`)
		r.ok("SELECT INBOX")
		got := r.ok("FETCH 1:* (FLAGS INTERNALDATE RFC822.SIZE)")
		shown := " 4-Mar-2026 05:06:07 -0330" // memstore keeps the zone APPEND gave
		if ts.root != "" {
			// The Maildir index keeps the instant, shown in the server's
			// zone, as dovecot does.
			shown = date.Local().Format("_2-Jan-2006 15:04:05 -0700")
		}
		want := []string{
			fmt.Sprintf(`* 1 FETCH (FLAGS ($Label1 \Flagged \Seen) INTERNALDATE "%s" RFC822.SIZE %d)`, shown, len(msg)),
			fmt.Sprintf(`* 2 FETCH (FLAGS () INTERNALDATE "%s" RFC822.SIZE %d)`, shown, len(msg)),
		}
		if len(got) != 3 || got[0] != want[0] || got[1] != want[1] {
			t.Errorf("FETCH 1:* = %q, want %q", got, want)
		}
		got = r.ok("UID FETCH 2 (FLAGS)")
		if len(got) != 2 || got[0] != `* 2 FETCH (UID 2 FLAGS ())` {
			t.Errorf("UID FETCH 2 (FLAGS) = %q", got)
		}
	})
}
