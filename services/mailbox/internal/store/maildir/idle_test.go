package maildir

import (
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/postcove/postcove/services/internal/testlib"
	"github.com/postcove/postcove/services/mailbox/internal/store"
	"github.com/postcove/postcove/services/mailbox/internal/store/storetest"
)

// idleCached lists the folders (by name below the Maildir) whose state s
// keeps with no handle using them.
func idleCached(s *Store) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var names []string
	for dir, f := range s.folders {
		if f.refs == 0 {
			names = append(names, filepath.Base(dir))
		}
	}
	slices.Sort(names)
	return names
}

func selectClose(t *testing.T, m store.Mailboxes, name string, want int) {
	t.Helper()
	mb, err := m.Select(t.Context(), name)
	if err != nil {
		t.Fatal(err)
	}
	if got := len(mb.UIDs()); got != want {
		t.Errorf("%s holds %d messages, want %d", name, got, want)
	}
	mb.Close()
}

// TestIdleMessagesBounded: an idle folder over MaxIdleMessages stays
// cached for the grace period, is dropped after it, and reads back whole.
func TestIdleMessagesBounded(t *testing.T) {
	s, m := openAliceWith(t, Options{Root: testlib.TempDir(t), MaxIdleMessages: 5, idleGrace: 50 * time.Millisecond})
	defer s.Close()
	for i := range 10 {
		storetest.Append(t, m, store.Inbox, storetest.Msg(i))
	}
	selectClose(t, m, store.Inbox, 10)
	if got := idleCached(s); !slices.Contains(got, "Maildir") {
		t.Fatalf("idle cached = %v right after use, want the INBOX (Maildir) kept through the grace period", got)
	}
	time.Sleep(60 * time.Millisecond)
	selectClose(t, m, "Sent", 0) // any release looks at the idle folders
	if got := idleCached(s); !slices.Equal(got, []string{".Sent"}) {
		t.Errorf("idle cached = %v after the grace period, want only the small .Sent", got)
	}
	selectClose(t, m, store.Inbox, 10)
}

// TestIdleFoldersBounded: past MaxIdleFolders the least recently used
// idle folder goes at once, whatever its size.
func TestIdleFoldersBounded(t *testing.T) {
	s, m := openAliceWith(t, Options{Root: testlib.TempDir(t), MaxIdleFolders: 2})
	defer s.Close()
	for _, name := range []string{"Sent", "Drafts", "Trash"} {
		selectClose(t, m, name, 0)
	}
	if got := idleCached(s); !slices.Equal(got, []string{".Drafts", ".Trash"}) {
		t.Errorf("idle cached = %v, want the two most recent (.Drafts, .Trash)", got)
	}
}

// TestOpenAfterRecreate: a folder deleted and created again while a
// session keeps the old one selected; a new session reads the new
// folder's messages, not through the old directory.
func TestOpenAfterRecreate(t *testing.T) {
	s, m := openAliceWith(t, Options{Root: testlib.TempDir(t)})
	defer s.Close()
	if err := m.Create(t.Context(), "Archive"); err != nil {
		t.Fatal(err)
	}
	old := storetest.Append(t, m, "Archive", "Subject: old\r\n\r\nold\r\n")
	kept, err := m.Select(t.Context(), "Archive")
	if err != nil {
		t.Fatal(err)
	}
	defer kept.Close()
	if got := storetest.Body(t, kept, old.UID); got != "Subject: old\r\n\r\nold\r\n" {
		t.Fatalf("old body = %q", got)
	}
	if err := m.Delete(t.Context(), "Archive"); err != nil {
		t.Fatal(err)
	}
	if err := m.Create(t.Context(), "Archive"); err != nil {
		t.Fatal(err)
	}
	fresh := storetest.Append(t, m, "Archive", "Subject: new\r\n\r\nnew\r\n")
	mb, err := m.Select(t.Context(), "Archive")
	if err != nil {
		t.Fatal(err)
	}
	defer mb.Close()
	if got := storetest.Body(t, mb, fresh.UID); got != "Subject: new\r\n\r\nnew\r\n" {
		t.Errorf("new folder's body = %q", got)
	}
}

// TestDropBigStateReturnsMemory: dropping idle states that held bigState
// messages or more gives their memory back to the OS, once per release;
// dropping a small one does not.
func TestDropBigStateReturnsMemory(t *testing.T) {
	returned := make(chan struct{}, 10)
	s, m := openAliceWith(t, Options{
		Root: testlib.TempDir(t), MaxIdleMessages: 5, idleGrace: 50 * time.Millisecond,
		bigState: 10, returnMemory: func() { returned <- struct{}{} },
	})
	defer s.Close()
	for i := range 10 {
		storetest.Append(t, m, store.Inbox, storetest.Msg(i))
	}
	for i := range 6 {
		storetest.Append(t, m, "Sent", storetest.Msg(i))
	}
	selectClose(t, m, store.Inbox, 10)
	time.Sleep(60 * time.Millisecond)
	selectClose(t, m, "Drafts", 0) // drops the INBOX: 10 messages
	select {
	case <-returned:
	case <-time.After(5 * time.Second):
		t.Fatal("dropping a 10-message state (bigState 10) returned no memory")
	}
	selectClose(t, m, "Sent", 6)
	time.Sleep(60 * time.Millisecond)
	selectClose(t, m, "Trash", 0) // drops .Sent: 6 messages
	if got := idleCached(s); slices.Contains(got, ".Sent") {
		t.Fatalf("idle cached = %v, want .Sent dropped", got)
	}
	select {
	case <-returned:
		t.Error("dropping a 6-message state (bigState 10) returned memory")
	case <-time.After(100 * time.Millisecond):
	}
}

// TestBigRebuildReturnsMemory: a rebuild from bigState files or more
// returns the memory its scaffolding took once the index is built.
func TestBigRebuildReturnsMemory(t *testing.T) {
	root := testlib.TempDir(t)
	s, m := openAlice(t, root)
	for i := range 11 {
		storetest.Append(t, m, store.Inbox, storetest.Msg(i))
	}
	s.Close()
	if err := os.Remove(filepath.Join(root, "example.org", "alice", "Maildir", indexName)); err != nil {
		t.Fatal(err)
	}
	returned := make(chan struct{}, 10)
	s, m = openAliceWith(t, Options{Root: root, bigState: 10, returnMemory: func() { returned <- struct{}{} }})
	defer s.Close()
	selectClose(t, m, store.Inbox, 11) // rebuilds the index
	select {
	case <-returned:
	case <-time.After(5 * time.Second):
		t.Fatal("rebuilding from 11 files (bigState 10) returned no memory")
	}
}
