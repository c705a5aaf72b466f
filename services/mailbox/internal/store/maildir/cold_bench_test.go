package maildir

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/postcove/postcove/services/mailbox/internal/store/storetest"
)

// BenchmarkSelectCold100k measures the first SELECT of a 100,000-message
// INBOX that postcove has never indexed (messages another MDA, or a
// migration from dovecot, put in cur/): the index is built from the files.
func BenchmarkSelectCold100k(b *testing.B) {
	benchmarkFirstSelect100k(b, indexName, scannedName)
}

// BenchmarkSelectRescan100k measures the first SELECT in a process of a
// 100,000-message INBOX whose index exists but whose cur/ was not recorded
// as scanned: the index is read and cur/ is reconciled with it.
func BenchmarkSelectRescan100k(b *testing.B) {
	benchmarkFirstSelect100k(b, scannedName)
}

// benchmarkFirstSelect100k fills alice's cur/ with 100,000 messages and
// measures opening the store and selecting INBOX after removing the given
// files of the folder's own.
func benchmarkFirstSelect100k(b *testing.B, remove ...string) {
	const n = 100_000
	root := b.TempDir()
	s, _ := openAlice(b, root)
	s.Close()
	dir := filepath.Join(root, "example.org", "alice", "Maildir")
	for i := range n {
		body := storetest.Msg(i)
		letters := ""
		if i%3 == 0 {
			letters = "S"
		}
		name := fmt.Sprintf("%d.M%06dP1Q%d.bench,S=%d,W=%d:2,%s", 1700000000+i/1000, i%1000, i, len(body), len(body), letters)
		if err := os.WriteFile(filepath.Join(dir, "cur", name), []byte(body), 0o600); err != nil {
			b.Fatal(err)
		}
	}
	s, m := openAlice(b, root) // builds the index
	selectInbox(b, m, n)
	s.Close()
	b.ReportAllocs()
	for b.Loop() {
		b.StopTimer()
		for _, name := range remove {
			if err := os.Remove(filepath.Join(dir, name)); err != nil && !os.IsNotExist(err) {
				b.Fatal(err)
			}
		}
		b.StartTimer()
		s, m := openAlice(b, root)
		selectInbox(b, m, n)
		s.Close()
	}
}
