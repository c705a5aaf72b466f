package store

import (
	"slices"
	"strings"
	"sync"
)

// View is one session's picture of a selected mailbox: the UIDs it has
// been told about, in sequence-number order, and the MODSEQ of each as last
// reported. Both store implementations keep one per Mailbox handle and
// compute Poll's Changes with it, so that sessions behave alike whatever
// the backend. A View is not safe for concurrent use.
type View struct {
	uids     []UID
	modseqs  []uint64            // modseqs[i] is the last reported MODSEQ of uids[i]
	keywords map[string]struct{} // lower-cased keywords the session has been sent
	// marked and markedN are the HIGHESTMODSEQ and message count of the
	// mailbox that the view last caught up with (Mark); 0 when unknown.
	marked  uint64
	markedN int
	// heldBack: the last Poll kept expunged messages in the view, which
	// a later Poll must report even if the mailbox does not change.
	heldBack bool
	// shared: uids and modseqs belong to others too (NewSharedView).
	shared bool
}

// Mark records that the view is up to date with the mailbox whose
// HIGHESTMODSEQ is highestModSeq and which holds n messages: right after
// NewView, or after a Poll of that state. Every change to a mailbox (a new
// message, a flag change, an expunge) raises its HIGHESTMODSEQ (RFC 7162
// section 3.1), so while it stays the same the view has nothing to learn
// and Current spares a walk over every message: what a Poll after every
// command costs on a mailbox of 100,000.
func (v *View) Mark(highestModSeq uint64, n int) {
	if v.heldBack {
		highestModSeq, n = 0, 0
	}
	v.marked, v.markedN = highestModSeq, n
}

// Current reports whether a Poll of the mailbox with this HIGHESTMODSEQ
// and n messages would find nothing to announce (see Mark).
func (v *View) Current(highestModSeq uint64, n int) bool {
	return v.marked != 0 && v.marked == highestModSeq && v.markedN == n
}

// Listing is a mailbox's messages in UID order, as View and Summary read
// them. A store may keep them in whatever form suits it and make a Message
// only when one is asked for.
type Listing interface {
	Len() int
	UID(i int) UID
	ModSeq(i int) uint64
	Message(i int) Message
}

// NewView returns a view of the messages of l, with the mailbox's keywords
// already known to the session (SELECT sends FLAGS).
func NewView(l Listing, keywords []string) *View {
	n := l.Len()
	v := &View{
		uids:     make([]UID, n),
		modseqs:  make([]uint64, n),
		keywords: make(map[string]struct{}, len(keywords)),
	}
	for i := range n {
		v.uids[i], v.modseqs[i] = l.UID(i), l.ModSeq(i)
	}
	for _, k := range keywords {
		v.keywords[strings.ToLower(k)] = struct{}{}
	}
	return v
}

// NewSharedView is NewView from the UIDs and MODSEQs of the mailbox's
// messages, in UID order, which the view shares with others (a store
// makes them once for every SELECT of the same state): it copies them
// only when it changes them, so that selecting a large mailbox again does
// not copy 100,000 UIDs. The caller must not modify them either.
func NewSharedView(uids []UID, modseqs []uint64, keywords []string) *View {
	v := &View{uids: uids, modseqs: modseqs, shared: true, keywords: make(map[string]struct{}, len(keywords))}
	for _, k := range keywords {
		v.keywords[strings.ToLower(k)] = struct{}{}
	}
	return v
}

// own makes the view's slices its own before it changes them.
func (v *View) own() {
	if v.shared {
		v.uids, v.modseqs, v.shared = slices.Clone(v.uids), slices.Clone(v.modseqs), false
	}
}

// UIDs returns the view; the slice must not be modified.
func (v *View) UIDs() []UID { return v.uids }

// Poll compares the view with the mailbox's current messages l, updates
// the view and returns what to announce (see Changes). keywords are the
// mailbox's keywords now.
func (v *View) Poll(l Listing, keywords []string, allowExpunge bool) Changes {
	var ch Changes
	n := l.Len()
	v.marked, v.markedN = 0, 0 // the caller marks the state it polled
	old := v.uids
	uids := make([]UID, 0, max(len(old), n))
	mods := make([]uint64, 0, cap(uids))
	var expunged []int // indexes into old
	var updated []int  // indexes into uids
	j := 0
	for i, uid := range old {
		for j < n && l.UID(j) < uid {
			j++ // not in the view yet below its last UID: cannot happen, UIDs only grow
		}
		if j < n && l.UID(j) == uid {
			mod := v.modseqs[i]
			if m := l.ModSeq(j); m > mod {
				updated = append(updated, len(uids))
				mod = m
			}
			uids, mods = append(uids, uid), append(mods, mod)
			j++
			continue
		}
		expunged = append(expunged, i)
		if !allowExpunge {
			uids, mods = append(uids, uid), append(mods, v.modseqs[i])
		}
	}
	for ; j < n; j++ {
		if len(old) > 0 && l.UID(j) <= old[len(old)-1] {
			continue
		}
		m := l.Message(j)
		uids, mods = append(uids, m.UID), append(mods, m.ModSeq)
		ch.New = append(ch.New, m)
	}
	if allowExpunge {
		// Highest sequence number first: announcing it does not shift the
		// ones still to come.
		for k := len(expunged) - 1; k >= 0; k-- {
			i := expunged[k]
			ch.Expunged = append(ch.Expunged, Expunged{UID: old[i], SeqNum: uint32(i + 1)})
		}
	}
	v.uids, v.modseqs, v.shared = uids, mods, false
	v.heldBack = !allowExpunge && len(expunged) > 0
	for _, k := range updated {
		ch.Updated = append(ch.Updated, Updated{SeqNum: uint32(k + 1), Message: l.Message(find(l, uids[k]))})
	}
	if len(ch.New) > 0 {
		ch.NumMessages = uint32(len(uids))
	}
	for _, k := range keywords {
		if _, ok := v.keywords[strings.ToLower(k)]; !ok {
			ch.Keywords = slices.Clone(keywords)
			break
		}
	}
	for _, k := range ch.Keywords {
		v.keywords[strings.ToLower(k)] = struct{}{}
	}
	return ch
}

// find returns the index of uid in l, which holds it.
func find(l Listing, uid UID) int {
	lo, hi := 0, l.Len()
	for lo < hi {
		mid := (lo + hi) / 2
		if l.UID(mid) < uid {
			lo = mid + 1
		} else {
			hi = mid
		}
	}
	return lo
}

// Touch records that the session was told uid's state at modseq (its own
// STORE answered with FETCH, or a FETCH FLAGS), so Poll does not repeat it.
func (v *View) Touch(uid UID, modseq uint64) {
	if i, ok := slices.BinarySearch(v.uids, uid); ok && modseq > v.modseqs[i] {
		v.own()
		v.modseqs[i] = modseq
	}
}

// TouchAll is Touch for each of msgs. When they are in UID order, as
// FETCH 1:* asks for them, it walks the view once instead of searching it
// for each.
func (v *View) TouchAll(msgs []Message) {
	i := 0
	for k := range msgs {
		m := &msgs[k]
		if k > 0 && m.UID <= msgs[k-1].UID {
			i = 0 // out of order: search from the start again
		}
		if i < len(v.uids) && v.uids[i] != m.UID {
			j, _ := slices.BinarySearch(v.uids[i:], m.UID)
			i += j
		}
		if i < len(v.uids) && v.uids[i] == m.UID {
			if m.ModSeq > v.modseqs[i] {
				v.own()
				v.modseqs[i] = m.ModSeq
			}
			i++
		}
	}
}

// Remove takes uids out of the view (this session's own EXPUNGE or MOVE)
// and returns the EXPUNGE responses to send, highest sequence number first.
func (v *View) Remove(uids []UID) []Expunged {
	var idx []int
	for _, uid := range uids {
		if i, ok := slices.BinarySearch(v.uids, uid); ok {
			idx = append(idx, i)
		}
	}
	slices.Sort(idx)
	idx = slices.Compact(idx)
	if len(idx) > 0 {
		v.own()
	}
	out := make([]Expunged, 0, len(idx))
	for k := len(idx) - 1; k >= 0; k-- {
		i := idx[k]
		out = append(out, Expunged{UID: v.uids[i], SeqNum: uint32(i + 1)})
		v.uids = slices.Delete(v.uids, i, i+1)
		v.modseqs = slices.Delete(v.modseqs, i, i+1)
	}
	return out
}

// Notifier fans a "something changed" signal out to subscribers without
// blocking: each subscriber's channel holds at most one pending value, so a
// slow reader sees one wake-up for many changes and then polls once.
type Notifier struct {
	mu   sync.Mutex // protects subs
	subs map[chan struct{}]struct{}
}

// Subscribe returns a new channel that Notify signals.
func (n *Notifier) Subscribe() chan struct{} {
	ch := make(chan struct{}, 1)
	n.mu.Lock()
	if n.subs == nil {
		n.subs = make(map[chan struct{}]struct{})
	}
	n.subs[ch] = struct{}{}
	n.mu.Unlock()
	return ch
}

// Unsubscribe stops signalling ch and reports how many subscribers remain.
func (n *Notifier) Unsubscribe(ch chan struct{}) int {
	n.mu.Lock()
	defer n.mu.Unlock()
	delete(n.subs, ch)
	return len(n.subs)
}

// Len reports the number of subscribers.
func (n *Notifier) Len() int {
	n.mu.Lock()
	defer n.mu.Unlock()
	return len(n.subs)
}

// Notify signals every subscriber.
func (n *Notifier) Notify() {
	n.mu.Lock()
	defer n.mu.Unlock()
	for ch := range n.subs {
		select {
		case ch <- struct{}{}:
		default:
		}
	}
}

// Summary counts what Status reports about the messages of l.
func Summary(l Listing) (unseen, deleted uint32, size int64) {
	for i := range l.Len() {
		m := l.Message(i)
		if !HasFlag(m.Flags, FlagSeen) {
			unseen++
		}
		if HasFlag(m.Flags, FlagDeleted) {
			deleted++
		}
		size += m.Size
	}
	return unseen, deleted, size
}

// AddKeywords adds the keywords among flags to the sorted set ks
// (compared case-insensitively) and returns it.
func AddKeywords(ks []string, flags []string) []string {
	for _, k := range Keywords(flags) {
		if !HasFlag(ks, k) {
			ks = append(ks, k)
			slices.Sort(ks)
		}
	}
	return ks
}

// NextUIDValidity returns a new UIDVALIDITY after last: the current Unix
// time, like dovecot, unless that does not exceed last (a clock step back,
// or several mailboxes made within a second).
func NextUIDValidity(last uint32, nowUnix int64) uint32 {
	v := uint32(nowUnix)
	if nowUnix <= 0 || nowUnix > int64(^uint32(0)) || v <= last {
		v = last + 1
	}
	if v == 0 { // wrapped: 0 is not a valid UIDVALIDITY
		v = 1
	}
	return v
}

// UniqueUIDs returns uids sorted and without duplicates, as a new slice.
func UniqueUIDs(uids []UID) []UID {
	out := slices.Clone(uids)
	slices.Sort(out)
	return slices.Compact(out)
}

// SearchUID finds uid in sorted uids.
func SearchUID(sorted []UID, uid UID) (int, bool) {
	return slices.BinarySearch(sorted, uid)
}
