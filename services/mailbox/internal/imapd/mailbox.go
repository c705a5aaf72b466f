package imapd

import (
	"context"
	"errors"
	"slices"
	"sort"
	"strings"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"

	"github.com/postcove/postcove/services/mailbox/internal/store"
)

// systemFlags are the flags every mailbox offers (RFC 9051 section 2.3.2),
// \Recent excluded.
var systemFlags = []imap.Flag{imap.FlagSeen, imap.FlagAnswered, imap.FlagFlagged, imap.FlagDeleted, imap.FlagDraft}

// selected is the session's selected mailbox.
type selected struct {
	mb       store.Mailbox
	readOnly bool
	// keywords are the keywords the client has been sent in a FLAGS
	// response, lower-cased.
	keywords map[string]bool
	// searchRes is the result SEARCH RETURN (SAVE) kept for "$" (RFC
	// 5182), as UIDs.
	searchRes []store.UID
}

// target is one message a command names: its sequence number in the
// session's view and its UID.
type target struct {
	seq uint32
	uid store.UID
}

func (sess *session) closeSelected() {
	if sess.sel == nil {
		return
	}
	if err := sess.sel.mb.Close(); err != nil {
		sess.log.Warn("imap close mailbox", "err", err)
	}
	sess.sel = nil
}

// Select opens a mailbox (SELECT, or EXAMINE with options.ReadOnly). It
// reads message metadata only for the UNSEEN code of IMAP4rev1 clients,
// and never a message body.
func (sess *session) Select(name string, options *imap.SelectOptions) (*imap.SelectData, error) {
	defer sess.lock()()
	sess.closeSelected()
	ctx, cancel := sess.ctx()
	defer cancel()
	// One look at the store: the view and the status it was taken from
	// (UIDNEXT above every UID of the view, so it never claims a
	// message the client was not told about).
	mb, err := sess.mbs.Select(ctx, name)
	if err != nil {
		return nil, sess.storeError("select", err, false)
	}
	st := mb.Selected()
	uids := mb.UIDs()
	uidNext := st.UIDNext
	if n := len(uids); n > 0 && uidNext <= uids[n-1] {
		uidNext = uids[n-1] + 1
	}
	data := &imap.SelectData{
		Flags:       mailboxFlags(st.Keywords),
		NumMessages: uint32(len(uids)),
		UIDNext:     imap.UID(uidNext),
		UIDValidity: st.UIDValidity,
	}
	if !options.ReadOnly {
		data.PermanentFlags = append(mailboxFlags(st.Keywords), imap.FlagWildcard)
	}
	rev2 := sess.conn.EnabledCaps().Has(imap.CapIMAP4rev2)
	if rev2 {
		// RFC 9051 section 6.3.2: the mailbox's name as the server
		// spells it.
		data.List = &imap.ListData{Mailbox: mb.Name(), Delim: delim}
	}
	if !rev2 && st.Unseen > 0 {
		// IMAP4rev1's "OK [UNSEEN n]".
		if data.FirstUnseenSeqNum, err = firstUnseen(ctx, mb, uids, st.Unseen); err != nil {
			mb.Close()
			return nil, sess.storeError("select", err, false)
		}
	}
	sess.sel = &selected{mb: mb, readOnly: options.ReadOnly, keywords: make(map[string]bool)}
	sess.sel.learnKeywords(st.Keywords)
	return data, nil
}

// firstUnseen returns the sequence number of the first message of the
// view without \Seen, 0 when there is none; unseen is how many the
// mailbox has. Rather than the metadata of every message (100,000 of
// them in a large mailbox) it asks the store for a few at both ends of
// the view, then for more and more: the first unseen message found from
// the start is the answer, and so is the lowest found from the end once
// as many as the mailbox has are found there, as when the unread mail is
// the newest.
func firstUnseen(ctx context.Context, mb store.Mailbox, uids []store.UID, unseen uint32) (uint32, error) {
	isUnseen := func(m *store.Message) bool { return !store.HasFlag(m.Flags, store.FlagSeen) }
	lo, hi := 0, len(uids) // uids[lo:hi] are not looked at yet
	var (
		found  uint32
		lowest store.UID // the lowest found from the end
	)
	// A few first: unread mail is rarely rare, and each message looked
	// at is a copy (this runs on every SELECT of an IMAP4rev1 client).
	for n := 32; lo < hi; n *= 4 {
		front, err := mb.Messages(ctx, uids[lo:min(lo+n, hi)])
		if err != nil {
			return 0, err
		}
		lo = min(lo+n, hi)
		for i := range front {
			if isUnseen(&front[i]) {
				return seqOf(uids, front[i].UID), nil
			}
		}
		back, err := mb.Messages(ctx, uids[max(hi-n, lo):hi])
		if err != nil {
			return 0, err
		}
		hi = max(hi-n, lo)
		for i := range back {
			if isUnseen(&back[i]) {
				found++
				if lowest == 0 || back[i].UID < lowest {
					lowest = back[i].UID // batches go down: each finds lower ones
				}
			}
		}
		if lowest != 0 && found >= unseen {
			break
		}
	}
	if lowest == 0 {
		return 0, nil
	}
	return seqOf(uids, lowest), nil
}

// seqOf returns the sequence number of uid in the view, 0 when it is not
// there.
func seqOf(uids []store.UID, uid store.UID) uint32 {
	if i, ok := slices.BinarySearch(uids, uid); ok {
		return uint32(i + 1)
	}
	return 0
}

// mailboxFlags is the FLAGS list: the system flags and the keywords.
func mailboxFlags(keywords []string) []imap.Flag {
	flags := slices.Clone(systemFlags)
	for _, k := range keywords {
		flags = append(flags, imap.Flag(k))
	}
	return flags
}

func (sel *selected) learnKeywords(keywords []string) {
	for _, k := range keywords {
		sel.keywords[strings.ToLower(k)] = true
	}
}

// Unselect closes the mailbox (CLOSE has expunged first, UNSELECT not).
func (sess *session) Unselect() error {
	defer sess.lock()()
	sess.closeSelected()
	return nil
}

// Poll tells the client what changed since the last command: imapserver
// calls it after every command, with allowExpunge false after FETCH, STORE
// and SEARCH so that sequence numbers do not shift under the client (RFC
// 9051 section 7.5.1).
func (sess *session) Poll(w *imapserver.UpdateWriter, allowExpunge bool) error {
	defer sess.lock()()
	sess.updates = w
	if sess.sel == nil {
		return nil
	}
	ctx, cancel := sess.ctx()
	defer cancel()
	ch, err := sess.sel.mb.Poll(ctx, allowExpunge)
	switch {
	case errors.Is(err, store.ErrUIDValidityChanged):
		return sess.bye("mailbox UIDVALIDITY changed, please reconnect")
	case errors.Is(err, store.ErrNoSuchMailbox):
		return sess.bye("selected mailbox was deleted")
	case err != nil:
		return sess.storeError("poll", err, false)
	}
	return sess.writeChanges(w, ch)
}

// writeChanges announces a Poll's changes in the order the store gives:
// EXPUNGE, then FLAGS when a keyword is new to the client (before any
// FETCH uses it), EXISTS, and FETCH FLAGS.
func (sess *session) writeChanges(w *imapserver.UpdateWriter, ch store.Changes) error {
	for _, e := range ch.Expunged {
		if err := w.WriteExpunge(e.SeqNum); err != nil {
			return err
		}
	}
	if ch.Keywords != nil {
		if err := w.WriteMailboxFlags(mailboxFlags(ch.Keywords)); err != nil {
			return err
		}
		sess.sel.learnKeywords(ch.Keywords)
	}
	if len(ch.New) > 0 {
		if err := w.WriteNumMessages(ch.NumMessages); err != nil {
			return err
		}
	}
	for _, u := range ch.Updated {
		if err := w.WriteMessageFlags(u.SeqNum, imap.UID(u.UID), imapFlags(u.Flags)); err != nil {
			return err
		}
	}
	return nil
}

func imapFlags(flags []string) []imap.Flag {
	return appendFlags(make([]imap.Flag, 0, len(flags)), flags)
}

// appendFlags appends flags to dst as imap.Flags.
func appendFlags(dst []imap.Flag, flags []string) []imap.Flag {
	for _, f := range flags {
		dst = append(dst, imap.Flag(f))
	}
	return dst
}

// Idle waits for changes to the selected mailbox (store.Mailbox.Updates:
// another session, another process, an LMTP delivery) and announces them
// until the client sends DONE. Shutdown ends it with a BYE.
func (sess *session) Idle(w *imapserver.UpdateWriter, stop <-chan struct{}) error {
	wake := sess.tc.startIdle()
	defer sess.tc.endIdle()
	if err := sess.Poll(w, true); err != nil {
		return err
	}
	var updates <-chan struct{}
	sess.mu.Lock()
	if sess.sel != nil {
		updates = sess.sel.mb.Updates()
	}
	sess.mu.Unlock()
	for {
		select {
		case <-stop:
			return nil
		case <-wake:
			return sess.bye("server shutting down")
		case <-updates:
			if err := sess.Poll(w, true); err != nil {
				return err
			}
		}
	}
}

// resolve turns a sequence set, UID set or "$" into the messages of the
// view it names, in sequence order, without duplicates. Numbers beyond
// the view are ignored; "*" is the last message (RFC 9051 section 9,
// seq-number).
func (sel *selected) resolve(numSet imap.NumSet) []target {
	uids := sel.mb.UIDs()
	n := len(uids)
	marked := make([]bool, n)
	switch set := numSet.(type) {
	case imap.SeqSet:
		for _, r := range set {
			lo, hi := seqBound(r.Start, n), seqBound(r.Stop, n)
			if lo > hi {
				lo, hi = hi, lo
			}
			for i := max(lo, 1); i <= min(hi, n); i++ {
				marked[i-1] = true
			}
		}
	case imap.UIDSet:
		if imap.IsSearchRes(set) {
			for _, uid := range sel.searchRes {
				if i, ok := slices.BinarySearch(uids, uid); ok {
					marked[i] = true
				}
			}
			break
		}
		if n == 0 {
			return nil
		}
		last := uids[n-1]
		for _, r := range set {
			lo, hi := store.UID(r.Start), store.UID(r.Stop)
			if lo == 0 {
				lo = last
			}
			if hi == 0 {
				hi = last
			}
			if lo > hi {
				lo, hi = hi, lo
			}
			for i := sort.Search(n, func(i int) bool { return uids[i] >= lo }); i < n && uids[i] <= hi; i++ {
				marked[i] = true
			}
		}
	}
	count := 0
	for _, m := range marked {
		if m {
			count++
		}
	}
	if count == 0 {
		return nil
	}
	out := make([]target, 0, count)
	for i, m := range marked {
		if m {
			out = append(out, target{seq: uint32(i + 1), uid: uids[i]})
		}
	}
	return out
}

// seqBound resolves one end of a sequence range: 0 is "*".
func seqBound(v uint32, n int) int {
	if v == 0 {
		return n
	}
	return int(min(v, uint32(n)+1))
}

func targetUIDs(ts []target) []store.UID {
	out := make([]store.UID, len(ts))
	for i, t := range ts {
		out[i] = t.uid
	}
	return out
}

func uidSet(uids []store.UID) imap.UIDSet {
	var s imap.UIDSet
	for _, u := range uids {
		s.AddNum(imap.UID(u))
	}
	return s
}

// targets returns the selected mailbox and the messages numSet names in
// it; write refuses a read-only (EXAMINEd) mailbox.
func (sess *session) targets(numSet imap.NumSet, write bool) (*selected, []target, error) {
	switch {
	case sess.sel == nil:
		return nil, nil, errNotSelected
	case write && sess.sel.readOnly:
		return nil, nil, errReadOnly
	}
	return sess.sel, sess.sel.resolve(numSet), nil
}

// Store changes flags (STORE, UID STORE) and answers with FETCH FLAGS
// unless .SILENT.
func (sess *session) Store(w *imapserver.FetchWriter, numSet imap.NumSet, flags *imap.StoreFlags, options *imap.StoreOptions) error {
	defer sess.lock()()
	sel, targets, err := sess.targets(numSet, true)
	if err != nil || len(targets) == 0 {
		return err
	}
	op := store.FlagsReplace
	switch flags.Op {
	case imap.StoreFlagsAdd:
		op = store.FlagsAdd
	case imap.StoreFlagsDel:
		op = store.FlagsRemove
	}
	names := make([]string, len(flags.Flags))
	for i, f := range flags.Flags {
		names[i] = string(f)
	}
	ctx, cancel := sess.ctx()
	defer cancel()
	uids := targetUIDs(targets)
	if _, err = sel.mb.SetFlags(ctx, uids, op, names, options.UnchangedSince); err != nil {
		return sess.storeError("store", err, false)
	}
	if op != store.FlagsRemove && sess.updates != nil && sel.hasNewKeyword(names) {
		// A keyword the client has not seen in FLAGS: announce it
		// before the FETCH responses use it (RFC 9051 section 7.3.5).
		ch, err := sel.mb.Poll(ctx, false)
		if err != nil {
			return sess.storeError("store", err, false)
		}
		if err := sess.writeChanges(sess.updates, ch); err != nil {
			return err
		}
	}
	if flags.Silent {
		return nil
	}
	msgs, err := sel.mb.Messages(ctx, uids)
	if err != nil {
		return sess.storeError("store", err, false)
	}
	_, byUID := numSet.(imap.UIDSet)
	return eachMessage(targets, msgs, func(seq uint32, m *store.Message) error {
		resp := w.CreateMessage(seq)
		if byUID {
			resp.WriteUID(imap.UID(m.UID))
		}
		resp.WriteFlags(imapFlags(m.Flags))
		return resp.Close()
	})
}

func (sel *selected) hasNewKeyword(flags []string) bool {
	for _, f := range flags {
		if !strings.HasPrefix(f, `\`) && !sel.keywords[strings.ToLower(f)] {
			return true
		}
	}
	return false
}

// Copy copies messages (COPY, UID COPY) and answers COPYUID (RFC 4315).
func (sess *session) Copy(numSet imap.NumSet, dest string) (*imap.CopyData, error) {
	defer sess.lock()()
	sel, targets, err := sess.targets(numSet, false)
	if err != nil || len(targets) == 0 {
		return nil, err
	}
	ctx, cancel := sess.ctx()
	defer cancel()
	res, err := sel.mb.Copy(ctx, targetUIDs(targets), dest)
	if err != nil {
		return nil, sess.storeError("copy", err, true)
	}
	return copyData(res), nil
}

func copyData(res store.CopyResult) *imap.CopyData {
	if len(res.SourceUIDs) == 0 {
		return nil
	}
	return &imap.CopyData{UIDValidity: res.UIDValidity, SourceUIDs: uidSet(res.SourceUIDs), DestUIDs: uidSet(res.DestUIDs)}
}

// Move moves messages (RFC 6851): COPYUID first, then the EXPUNGEs.
func (sess *session) Move(w *imapserver.MoveWriter, numSet imap.NumSet, dest string) error {
	defer sess.lock()()
	sel, targets, err := sess.targets(numSet, true)
	if err != nil || len(targets) == 0 {
		return err
	}
	ctx, cancel := sess.ctx()
	defer cancel()
	res, expunged, err := sel.mb.Move(ctx, targetUIDs(targets), dest)
	if err != nil {
		return sess.storeError("move", err, true)
	}
	if data := copyData(res); data != nil {
		if err := w.WriteCopyData(data); err != nil {
			return err
		}
	}
	for _, e := range expunged {
		if err := w.WriteExpunge(e.SeqNum); err != nil {
			return err
		}
	}
	return nil
}

// Expunge removes the messages flagged \Deleted (EXPUNGE, CLOSE), among
// uids for UID EXPUNGE (RFC 4315). In a read-only mailbox it does nothing,
// so that CLOSE after EXAMINE succeeds as RFC 9051 section 6.4.1 wants.
func (sess *session) Expunge(w *imapserver.ExpungeWriter, uids *imap.UIDSet) error {
	defer sess.lock()()
	sel := sess.sel
	switch {
	case sel == nil:
		return errNotSelected
	case sel.readOnly:
		return nil
	}
	var only []store.UID // nil: every \Deleted message
	if uids != nil {
		only = targetUIDs(sel.resolve(*uids))
		if len(only) == 0 {
			return nil
		}
	}
	ctx, cancel := sess.ctx()
	defer cancel()
	expunged, err := sel.mb.Expunge(ctx, only)
	if err != nil {
		return sess.storeError("expunge", err, false)
	}
	for _, e := range expunged {
		if err := w.WriteExpunge(e.SeqNum); err != nil {
			return err
		}
	}
	return nil
}
