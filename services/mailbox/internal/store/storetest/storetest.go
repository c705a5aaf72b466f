// Package storetest is the one test suite every store.Store passes:
// store/memstore and store/maildir run it, so that LMTP, IMAP and POP3 can
// rely on the same behaviour from either, down to the sentinel errors, the
// UID and MODSEQ rules (RFC 9051 section 2.3.1.1, RFC 7162) and what a
// session's Poll reports.
package storetest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/postcove/postcove/services/mailbox/internal/store"
)

// Options are what a test needs from the store it opens.
type Options struct {
	MaxMessageSize int64 // 0: no limit
}

// Opener returns a fresh, empty store closed when t ends.
type Opener func(t *testing.T, opts Options) store.Store

// Run runs the suite; subtests run in parallel, each on its own store.
func Run(t *testing.T, open Opener) {
	tests := []struct {
		name string
		fn   func(t *testing.T, open Opener)
	}{
		{"DefaultMailboxes", testDefaultMailboxes},
		{"CreateDeleteRename", testCreateDeleteRename},
		{"InvalidNames", testInvalidNames},
		{"Subscriptions", testSubscriptions},
		{"AppendRead", testAppendRead},
		{"Selected", testSelected},
		{"Flags", testFlags},
		{"CopyMove", testCopyMove},
		{"Expunge", testExpunge},
		{"UIDValidity", testUIDValidity},
		{"RenameInbox", testRenameInbox},
		{"Quota", testQuota},
		{"TooBig", testTooBig},
		{"ChangeFeed", testChangeFeed},
		{"PollWithoutExpunge", testPollWithoutExpunge},
		{"ConcurrentAppends", testConcurrentAppends},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tt.fn(t, open)
		})
	}
}

const user = "alice@example.org"

// Msg returns a small RFC 5322 message whose body names n.
func Msg(n int) string {
	return fmt.Sprintf("From: bob@example.net\r\nTo: alice@example.org\r\nSubject: test %d\r\nMessage-ID: <%d@example.net>\r\n\r\nbody %d\r\n", n, n, n)
}

func openUser(t *testing.T, s store.Store) store.Mailboxes {
	t.Helper()
	m, err := s.User(t.Context(), user)
	if err != nil {
		t.Fatalf("User(%q) = %v", user, err)
	}
	t.Cleanup(func() { m.Close() })
	return m
}

// Append appends a message and fails the test on error.
func Append(t testing.TB, m store.Mailboxes, name, body string, flags ...string) store.AppendResult {
	t.Helper()
	res, err := m.Append(context.Background(), name, strings.NewReader(body), store.AppendOptions{Flags: flags})
	if err != nil {
		t.Fatalf("Append(%q) = %v", name, err)
	}
	return res
}

// Select selects a mailbox, closed when t ends.
func Select(t testing.TB, m store.Mailboxes, name string) store.Mailbox {
	t.Helper()
	mb, err := m.Select(context.Background(), name)
	if err != nil {
		t.Fatalf("Select(%q) = %v", name, err)
	}
	t.Cleanup(func() { mb.Close() })
	return mb
}

// Body reads a message body.
func Body(t testing.TB, mb store.Mailbox, uid store.UID) string {
	t.Helper()
	b, err := mb.Open(context.Background(), uid)
	if err != nil {
		t.Fatalf("Open(%d) = %v", uid, err)
	}
	defer b.Close()
	data, err := io.ReadAll(b)
	if err != nil {
		t.Fatalf("read body %d: %v", uid, err)
	}
	return string(data)
}

func status(t *testing.T, m store.Mailboxes, name string) store.Status {
	t.Helper()
	st, err := m.Status(t.Context(), name)
	if err != nil {
		t.Fatalf("Status(%q) = %v", name, err)
	}
	return st
}

func names(infos []store.MailboxInfo) []string {
	var out []string
	for _, i := range infos {
		out = append(out, i.Name)
	}
	return out
}

func list(t *testing.T, m store.Mailboxes) []store.MailboxInfo {
	t.Helper()
	infos, err := m.List(t.Context())
	if err != nil {
		t.Fatalf("List() = %v", err)
	}
	return infos
}

func testDefaultMailboxes(t *testing.T, open Opener) {
	m := openUser(t, open(t, Options{}))
	infos := list(t, m)
	want := []store.MailboxInfo{
		{Name: "INBOX", Subscribed: true},
		{Name: "Drafts", SpecialUse: `\Drafts`, Subscribed: true},
		{Name: "Junk", SpecialUse: `\Junk`, Subscribed: true},
		{Name: "Sent", SpecialUse: `\Sent`, Subscribed: true},
		{Name: "Trash", SpecialUse: `\Trash`, Subscribed: true},
	}
	if !slices.Equal(infos, want) {
		t.Errorf("List() = %v, want %v", infos, want)
	}
	for _, name := range store.DefaultMailboxes() {
		st := status(t, m, name)
		if st.Messages != 0 || st.UIDNext != 1 || st.UIDValidity == 0 {
			t.Errorf("Status(%q) = %+v, want empty with UIDNEXT 1 and a UIDVALIDITY", name, st)
		}
	}
}

func testCreateDeleteRename(t *testing.T, open Opener) {
	ctx := t.Context()
	m := openUser(t, open(t, Options{}))
	for _, name := range []string{"Work", "Work/Projects", "Work/Projects/2024", "Ünïcödé & Co", "INBOX/Child"} {
		if err := m.Create(ctx, name); err != nil {
			t.Fatalf("Create(%q) = %v", name, err)
		}
	}
	for _, name := range []string{"Work", "inbox", "INBOX", "Sent"} {
		if err := m.Create(ctx, name); !errors.Is(err, store.ErrMailboxExists) {
			t.Errorf("Create(%q) = %v, want ErrMailboxExists", name, err)
		}
	}
	got := names(list(t, m))
	want := []string{"INBOX", "Drafts", "INBOX/Child", "Junk", "Sent", "Trash", "Work", "Work/Projects", "Work/Projects/2024", "Ünïcödé & Co"}
	if !slices.Equal(got, want) {
		t.Errorf("List() = %v, want %v", got, want)
	}
	Append(t, m, "Work/Projects", Msg(1))

	if err := m.Rename(ctx, "Work", "Job"); err != nil {
		t.Fatalf("Rename(Work, Job) = %v", err)
	}
	got = names(list(t, m))
	want = []string{"INBOX", "Drafts", "INBOX/Child", "Job", "Job/Projects", "Job/Projects/2024", "Junk", "Sent", "Trash", "Ünïcödé & Co"}
	if !slices.Equal(got, want) {
		t.Errorf("after rename List() = %v, want %v", got, want)
	}
	if st := status(t, m, "Job/Projects"); st.Messages != 1 {
		t.Errorf("Status(Job/Projects).Messages = %d, want 1 (moved with its parent)", st.Messages)
	}
	renameErrs := []struct {
		from, to string
		want     error
	}{
		{"Nope", "X", store.ErrNoSuchMailbox},
		{"Job", "Sent", store.ErrMailboxExists},
		{"Job", "Job/Sub", store.ErrNotAllowed},
		{"Job", "Job", store.ErrNotAllowed},
		{"Job", "a/../b", store.ErrInvalidName},
	}
	for _, tt := range renameErrs {
		if err := m.Rename(ctx, tt.from, tt.to); !errors.Is(err, tt.want) {
			t.Errorf("Rename(%q, %q) = %v, want %v", tt.from, tt.to, err, tt.want)
		}
	}

	if err := m.Delete(ctx, "Job"); err != nil {
		t.Fatalf("Delete(Job) = %v", err)
	}
	got = names(list(t, m))
	want = []string{"INBOX", "Drafts", "INBOX/Child", "Job/Projects", "Job/Projects/2024", "Junk", "Sent", "Trash", "Ünïcödé & Co"}
	if !slices.Equal(got, want) {
		t.Errorf("after delete List() = %v, want %v (children stay)", got, want)
	}
	for _, tt := range []struct {
		name string
		want error
	}{
		{"INBOX", store.ErrNotAllowed},
		{"inbox", store.ErrNotAllowed},
		{"Job", store.ErrNoSuchMailbox},
		{"../x", store.ErrInvalidName},
	} {
		if err := m.Delete(ctx, tt.name); !errors.Is(err, tt.want) {
			t.Errorf("Delete(%q) = %v, want %v", tt.name, err, tt.want)
		}
	}
	if _, err := m.Status(ctx, "Job"); !errors.Is(err, store.ErrNoSuchMailbox) {
		t.Errorf("Status(deleted) = %v, want ErrNoSuchMailbox", err)
	}
	if _, err := m.Select(ctx, "Nope"); !errors.Is(err, store.ErrNoSuchMailbox) {
		t.Errorf("Select(Nope) = %v, want ErrNoSuchMailbox", err)
	}
	if _, err := m.Append(ctx, "Nope", strings.NewReader(Msg(1)), store.AppendOptions{}); !errors.Is(err, store.ErrNoSuchMailbox) {
		t.Errorf("Append(Nope) = %v, want ErrNoSuchMailbox", err)
	}
}

// TraversalNames are mailbox names that must never be accepted: each
// would, naively mapped, reach outside the user's Maildir or confuse it.
func TraversalNames() []string {
	return []string{
		"", ".", "..", "../x", "a/../../b", "/abs", "/", "a/", "a//b", "a\x00b", "a\x01b",
		"tab\tname", "new\nline", "del\x7f", "c1\u0085", ".hidden", "trailing.", "a.b",
		"..%2f", "%", "*", "a/*", strings.Repeat("x", store.MaxNameLen+1), "\xff\xfe",
		"Sent/../../../etc", "./x", "x/.", "x/..",
	}
}

func testInvalidNames(t *testing.T, open Opener) {
	ctx := t.Context()
	m := openUser(t, open(t, Options{}))
	for _, name := range TraversalNames() {
		if err := m.Create(ctx, name); !errors.Is(err, store.ErrInvalidName) {
			t.Errorf("Create(%q) = %v, want ErrInvalidName", name, err)
		}
		if _, err := m.Select(ctx, name); !errors.Is(err, store.ErrInvalidName) {
			t.Errorf("Select(%q) = %v, want ErrInvalidName", name, err)
		}
		if _, err := m.Append(ctx, name, strings.NewReader(Msg(1)), store.AppendOptions{}); !errors.Is(err, store.ErrInvalidName) {
			t.Errorf("Append(%q) = %v, want ErrInvalidName", name, err)
		}
		if err := m.Rename(ctx, "Sent", name); !errors.Is(err, store.ErrInvalidName) {
			t.Errorf("Rename(Sent, %q) = %v, want ErrInvalidName", name, err)
		}
		if err := m.SetSubscribed(ctx, name, true); !errors.Is(err, store.ErrInvalidName) {
			t.Errorf("SetSubscribed(%q) = %v, want ErrInvalidName", name, err)
		}
	}
	if got := names(list(t, m)); len(got) != len(store.DefaultMailboxes()) {
		t.Errorf("List() after invalid creates = %v, want only the defaults", got)
	}
}

func testSubscriptions(t *testing.T, open Opener) {
	ctx := t.Context()
	m := openUser(t, open(t, Options{}))
	if err := m.SetSubscribed(ctx, "Trash", false); err != nil {
		t.Fatal(err)
	}
	if err := m.SetSubscribed(ctx, "Not/There", true); err != nil {
		t.Fatalf("SetSubscribed(nonexistent) = %v, want nil (RFC 9051 6.3.7 allows it)", err)
	}
	got, err := m.Subscriptions(ctx)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"INBOX", "Drafts", "Junk", "Not/There", "Sent"}
	if !slices.Equal(got, want) {
		t.Errorf("Subscriptions() = %v, want %v", got, want)
	}
	for _, info := range list(t, m) {
		if info.Subscribed != (info.Name != "Trash") {
			t.Errorf("List() %s Subscribed = %v", info.Name, info.Subscribed)
		}
	}
}

func testAppendRead(t *testing.T, open Opener) {
	ctx := t.Context()
	m := openUser(t, open(t, Options{}))
	date := time.Date(2024, 2, 29, 13, 14, 15, 0, time.UTC)
	body := Msg(1)
	res, err := m.Append(ctx, "INBOX", strings.NewReader(body), store.AppendOptions{Flags: []string{`\seen`, "$Label1", `\Recent`}, InternalDate: date})
	if err != nil {
		t.Fatalf("Append = %v", err)
	}
	st := status(t, m, "INBOX")
	if res.UID != 1 || res.UIDValidity != st.UIDValidity || res.Size != int64(len(body)) {
		t.Errorf("Append = %+v, want UID 1, UIDVALIDITY %d, size %d", res, st.UIDValidity, len(body))
	}
	if st.Messages != 1 || st.UIDNext != 2 || st.Unseen != 0 || st.Size != int64(len(body)) || st.HighestModSeq == 0 {
		t.Errorf("Status = %+v, want 1 seen message, UIDNEXT 2, a HIGHESTMODSEQ", st)
	}
	if !slices.Equal(st.Keywords, []string{"$Label1"}) {
		t.Errorf("Status.Keywords = %v, want [$Label1]", st.Keywords)
	}
	Append(t, m, "INBOX", Msg(2))
	mb := Select(t, m, "INBOX")
	if got := mb.UIDs(); !slices.Equal(got, []store.UID{1, 2}) {
		t.Errorf("UIDs() = %v, want [1 2]", got)
	}
	msgs, err := mb.Messages(ctx, []store.UID{2, 1, 99})
	if err != nil || len(msgs) != 2 {
		t.Fatalf("Messages(2,1,99) = %v, %v, want 2 messages", msgs, err)
	}
	m1 := msgs[1]
	if m1.UID != 1 || !slices.Equal(m1.Flags, []string{"$Label1", `\Seen`}) || m1.Size != int64(len(body)) || m1.InternalDate.Unix() != date.Unix() {
		t.Errorf("message 1 = %+v, want flags [$Label1 \\Seen], size %d, date %v", m1, len(body), date)
	}
	if msgs[0].ID == "" || msgs[0].ID == m1.ID || strings.ContainsAny(m1.ID, " \r\n") || len(m1.ID) > 70 {
		t.Errorf("IDs %q, %q: want distinct POP3-safe ids", msgs[0].ID, m1.ID)
	}
	if msgs[0].ModSeq <= m1.ModSeq {
		t.Errorf("MODSEQ of later append %d <= %d", msgs[0].ModSeq, m1.ModSeq)
	}
	if got := Body(t, mb, 1); got != body {
		t.Errorf("Open(1) = %q, want %q", got, body)
	}
	b, err := mb.Open(ctx, 2)
	if err != nil {
		t.Fatal(err)
	}
	part := make([]byte, 7)
	if _, err := b.ReadAt(part, 6); err != nil || string(part) != "bob@exa" {
		t.Errorf("ReadAt(6) = %q, %v, want %q", part, err, "bob@exa")
	}
	b.Close()
	if _, err := mb.Open(ctx, 3); !errors.Is(err, store.ErrNoSuchMessage) {
		t.Errorf("Open(3) = %v, want ErrNoSuchMessage", err)
	}
	if _, err := m.Append(ctx, "INBOX", strings.NewReader(body), store.AppendOptions{Flags: []string{`\Bogus`}}); !errors.Is(err, store.ErrInvalidFlag) {
		t.Errorf("Append with \\Bogus = %v, want ErrInvalidFlag", err)
	}
	// Another user sees none of it.
	other, err := open(t, Options{}).User(ctx, "bob@example.org")
	if err == nil {
		if st, err := other.Status(ctx, "INBOX"); err != nil || st.Messages != 0 {
			t.Errorf("other user's INBOX = %+v, %v, want empty", st, err)
		}
	}
}

// testSelected: Selected is the state the view was taken from, even once
// the mailbox has moved on.
func testSelected(t *testing.T, open Opener) {
	m := openUser(t, open(t, Options{}))
	Append(t, m, "INBOX", Msg(1))
	Append(t, m, "INBOX", Msg(2))
	mb := Select(t, m, "INBOX")
	Append(t, m, "INBOX", Msg(3))
	st := status(t, m, "INBOX")
	if sel := mb.Selected(); sel.Messages != 2 || sel.UIDNext != 3 || sel.Unseen != 2 || sel.UIDValidity != st.UIDValidity || sel.Name != "INBOX" {
		t.Errorf("Selected() = %+v, want INBOX's 2 unseen messages and UIDNEXT 3, as selected", sel)
	}
	if st.Messages != 3 || st.UIDNext != 4 {
		t.Errorf("Status = %+v, want 3 messages and UIDNEXT 4", st)
	}
}

func testFlags(t *testing.T, open Opener) {
	ctx := t.Context()
	m := openUser(t, open(t, Options{}))
	for i := range 3 {
		Append(t, m, "INBOX", Msg(i))
	}
	mb := Select(t, m, "INBOX")
	other := Select(t, m, "INBOX")
	before := status(t, m, "INBOX").HighestModSeq
	steps := []struct {
		op    store.FlagOp
		flags []string
		uids  []store.UID
		want  [][]string // flags of UIDs 1..3 after the step
	}{
		{store.FlagsAdd, []string{"Work", `\Seen`}, []store.UID{1, 2}, [][]string{{"Work", `\Seen`}, {"Work", `\Seen`}, nil}},
		{store.FlagsRemove, []string{"work"}, []store.UID{2}, [][]string{{"Work", `\Seen`}, {`\Seen`}, nil}},
		{store.FlagsReplace, []string{`\Flagged`, `\Deleted`}, []store.UID{3}, [][]string{{"Work", `\Seen`}, {`\Seen`}, {`\Deleted`, `\Flagged`}}},
		{store.FlagsReplace, nil, []store.UID{1}, [][]string{nil, {`\Seen`}, {`\Deleted`, `\Flagged`}}},
	}
	last := before
	for i, step := range steps {
		res, err := mb.SetFlags(ctx, step.uids, step.op, step.flags, 0)
		if err != nil {
			t.Fatalf("step %d: SetFlags = %v", i, err)
		}
		for _, u := range res.Updated {
			if u.ModSeq <= last {
				t.Errorf("step %d: MODSEQ %d not above %d", i, u.ModSeq, last)
			}
		}
		msgs, err := mb.Messages(ctx, []store.UID{1, 2, 3})
		if err != nil {
			t.Fatal(err)
		}
		for k, msg := range msgs {
			if !slices.Equal(msg.Flags, step.want[k]) && !(len(msg.Flags) == 0 && len(step.want[k]) == 0) {
				t.Errorf("step %d: flags of %d = %v, want %v", i, msg.UID, msg.Flags, step.want[k])
			}
		}
		hm := status(t, m, "INBOX").HighestModSeq
		if hm <= last {
			t.Errorf("step %d: HIGHESTMODSEQ %d not above %d", i, hm, last)
		}
		last = hm
	}
	// Setting what is already set changes nothing, MODSEQ included.
	res, err := mb.SetFlags(ctx, []store.UID{2}, store.FlagsAdd, []string{`\seen`}, 0)
	if err != nil || len(res.Updated) != 0 {
		t.Errorf("no-op SetFlags = %+v, %v, want nothing updated", res, err)
	}
	if hm := status(t, m, "INBOX").HighestModSeq; hm != last {
		t.Errorf("no-op changed HIGHESTMODSEQ %d -> %d", last, hm)
	}
	// CONDSTORE: a stale unchangedSince refuses.
	res, err = mb.SetFlags(ctx, []store.UID{2, 3}, store.FlagsAdd, []string{`\Answered`}, before)
	if err != nil || !slices.Equal(res.Modified, []store.UID{2, 3}) || len(res.Updated) != 0 {
		t.Errorf("SetFlags(unchangedSince stale) = %+v, %v, want both Modified", res, err)
	}
	if _, err := mb.SetFlags(ctx, []store.UID{1}, store.FlagsAdd, []string{"bad flag"}, 0); !errors.Is(err, store.ErrInvalidFlag) {
		t.Errorf("SetFlags(bad keyword) = %v, want ErrInvalidFlag", err)
	}
	// The other session learns of the keyword and each changed message.
	ch, err := other.Poll(ctx, true)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(ch.Keywords, []string{"Work"}) {
		t.Errorf("other Poll Keywords = %v, want [Work]", ch.Keywords)
	}
	var seqs []uint32
	for _, u := range ch.Updated {
		seqs = append(seqs, u.SeqNum)
	}
	if !slices.Equal(seqs, []uint32{1, 2, 3}) {
		t.Errorf("other Poll Updated seqs = %v, want [1 2 3]", seqs)
	}
	// The session that made the changes was told already.
	if ch, err := mb.Poll(ctx, true); err != nil || len(ch.Updated) != 0 {
		t.Errorf("own Poll = %+v, %v, want no updates", ch, err)
	}
}

func testCopyMove(t *testing.T, open Opener) {
	ctx := t.Context()
	m := openUser(t, open(t, Options{}))
	if err := m.Create(ctx, "Archive"); err != nil {
		t.Fatal(err)
	}
	Append(t, m, "Archive", Msg(100)) // the destination already has UID 1
	for i := 1; i <= 4; i++ {
		Append(t, m, "INBOX", Msg(i), `\Seen`, fmt.Sprintf("k%d", i))
	}
	mb := Select(t, m, "INBOX")
	dst := status(t, m, "Archive")
	res, err := mb.Copy(ctx, []store.UID{4, 2, 2, 99}, "Archive")
	if err != nil {
		t.Fatalf("Copy = %v", err)
	}
	want := store.CopyResult{UIDValidity: dst.UIDValidity, SourceUIDs: []store.UID{2, 4}, DestUIDs: []store.UID{2, 3}}
	if !equalCopy(res, want) {
		t.Errorf("Copy = %+v, want %+v", res, want)
	}
	arch := Select(t, m, "Archive")
	msgs, err := arch.Messages(ctx, []store.UID{2, 3})
	if err != nil || len(msgs) != 2 {
		t.Fatalf("Messages = %v, %v", msgs, err)
	}
	if !slices.Equal(msgs[0].Flags, []string{`\Seen`, "k2"}) || Body(t, arch, 3) != Msg(4) {
		t.Errorf("copied message = %+v %q, want flags [\\Seen k2] and the body of 4", msgs[0], Body(t, arch, 3))
	}
	if st := status(t, m, "INBOX"); st.Messages != 4 {
		t.Errorf("source after copy has %d messages, want 4", st.Messages)
	}

	res, exp, err := mb.Move(ctx, []store.UID{1, 3}, "Archive")
	if err != nil {
		t.Fatalf("Move = %v", err)
	}
	want = store.CopyResult{UIDValidity: dst.UIDValidity, SourceUIDs: []store.UID{1, 3}, DestUIDs: []store.UID{4, 5}}
	if !equalCopy(res, want) {
		t.Errorf("Move = %+v, want %+v", res, want)
	}
	wantExp := []store.Expunged{{UID: 3, SeqNum: 3}, {UID: 1, SeqNum: 1}}
	if !slices.Equal(exp, wantExp) {
		t.Errorf("Move expunges = %v, want %v", exp, wantExp)
	}
	if got := mb.UIDs(); !slices.Equal(got, []store.UID{2, 4}) {
		t.Errorf("UIDs() after move = %v, want [2 4]", got)
	}
	if st := status(t, m, "Archive"); st.Messages != 5 || st.UIDNext != 6 {
		t.Errorf("Archive = %+v, want 5 messages, UIDNEXT 6", st)
	}
	if got := Body(t, arch, 5); got != Msg(3) {
		t.Errorf("moved body = %q, want %q", got, Msg(3))
	}
	if _, err := mb.Copy(ctx, []store.UID{2}, "Nope"); !errors.Is(err, store.ErrNoSuchMailbox) {
		t.Errorf("Copy to missing = %v, want ErrNoSuchMailbox", err)
	}
	// Copy within the same mailbox.
	res, err = mb.Copy(ctx, []store.UID{2}, "INBOX")
	if err != nil || !slices.Equal(res.DestUIDs, []store.UID{5}) {
		t.Errorf("Copy to self = %+v, %v, want dest UID 5", res, err)
	}
}

func equalCopy(a, b store.CopyResult) bool {
	return a.UIDValidity == b.UIDValidity && slices.Equal(a.SourceUIDs, b.SourceUIDs) && slices.Equal(a.DestUIDs, b.DestUIDs)
}

func testExpunge(t *testing.T, open Opener) {
	ctx := t.Context()
	m := openUser(t, open(t, Options{}))
	for i := 1; i <= 6; i++ {
		Append(t, m, "INBOX", Msg(i))
	}
	mb := Select(t, m, "INBOX")
	if _, err := mb.SetFlags(ctx, []store.UID{2, 3, 5, 6}, store.FlagsAdd, []string{store.FlagDeleted}, 0); err != nil {
		t.Fatal(err)
	}
	before := status(t, m, "INBOX")
	// UID EXPUNGE 1:5 leaves 6 although it is \Deleted.
	exp, err := mb.Expunge(ctx, []store.UID{1, 2, 3, 4, 5})
	if err != nil {
		t.Fatal(err)
	}
	want := []store.Expunged{{UID: 5, SeqNum: 5}, {UID: 3, SeqNum: 3}, {UID: 2, SeqNum: 2}}
	if !slices.Equal(exp, want) {
		t.Errorf("Expunge(1:5) = %v, want %v", exp, want)
	}
	exp, err = mb.Expunge(ctx, nil)
	if err != nil || !slices.Equal(exp, []store.Expunged{{UID: 6, SeqNum: 3}}) {
		t.Errorf("Expunge(all) = %v, %v, want [{6 3}]", exp, err)
	}
	if got := mb.UIDs(); !slices.Equal(got, []store.UID{1, 4}) {
		t.Errorf("UIDs() = %v, want [1 4]", got)
	}
	after := status(t, m, "INBOX")
	if after.Messages != 2 || after.UIDNext != before.UIDNext || after.HighestModSeq <= before.HighestModSeq || after.Deleted != 0 {
		t.Errorf("Status after expunge = %+v (before %+v): want 2 messages, same UIDNEXT, higher HIGHESTMODSEQ", after, before)
	}
	if _, err := mb.Open(ctx, 2); !errors.Is(err, store.ErrNoSuchMessage) {
		t.Errorf("Open(expunged) = %v, want ErrNoSuchMessage", err)
	}
	// UIDs are never reused.
	if res := Append(t, m, "INBOX", Msg(7)); res.UID != 7 {
		t.Errorf("Append after expunge = UID %d, want 7", res.UID)
	}
	if exp, err := mb.Expunge(ctx, nil); err != nil || len(exp) != 0 {
		t.Errorf("Expunge(nothing deleted) = %v, %v, want none", exp, err)
	}
}

func testUIDValidity(t *testing.T, open Opener) {
	ctx := t.Context()
	s := open(t, Options{})
	m := openUser(t, s)
	seen := map[uint32]string{}
	for _, name := range []string{"A", "B", "C"} {
		if err := m.Create(ctx, name); err != nil {
			t.Fatal(err)
		}
		v := status(t, m, name).UIDValidity
		if v == 0 {
			t.Errorf("UIDVALIDITY of %s is 0", name)
		}
		seen[v] = name
	}
	old := status(t, m, "A")
	Append(t, m, "A", Msg(1))
	// Reopening the user keeps UIDVALIDITY and UIDs.
	again, err := s.User(ctx, user)
	if err != nil {
		t.Fatal(err)
	}
	if st := status(t, again, "A"); st.UIDValidity != old.UIDValidity || st.UIDNext != 2 {
		t.Errorf("reopened Status(A) = %+v, want UIDVALIDITY %d, UIDNEXT 2", st, old.UIDValidity)
	}
	// Deleted and created again: a new UIDVALIDITY (RFC 9051 2.3.1.1).
	if err := m.Delete(ctx, "A"); err != nil {
		t.Fatal(err)
	}
	if err := m.Create(ctx, "A"); err != nil {
		t.Fatal(err)
	}
	st := status(t, m, "A")
	if st.UIDValidity == old.UIDValidity || st.Messages != 0 {
		t.Errorf("recreated Status(A) = %+v, want a UIDVALIDITY other than %d and no messages", st, old.UIDValidity)
	}
	// A session that had the old one selected is told.
	mb := Select(t, m, "B")
	if err := m.Delete(ctx, "B"); err != nil {
		t.Fatal(err)
	}
	if _, err := mb.Poll(ctx, true); !errors.Is(err, store.ErrNoSuchMailbox) && !errors.Is(err, store.ErrUIDValidityChanged) {
		t.Errorf("Poll on deleted mailbox = %v, want ErrNoSuchMailbox or ErrUIDValidityChanged", err)
	}
}

func testRenameInbox(t *testing.T, open Opener) {
	ctx := t.Context()
	m := openUser(t, open(t, Options{}))
	Append(t, m, "INBOX", Msg(1))
	Append(t, m, "INBOX", Msg(2))
	if err := m.Rename(ctx, "INBOX", "Old Mail"); err != nil {
		t.Fatalf("Rename(INBOX) = %v", err)
	}
	if st := status(t, m, "INBOX"); st.Messages != 0 {
		t.Errorf("INBOX after rename has %d messages, want 0", st.Messages)
	}
	if st := status(t, m, "Old Mail"); st.Messages != 2 {
		t.Errorf("Old Mail has %d messages, want 2", st.Messages)
	}
}

func testQuota(t *testing.T, open Opener) {
	ctx := t.Context()
	m := openUser(t, open(t, Options{}))
	msg := Msg(1)
	size := int64(len(msg))
	if err := m.SetQuotaLimit(ctx, 3*size); err != nil {
		t.Fatal(err)
	}
	Append(t, m, "INBOX", msg)
	Append(t, m, "Sent", msg)
	q, err := m.Quota(ctx)
	if err != nil || q != (store.Quota{UsedBytes: 2 * size, UsedMessages: 2, LimitBytes: 3 * size}) {
		t.Errorf("Quota() = %+v, %v, want 2 messages of %d bytes, limit %d", q, err, size, 3*size)
	}
	Append(t, m, "INBOX", msg)
	if _, err := m.Append(ctx, "INBOX", strings.NewReader(msg), store.AppendOptions{}); !errors.Is(err, store.ErrQuotaExceeded) {
		t.Errorf("Append over quota = %v, want ErrQuotaExceeded", err)
	}
	mb := Select(t, m, "INBOX")
	if _, err := mb.Copy(ctx, mb.UIDs(), "Trash"); !errors.Is(err, store.ErrQuotaExceeded) {
		t.Errorf("Copy over quota = %v, want ErrQuotaExceeded", err)
	}
	if st := status(t, m, "INBOX"); st.Messages != 2 {
		t.Errorf("INBOX has %d messages after refused append, want 2", st.Messages)
	}
	if _, err := mb.SetFlags(ctx, mb.UIDs(), store.FlagsAdd, []string{store.FlagDeleted}, 0); err != nil {
		t.Fatal(err)
	}
	if _, err := mb.Expunge(ctx, nil); err != nil {
		t.Fatal(err)
	}
	q, err = m.Quota(ctx)
	if err != nil || q.UsedBytes != size || q.UsedMessages != 1 {
		t.Errorf("Quota() after expunge = %+v, %v, want 1 message of %d bytes", q, err, size)
	}
	if err := m.Delete(ctx, "Sent"); err != nil {
		t.Fatal(err)
	}
	if q, err := m.Quota(ctx); err != nil || q.UsedBytes != 0 {
		t.Errorf("Quota() after deleting the last folder with mail = %+v, %v, want 0 bytes", q, err)
	}
	if err := m.SetQuotaLimit(ctx, 0); err != nil {
		t.Fatal(err)
	}
	Append(t, m, "INBOX", strings.Repeat(msg, 10))
}

func testTooBig(t *testing.T, open Opener) {
	ctx := t.Context()
	m := openUser(t, open(t, Options{MaxMessageSize: 100}))
	if _, err := m.Append(ctx, "INBOX", strings.NewReader(strings.Repeat("x", 101)), store.AppendOptions{}); !errors.Is(err, store.ErrTooBig) {
		t.Errorf("Append(101 bytes, limit 100) = %v, want ErrTooBig", err)
	}
	Append(t, m, "INBOX", strings.Repeat("x", 100))
	if st := status(t, m, "INBOX"); st.Messages != 1 {
		t.Errorf("INBOX has %d messages, want 1", st.Messages)
	}
	if q, _ := m.Quota(ctx); q.UsedBytes != 100 {
		t.Errorf("Quota().UsedBytes = %d, want 100 (the refused message left nothing)", q.UsedBytes)
	}
}

// WaitUpdate waits for a value on mb.Updates.
func WaitUpdate(t testing.TB, mb store.Mailbox, within time.Duration) {
	t.Helper()
	select {
	case <-mb.Updates():
	case <-time.After(within):
		t.Fatalf("no update within %v", within)
	}
}

// PollUntil polls until cond holds on the accumulated changes.
func PollUntil(t testing.TB, mb store.Mailbox, within time.Duration, cond func(store.Changes) bool) store.Changes {
	t.Helper()
	var all store.Changes
	deadline := time.Now().Add(within)
	for {
		ch, err := mb.Poll(context.Background(), true)
		if err != nil {
			t.Fatalf("Poll = %v", err)
		}
		all.Expunged = append(all.Expunged, ch.Expunged...)
		all.New = append(all.New, ch.New...)
		all.Updated = append(all.Updated, ch.Updated...)
		if ch.NumMessages != 0 {
			all.NumMessages = ch.NumMessages
		}
		if cond(all) {
			return all
		}
		if time.Now().After(deadline) {
			t.Fatalf("changes %+v still incomplete after %v", all, within)
		}
		select {
		case <-mb.Updates():
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func testChangeFeed(t *testing.T, open Opener) {
	ctx := t.Context()
	s := open(t, Options{})
	m := openUser(t, s)
	Append(t, m, "INBOX", Msg(1))
	Append(t, m, "INBOX", Msg(2))
	idle := Select(t, m, "INBOX")

	// Another session of the same user, as a second IMAP connection or an
	// LMTP delivery would be.
	m2, err := s.User(ctx, user)
	if err != nil {
		t.Fatal(err)
	}
	Append(t, m2, "INBOX", Msg(3))
	WaitUpdate(t, idle, 2*time.Second)
	ch := PollUntil(t, idle, 2*time.Second, func(c store.Changes) bool { return len(c.New) == 1 })
	if ch.NumMessages != 3 || ch.New[0].UID != 3 {
		t.Errorf("Poll after append = %+v, want EXISTS 3 with UID 3", ch)
	}
	busy := Select(t, m2, "INBOX")
	if _, err := busy.SetFlags(ctx, []store.UID{1}, store.FlagsAdd, []string{store.FlagDeleted}, 0); err != nil {
		t.Fatal(err)
	}
	if _, err := busy.SetFlags(ctx, []store.UID{2}, store.FlagsAdd, []string{store.FlagSeen}, 0); err != nil {
		t.Fatal(err)
	}
	if _, err := busy.Expunge(ctx, nil); err != nil {
		t.Fatal(err)
	}
	WaitUpdate(t, idle, 2*time.Second)
	ch = PollUntil(t, idle, 2*time.Second, func(c store.Changes) bool { return len(c.Expunged) == 1 })
	if !slices.Equal(ch.Expunged, []store.Expunged{{UID: 1, SeqNum: 1}}) {
		t.Errorf("Poll Expunged = %v, want [{1 1}]", ch.Expunged)
	}
	if len(ch.Updated) != 1 || ch.Updated[0].UID != 2 || ch.Updated[0].SeqNum != 1 || !store.HasFlag(ch.Updated[0].Flags, store.FlagSeen) {
		t.Errorf("Poll Updated = %+v, want UID 2 at seq 1 with \\Seen", ch.Updated)
	}
	if got := idle.UIDs(); !slices.Equal(got, []store.UID{2, 3}) {
		t.Errorf("UIDs() = %v, want [2 3]", got)
	}
	if ch, err := idle.Poll(ctx, true); err != nil || !ch.Empty() {
		t.Errorf("second Poll = %+v, %v, want nothing", ch, err)
	}
}

func testPollWithoutExpunge(t *testing.T, open Opener) {
	ctx := t.Context()
	m := openUser(t, open(t, Options{}))
	for i := 1; i <= 3; i++ {
		Append(t, m, "INBOX", Msg(i))
	}
	a := Select(t, m, "INBOX")
	b := Select(t, m, "INBOX")
	if _, err := b.SetFlags(ctx, []store.UID{2}, store.FlagsAdd, []string{store.FlagDeleted}, 0); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Expunge(ctx, nil); err != nil {
		t.Fatal(err)
	}
	Append(t, m, "INBOX", Msg(4))
	// During FETCH/STORE/SEARCH: no expunge, sequence numbers keep.
	ch, err := a.Poll(ctx, false)
	if err != nil {
		t.Fatal(err)
	}
	if len(ch.Expunged) != 0 || ch.NumMessages != 4 || !slices.Equal(a.UIDs(), []store.UID{1, 2, 3, 4}) {
		t.Errorf("Poll(false) = %+v, UIDs %v, want EXISTS 4 and UIDs [1 2 3 4]", ch, a.UIDs())
	}
	ch, err = a.Poll(ctx, true)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(ch.Expunged, []store.Expunged{{UID: 2, SeqNum: 2}}) || !slices.Equal(a.UIDs(), []store.UID{1, 3, 4}) {
		t.Errorf("Poll(true) = %+v, UIDs %v, want expunge of seq 2 and UIDs [1 3 4]", ch, a.UIDs())
	}
}

func testConcurrentAppends(t *testing.T, open Opener) {
	ctx := t.Context()
	s := open(t, Options{})
	const workers, each = 8, 15
	var wg sync.WaitGroup
	uids := make(chan store.UID, workers*each)
	errs := make(chan error, workers*each)
	for w := range workers {
		wg.Go(func() {
			m, err := s.User(ctx, user)
			if err != nil {
				errs <- err
				return
			}
			for i := range each {
				res, err := m.Append(ctx, "INBOX", strings.NewReader(Msg(w*1000+i)), store.AppendOptions{})
				if err != nil {
					errs <- err
					return
				}
				uids <- res.UID
			}
		})
	}
	wg.Wait()
	close(uids)
	close(errs)
	for err := range errs {
		t.Fatalf("concurrent Append = %v", err)
	}
	seen := map[store.UID]bool{}
	for uid := range uids {
		if seen[uid] {
			t.Errorf("UID %d given twice", uid)
		}
		seen[uid] = true
	}
	m := openUser(t, s)
	st := status(t, m, "INBOX")
	if st.Messages != workers*each || st.UIDNext != workers*each+1 {
		t.Errorf("Status = %+v, want %d messages and UIDNEXT %d", st, workers*each, workers*each+1)
	}
	mb := Select(t, m, "INBOX")
	bodies := map[string]bool{}
	for _, uid := range mb.UIDs() {
		bodies[Body(t, mb, uid)] = true
	}
	if len(bodies) != workers*each {
		t.Errorf("%d distinct bodies, want %d", len(bodies), workers*each)
	}
}
