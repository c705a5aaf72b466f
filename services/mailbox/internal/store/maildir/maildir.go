// Package maildir is the production store.Store: Maildir++ folders on disk
// in the layout dovecot uses, so that an operator can point postcove at an
// existing dovecot mail tree (and back).
//
// References: the Maildir specification (https://cr.yp.to/proto/maildir.html),
// Maildir++ (https://www.courier-mta.org/imap/README.maildirquota.html, folders
// as ".Name" directories and the maildirsize quota file) and dovecot's
// Maildir documentation (https://doc.dovecot.org/admin_manual/mailbox_formats/maildir/:
// dovecot-uidlist, dovecot-keywords, ",S=" and ",W=" in file names).
//
// Layout, for user local@domain under Options.Root:
//
//	<root>/<domain>/<local>/Maildir/            INBOX (cur/ new/ tmp/)
//	<root>/<domain>/<local>/Maildir/.Sent/      Sent, and .Drafts .Junk .Trash
//	<root>/<domain>/<local>/Maildir/.A.B/       A/B (levels in modified UTF-7)
//	Maildir/maildirsize                         Maildir++ quota
//	Maildir/subscriptions                       dovecot's subscription list
//	<folder>/postcove-index                     UIDs, flags, MODSEQ (index.go)
//	<folder>/postcove-index.scanned             cur/'s mtime at its last full scan
//
// A delivery writes the message to tmp/ and fsyncs it, then, holding the
// folder lock, renames it into cur/ under a name that carries its UID
// (",U=<uid>"), fsyncs cur/ and appends its index record: only then does
// Append return. Those two fsyncs are all a delivery costs. The record is
// not fsynced: after a crash that lost it, the file still says its UID and
// the next start's scan of cur/ indexes it again under that UID, with the
// same UIDVALIDITY (folder.firstScan, folder.reconcile). The index is
// fsynced before a session is shown what it holds (folder.syncForReaders).
// Flags live in the index; the system flags are mirrored into the file
// name (":2,FRS") so that dovecot and Maildir MUAs see them too.
//
// IMAP rules kept: UIDs ascend and are never reused under one UIDVALIDITY;
// an index that is lost or corrupt is rebuilt from the files with a new
// UIDVALIDITY unless dovecot's UIDs can be imported (RFC 3501 section
// 2.3.1.1, RFC 9051 section 2.3.1.1).
package maildir

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/postcove/postcove/services/mailbox/internal/store"
)

// Files of a user's Maildir besides the INBOX folder's own.
const (
	userLockName    = "postcove.lock" // flock: folder create/delete/rename, subscriptions
	uidValidityName = "postcove-uidvalidity"
	folderMarker    = "maildirfolder" // Maildir++: present in every subfolder
)

// Options configure a Store.
type Options struct {
	// Root holds <domain>/<local>/Maildir for every user. Created if
	// missing.
	Root string
	// MaxMessageSize is the largest message Append accepts; 0: no limit.
	MaxMessageSize int64
	// Hostname goes into new file names; default os.Hostname().
	Hostname string
	// PollInterval is how often a folder that a session watches (Updates)
	// checks for changes made by other processes; default 250ms.
	PollInterval time.Duration
	// MaxIdleFolders is how many folder states (parsed indexes) are kept
	// when no handle uses them, so that deliveries to a mailbox nobody has
	// open do not re-read its index; default 256.
	MaxIdleFolders int
	// MaxIdleMessages bounds the messages of those idle states together
	// (about 180 bytes each in memory); past it the least recently used
	// are dropped once idle for idleGrace. Default 50,000: a few
	// mailboxes of 100,000 messages left cached after their sessions end
	// would otherwise hold tens of MB each until 256 other folders pushed
	// them out. Reading a 100,000-message index again costs ~0.2 s.
	MaxIdleMessages int

	// idleGrace is how long an idle folder is kept even over
	// MaxIdleMessages, so that a burst of deliveries to a big mailbox
	// nobody has open reads its index once, not once per message; default
	// defaultIdleGrace, shorter in tests.
	idleGrace time.Duration
	// bigState is the number of messages from which dropping a state, or
	// building one, is worth returning memory to the OS for (returnMemory);
	// default bigRebuild, smaller in tests.
	bigState int
	// returnMemory gives the memory of dropped states back to the OS;
	// default debug.FreeOSMemory, counted in tests.
	returnMemory func()
}

const defaultIdleGrace = 5 * time.Second

// Store is a Maildir++ store.Store. Several Stores, in one process or in
// several, may share a Root: they coordinate through file locks.
type Store struct {
	opts    Options
	pid     int
	counter atomic.Uint64 // the Q<n> part of unique file names

	mu      sync.Mutex // protects folders, closed and each folder's refs and lastUsed
	folders map[string]*folder
	closed  bool

	quotaMu sync.Mutex           // protects quotas
	quotas  map[string]quotaSeen // user's Maildir → its maildirsize as last parsed
}

var (
	_ store.Store     = (*Store)(nil)
	_ store.Mailboxes = (*mailboxes)(nil)
	_ store.Mailbox   = (*handle)(nil)
)

// Open returns a Store on opts.Root.
func Open(opts Options) (*Store, error) {
	if opts.Root == "" {
		return nil, errors.New("maildir: no root directory")
	}
	root, err := filepath.Abs(opts.Root)
	if err != nil {
		return nil, fmt.Errorf("maildir root: %w", err)
	}
	opts.Root = root
	if err := os.MkdirAll(root, 0o700); err != nil {
		return nil, fmt.Errorf("maildir root: %w", err)
	}
	if opts.Hostname == "" {
		opts.Hostname, _ = os.Hostname()
		if opts.Hostname == "" {
			opts.Hostname = "localhost"
		}
	}
	if opts.PollInterval <= 0 {
		opts.PollInterval = 250 * time.Millisecond
	}
	if opts.MaxIdleFolders <= 0 {
		opts.MaxIdleFolders = 256
	}
	if opts.MaxIdleMessages <= 0 {
		opts.MaxIdleMessages = 50_000
	}
	if opts.idleGrace <= 0 {
		opts.idleGrace = defaultIdleGrace
	}
	if opts.bigState <= 0 {
		opts.bigState = bigRebuild
	}
	if opts.returnMemory == nil {
		opts.returnMemory = debug.FreeOSMemory
	}
	return &Store{opts: opts, pid: os.Getpid(), folders: make(map[string]*folder), quotas: make(map[string]quotaSeen)}, nil
}

// Close releases every cached folder. Handles still open fail afterwards.
func (s *Store) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	for dir, f := range s.folders {
		f.mu.Lock()
		f.close()
		f.mu.Unlock()
		delete(s.folders, dir)
	}
	return nil
}

// close releases a folder's files and stops its watcher (f.mu held).
func (f *folder) close() {
	if f.stop != nil {
		close(f.stop)
		f.stop = nil
	}
	if f.log != nil {
		// Not needed for safety (see commitAdded), but it spares the next
		// process a rescan of what this one delivered.
		_ = f.syncForReaders()
		f.log.Close()
		f.log = nil
	}
	f.lock.close()
	if f.dirFile != nil {
		f.dirFile.Close()
		f.dirFile = nil
	}
	f.loaded = false
	f.st = indexState{} // its memory goes even if something still refers to f
}

// acquire returns the shared folder state of dir, counting a reference.
func (s *Store) acquire(user, dir string) (*folder, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, store.ErrClosed
	}
	f, ok := s.folders[dir]
	if !ok {
		f = &folder{s: s, user: user, dir: dir, lock: lockFile{path: filepath.Join(dir, indexLockName)}}
		s.folders[dir] = f
	}
	f.refs++
	return f, nil
}

// release drops a reference. Idle folders beyond MaxIdleFolders are
// closed, least recently used first, and so are those beyond
// MaxIdleMessages once idle for idleGrace.
func (s *Store) release(f *folder) {
	if dropped := s.releaseRef(f); dropped >= s.opts.bigState {
		// The runtime sizes the heap it keeps on what was live at the last
		// collection: tens of MB while a 100,000-message state was loaded,
		// which would otherwise stay resident, filled with garbage, until
		// the next collection, long after the state is gone. Returned in
		// the background: the session that happened to release it should
		// not wait for a collection.
		go s.opts.returnMemory()
	}
}

// releaseRef is release's bookkeeping; it returns how many messages the
// states it dropped held.
func (s *Store) releaseRef(f *folder) (dropped int) {
	f.mu.Lock()
	msgs := len(f.st.msgs)
	f.mu.Unlock()
	s.mu.Lock()
	defer s.mu.Unlock()
	f.refs--
	if f.refs > 0 {
		return 0
	}
	now := time.Now()
	f.lastUsed, f.idleMsgs = now, msgs
	var idle []*folder
	idleMsgs := 0
	for _, g := range s.folders {
		if g.refs == 0 {
			idle = append(idle, g)
			idleMsgs += g.idleMsgs
		}
	}
	if len(idle) <= s.opts.MaxIdleFolders && idleMsgs <= s.opts.MaxIdleMessages {
		return 0
	}
	slices.SortFunc(idle, func(a, b *folder) int { return a.lastUsed.Compare(b.lastUsed) })
	kept := len(idle)
	for _, g := range idle { // oldest first
		overCount := kept > s.opts.MaxIdleFolders
		overMsgs := idleMsgs > s.opts.MaxIdleMessages && now.Sub(g.lastUsed) >= s.opts.idleGrace
		if !overCount && !overMsgs {
			break
		}
		delete(s.folders, g.dir)
		g.mu.Lock()
		g.close()
		g.mu.Unlock()
		kept--
		idleMsgs -= g.idleMsgs
		dropped += g.idleMsgs
	}
	return dropped
}

// forget drops the cached state of dir and the folders below it, after
// they were deleted or renamed away, so the name can start afresh.
func (s *Store) forget(dir string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for d, f := range s.folders {
		if d == dir || strings.HasPrefix(d, dir+".") {
			if f.refs == 0 {
				delete(s.folders, d)
				f.mu.Lock()
				f.close()
				f.mu.Unlock()
			}
		}
	}
}

// nextUIDValidity issues a UIDVALIDITY for a folder of the user whose
// Maildir is user: the time, or one more than the last issued for this
// user if that is not larger, so that a folder deleted and created again,
// or whose index is rebuilt, never gets a value it had before.
func (s *Store) nextUIDValidity(user string) (uint32, error) {
	var v uint32
	path := filepath.Join(user, uidValidityName)
	err := withLock(path+".lock", func() error {
		var last uint64
		if data, err := os.ReadFile(path); err == nil {
			last, _ = strconv.ParseUint(strings.TrimSpace(string(data)), 10, 32)
		}
		v = store.NextUIDValidity(uint32(last), time.Now().Unix())
		return writeFileSync(path, fmt.Appendf(nil, "%d\n", v))
	})
	if err != nil {
		return 0, fmt.Errorf("issue uidvalidity: %w", err)
	}
	return v, nil
}

// newUnique returns the unique part of a new message file name.
func (s *Store) newUnique() string {
	var rnd [4]byte
	_, _ = rand.Read(rnd[:])
	return uniqueName(time.Now(), s.pid, s.counter.Add(1), hex.EncodeToString(rnd[:]), s.opts.Hostname)
}

// User implements store.Store.
func (s *Store) User(ctx context.Context, address string) (store.Mailboxes, error) {
	local, domain, ok := strings.Cut(address, "@")
	if !ok || !validPathPart(local) || !validPathPart(domain) || strings.Contains(domain, "@") {
		return nil, fmt.Errorf("%w: user %q", store.ErrInvalidName, address)
	}
	s.mu.Lock()
	closed := s.closed
	s.mu.Unlock()
	if closed {
		return nil, store.ErrClosed
	}
	m := &mailboxes{s: s, root: filepath.Join(s.opts.Root, domain, local, "Maildir")}
	if err := m.ensure(); err != nil {
		return nil, err
	}
	return m, nil
}

// validPathPart reports whether a local part or domain can be one
// directory name: not empty, not starting with "." (so not "." or ".."),
// no "/", no NUL or other control characters, not too long.
func validPathPart(s string) bool {
	if s == "" || len(s) > maxFileName || s[0] == '.' {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c == 0x7f || c == '/' || c == '\\' {
			return false
		}
	}
	return true
}

// mailboxes implements store.Mailboxes for one user.
type mailboxes struct {
	s    *Store
	root string // the user's Maildir
}

func (m *mailboxes) userLock(fn func() error) error {
	return withLock(filepath.Join(m.root, userLockName), fn)
}

// ensure creates a new user's Maildir with the default folders,
// subscribed. cur/ of INBOX is made last: its presence means "done".
func (m *mailboxes) ensure() error {
	if _, err := os.Stat(filepath.Join(m.root, "cur")); err == nil {
		return nil
	}
	if err := os.MkdirAll(m.root, 0o700); err != nil {
		return fmt.Errorf("create maildir: %w", err)
	}
	return m.userLock(func() error {
		if _, err := os.Stat(filepath.Join(m.root, "cur")); err == nil {
			return nil
		}
		var subs []string
		for _, name := range store.DefaultMailboxes() {
			subs = append(subs, name)
			if name == store.Inbox {
				continue
			}
			// Synced by writeSubscriptions, once for all the folders.
			if err := m.createLocked(name, false); err != nil && !errors.Is(err, store.ErrMailboxExists) {
				return err
			}
		}
		// writeSubscriptions fsyncs the Maildir: the folders are durable
		// before cur/, which says they are all there.
		if err := m.writeSubscriptions(subs); err != nil {
			return err
		}
		for _, sub := range []string{"tmp", "new", "cur"} {
			if err := os.Mkdir(filepath.Join(m.root, sub), 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
				return fmt.Errorf("create maildir: %w", err)
			}
		}
		// Make the new directories durable up to the root, so a message
		// fsynced into them later is reachable after a crash.
		for d := m.root; ; d = filepath.Dir(d) {
			if err := syncDir(d); err != nil {
				return err
			}
			if d == m.s.opts.Root || d == filepath.Dir(d) {
				return nil
			}
		}
	})
}

// folderDir validates name and returns it canonical and its directory.
func (m *mailboxes) folderDir(name string) (string, string, error) {
	name, err := store.CanonicalName(name)
	if err != nil {
		return "", "", err
	}
	d, err := diskName(name)
	if err != nil {
		return "", "", err
	}
	return name, filepath.Join(m.root, d), nil
}

// withFolder runs fn on the folder state of name, which must exist.
func (m *mailboxes) withFolder(name string, fn func(f *folder) error) error {
	name, dir, err := m.folderDir(name)
	if err != nil {
		return err
	}
	if _, err := os.Stat(filepath.Join(dir, "cur")); err != nil {
		return fmt.Errorf("%w: %q", store.ErrNoSuchMailbox, name)
	}
	f, err := m.s.acquire(m.root, dir)
	if err != nil {
		return err
	}
	defer m.s.release(f)
	f.mu.Lock()
	defer f.mu.Unlock()
	return fn(f)
}

func (m *mailboxes) List(ctx context.Context) ([]store.MailboxInfo, error) {
	entries, err := os.ReadDir(m.root)
	if err != nil {
		return nil, fmt.Errorf("list folders: %w", err)
	}
	subs, err := m.readSubscriptions()
	if err != nil {
		return nil, err
	}
	out := []store.MailboxInfo{{Name: store.Inbox, Subscribed: subs[store.Inbox]}}
	for _, e := range entries {
		if !e.IsDir() {
			continue
		}
		if name, ok := nameFromDisk(e.Name()); ok {
			out = append(out, store.MailboxInfo{Name: name, SpecialUse: store.SpecialUse(name), Subscribed: subs[name]})
		}
	}
	sortInfos(out[1:])
	return out, nil
}

func (m *mailboxes) Subscriptions(ctx context.Context) ([]string, error) {
	subs, err := m.readSubscriptions()
	if err != nil {
		return nil, err
	}
	return sortedKeys(subs), nil
}

func (m *mailboxes) SetSubscribed(ctx context.Context, name string, subscribed bool) error {
	name, err := store.CanonicalName(name)
	if err != nil {
		return err
	}
	return m.userLock(func() error {
		subs, err := m.readSubscriptions()
		if err != nil {
			return err
		}
		if subs[name] == subscribed {
			return nil
		}
		if subscribed {
			subs[name] = true
		} else {
			delete(subs, name)
		}
		return m.writeSubscriptions(sortedKeys(subs))
	})
}

func (m *mailboxes) Create(ctx context.Context, name string) error {
	name, err := store.CanonicalName(name)
	if err != nil {
		return err
	}
	if name == store.Inbox {
		return fmt.Errorf("%w: %q", store.ErrMailboxExists, name)
	}
	return m.userLock(func() error { return m.createLocked(name, true) })
}

// createLocked makes the folder directory under a temporary name and
// renames it into place, so other processes never see half a folder (user
// lock held). syncParent makes the new entry in the Maildir durable; the
// caller does that itself otherwise.
func (m *mailboxes) createLocked(name string, syncParent bool) error {
	_, dir, err := m.folderDir(name)
	if err != nil {
		return err
	}
	if _, err := os.Lstat(dir); err == nil {
		return fmt.Errorf("%w: %q", store.ErrMailboxExists, name)
	}
	tmp, err := os.MkdirTemp(m.root, "postcove-creating.")
	if err != nil {
		return fmt.Errorf("create %q: %w", name, err)
	}
	defer os.RemoveAll(tmp) // a no-op once renamed
	for _, sub := range []string{"cur", "new", "tmp"} {
		if err := os.Mkdir(filepath.Join(tmp, sub), 0o700); err != nil {
			return fmt.Errorf("create %q: %w", name, err)
		}
	}
	if err := os.WriteFile(filepath.Join(tmp, folderMarker), nil, 0o600); err != nil {
		return fmt.Errorf("create %q: %w", name, err)
	}
	if err := syncDir(tmp); err != nil {
		return err
	}
	if err := os.Rename(tmp, dir); err != nil {
		return fmt.Errorf("create %q: %w", name, err)
	}
	m.s.forget(dir)
	if !syncParent {
		return nil
	}
	return syncDir(m.root)
}

func (m *mailboxes) Delete(ctx context.Context, name string) error {
	name, dir, err := m.folderDir(name)
	if err != nil {
		return err
	}
	if name == store.Inbox {
		return fmt.Errorf("%w: delete INBOX", store.ErrNotAllowed)
	}
	err = m.userLock(func() error {
		if _, err := os.Stat(filepath.Join(dir, "cur")); err != nil {
			return fmt.Errorf("%w: %q", store.ErrNoSuchMailbox, name)
		}
		// Rename first: the folder disappears at once for everyone, then
		// the files go.
		trash, err := os.MkdirTemp(m.root, "postcove-deleting.")
		if err != nil {
			return fmt.Errorf("delete %q: %w", name, err)
		}
		if err := os.Rename(dir, filepath.Join(trash, "f")); err != nil {
			os.Remove(trash)
			return fmt.Errorf("delete %q: %w", name, err)
		}
		if err := syncDir(m.root); err != nil {
			return err
		}
		m.s.forget(dir)
		return os.RemoveAll(trash)
	})
	if err != nil {
		return err
	}
	return m.recalcQuota()
}

func (m *mailboxes) Rename(ctx context.Context, oldName, newName string) error {
	oldName, oldDir, err := m.folderDir(oldName)
	if err != nil {
		return err
	}
	newName, newDir, err := m.folderDir(newName)
	if err != nil {
		return err
	}
	if oldName == store.Inbox {
		return store.RenameInbox(ctx, m, newName)
	}
	if newName == oldName || newName == store.Inbox || store.IsInferior(newName, oldName) {
		return fmt.Errorf("%w: rename %q to %q", store.ErrNotAllowed, oldName, newName)
	}
	return m.userLock(func() error {
		if _, err := os.Stat(filepath.Join(oldDir, "cur")); err != nil {
			return fmt.Errorf("%w: %q", store.ErrNoSuchMailbox, oldName)
		}
		entries, err := os.ReadDir(m.root)
		if err != nil {
			return fmt.Errorf("rename: %w", err)
		}
		oldBase, newBase := filepath.Base(oldDir), filepath.Base(newDir)
		moves := [][2]string{{oldBase, newBase}}
		for _, e := range entries {
			if strings.HasPrefix(e.Name(), oldBase+".") {
				moves = append(moves, [2]string{e.Name(), newBase + e.Name()[len(oldBase):]})
			}
		}
		for _, mv := range moves {
			if len(mv[1]) > maxFileName {
				return fmt.Errorf("%w: %q is too long on disk", store.ErrInvalidName, mv[1])
			}
			if _, err := os.Lstat(filepath.Join(m.root, mv[1])); err == nil {
				return fmt.Errorf("%w: %q", store.ErrMailboxExists, newName)
			}
		}
		for _, mv := range moves {
			if err := os.Rename(filepath.Join(m.root, mv[0]), filepath.Join(m.root, mv[1])); err != nil {
				return fmt.Errorf("rename %q: %w", oldName, err)
			}
			m.s.forget(filepath.Join(m.root, mv[0]))
			m.s.forget(filepath.Join(m.root, mv[1]))
		}
		return syncDir(m.root)
	})
}

func (m *mailboxes) Status(ctx context.Context, name string) (store.Status, error) {
	var st store.Status
	err := m.withFolder(name, func(f *folder) error {
		if err := f.refresh(true); err != nil {
			return err
		}
		if err := f.syncForReaders(); err != nil {
			return err
		}
		st = f.status()
		return nil
	})
	if err == nil {
		st.Name, _ = store.CanonicalName(name)
	}
	return st, err
}

// status summarises the folder's state (f.mu held).
func (f *folder) status() store.Status {
	return store.Status{
		UIDValidity:   f.st.uidValidity,
		UIDNext:       f.st.uidNext,
		HighestModSeq: f.st.highestModSeq,
		Messages:      uint32(len(f.st.msgs)),
		Unseen:        f.st.counts.unseen,
		Deleted:       f.st.counts.deleted,
		Size:          f.st.counts.size,
		Keywords:      append([]string(nil), f.st.keywords...),
	}
}

func (m *mailboxes) Close() error { return nil }
