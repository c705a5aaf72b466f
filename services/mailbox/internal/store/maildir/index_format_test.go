package maildir

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/postcove/postcove/services/mailbox/internal/store"
)

// TestAppendRecordFormat checks appendRecord against the record format
// as index.go documents it, written with fmt, and that parseLog reads it
// back.
func TestAppendRecordFormat(t *testing.T) {
	date := time.UnixMilli(1700000000123)
	tests := []struct {
		r    record
		want string
	}{
		{record{kind: 'H', uidValidity: 1700000000, uidNext: 42, highestModSeq: 99}, "H 1 1700000000 42 99"},
		{record{kind: 'A', uid: 7, modSeq: 8, size: 1234, date: date, flags: []string{`\Seen`, "a,b%c d"}, file: "cur/1.M2P3.host,S=1234:2,S"},
			"A 7 8 1234 1700000000123 \\Seen,a%2Cb%25c%20d cur/1.M2P3.host%2CS=1234:2%2CS"},
		{record{kind: 'A', uid: 9, modSeq: 10, size: 0, date: time.UnixMilli(-5), file: "new/x\xff"}, "A 9 10 0 -5 - new/x%FF"},
		{record{kind: 'F', uid: 7, modSeq: 11, flags: []string{`\Deleted`}, file: "cur/y:2,T"}, "F 7 11 \\Deleted cur/y:2%2CT"},
		{record{kind: 'X', uid: 7, modSeq: 12}, "X 7 12"},
	}
	for _, tt := range tests {
		got := string(appendRecord([]byte("prefix"), tt.r))
		want := "prefix" + fmt.Sprintf("%08x %s\n", crc([]byte(tt.want)), tt.want)
		if got != want {
			t.Errorf("appendRecord(%+v) = %q, want %q", tt.r, got, want)
		}
	}
	var st indexState
	st.msgs = []rec{makeRec(3, 4, 5, date, st.intern([]string{`\Seen`}), "cur/1.M2P3.host:2,S", parseFile("cur/1.M2P3.host:2,S"))}
	st.uidValidity, st.uidNext, st.highestModSeq = 1, 4, 4
	for i := range 3000 { // more than writeSnapshot's buffer
		file := fmt.Sprintf("cur/%d.M2P3.host:2,", i)
		st.msgs = append(st.msgs, makeRec(store.UID(4+i), 4, 5, date, st.intern(nil), file, parseFile(file)))
	}
	st.uidNext = store.UID(4 + len(st.msgs))
	path := filepath.Join(t.TempDir(), indexName)
	size, err := writeSnapshot(path, &st)
	written, rerr := os.ReadFile(path)
	if err != nil || rerr != nil || size != int64(len(written)) || string(written) != string(st.snapshot()) {
		t.Errorf("writeSnapshot = %d, %v; file of %d bytes (%v), equal to snapshot: %v", size, err, len(written), rerr, string(written) == string(st.snapshot()))
	}
	recs, good, err := parseLog(st.snapshot())
	if err != nil || len(recs) != len(st.msgs)+1 || good == 0 || recs[1].file != "cur/1.M2P3.host:2,S" || !recs[1].date.Equal(date) {
		t.Errorf("parseLog(snapshot) = %+v, %d, %v", recs, good, err)
	}
}

// TestIndexCounts checks that the counts apply keeps (Status without a
// walk over the messages) match a count of the messages, through adds,
// flag changes and expunges.
func TestIndexCounts(t *testing.T) {
	var st indexState
	file := func(i int) string { return fmt.Sprintf("cur/%d.M1P1.host:2,", 1700000000+i) }
	recs := []record{{kind: 'H', uidValidity: 1, uidNext: 1}}
	for i := 1; i <= 6; i++ {
		var flags []string
		if i%2 == 0 {
			flags = []string{store.FlagSeen}
		}
		recs = append(recs, record{kind: 'A', uid: store.UID(i), modSeq: uint64(i), size: int64(100 * i), flags: flags, file: file(i)})
	}
	recs = append(recs,
		record{kind: 'F', uid: 1, modSeq: 7, flags: []string{store.FlagDeleted, store.FlagSeen}, file: file(1)},
		record{kind: 'F', uid: 2, modSeq: 8, file: file(2)},
		record{kind: 'X', uid: 4, modSeq: 9},
		record{kind: 'X', uid: 4, modSeq: 10},                                                    // twice: counted once
		record{kind: 'F', uid: 4, modSeq: 11, flags: []string{store.FlagDeleted}, file: file(4)}, // expunged: ignored
	)
	for _, batch := range [][]record{recs[:4], recs[4:9], recs[9:]} {
		if err := st.apply(batch); err != nil {
			t.Fatal(err)
		}
		unseen, deleted, size := store.Summary(&st)
		if got, want := st.counts, (msgCounts{unseen: unseen, deleted: deleted, size: size}); got != want {
			t.Errorf("after %d messages: counts = %+v, want %+v", len(st.msgs), got, want)
		}
	}
	if len(st.msgs) != 5 {
		t.Errorf("%d messages, want 5", len(st.msgs))
	}
}

// TestFlagListsShared: messages with the same flags share one list, a
// state keeps each message's own flags through changes, and the lists
// flag changes leave behind are dropped once they pile up.
func TestFlagListsShared(t *testing.T) {
	var st indexState
	file := func(i int) string { return fmt.Sprintf("cur/%d.M1P1.host,S=10:2,", 1700000000+i) }
	recs := []record{{kind: 'H', uidValidity: 1, uidNext: 1}}
	for i := 1; i <= 100; i++ {
		// A fresh slice each time, as records decoded apart would have.
		recs = append(recs, record{kind: 'A', uid: store.UID(i), modSeq: 1, size: 10, flags: []string{store.FlagSeen}, file: file(i)})
	}
	if err := st.apply(recs); err != nil {
		t.Fatal(err)
	}
	if len(st.flagLists) != 1 {
		t.Fatalf("100 messages with the same flags hold %d flag lists, want 1", len(st.flagLists))
	}
	// One message gets a new keyword 1000 times over: each change makes a
	// list that the next leaves behind.
	for n := range 1000 {
		flags := []string{store.FlagSeen, fmt.Sprintf("k%d", n)}
		if err := st.apply([]record{{kind: 'F', uid: 7, modSeq: uint64(2 + n), flags: flags, file: file(7)}}); err != nil {
			t.Fatal(err)
		}
		if got := st.Message(6).Flags; !slices.Equal(got, flags) {
			t.Fatalf("UID 7 flags = %v, want %v", got, flags)
		}
		if len(st.flagLists) > 2*2+64 {
			t.Fatalf("%d flag lists kept with 2 in use, want them compacted", len(st.flagLists))
		}
	}
	for i := range st.msgs {
		if got := st.Message(i).Flags; i != 6 && !slices.Equal(got, []string{store.FlagSeen}) {
			t.Fatalf("message %d flags = %v, want [\\Seen]", i, got)
		}
	}
	if st.counts.unseen != 0 || st.counts.size != 1000 {
		t.Errorf("counts = %+v, want 0 unseen, 1000 bytes", st.counts)
	}
}

// TestRecID: a message's ID is fileName.id of its file name, kept as a
// prefix of the name where it is one, through a rename.
func TestRecID(t *testing.T) {
	long := strings.Repeat("x", 80) + ",S=3:2,S" // too long for a UIDL: hashed
	for _, name := range []string{"1700000000.M1P2Q3.host,S=3,W=4:2,S", "plain", "no-info:2,", long} {
		fn, err := parseFileName(name)
		if err != nil {
			t.Fatal(err)
		}
		r := makeRec(1, 1, 3, time.UnixMilli(1), 0, "cur/"+name, fn)
		if got := r.id(); got != fn.id() {
			t.Errorf("id of %q = %q, want %q", name, got, fn.id())
		}
		renamed := "cur/" + fn.withLetters("RS")
		r.setFile(renamed, parseFile(renamed))
		if got := r.id(); got != fn.id() {
			t.Errorf("id of %q renamed = %q, want %q", name, got, fn.id())
		}
	}
}
