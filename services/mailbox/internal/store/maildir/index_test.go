package maildir

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/postcove/postcove/services/internal/testlib"
	"github.com/postcove/postcove/services/mailbox/internal/store"
	"github.com/postcove/postcove/services/mailbox/internal/store/storetest"
)

func TestRecordRoundTrip(t *testing.T) {
	date := time.UnixMilli(1700000000123)
	tests := []record{
		{kind: 'H', uidValidity: 1700000000, uidNext: 7, highestModSeq: 42},
		{kind: 'A', uid: 3, modSeq: 9, size: 1234, date: date, flags: []string{"$Forwarded", `\Seen`, "a,b"}, file: "cur/1.M2P3.host,S=1234:2,S"},
		{kind: 'A', uid: 4, modSeq: 10, size: 0, date: time.UnixMilli(-5000), file: "new/odd name with spaces"},
		{kind: 'F', uid: 3, modSeq: 11, file: "cur/1.M2P3.host,S=1234:2,"},
		{kind: 'X', uid: 3, modSeq: 12},
	}
	for _, want := range tests {
		line := appendRecord(nil, want)
		recs, good, err := parseLog(line)
		if err != nil || good != len(line) || len(recs) != 1 {
			t.Fatalf("parseLog(%q) = %v, %d, %v", line, recs, good, err)
		}
		got := recs[0]
		if got.kind != want.kind || got.uid != want.uid || got.modSeq != want.modSeq || got.size != want.size ||
			!got.date.Equal(want.date) || !slices.Equal(got.flags, want.flags) || got.file != want.file ||
			got.uidValidity != want.uidValidity || got.uidNext != want.uidNext || got.highestModSeq != want.highestModSeq {
			t.Errorf("parseLog(appendRecord(%+v)) = %+v", want, got)
		}
	}
}

func TestParseLogDamage(t *testing.T) {
	var log []byte
	log = appendRecord(log, record{kind: 'H', uidValidity: 5, uidNext: 1})
	log = appendRecord(log, record{kind: 'A', uid: 1, modSeq: 1, file: "cur/a"})
	log = appendRecord(log, record{kind: 'A', uid: 2, modSeq: 2, file: "cur/b"})
	second := len(appendRecord(appendRecord(nil, record{kind: 'H', uidValidity: 5, uidNext: 1}), record{kind: 'A', uid: 1, modSeq: 1, file: "cur/a"}))
	tests := []struct {
		name     string
		data     []byte
		wantRecs int
		wantGood int
		corrupt  bool
	}{
		{"intact", log, 3, len(log), false},
		{"no final newline", log[:len(log)-1], 2, second, false},
		{"half a record", log[:second+10], 2, second, false},
		{"zeros after the last record", append(slices.Clone(log), 0, 0, 0, 0), 3, len(log), false},
		{"bad checksum at the end", flip(log, len(log)-3), 2, second, false},
		{"bad checksum in the middle", flip(log, second-3), 0, 0, true},
		{"garbage", []byte("this is not an index\nat all\n"), 0, 0, true},
	}
	for _, tt := range tests {
		recs, good, err := parseLog(tt.data)
		if (err != nil) != tt.corrupt || len(recs) != tt.wantRecs || (!tt.corrupt && good != tt.wantGood) {
			t.Errorf("%s: parseLog = %d records, good %d, err %v; want %d, %d, corrupt %v", tt.name, len(recs), good, err, tt.wantRecs, tt.wantGood, tt.corrupt)
		}
	}
	// A record naming a file outside cur/ or new/ is corrupt even with a
	// good checksum.
	for _, file := range []string{"../../etc/passwd", "cur/../x", "tmp/x", "cur/", "cur/.hidden", "/abs"} {
		p := "A 1 1 1 0 - " + escapeField(file)
		line := []byte(hex8(crc([]byte(p))) + " " + p + "\n")
		if recs, _, _ := parseLog(line); len(recs) != 0 {
			t.Errorf("parseLog(%q) accepted it", line)
		}
		if _, err := parseRecord(p); err == nil {
			t.Errorf("parseRecord(%q) = nil error, want corrupt", p)
		}
	}
}

func hex8(v uint32) string {
	const digits = "0123456789abcdef"
	b := make([]byte, 8)
	for i := 7; i >= 0; i-- {
		b[i] = digits[v&15]
		v >>= 4
	}
	return string(b)
}

func flip(b []byte, i int) []byte {
	c := slices.Clone(b)
	c[i] ^= 0x01
	return c
}

// fixture makes a user with three INBOX messages and returns the store
// root, the INBOX directory and the status before.
func fixture(t *testing.T) (root, inbox string, before store.Status, ids []string) {
	t.Helper()
	root = testlib.TempDir(t)
	s, err := Open(Options{Root: root})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	m, err := s.User(t.Context(), "alice@example.org")
	if err != nil {
		t.Fatal(err)
	}
	storetest.Append(t, m, "INBOX", storetest.Msg(1), store.FlagSeen)
	storetest.Append(t, m, "INBOX", storetest.Msg(2), store.FlagFlagged, "Keyword")
	storetest.Append(t, m, "INBOX", storetest.Msg(3))
	mb := storetest.Select(t, m, "INBOX")
	msgs, err := mb.Messages(t.Context(), mb.UIDs())
	if err != nil {
		t.Fatal(err)
	}
	for _, msg := range msgs {
		ids = append(ids, msg.ID)
	}
	before, err = m.Status(t.Context(), "INBOX")
	if err != nil {
		t.Fatal(err)
	}
	mb.Close()
	return root, filepath.Join(root, "example.org", "alice", "Maildir"), before, ids
}

// reopen opens a fresh store on root and returns INBOX's status, the
// messages and their bodies.
func reopen(t *testing.T, root string) (store.Status, []store.Message, []string) {
	t.Helper()
	s := openStore(t, root, Options{})
	m, err := s.User(context.Background(), "alice@example.org")
	if err != nil {
		t.Fatal(err)
	}
	mb := storetest.Select(t, m, "INBOX")
	st, err := mb.Status(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	msgs, err := mb.Messages(t.Context(), mb.UIDs())
	if err != nil {
		t.Fatal(err)
	}
	var bodies []string
	for _, msg := range msgs {
		bodies = append(bodies, storetest.Body(t, mb, msg.UID))
	}
	return st, msgs, bodies
}

func TestIndexRebuild(t *testing.T) {
	tests := []struct {
		name         string
		damage       func(t *testing.T, index string)
		sameValidity bool // the damage is a torn tail: nothing acknowledged was lost
	}{
		{"deleted", func(t *testing.T, index string) { os.Remove(index) }, false},
		{"garbage", func(t *testing.T, index string) { os.WriteFile(index, []byte("\x00\xffgarbage\n"), 0o600) }, false},
		{"empty", func(t *testing.T, index string) { os.WriteFile(index, nil, 0o600) }, false},
		{"bad record in the middle", func(t *testing.T, index string) {
			data, _ := os.ReadFile(index)
			i := strings.Index(string(data), "\n")
			data[i+12] ^= 1
			os.WriteFile(index, data, 0o600)
		}, false},
		{"torn tail", func(t *testing.T, index string) {
			f, _ := os.OpenFile(index, os.O_WRONLY|os.O_APPEND, 0)
			f.WriteString("0badc0de A 4 9 10 0 - cur/x")
			f.Close()
		}, true},
		{"truncated mid-record", func(t *testing.T, index string) {
			fi, _ := os.Stat(index)
			os.Truncate(index, fi.Size()-7)
		}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root, inbox, before, ids := fixture(t)
			tt.damage(t, filepath.Join(inbox, indexName))
			st, msgs, bodies := reopen(t, root)
			if tt.sameValidity != (st.UIDValidity == before.UIDValidity) {
				t.Errorf("UIDVALIDITY %d -> %d, want same: %v", before.UIDValidity, st.UIDValidity, tt.sameValidity)
			}
			if st.Messages != 3 {
				t.Fatalf("after rebuild %d messages, want 3", st.Messages)
			}
			var gotIDs []string
			for _, m := range msgs {
				gotIDs = append(gotIDs, m.ID)
			}
			slices.Sort(gotIDs)
			slices.Sort(ids)
			if !slices.Equal(gotIDs, ids) {
				t.Errorf("IDs %v, want %v (stable across rebuilds)", gotIDs, ids)
			}
			for i, b := range bodies {
				if want := storetest.Msg(i + 1); b != want && !tt.sameValidity {
					t.Errorf("body %d = %q, want %q", i, b, want)
				}
			}
			// System flags survive in the file names.
			if !store.HasFlag(msgs[0].Flags, store.FlagSeen) || !store.HasFlag(msgs[1].Flags, store.FlagFlagged) {
				t.Errorf("flags after rebuild = %v, %v, want \\Seen and \\Flagged", msgs[0].Flags, msgs[1].Flags)
			}
			// The index is whole again: one more append gets the next UID.
			s := openStore(t, root, Options{})
			m, _ := s.User(t.Context(), "alice@example.org")
			res := storetest.Append(t, m, "INBOX", storetest.Msg(4))
			if res.UID != st.UIDNext {
				t.Errorf("append after rebuild got UID %d, want %d", res.UID, st.UIDNext)
			}
			data, _ := os.ReadFile(filepath.Join(inbox, indexName))
			if _, good, err := parseLog(data); err != nil || good != len(data) {
				t.Errorf("index after repair: good %d of %d, %v", good, len(data), err)
			}
			// And it stays: another process opening it keeps UIDVALIDITY.
			if st2, _, _ := reopen(t, root); st2.UIDValidity != st.UIDValidity || st2.Messages != 4 {
				t.Errorf("reopened after repair: %+v, want UIDVALIDITY %d and 4 messages", st2, st.UIDValidity)
			}
		})
	}
}

func TestNewFolderUIDValidityNeverRepeats(t *testing.T) {
	root := testlib.TempDir(t)
	s := openStore(t, root, Options{})
	m, err := s.User(t.Context(), "alice@example.org")
	if err != nil {
		t.Fatal(err)
	}
	seen := map[uint32]bool{}
	for range 5 {
		if err := m.Create(t.Context(), "X"); err != nil {
			t.Fatal(err)
		}
		st, err := m.Status(t.Context(), "X")
		if err != nil {
			t.Fatal(err)
		}
		if seen[st.UIDValidity] {
			t.Errorf("UIDVALIDITY %d given twice to X", st.UIDValidity)
		}
		seen[st.UIDValidity] = true
		if err := m.Delete(t.Context(), "X"); err != nil {
			t.Fatal(err)
		}
	}
}

func TestForeignDelivery(t *testing.T) {
	// A message that another MDA (procmail, dovecot-lda) drops into new/
	// shows up, with the next UID, and is moved to cur/.
	root := testlib.TempDir(t)
	s := openStore(t, root, Options{})
	m, err := s.User(t.Context(), "alice@example.org")
	if err != nil {
		t.Fatal(err)
	}
	storetest.Append(t, m, "INBOX", storetest.Msg(1))
	mb := storetest.Select(t, m, "INBOX")
	inbox := filepath.Join(root, "example.org", "alice", "Maildir")
	if err := os.WriteFile(filepath.Join(inbox, "new", "1700000000.M1P1.other"), []byte(storetest.Msg(2)), 0o600); err != nil {
		t.Fatal(err)
	}
	ch := storetest.PollUntil(t, mb, 3*time.Second, func(c store.Changes) bool { return len(c.New) == 1 })
	if ch.New[0].UID != 2 || storetest.Body(t, mb, 2) != storetest.Msg(2) {
		t.Errorf("foreign delivery = %+v, want UID 2 with its body", ch.New)
	}
	if n, _ := filepath.Glob(filepath.Join(inbox, "new", "*")); len(n) != 0 {
		t.Errorf("new/ still has %v", n)
	}
}

// TestLostIndexTail is a crash of the machine after deliveries whose index
// records were never fsynced (commitNoSync): the records are gone, the
// files are in cur/ with their UIDs in their names. The next start must
// index them under the same UIDs, keep UIDVALIDITY, and give the next
// delivery a UID after them. A file whose ",U=" is already taken (copied
// by hand from elsewhere) gets a new UID instead.
func TestLostIndexTail(t *testing.T) {
	root := testlib.TempDir(t)
	s, m := openAlice(t, root)
	inbox := filepath.Join(root, "example.org", "alice", "Maildir")
	index := filepath.Join(inbox, indexName)
	storetest.Append(t, m, "INBOX", storetest.Msg(1))
	storetest.Append(t, m, "INBOX", storetest.Msg(2), store.FlagSeen)
	fi, err := os.Stat(index)
	if err != nil {
		t.Fatal(err)
	}
	durable := fi.Size()
	for i := 3; i <= 5; i++ {
		if res := storetest.Append(t, m, "INBOX", storetest.Msg(i), store.FlagFlagged); res.UID != store.UID(i) {
			t.Fatalf("Append %d got UID %d", i, res.UID)
		}
	}
	before, err := m.Status(t.Context(), "INBOX")
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	// The crash: the last three records never reached the disk.
	if err := os.Truncate(index, durable); err != nil {
		t.Fatal(err)
	}
	// And someone copied message 1's file by hand under a new base name:
	// its U=1 is taken, so it must get a new UID, after the recovered ones.
	ones, _ := filepath.Glob(filepath.Join(inbox, "cur", "*,U=1:*"))
	if len(ones) != 1 {
		t.Fatalf("files with U=1: %v", ones)
	}
	data, _ := os.ReadFile(ones[0])
	copyName := strings.Replace(filepath.Base(ones[0]), ".M", ".Mcopy", 1)
	if err := os.WriteFile(filepath.Join(inbox, "cur", copyName), data, 0o600); err != nil {
		t.Fatal(err)
	}

	st, msgs, bodies := reopen(t, root)
	if st.UIDValidity != before.UIDValidity {
		t.Errorf("UIDVALIDITY %d -> %d, want unchanged", before.UIDValidity, st.UIDValidity)
	}
	if len(msgs) != 6 {
		t.Fatalf("%d messages after the crash, want 6", len(msgs))
	}
	for i := range 5 {
		if msgs[i].UID != store.UID(i+1) || bodies[i] != storetest.Msg(i+1) {
			t.Errorf("message %d = UID %d %q, want UID %d %q", i, msgs[i].UID, bodies[i], i+1, storetest.Msg(i+1))
		}
		if i >= 2 && !store.HasFlag(msgs[i].Flags, store.FlagFlagged) {
			t.Errorf("UID %d lost \\Flagged: %v", msgs[i].UID, msgs[i].Flags)
		}
	}
	if msgs[5].UID != 6 || bodies[5] != storetest.Msg(1) {
		t.Errorf("the hand-made copy = UID %d %q, want UID 6 %q", msgs[5].UID, bodies[5], storetest.Msg(1))
	}
	s2 := openStore(t, root, Options{})
	m2, err := s2.User(t.Context(), "alice@example.org")
	if err != nil {
		t.Fatal(err)
	}
	if res := storetest.Append(t, m2, "INBOX", storetest.Msg(7)); res.UID != 7 {
		t.Errorf("next delivery got UID %d, want 7", res.UID)
	}
}

// TestSyncBeforeSessionsSee checks that the index records a delivery
// wrote without an fsync are fsynced before a session is shown them.
func TestSyncBeforeSessionsSee(t *testing.T) {
	s := openStore(t, testlib.TempDir(t), Options{})
	m, err := s.User(t.Context(), "alice@example.org")
	if err != nil {
		t.Fatal(err)
	}
	mb := storetest.Select(t, m, "INBOX")
	storetest.Append(t, m, "INBOX", storetest.Msg(1))
	f := mb.(*handle).f
	f.mu.Lock()
	unsynced := f.syncedLen < f.logLen
	f.mu.Unlock()
	if !unsynced {
		t.Fatalf("a delivery's record was fsynced: the test no longer tests anything")
	}
	if _, err := mb.Poll(t.Context(), true); err != nil {
		t.Fatal(err)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.syncedLen != f.logLen {
		t.Errorf("after Poll: %d of %d index bytes known durable", f.syncedLen, f.logLen)
	}
}

// TestCurScanSkippedOnlyWhenUnchanged checks when a fresh process scans
// cur/: not when cur/ is as a recorded complete scan left it, always when
// it changed since (here: a delivery whose index record a crash lost).
func TestCurScanSkippedOnlyWhenUnchanged(t *testing.T) {
	root, inbox, _, _ := fixture(t)
	cur := filepath.Join(inbox, "cur")
	quiet := time.Now().Add(-time.Hour)
	if err := os.Chtimes(cur, quiet, quiet); err != nil {
		t.Fatal(err)
	}
	if st, _, _ := reopen(t, root); st.Messages != 3 {
		t.Fatalf("%d messages, want 3", st.Messages)
	}
	if data, err := os.ReadFile(filepath.Join(inbox, scannedName)); err != nil || string(data) != strconv.FormatInt(quiet.UnixNano(), 10) {
		t.Fatalf("%s = %q, %v; want the quiet mtime %d", scannedName, data, err, quiet.UnixNano())
	}

	// A file slipped into cur/ with its mtime put back: invisible to a
	// start that trusts the recorded scan, which shows that it skipped it.
	data, _ := os.ReadFile(filepath.Join(inbox, indexName))
	hidden := filepath.Join(cur, "1700000000.M1P1.hidden,S=4:2,")
	if err := os.WriteFile(hidden, []byte("a\r\n\r\n"[:4]), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chtimes(cur, quiet, quiet); err != nil {
		t.Fatal(err)
	}
	if st, _, _ := reopen(t, root); st.Messages != 3 {
		t.Fatalf("cur/ was scanned although unchanged: %d messages, want 3", st.Messages)
	}
	if err := os.Remove(hidden); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(inbox, indexName), data, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chtimes(cur, quiet, quiet); err != nil {
		t.Fatal(err)
	}

	// A delivery changes cur/; the crash loses its record; the next start
	// must scan and find it under its UID.
	s, m := openAlice(t, root)
	fi, _ := os.Stat(filepath.Join(inbox, indexName))
	res := storetest.Append(t, m, "INBOX", storetest.Msg(4))
	s.Close()
	if err := os.Truncate(filepath.Join(inbox, indexName), fi.Size()); err != nil {
		t.Fatal(err)
	}
	st, msgs, bodies := reopen(t, root)
	if st.Messages != 4 || msgs[3].UID != res.UID || bodies[3] != storetest.Msg(4) {
		t.Errorf("after the lost record: %d messages, last UID %d; want 4 and UID %d", st.Messages, msgs[len(msgs)-1].UID, res.UID)
	}
}

// TestReadLogLarge: an index of several read buffers, whole, with a torn
// last record, and with a bad record in the middle, reads as parseLog
// and apply read it.
func TestReadLogLarge(t *testing.T) {
	log := appendRecord(nil, record{kind: 'H', uidValidity: 7, uidNext: 1})
	for uid := store.UID(1); uid <= 5000; uid++ {
		log = appendRecord(log, record{kind: 'A', uid: uid, modSeq: 1, size: 100, flags: []string{`\Seen`}, file: "cur/1700000000.M" + strconv.Itoa(int(uid)) + "P1.host,S=100:2,S"})
		if uid%7 == 0 {
			log = appendRecord(log, record{kind: 'F', uid: uid - 3, modSeq: 2, file: "cur/1700000000.M" + strconv.Itoa(int(uid-3)) + "P1.host,S=100:2,"})
		}
		if uid%11 == 0 {
			log = appendRecord(log, record{kind: 'X', uid: uid - 5, modSeq: 3})
		}
	}
	mid := bytes.IndexByte(log[len(log)/2:], '\n') + len(log)/2 + 1
	bad := slices.Concat(log[:mid], []byte("00000000 A garbage\n"), log[mid:])
	for name, data := range map[string][]byte{
		"whole":             log,
		"torn":              log[:len(log)-20],
		"zeros after":       slices.Concat(log, make([]byte, 3000)),
		"bad in the middle": bad,
	} {
		t.Run(name, func(t *testing.T) { checkReadLog(t, data, maxRecordLen+1) })
	}
}

func TestBaseIndex(t *testing.T) {
	var msgs []rec
	for i := range 1000 {
		msgs = append(msgs, rec{file: fmt.Sprintf("cur/%d.M%dP1.host,S=10:2,S", 1700000000+i, i)})
	}
	msgs = append(msgs, rec{file: "new/1700000007.M7P1.host,S=10"}) // the same base again
	x := newBaseIndex(msgs)
	for i := range 1000 {
		want := i
		if i == 7 {
			want = 1000 // the last of the two
		}
		if got, ok := x.find(baseOf(msgs[i].file)); !ok || got != want {
			t.Fatalf("find(%q) = %d, %v; want %d", baseOf(msgs[i].file), got, ok, want)
		}
	}
	for _, base := range []string{"", "1700000000.M0P1", "1700000000.M0P1.host,S=10:2,S", "x"} {
		if got, ok := x.find(base); ok {
			t.Errorf("find(%q) = %d, want none", base, got)
		}
	}
}

// TestRebuildFileInCurAndNew: a message left in both new/ and cur/ (a
// crash between link and unlink) is indexed once by a rebuild.
func TestRebuildFileInCurAndNew(t *testing.T) {
	root, inbox, _, _ := fixture(t)
	curFiles, _ := filepath.Glob(filepath.Join(inbox, "cur", "*"))
	if len(curFiles) != 3 {
		t.Fatalf("fixture has %d files in cur/, want 3", len(curFiles))
	}
	base, _, _ := strings.Cut(filepath.Base(curFiles[1]), ":")
	if err := os.Link(curFiles[1], filepath.Join(inbox, "new", base)); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(inbox, indexName)); err != nil {
		t.Fatal(err)
	}
	if st, msgs, _ := reopen(t, root); st.Messages != 3 || len(msgs) != 3 {
		t.Fatalf("rebuilt: %d messages (%d listed), want 3", st.Messages, len(msgs))
	}
}
