package maildir

import (
	"bytes"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/postcove/postcove/services/mailbox/internal/store"
	"github.com/postcove/postcove/services/mailbox/internal/store/storetest"
)

// FuzzMailboxName checks that every name the store accepts maps to one
// directory directly inside the Maildir, and back to itself.
func FuzzMailboxName(f *testing.F) {
	for _, s := range append(storetest.TraversalNames(), "INBOX", "inbox/Sub", "Sent", "Entwürfe", "a&b", "&-", "日本語/メール", "x/y/z") {
		f.Add(s)
	}
	const root = "/srv/mail/example.org/alice/Maildir"
	f.Fuzz(func(t *testing.T, name string) {
		canon, err := store.CanonicalName(name)
		if err != nil {
			return
		}
		if again, err := store.CanonicalName(canon); err != nil || again != canon {
			t.Fatalf("CanonicalName(%q) = %q, not stable: %q, %v", name, canon, again, err)
		}
		d, err := diskName(canon)
		if err != nil {
			return
		}
		if canon == store.Inbox {
			if d != "" {
				t.Fatalf("diskName(INBOX) = %q", d)
			}
			return
		}
		p := filepath.Join(root, d)
		if filepath.Dir(p) != root || filepath.Base(p) != d || d == "." || d == ".." || strings.ContainsAny(d, "/\x00") || !strings.HasPrefix(d, ".") {
			t.Fatalf("diskName(%q) = %q escapes or nests: %s", canon, d, p)
		}
		back, ok := nameFromDisk(d)
		if !ok || back != canon {
			t.Fatalf("nameFromDisk(diskName(%q) = %q) = %q, %v", canon, d, back, ok)
		}
	})
}

// FuzzNameFromDisk: whatever a directory is called, a name read from it
// maps back to that same directory.
func FuzzNameFromDisk(f *testing.F) {
	for _, s := range []string{".Sent", ".A.B", ".Entw&APw-rfe", "..", ".", ".&-", ".&AAA-", ".INBOX", "cur"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, entry string) {
		name, ok := nameFromDisk(entry)
		if !ok {
			return
		}
		if d, err := diskName(name); err != nil || d != entry {
			t.Fatalf("diskName(nameFromDisk(%q) = %q) = %q, %v", entry, name, d, err)
		}
	})
}

// FuzzFileName parses Maildir file names: no panic, and what it parses
// re-forms the name.
func FuzzFileName(f *testing.F) {
	for _, s := range []string{
		"1700000000.M123P45Q6R0a1b2c3d.host,S=1234,W=1260:2,RS",
		"1600000002.M3P1.old,S=7", "x:2,", "x:1,abc", ":2,S", "a,S=,W=x:2,Sab", ".hidden", "a:b:c",
		"1700000000.M1P2Q3R4.host,S=5,W=6,U=42:2,F", "a,U=4294967296,U=-1,U=:2,",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, name string) {
		fn, err := parseFileName(name)
		if err != nil {
			return
		}
		if fn.base == "" || strings.ContainsAny(fn.base, "/\x00:") {
			t.Fatalf("parseFileName(%q).base = %q", name, fn.base)
		}
		if fn.hasInfo && fn.withLetters(fn.letters) != name {
			t.Fatalf("parseFileName(%q) does not re-form: %q", name, fn.withLetters(fn.letters))
		}
		id := fn.id()
		if id == "" || len(id) > 70 || strings.ContainsFunc(id, func(r rune) bool { return r <= ' ' || r >= 0x7f }) {
			t.Fatalf("id of %q = %q, not a POP3 UIDL", name, id)
		}
		flags := flagsFromLetters(fn.letters, map[byte]string{'a': "$Work"})
		if _, err := store.NormalizeFlags(flags); err != nil {
			t.Fatalf("flagsFromLetters(%q) = %v, invalid: %v", fn.letters, flags, err)
		}
	})
}

// FuzzIndex replays arbitrary index files: never a panic; a log accepted
// without error re-encodes to records that parse the same.
func FuzzIndex(f *testing.F) {
	var log []byte
	log = appendRecord(log, record{kind: 'H', uidValidity: 9, uidNext: 1})
	log = appendRecord(log, record{kind: 'A', uid: 1, modSeq: 1, size: 5, flags: []string{`\Seen`}, file: "cur/a:2,S"})
	log = appendRecord(log, record{kind: 'F', uid: 1, modSeq: 2, file: "cur/a:2,"})
	log = appendRecord(log, record{kind: 'X', uid: 1, modSeq: 3})
	f.Add(log)
	f.Add(log[:len(log)-4])
	f.Add([]byte("00000000 H 1 1 1 1\n"))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		checkReadLog(t, data, maxRecordLen+1)
		recs, good, err := parseLog(data)
		if err != nil {
			return
		}
		if good < 0 || good > len(data) {
			t.Fatalf("good = %d of %d", good, len(data))
		}
		var st indexState
		if err := st.apply(recs); err != nil {
			return
		}
		for _, m := range st.msgs {
			if dir, _, _ := strings.Cut(m.file, "/"); dir != "cur" && dir != "new" {
				t.Fatalf("message file %q outside cur/ and new/", m.file)
			}
		}
		if st.uidValidity == 0 {
			return
		}
		again, good2, err := parseLog(st.snapshot())
		if err != nil || good2 != len(st.snapshot()) {
			t.Fatalf("snapshot does not parse: %v", err)
		}
		var st2 indexState
		if err := st2.apply(again); err != nil || len(st2.msgs) != len(st.msgs) || st2.uidNext != st.uidNext {
			t.Fatalf("snapshot replays differently: %v", err)
		}
	})
}

// FuzzUIDList parses dovecot-uidlist files: never a panic, and every UID
// accepted is below the next UID.
func FuzzUIDList(f *testing.F) {
	f.Add([]byte("3 V1275660208 N25022 G3085f01b7f11094c501100008c4a11c1\n25006 :1276528487.M364837P9451.kurkku,S=1355,W=1394\n25017 W2481 :1276533073.M242911P3632.kurkku\n"))
	f.Add([]byte("1 1000 5\n1 a\n4 b\n"))
	f.Add([]byte("3 V N\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		l, err := parseUIDList(data)
		if err != nil {
			return
		}
		for base, uid := range l.uids {
			if uid == 0 || uid >= l.nextUID || strings.ContainsAny(base, "/\x00") {
				t.Fatalf("uid %d for %q with next %d", uid, base, l.nextUID)
			}
		}
	})
}

// FuzzQuotaFile parses maildirsize: never a panic.
func FuzzQuotaFile(f *testing.F) {
	f.Add("1000S,10C\n100 1\n-100 -1\n")
	f.Add("0S\n")
	f.Fuzz(func(t *testing.T, data string) {
		_, _ = parseQuotaFile(data)
		_ = parseSubscriptions(data)
	})
}

// FuzzNumbers: the index's own decimal parsing agrees with strconv on
// every input, numbers that fit and ones that do not.
func FuzzNumbers(f *testing.F) {
	for _, s := range []string{"0", "007", "4294967295", "4294967296", "9223372036854775807", "9223372036854775808", "-9223372036854775808", "-9223372036854775809", "18446744073709551615", "18446744073709551616", "", "-", "+1", "1_000", " 1", "12a"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		for _, bits := range []int{32, 63, 64} {
			want, err := strconv.ParseUint(s, 10, bits)
			var n numbers
			got := n.parse([]byte(s), bits)
			if (err == nil) != (n.err == nil) || err == nil && got != want {
				t.Errorf("parse(%q, %d) = %d, %v; strconv: %d, %v", s, bits, got, n.err, want, err)
			}
		}
		want, err := strconv.ParseInt(s, 10, 64)
		var n numbers
		got := n.parseInt([]byte(s))
		if (err == nil) != (n.err == nil) || err == nil && got != want {
			t.Errorf("parseInt(%q) = %d, %v; strconv: %d, %v", s, got, n.err, want, err)
		}
	})
}

// checkReadLog checks that readLog, which streams the log through a
// buffer, finds what parseLog and apply find in the whole of it: the same
// messages, the same length of whole records, corruption alike.
func checkReadLog(t *testing.T, data []byte, bufSize int) {
	t.Helper()
	var want indexState
	recs, wantGood, wantErr := parseLog(data)
	if wantErr == nil {
		wantErr = want.apply(recs)
	}
	var got indexState
	good, err := got.readLog(bytes.NewReader(data), int64(len(data)), bufSize)
	switch {
	case (err == nil) != (wantErr == nil):
		t.Fatalf("readLog error %v, parseLog and apply: %v", err, wantErr)
	case err != nil:
		return
	case good != int64(wantGood) || got.uidValidity != want.uidValidity || got.uidNext != want.uidNext || got.highestModSeq != want.highestModSeq:
		t.Fatalf("readLog: good %d, header %d/%d/%d; parseLog: %d, %d/%d/%d", good, got.uidValidity, got.uidNext, got.highestModSeq, wantGood, want.uidValidity, want.uidNext, want.highestModSeq)
	case len(got.msgs) != len(want.msgs):
		t.Fatalf("readLog: %d messages, parseLog: %d", len(got.msgs), len(want.msgs))
	}
	for i := range got.msgs {
		g, w := got.Message(i), want.Message(i)
		if g.UID != w.UID || got.msgs[i].file != want.msgs[i].file || g.ModSeq != w.ModSeq || !slices.Equal(g.Flags, w.Flags) {
			t.Fatalf("message %d: readLog %+v, parseLog %+v", i, g, w)
		}
	}
}
