// Package memstore is an in-memory store.Store: the reference
// implementation of the store contract and a test double for the
// protocol servers, in the spirit of go-imap's imapmemserver. It keeps
// everything in one process and loses it on exit.
package memstore

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/postcove/postcove/services/mailbox/internal/store"
)

// Options tune a Store.
type Options struct {
	// MaxMessageSize is the largest message accepted, in bytes; 0 means
	// no limit.
	MaxMessageSize int64
}

// Store is an in-memory store.Store.
type Store struct {
	opts Options

	mu              sync.Mutex // protects users, lastUIDValidity, nextID, closed
	users           map[string]*user
	lastUIDValidity uint32
	nextID          uint64
	closed          bool
}

var (
	_ store.Store     = (*Store)(nil)
	_ store.Mailboxes = (*mailboxes)(nil)
)

// New returns an empty store.
func New(opts Options) *Store {
	return &Store{opts: opts, users: make(map[string]*user)}
}

// user is one user's mail.
type user struct {
	s *Store

	mu         sync.Mutex // protects every field below and the mailboxes' contents
	mailboxes  map[string]*mailbox
	subscribed map[string]bool
	quotaLimit int64
}

// mailbox is one mailbox; its fields are protected by its user's mu, except
// notifier which locks itself.
type mailbox struct {
	name          string
	uidValidity   uint32
	uidNext       store.UID
	highestModSeq uint64
	msgs          []rec    // in UID order
	keywords      []string // every keyword ever used here, sorted
	deleted       bool
	notifier      store.Notifier
}

type rec struct {
	store.Message
	body []byte
}

// listing is msgs as a store.Listing.
type listing []rec

func (l listing) Len() int                    { return len(l) }
func (l listing) UID(i int) store.UID         { return l[i].UID }
func (l listing) ModSeq(i int) uint64         { return l[i].ModSeq }
func (l listing) Message(i int) store.Message { return l[i].Message }

func (mb *mailbox) find(uid store.UID) (int, bool) {
	return slices.BinarySearchFunc(mb.msgs, uid, func(r rec, uid store.UID) int {
		return int(r.UID) - int(uid)
	})
}

// User implements store.Store.
func (s *Store) User(ctx context.Context, address string) (store.Mailboxes, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, store.ErrClosed
	}
	u, ok := s.users[address]
	if !ok {
		u = &user{s: s, mailboxes: make(map[string]*mailbox), subscribed: make(map[string]bool)}
		for _, name := range store.DefaultMailboxes() {
			u.mailboxes[name] = s.newMailboxLocked(name)
			u.subscribed[name] = true
		}
		s.users[address] = u
	}
	return &mailboxes{u: u}, nil
}

func (s *Store) newMailboxLocked(name string) *mailbox {
	s.lastUIDValidity = store.NextUIDValidity(s.lastUIDValidity, time.Now().Unix())
	return &mailbox{name: name, uidValidity: s.lastUIDValidity, uidNext: 1}
}

func (s *Store) newMailbox(name string) *mailbox {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.newMailboxLocked(name)
}

func (s *Store) newID() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.nextID++
	return "m" + strconv.FormatUint(s.nextID, 10)
}

// Close implements store.Store.
func (s *Store) Close() error {
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
	return nil
}

// mailboxes implements store.Mailboxes.
type mailboxes struct{ u *user }

func (m *mailboxes) get(name string) (*mailbox, string, error) {
	name, err := store.CanonicalName(name)
	if err != nil {
		return nil, "", err
	}
	mb, ok := m.u.mailboxes[name]
	if !ok {
		return nil, name, fmt.Errorf("%w: %q", store.ErrNoSuchMailbox, name)
	}
	return mb, name, nil
}

func (m *mailboxes) List(ctx context.Context) ([]store.MailboxInfo, error) {
	m.u.mu.Lock()
	defer m.u.mu.Unlock()
	var out []store.MailboxInfo
	for name := range m.u.mailboxes {
		out = append(out, store.MailboxInfo{Name: name, SpecialUse: store.SpecialUse(name), Subscribed: m.u.subscribed[name]})
	}
	slices.SortFunc(out, func(a, b store.MailboxInfo) int { return store.CompareNames(a.Name, b.Name) })
	return out, nil
}

func (m *mailboxes) Subscriptions(ctx context.Context) ([]string, error) {
	m.u.mu.Lock()
	defer m.u.mu.Unlock()
	var out []string
	for name, ok := range m.u.subscribed {
		if ok {
			out = append(out, name)
		}
	}
	slices.SortFunc(out, store.CompareNames)
	return out, nil
}

func (m *mailboxes) Create(ctx context.Context, name string) error {
	name, err := store.CanonicalName(name)
	if err != nil {
		return err
	}
	mb := m.u.s.newMailbox(name)
	m.u.mu.Lock()
	defer m.u.mu.Unlock()
	if _, ok := m.u.mailboxes[name]; ok {
		return fmt.Errorf("%w: %q", store.ErrMailboxExists, name)
	}
	m.u.mailboxes[name] = mb
	return nil
}

func (m *mailboxes) Delete(ctx context.Context, name string) error {
	m.u.mu.Lock()
	defer m.u.mu.Unlock()
	mb, name, err := m.get(name)
	if err != nil {
		return err
	}
	if name == store.Inbox {
		return fmt.Errorf("%w: delete INBOX", store.ErrNotAllowed)
	}
	mb.deleted = true
	delete(m.u.mailboxes, name)
	mb.notifier.Notify()
	return nil
}

func (m *mailboxes) Rename(ctx context.Context, oldName, newName string) error {
	newName, err := store.CanonicalName(newName)
	if err != nil {
		return err
	}
	oldCanon, err := store.CanonicalName(oldName)
	if err != nil {
		return err
	}
	if oldCanon == store.Inbox {
		return store.RenameInbox(ctx, m, newName)
	}
	m.u.mu.Lock()
	defer m.u.mu.Unlock()
	if _, _, err := m.get(oldCanon); err != nil {
		return err
	}
	if newName == oldCanon || store.IsInferior(newName, oldCanon) {
		return fmt.Errorf("%w: rename %q to %q", store.ErrNotAllowed, oldCanon, newName)
	}
	if _, ok := m.u.mailboxes[newName]; ok {
		return fmt.Errorf("%w: %q", store.ErrMailboxExists, newName)
	}
	// Check every target first, so a refused rename changes nothing.
	moves := map[string]*mailbox{}
	for name, mb := range m.u.mailboxes {
		if name != oldCanon && !store.IsInferior(name, oldCanon) {
			continue
		}
		to := newName + name[len(oldCanon):]
		if _, ok := m.u.mailboxes[to]; ok {
			return fmt.Errorf("%w: %q", store.ErrMailboxExists, to)
		}
		moves[name] = mb
	}
	for name := range moves {
		delete(m.u.mailboxes, name)
	}
	for name, mb := range moves {
		mb.name = newName + name[len(oldCanon):]
		m.u.mailboxes[mb.name] = mb
	}
	return nil
}

func (m *mailboxes) SetSubscribed(ctx context.Context, name string, subscribed bool) error {
	name, err := store.CanonicalName(name)
	if err != nil {
		return err
	}
	m.u.mu.Lock()
	defer m.u.mu.Unlock()
	if subscribed {
		m.u.subscribed[name] = true
	} else {
		delete(m.u.subscribed, name)
	}
	return nil
}

func (m *mailboxes) Status(ctx context.Context, name string) (store.Status, error) {
	m.u.mu.Lock()
	defer m.u.mu.Unlock()
	mb, _, err := m.get(name)
	if err != nil {
		return store.Status{}, err
	}
	return mb.statusLocked(), nil
}

func (mb *mailbox) statusLocked() store.Status {
	unseen, deleted, size := store.Summary(listing(mb.msgs))
	return store.Status{
		Name:          mb.name,
		UIDValidity:   mb.uidValidity,
		UIDNext:       mb.uidNext,
		HighestModSeq: mb.highestModSeq,
		Messages:      uint32(len(mb.msgs)),
		Unseen:        unseen,
		Deleted:       deleted,
		Size:          size,
		Keywords:      slices.Clone(mb.keywords),
	}
}

func (m *mailboxes) Append(ctx context.Context, name string, r io.Reader, opts store.AppendOptions) (store.AppendResult, error) {
	flags, err := store.NormalizeFlags(opts.Flags)
	if err != nil {
		return store.AppendResult{}, err
	}
	var buf bytes.Buffer
	src := r
	if max := m.u.s.opts.MaxMessageSize; max > 0 {
		src = io.LimitReader(r, max+1)
	}
	if _, err := buf.ReadFrom(src); err != nil {
		return store.AppendResult{}, fmt.Errorf("read message: %w", err)
	}
	if max := m.u.s.opts.MaxMessageSize; max > 0 && int64(buf.Len()) > max {
		return store.AppendResult{}, fmt.Errorf("%w: more than %d bytes", store.ErrTooBig, max)
	}
	date := opts.InternalDate
	if date.IsZero() {
		date = time.Now()
	}
	id := m.u.s.newID()
	m.u.mu.Lock()
	defer m.u.mu.Unlock()
	mb, _, err := m.get(name)
	if err != nil {
		return store.AppendResult{}, err
	}
	if err := m.u.checkQuotaLocked(int64(buf.Len())); err != nil {
		return store.AppendResult{}, err
	}
	uid := mb.appendLocked(rec{Message: store.Message{ID: id, Flags: flags, Size: int64(buf.Len()), InternalDate: date}, body: buf.Bytes()})
	return store.AppendResult{UIDValidity: mb.uidValidity, UID: uid, Size: int64(buf.Len())}, nil
}

func (mb *mailbox) appendLocked(r rec) store.UID {
	r.UID = mb.uidNext
	mb.uidNext++
	mb.highestModSeq++
	r.ModSeq = mb.highestModSeq
	mb.msgs = append(mb.msgs, r)
	mb.keywords = store.AddKeywords(mb.keywords, r.Flags)
	mb.notifier.Notify()
	return r.UID
}

func (u *user) usageLocked() store.Quota {
	q := store.Quota{LimitBytes: u.quotaLimit}
	for _, mb := range u.mailboxes {
		for _, r := range mb.msgs {
			q.UsedBytes += r.Size
			q.UsedMessages++
		}
	}
	return q
}

func (u *user) checkQuotaLocked(add int64) error {
	q := u.usageLocked()
	if q.LimitBytes > 0 && q.UsedBytes+add > q.LimitBytes {
		return fmt.Errorf("%w: %d of %d bytes used, %d more", store.ErrQuotaExceeded, q.UsedBytes, q.LimitBytes, add)
	}
	return nil
}

func (m *mailboxes) Quota(ctx context.Context) (store.Quota, error) {
	m.u.mu.Lock()
	defer m.u.mu.Unlock()
	return m.u.usageLocked(), nil
}

func (m *mailboxes) SetQuotaLimit(ctx context.Context, limitBytes int64) error {
	if limitBytes < 0 {
		return fmt.Errorf("negative quota limit %d", limitBytes)
	}
	m.u.mu.Lock()
	defer m.u.mu.Unlock()
	m.u.quotaLimit = limitBytes
	return nil
}

func (m *mailboxes) Select(ctx context.Context, name string) (store.Mailbox, error) {
	m.u.mu.Lock()
	defer m.u.mu.Unlock()
	mb, _, err := m.get(name)
	if err != nil {
		return nil, err
	}
	return &handle{
		u:           m.u,
		mb:          mb,
		uidValidity: mb.uidValidity,
		view:        store.NewView(listing(mb.msgs), mb.keywords),
		updates:     mb.notifier.Subscribe(),
		selected:    mb.statusLocked(),
	}, nil
}

func (m *mailboxes) Close() error { return nil }
