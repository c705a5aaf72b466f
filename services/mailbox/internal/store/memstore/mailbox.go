package memstore

import (
	"bytes"
	"context"
	"fmt"

	"github.com/postcove/postcove/services/mailbox/internal/store"
)

// handle implements store.Mailbox.
type handle struct {
	u           *user
	mb          *mailbox
	uidValidity uint32
	view        *store.View // used by the session's goroutine only
	updates     chan struct{}
	closed      bool
	selected    store.Status // the state the view was taken from
}

// checkLocked fails when the mailbox was deleted (or the handle closed).
func (h *handle) checkLocked() error {
	if h.closed {
		return store.ErrClosed
	}
	if h.mb.deleted {
		return fmt.Errorf("%w: %q was deleted", store.ErrNoSuchMailbox, h.mb.name)
	}
	return nil
}

func (h *handle) Name() string {
	h.u.mu.Lock()
	defer h.u.mu.Unlock()
	return h.mb.name
}

func (h *handle) Status(ctx context.Context) (store.Status, error) {
	h.u.mu.Lock()
	defer h.u.mu.Unlock()
	if err := h.checkLocked(); err != nil {
		return store.Status{}, err
	}
	return h.mb.statusLocked(), nil
}

func (h *handle) Selected() store.Status { return h.selected }

func (h *handle) UIDs() []store.UID { return h.view.UIDs() }

func (h *handle) Messages(ctx context.Context, uids []store.UID) ([]store.Message, error) {
	h.u.mu.Lock()
	defer h.u.mu.Unlock()
	if err := h.checkLocked(); err != nil {
		return nil, err
	}
	out := make([]store.Message, 0, len(uids))
	for _, uid := range uids {
		if i, ok := h.mb.find(uid); ok {
			out = append(out, h.mb.msgs[i].Message)
			h.view.Touch(uid, h.mb.msgs[i].ModSeq)
		}
	}
	return out, nil
}

// body is a message body; Close does nothing.
type body struct{ *bytes.Reader }

func (body) Close() error { return nil }

func (h *handle) Open(ctx context.Context, uid store.UID) (store.Body, error) {
	h.u.mu.Lock()
	defer h.u.mu.Unlock()
	if err := h.checkLocked(); err != nil {
		return nil, err
	}
	i, ok := h.mb.find(uid)
	if !ok {
		return nil, fmt.Errorf("%w: uid %d", store.ErrNoSuchMessage, uid)
	}
	return body{bytes.NewReader(h.mb.msgs[i].body)}, nil
}

func (h *handle) SetFlags(ctx context.Context, uids []store.UID, op store.FlagOp, flags []string, unchangedSince uint64) (store.StoreResult, error) {
	flags, err := store.NormalizeFlags(flags)
	if err != nil {
		return store.StoreResult{}, err
	}
	h.u.mu.Lock()
	defer h.u.mu.Unlock()
	if err := h.checkLocked(); err != nil {
		return store.StoreResult{}, err
	}
	var res store.StoreResult
	for _, uid := range store.UniqueUIDs(uids) {
		i, ok := h.mb.find(uid)
		if !ok {
			continue
		}
		r := &h.mb.msgs[i]
		if unchangedSince > 0 && r.ModSeq > unchangedSince {
			res.Modified = append(res.Modified, uid)
			continue
		}
		next, changed := store.ApplyFlags(r.Flags, op, flags)
		if !changed {
			continue
		}
		h.mb.highestModSeq++
		r.Flags, r.ModSeq = next, h.mb.highestModSeq
		h.mb.keywords = store.AddKeywords(h.mb.keywords, next)
		res.Updated = append(res.Updated, r.Message)
		h.view.Touch(uid, r.ModSeq)
	}
	if len(res.Updated) > 0 {
		h.mb.notifier.Notify()
	}
	return res, nil
}

func (h *handle) Copy(ctx context.Context, uids []store.UID, dest string) (store.CopyResult, error) {
	h.u.mu.Lock()
	defer h.u.mu.Unlock()
	return h.copyLocked(uids, dest)
}

func (h *handle) copyLocked(uids []store.UID, dest string) (store.CopyResult, error) {
	if err := h.checkLocked(); err != nil {
		return store.CopyResult{}, err
	}
	m := &mailboxes{u: h.u}
	dst, _, err := m.get(dest)
	if err != nil {
		return store.CopyResult{}, err
	}
	var recs []rec
	var size int64
	for _, uid := range store.UniqueUIDs(uids) {
		if i, ok := h.mb.find(uid); ok {
			recs = append(recs, h.mb.msgs[i])
			size += h.mb.msgs[i].Size
		}
	}
	if err := h.u.checkQuotaLocked(size); err != nil {
		return store.CopyResult{}, err
	}
	res := store.CopyResult{UIDValidity: dst.uidValidity}
	for _, r := range recs {
		res.SourceUIDs = append(res.SourceUIDs, r.UID)
		r.ID = h.u.s.newID()
		res.DestUIDs = append(res.DestUIDs, dst.appendLocked(r))
	}
	return res, nil
}

func (h *handle) Move(ctx context.Context, uids []store.UID, dest string) (store.CopyResult, []store.Expunged, error) {
	h.u.mu.Lock()
	defer h.u.mu.Unlock()
	res, err := h.copyLocked(uids, dest)
	if err != nil {
		return res, nil, err
	}
	h.removeLocked(res.SourceUIDs)
	return res, h.view.Remove(res.SourceUIDs), nil
}

// removeLocked expunges uids from the mailbox.
func (h *handle) removeLocked(uids []store.UID) {
	if len(uids) == 0 {
		return
	}
	kept := h.mb.msgs[:0]
	for _, r := range h.mb.msgs {
		if _, gone := store.SearchUID(uids, r.UID); !gone {
			kept = append(kept, r)
		}
	}
	clear(h.mb.msgs[len(kept):])
	h.mb.msgs = kept
	h.mb.highestModSeq++ // an expunge is a change (RFC 7162 section 3.2.10)
	h.mb.notifier.Notify()
}

func (h *handle) Expunge(ctx context.Context, uids []store.UID) ([]store.Expunged, error) {
	h.u.mu.Lock()
	defer h.u.mu.Unlock()
	if err := h.checkLocked(); err != nil {
		return nil, err
	}
	var only []store.UID
	if uids != nil {
		only = store.UniqueUIDs(uids)
	}
	var gone []store.UID
	for _, r := range h.mb.msgs {
		if !store.HasFlag(r.Flags, store.FlagDeleted) {
			continue
		}
		if _, ok := store.SearchUID(only, r.UID); uids != nil && !ok {
			continue
		}
		gone = append(gone, r.UID)
	}
	h.removeLocked(gone)
	return h.view.Remove(gone), nil
}

func (h *handle) Poll(ctx context.Context, allowExpunge bool) (store.Changes, error) {
	h.u.mu.Lock()
	defer h.u.mu.Unlock()
	if err := h.checkLocked(); err != nil {
		return store.Changes{}, err
	}
	return h.view.Poll(listing(h.mb.msgs), h.mb.keywords, allowExpunge), nil
}

func (h *handle) Updates() <-chan struct{} { return h.updates }

func (h *handle) Close() error {
	h.u.mu.Lock()
	defer h.u.mu.Unlock()
	if !h.closed {
		h.closed = true
		h.mb.notifier.Unsubscribe(h.updates)
	}
	return nil
}

var _ store.Mailbox = (*handle)(nil)
