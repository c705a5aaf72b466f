package imapd

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// maildirMailbox writes n messages straight into the test user's cur/ in
// a maildir store, as another MDA would (much faster than n synced
// Appends), every third one \Seen and one in twenty with "heliotrope" in
// its text, and returns a raw IMAP4rev1 session that has INBOX selected:
// what the IMAP rows of `bench imap` cost, without the client's share.
func maildirMailbox(b *testing.B, n int) *raw {
	b.Helper()
	ts := startServer(b, "maildir", nil)
	ts.user(b) // creates the Maildir
	cur := filepath.Join(ts.root, "example.org", "alice", "Maildir", "cur")
	text := strings.Repeat("lorem ipsum dolor sit amet consectetur adipiscing elit\r\n", 60)
	for i := range n {
		word := ""
		if i%20 == 7 {
			word = "heliotrope\r\n"
		}
		body := plainMsg(fmt.Sprintf("message %d", i), word+text)
		letters := ""
		if i%3 == 0 {
			letters = "S"
		}
		name := fmt.Sprintf("%d.M%06dP1Q%d.bench,S=%d,W=%d:2,%s", 1700000000+i/1000, i%1000, i, len(body), len(body), letters)
		if err := os.WriteFile(filepath.Join(cur, name), []byte(body), 0o600); err != nil {
			b.Fatal(err)
		}
	}
	r := ts.raw(b)
	r.ok("LOGIN " + testUser + ` "` + testPass + `"`)
	r.ok("SELECT INBOX")
	return r
}

// BenchmarkMaildirRows runs the IMAP rows of `bench imap` on a maildir
// store: FETCH 1:* FLAGS of 10,000 messages, UID FETCH of 100 bodies and
// SEARCH TEXT over every body.
func BenchmarkMaildirRows(b *testing.B) {
	const n = 10000
	r := maildirMailbox(b, n)
	b.Run("FetchFlags", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if lines := r.ok("FETCH 1:* (FLAGS)"); len(lines) != n+1 {
				b.Fatalf("FETCH = %d lines, want %d", len(lines), n+1)
			}
		}
	})
	b.Run("FetchBodies", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			r.ok("UID FETCH 5001:5100 (BODY.PEEK[])")
		}
	})
	b.Run("SelectWarm", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			r.ok("SELECT INBOX")
		}
	})
	b.Run("SearchText", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			r.ok("SEARCH TEXT heliotrope")
		}
	})
}
