package store

import (
	"errors"
	"slices"
	"testing"
)

func TestCanonicalName(t *testing.T) {
	tests := []struct {
		in, want string
		ok       bool
	}{
		{"INBOX", "INBOX", true},
		{"inbox", "INBOX", true},
		{"Inbox/Sub", "INBOX/Sub", true},
		{"Sent", "Sent", true},
		{"a/b/c", "a/b/c", true},
		{"Entwürfe", "Entwürfe", true},
		{"with space", "with space", true},
		{"", "", false},
		{".", "", false},
		{"..", "", false},
		{"../x", "", false},
		{"a/../../b", "", false},
		{"/abs", "", false},
		{"a/", "", false},
		{"a//b", "", false},
		{"a\x00b", "", false},
		{"a\x1bb", "", false},
		{"a\u0085b", "", false},
		{"v1.2", "", false},
		{"a*", "", false},
		{"\xff", "", false},
	}
	for _, tt := range tests {
		got, err := CanonicalName(tt.in)
		if (err == nil) != tt.ok || got != tt.want {
			t.Errorf("CanonicalName(%q) = %q, %v, want %q, ok %v", tt.in, got, err, tt.want, tt.ok)
		}
		if err != nil && !errors.Is(err, ErrInvalidName) {
			t.Errorf("CanonicalName(%q) error %v is not ErrInvalidName", tt.in, err)
		}
	}
}

func TestNormalizeAndApplyFlags(t *testing.T) {
	got, err := NormalizeFlags([]string{`\SEEN`, "$Junk", `\seen`, `\Recent`, "$junk", `\Draft`})
	if want := []string{"$Junk", `\Draft`, `\Seen`}; err != nil || !slices.Equal(got, want) {
		t.Errorf("NormalizeFlags = %v, %v, want %v", got, err, want)
	}
	for _, bad := range []string{`\Bogus`, "a b", "a(b", "", "é", `a"b`} {
		if _, err := NormalizeFlags([]string{bad}); !errors.Is(err, ErrInvalidFlag) {
			t.Errorf("NormalizeFlags(%q) = %v, want ErrInvalidFlag", bad, err)
		}
	}
	cur := []string{"$Junk", `\Seen`}
	tests := []struct {
		op          FlagOp
		flags, want []string
		changed     bool
	}{
		{FlagsAdd, []string{`\Seen`}, cur, false},
		{FlagsAdd, []string{`\Answered`}, []string{"$Junk", `\Answered`, `\Seen`}, true},
		{FlagsRemove, []string{"$JUNK"}, []string{`\Seen`}, true},
		{FlagsRemove, []string{`\Draft`}, cur, false},
		{FlagsReplace, []string{"$Junk", `\Seen`}, cur, false},
		{FlagsReplace, nil, nil, true},
	}
	for _, tt := range tests {
		got, changed := ApplyFlags(cur, tt.op, tt.flags)
		if changed != tt.changed || !slices.Equal(got, tt.want) && len(got)+len(tt.want) > 0 {
			t.Errorf("ApplyFlags(%v, %v, %v) = %v, %v, want %v, %v", cur, tt.op, tt.flags, got, changed, tt.want, tt.changed)
		}
	}
}

func TestNextUIDValidity(t *testing.T) {
	tests := []struct {
		last uint32
		now  int64
		want uint32
	}{
		{0, 1700000000, 1700000000},
		{1700000000, 1700000000, 1700000001},
		{1700000005, 1700000000, 1700000006},
		{0, -1, 1},
		{^uint32(0), 1, 1},
		{5, 1 << 40, 6},
	}
	for _, tt := range tests {
		if got := NextUIDValidity(tt.last, tt.now); got != tt.want {
			t.Errorf("NextUIDValidity(%d, %d) = %d, want %d", tt.last, tt.now, got, tt.want)
		}
	}
}

// messageList is a Listing of Messages.
type messageList []Message

func (l messageList) Len() int              { return len(l) }
func (l messageList) UID(i int) UID         { return l[i].UID }
func (l messageList) ModSeq(i int) uint64   { return l[i].ModSeq }
func (l messageList) Message(i int) Message { return l[i] }

func TestViewPoll(t *testing.T) {
	msgs := []Message{{UID: 1, ModSeq: 1}, {UID: 2, ModSeq: 2}, {UID: 3, ModSeq: 3}, {UID: 5, ModSeq: 5}}
	v := NewView(messageList(msgs), nil)
	next := []Message{{UID: 2, ModSeq: 7}, {UID: 5, ModSeq: 5}, {UID: 6, ModSeq: 8}, {UID: 7, ModSeq: 9}}
	ch := v.Poll(messageList(next), []string{"k"}, true)
	wantExp := []Expunged{{UID: 3, SeqNum: 3}, {UID: 1, SeqNum: 1}}
	if !slices.Equal(ch.Expunged, wantExp) || ch.NumMessages != 4 || len(ch.New) != 2 || len(ch.Updated) != 1 ||
		ch.Updated[0].SeqNum != 1 || ch.Updated[0].UID != 2 || !slices.Equal(ch.Keywords, []string{"k"}) {
		t.Errorf("Poll = %+v", ch)
	}
	if got := v.UIDs(); !slices.Equal(got, []UID{2, 5, 6, 7}) {
		t.Errorf("UIDs() = %v, want [2 5 6 7]", got)
	}
	if ch := v.Poll(messageList(next), []string{"K"}, true); !ch.Empty() {
		t.Errorf("second Poll = %+v, want empty", ch)
	}
	if got := v.Remove([]UID{7, 2, 99}); !slices.Equal(got, []Expunged{{UID: 7, SeqNum: 4}, {UID: 2, SeqNum: 1}}) {
		t.Errorf("Remove = %v", got)
	}
}

func TestViewCurrent(t *testing.T) {
	msgs := []Message{{UID: 1, ModSeq: 1}, {UID: 2, ModSeq: 2}}
	v := NewSharedView([]UID{1, 2}, []uint64{1, 2}, nil)
	if v.Current(2, 2) {
		t.Errorf("Current before Mark = true")
	}
	v.Mark(2, 2)
	if !v.Current(2, 2) || v.Current(3, 2) || v.Current(2, 1) {
		t.Errorf("Current after Mark(2, 2) wrong")
	}
	// An expunge held back must be reported by the next Poll even when
	// nothing changes meanwhile.
	rest := msgs[1:]
	if ch := v.Poll(messageList(rest), nil, false); len(ch.Expunged) != 0 {
		t.Errorf("Poll(allowExpunge false) = %+v", ch)
	}
	v.Mark(3, 1)
	if v.Current(3, 1) {
		t.Errorf("Current with an expunge held back = true")
	}
	if ch := v.Poll(messageList(rest), nil, true); len(ch.Expunged) != 1 {
		t.Errorf("Poll(allowExpunge true) = %+v, want one expunge", ch)
	}
	v.Mark(3, 1)
	if !v.Current(3, 1) {
		t.Errorf("Current after the expunge was reported = false")
	}
}

func TestSharedViewCopiesOnWrite(t *testing.T) {
	uids, mods := []UID{1, 2, 3}, []uint64{1, 1, 1}
	v := NewSharedView(uids, mods, nil)
	v.TouchAll([]Message{{UID: 2, ModSeq: 5}, {UID: 3, ModSeq: 1}})
	v.Remove([]UID{1})
	if !slices.Equal(uids, []UID{1, 2, 3}) || !slices.Equal(mods, []uint64{1, 1, 1}) {
		t.Errorf("shared slices changed: %v %v", uids, mods)
	}
	if !slices.Equal(v.UIDs(), []UID{2, 3}) || !slices.Equal(v.modseqs, []uint64{5, 1}) {
		t.Errorf("view = %v %v, want [2 3] [5 1]", v.UIDs(), v.modseqs)
	}
}
