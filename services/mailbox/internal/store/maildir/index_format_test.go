package maildir

import (
	"fmt"
	"os"
	"path/filepath"
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
	st.msgs = []rec{{Message: store.Message{UID: 3, ModSeq: 4, Size: 5, InternalDate: date, Flags: []string{`\Seen`}}, file: "cur/1.M2P3.host:2,S"}}
	st.uidValidity, st.uidNext, st.highestModSeq = 1, 4, 4
	for i := range 3000 { // more than writeSnapshot's buffer
		st.msgs = append(st.msgs, rec{Message: store.Message{UID: store.UID(4 + i), ModSeq: 4, Size: 5, InternalDate: date}, file: fmt.Sprintf("cur/%d.M2P3.host:2,", i)})
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
		unseen, deleted, size := store.Summary(len(st.msgs), st.at)
		if got, want := st.counts, (msgCounts{unseen: unseen, deleted: deleted, size: size}); got != want {
			t.Errorf("after %d messages: counts = %+v, want %+v", len(st.msgs), got, want)
		}
	}
	if len(st.msgs) != 5 {
		t.Errorf("%d messages, want 5", len(st.msgs))
	}
}
