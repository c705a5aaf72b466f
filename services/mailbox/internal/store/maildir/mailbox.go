package maildir

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/postcove/postcove/services/mailbox/internal/store"
)

// sizeCounter counts a message's size and its size with CRLF line ends
// (dovecot's W=, the RFC 822 size IMAP reports) as it is written.
type sizeCounter struct {
	w           io.Writer
	size, vsize int64
	lastWasCR   bool
}

func (c *sizeCounter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	written := p[:n]
	prevCR := c.lastWasCR
	for len(written) > 0 {
		i := bytes.IndexByte(written, '\n')
		if i < 0 {
			break
		}
		if !(i == 0 && prevCR || i > 0 && written[i-1] == '\r') {
			c.vsize++ // a bare LF: one more octet with CRLF
		}
		written, prevCR = written[i+1:], false
	}
	if n > 0 {
		c.lastWasCR = p[n-1] == '\r'
	}
	c.size += int64(n)
	c.vsize += int64(n)
	return n, err
}

func (m *mailboxes) Append(ctx context.Context, name string, r io.Reader, opts store.AppendOptions) (store.AppendResult, error) {
	flags, err := store.NormalizeFlags(opts.Flags)
	if err != nil {
		return store.AppendResult{}, err
	}
	name, dir, err := m.folderDir(name)
	if err != nil {
		return store.AppendResult{}, err
	}
	if _, err := os.Stat(filepath.Join(dir, "cur")); err != nil {
		return store.AppendResult{}, fmt.Errorf("%w: %q", store.ErrNoSuchMailbox, name)
	}
	date := opts.InternalDate
	if date.IsZero() {
		date = time.Now()
	}
	unique := m.s.newUnique()
	tmp := filepath.Join(dir, "tmp", unique)
	size, vsize, err := m.spool(tmp, r, date)
	if err != nil {
		return store.AppendResult{}, err
	}
	committed := false
	defer func() {
		if !committed {
			os.Remove(tmp)
		}
	}()
	if err := m.checkQuota(size); err != nil {
		return store.AppendResult{}, err
	}
	if err := ctx.Err(); err != nil {
		return store.AppendResult{}, err
	}
	var res store.AppendResult
	err = m.withFolder(name, func(f *folder) error {
		if err := f.begin(); err != nil {
			return err
		}
		defer f.end()
		uid, err := f.st.nextUID()
		if err != nil {
			return err
		}
		fn := fileName{base: baseName(unique, size, vsize, uid)}
		file := "cur/" + fn.withLetters(lettersFromFlags(flags, f.kw))
		if err := os.Rename(tmp, f.path(file)); err != nil {
			return fmt.Errorf("deliver: %w", err)
		}
		committed = true
		recs, err := f.commitAdded([]record{{kind: 'A', uid: uid, size: size, date: date, flags: flags, file: file}})
		if err != nil {
			return err
		}
		res = store.AppendResult{UIDValidity: f.st.uidValidity, UID: recs[0].uid, Size: size}
		return nil
	})
	if err != nil {
		return store.AppendResult{}, err
	}
	m.addQuota(size, 1)
	return res, nil
}

// commitAdded makes the files of new A records durable in cur/ and then
// commits the records; if that fails the files are removed, so that a
// failed append leaves nothing behind (lock held). The records carry the
// UIDs already given in the files' names (",U="), so they are written
// without an fsync: once cur/ is synced, the file alone keeps the message
// and its UID through a crash, and the index is synced before a session
// is shown the UID (syncForReaders).
func (f *folder) commitAdded(recs []record) ([]record, error) {
	err := syncDir(f.path("cur"))
	if err == nil {
		recs, err = f.commitNoSync(recs)
	}
	if err != nil {
		for _, r := range recs {
			os.Remove(f.path(r.file))
		}
		return nil, err
	}
	return recs, nil
}

// spool writes a message to a new file in tmp/ with date as its mtime and
// fsyncs it, enforcing MaxMessageSize; on failure the file is gone.
func (m *mailboxes) spool(path string, r io.Reader, date time.Time) (size, vsize int64, err error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return 0, 0, fmt.Errorf("spool: %w", err)
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(path)
		}
	}()
	max := m.s.opts.MaxMessageSize
	src := r
	if max > 0 {
		src = io.LimitReader(r, max+1)
	}
	c := &sizeCounter{w: f}
	if _, err := io.Copy(c, src); err != nil {
		return 0, 0, fmt.Errorf("spool: %w", err)
	}
	if max > 0 && c.size > max {
		return 0, 0, fmt.Errorf("%w: more than %d bytes", store.ErrTooBig, max)
	}
	// Dovecot takes a Maildir message's INTERNALDATE from its mtime. Set
	// before the fsync, so that the fsync makes it durable too.
	if err := os.Chtimes(path, date, date); err != nil {
		return 0, 0, fmt.Errorf("set internal date: %w", err)
	}
	if err := f.Sync(); err != nil {
		return 0, 0, fmt.Errorf("spool: fsync: %w", err)
	}
	if err := f.Close(); err != nil {
		return 0, 0, fmt.Errorf("spool: %w", err)
	}
	return c.size, c.vsize, nil
}

func (m *mailboxes) Select(ctx context.Context, name string) (store.Mailbox, error) {
	name, dir, err := m.folderDir(name)
	if err != nil {
		return nil, err
	}
	if _, err := os.Stat(filepath.Join(dir, "cur")); err != nil {
		return nil, fmt.Errorf("%w: %q", store.ErrNoSuchMailbox, name)
	}
	f, err := m.s.acquire(m.root, dir)
	if err != nil {
		return nil, err
	}
	f.mu.Lock()
	err = f.refresh(true)
	if err == nil {
		err = f.syncForReaders()
	}
	if err != nil {
		f.mu.Unlock()
		// release takes the store's lock, which is never taken inside a
		// folder's mu: only after unlocking.
		m.s.release(f)
		return nil, err
	}
	defer f.mu.Unlock()
	uids, mods := f.st.viewSlices()
	h := &handle{
		m:           m,
		f:           f,
		name:        name,
		uidValidity: f.st.uidValidity,
		view:        store.NewSharedView(uids, mods, f.st.keywords),
		updates:     f.notifier.Subscribe(),
		selected:    f.status(),
	}
	h.selected.Name = name
	h.view.Mark(f.st.highestModSeq, len(f.st.msgs))
	if f.stop == nil {
		f.stop = make(chan struct{})
		go f.watch(f.stop, m.s.opts.PollInterval)
	}
	return h, nil
}

// watch notices changes made by other processes while sessions watch the
// folder: a stat of the index and of new/ each interval, a sync when
// either changed (which wakes the sessions through the notifier).
func (f *folder) watch(stop chan struct{}, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
			f.mu.Lock()
			if f.loaded && f.changedOnDisk(true) {
				_ = f.refresh(true) // errors reach the sessions on their next call
			}
			f.mu.Unlock()
		}
	}
}

// handle implements store.Mailbox.
type handle struct {
	m           *mailboxes
	f           *folder
	name        string
	uidValidity uint32
	view        *store.View // the session's goroutine only
	updates     chan struct{}
	closed      bool         // protected by f.mu
	selected    store.Status // the state the view was taken from
}

// lock takes the folder mutex with the state refreshed and checks that
// the folder is still the one selected; on success the caller unlocks.
func (h *handle) lock(scanNew bool) error {
	h.f.mu.Lock()
	err := h.checkLocked()
	if err == nil {
		err = h.f.refresh(scanNew)
	}
	if err == nil && h.f.st.uidValidity != h.uidValidity {
		err = fmt.Errorf("%w: %q", store.ErrUIDValidityChanged, h.name)
	}
	if err == nil {
		err = h.f.syncForReaders()
	}
	if err != nil {
		h.f.mu.Unlock()
	}
	return err
}

func (h *handle) checkLocked() error {
	if h.closed {
		return store.ErrClosed
	}
	return nil
}

// begin is lock plus the folder's flock, for changes.
func (h *handle) begin() error {
	h.f.mu.Lock()
	err := h.checkLocked()
	if err == nil {
		err = h.f.begin()
		if err == nil && h.f.st.uidValidity != h.uidValidity {
			h.f.end()
			err = fmt.Errorf("%w: %q", store.ErrUIDValidityChanged, h.name)
		}
	}
	if err != nil {
		h.f.mu.Unlock()
	}
	return err
}

func (h *handle) end() {
	h.f.end()
	h.f.mu.Unlock()
}

func (h *handle) Name() string { return h.name }

func (h *handle) Status(ctx context.Context) (store.Status, error) {
	if err := h.lock(true); err != nil {
		return store.Status{}, err
	}
	defer h.f.mu.Unlock()
	st := h.f.status()
	st.Name = h.name
	return st, nil
}

func (h *handle) Selected() store.Status { return h.selected }

func (h *handle) UIDs() []store.UID { return h.view.UIDs() }

func (h *handle) Messages(ctx context.Context, uids []store.UID) ([]store.Message, error) {
	if err := h.lock(false); err != nil {
		return nil, err
	}
	defer h.f.mu.Unlock()
	out := make([]store.Message, 0, len(uids))
	next := 0 // where the next UID is looked for: uids usually ascend
	for _, uid := range uids {
		i, ok := h.f.st.findFrom(next, uid)
		next = i
		if ok {
			out = append(out, h.f.st.Message(i))
			next = i + 1
		}
	}
	h.view.TouchAll(out)
	return out, nil
}

// Open reads the file the state last indexed without first catching up
// with the index on disk: a FETCH of 100 bodies or a SEARCH TEXT over
// 10,000 then checks the index once (Messages), not once a message. A
// message's content never changes, only its file's name (flags) or its
// existence (expunge), so only a missing file calls for catching up.
func (h *handle) Open(ctx context.Context, uid store.UID) (store.Body, error) {
	m, dir, err := h.lookup(false, uid)
	if err != nil {
		return nil, err
	}
	f, err := h.f.openIn(dir, m.file)
	if errors.Is(err, fs.ErrNotExist) {
		// Renamed by a flag change or expunged in another process since
		// this one synced, or renamed by a Maildir MUA.
		if m, dir, err = h.lookup(true, uid); err != nil {
			return nil, err
		}
		f, err = h.f.openIn(dir, m.file)
		if errors.Is(err, fs.ErrNotExist) {
			if loc, found := h.f.locate(m); found {
				f, err = h.f.openIn(dir, loc)
			}
		}
	}
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%w: uid %d", store.ErrNoSuchMessage, uid)
	}
	if err != nil {
		return nil, fmt.Errorf("open message: %w", err)
	}
	return f, nil
}

// openIn opens file ("cur/<name>") of the folder for reading, relative to
// dir, the folder's directory (nil: by its whole path). The kernel then
// resolves two names instead of every component of the path down to the
// user's Maildir: a FETCH of 100 bodies spent a fifth of its time in
// openat. It is as os.Open without offering the file to the runtime's
// network poller: os.Open tries that for every file (two fcntl calls and
// an epoll_ctl that fails for a regular file), which was a third of the
// cost of opening a message in SEARCH TEXT. os.NewFile leaves a blocking
// descriptor alone.
func (f *folder) openIn(dir *os.File, file string) (*os.File, error) {
	path := f.path(file)
	open := func(dirfd int, name string) (fd int, err error) {
		for {
			fd, err = unix.Openat(dirfd, name, unix.O_RDONLY|unix.O_CLOEXEC, 0)
			if err != unix.EINTR {
				return fd, err
			}
		}
	}
	var fd int
	var err error
	ctlErr := errors.New("no directory")
	if dir != nil {
		if rc, rcErr := dir.SyscallConn(); rcErr == nil {
			// Control keeps dir open while it runs: a concurrent close
			// (the store closing) makes it fail instead of leaving a
			// descriptor number that another file may have taken.
			ctlErr = rc.Control(func(dirfd uintptr) { fd, err = open(int(dirfd), file) })
		}
	}
	if ctlErr != nil {
		fd, err = open(unix.AT_FDCWD, path)
	}
	if err != nil {
		return nil, &fs.PathError{Op: "open", Path: path, Err: err}
	}
	return os.NewFile(uintptr(fd), path), nil
}

// lookup returns uid's record, from the state as it is or, with
// refresh, brought up to date with the index first, and the folder's
// directory, open, for openIn (nil if it cannot be opened).
func (h *handle) lookup(refresh bool, uid store.UID) (rec, *os.File, error) {
	if refresh {
		if err := h.lock(false); err != nil {
			return rec{}, nil, err
		}
	} else {
		h.f.mu.Lock()
		err := h.checkLocked()
		if err == nil && h.f.st.uidValidity != h.uidValidity {
			// Another handle found the index rebuilt: the UIDs of this
			// session's view name other messages now.
			err = fmt.Errorf("%w: %q", store.ErrUIDValidityChanged, h.name)
		}
		if err != nil {
			h.f.mu.Unlock()
			return rec{}, nil, err
		}
	}
	defer h.f.mu.Unlock()
	if h.f.dirFile == nil {
		h.f.dirFile, _ = os.Open(h.f.dir) // nil on failure: openIn uses the path
	}
	i, ok := h.f.st.find(uid)
	if !ok {
		return rec{}, nil, fmt.Errorf("%w: uid %d", store.ErrNoSuchMessage, uid)
	}
	return h.f.st.msgs[i], h.f.dirFile, nil
}

func (h *handle) SetFlags(ctx context.Context, uids []store.UID, op store.FlagOp, flags []string, unchangedSince uint64) (store.StoreResult, error) {
	flags, err := store.NormalizeFlags(flags)
	if err != nil {
		return store.StoreResult{}, err
	}
	if err := h.begin(); err != nil {
		return store.StoreResult{}, err
	}
	defer h.end()
	f := h.f
	var res store.StoreResult
	var recs []record
	for _, uid := range store.UniqueUIDs(uids) {
		i, ok := f.st.find(uid)
		if !ok {
			continue
		}
		m := f.st.msgs[i]
		if unchangedSince > 0 && m.modSeq > unchangedSince {
			res.Modified = append(res.Modified, uid)
			continue
		}
		next, changed := store.ApplyFlags(f.st.flags(i), op, flags)
		if !changed {
			continue
		}
		file, ok := f.renameForFlags(m, next)
		if !ok {
			recs = append(recs, record{kind: 'X', uid: uid})
			continue
		}
		recs = append(recs, record{kind: 'F', uid: uid, flags: next, file: file})
	}
	recs, err = f.commit(recs)
	if err != nil {
		return store.StoreResult{}, err
	}
	for _, r := range recs {
		if r.kind != 'F' {
			continue
		}
		if i, ok := f.st.find(r.uid); ok {
			res.Updated = append(res.Updated, f.st.Message(i))
			h.view.Touch(r.uid, r.modSeq)
		}
	}
	return res, nil
}

// renameForFlags renames a message file so that its info letters show
// flags, and returns its new name; ok is false when the file is gone
// (lock held). A rename lost in a crash is harmless: the index is right
// and the file is found by its base name.
func (f *folder) renameForFlags(m rec, flags []string) (string, bool) {
	fn, err := parseFileName(m.file[4:])
	if err != nil {
		return m.file, true
	}
	letters := lettersFromFlags(flags, f.kw)
	if strings.HasPrefix(m.file, "cur/") && fn.hasInfo && fn.letters == letters {
		return m.file, true
	}
	to := "cur/" + fn.withLetters(letters)
	err = os.Rename(f.path(m.file), f.path(to))
	if errors.Is(err, fs.ErrNotExist) {
		loc, found := f.locate(m)
		if !found {
			return "", false
		}
		if os.Rename(f.path(loc), f.path(to)) != nil {
			return loc, true
		}
		return to, true
	}
	if err != nil {
		return m.file, true // keep the old name; the index has the flags
	}
	return to, true
}

func (h *handle) Copy(ctx context.Context, uids []store.UID, dest string) (store.CopyResult, error) {
	res, _, err := h.copy(uids, dest)
	return res, err
}

// copy links the messages into dest and returns the UID mapping and the
// bytes copied.
func (h *handle) copy(uids []store.UID, dest string) (store.CopyResult, int64, error) {
	if err := h.lock(false); err != nil {
		return store.CopyResult{}, 0, err
	}
	type source struct {
		rec   rec
		flags []string
	}
	var srcs []source
	var total int64
	for _, uid := range store.UniqueUIDs(uids) {
		if i, ok := h.f.st.find(uid); ok {
			srcs = append(srcs, source{h.f.st.msgs[i], h.f.st.flags(i)})
			total += h.f.st.msgs[i].size
		}
	}
	h.f.mu.Unlock()
	if err := h.m.checkQuota(total); err != nil {
		return store.CopyResult{}, 0, err
	}
	var res store.CopyResult
	var copied int64
	err := h.m.withFolder(dest, func(g *folder) error {
		if err := g.begin(); err != nil {
			return err
		}
		defer g.end()
		var recs []record
		uid, err := g.st.nextUID()
		if err != nil {
			return err
		}
		for _, src := range srcs {
			if uid == maxUID {
				return errOutOfUIDs
			}
			m := &src.rec
			fn, _ := parseFileName(m.file[4:])
			to := "cur/" + fileName{base: baseName(h.m.s.newUnique(), m.size, fn.vsize, uid)}.withLetters(lettersFromFlags(src.flags, g.kw))
			if !h.f.linkInto(*m, g, to) {
				continue // expunged meanwhile
			}
			res.SourceUIDs = append(res.SourceUIDs, m.uid)
			recs = append(recs, record{kind: 'A', uid: uid, size: m.size, date: m.internalDate(), flags: src.flags, file: to})
			uid++
			copied += m.size
		}
		if len(recs) == 0 {
			res.UIDValidity = g.st.uidValidity
			return nil
		}
		recs, err = g.commitAdded(recs)
		if err != nil {
			return err
		}
		res.UIDValidity = g.st.uidValidity
		for _, r := range recs {
			res.DestUIDs = append(res.DestUIDs, r.uid)
		}
		return nil
	})
	if err != nil {
		return store.CopyResult{}, 0, err
	}
	h.m.addQuota(copied, int64(len(res.DestUIDs)))
	return res, copied, nil
}

// linkInto puts a copy of src (a message of f) at to in folder g: a hard
// link, as dovecot copies, or a real copy where links are not possible.
// It reports false when the source is gone. g's lock is held; f's is not
// needed, since a file is only ever renamed or removed, never changed.
func (f *folder) linkInto(src rec, g *folder, to string) bool {
	from := f.path(src.file)
	err := os.Link(from, g.path(to))
	if errors.Is(err, fs.ErrNotExist) {
		loc, found := f.locate(src)
		if !found {
			return false
		}
		from = f.path(loc)
		err = os.Link(from, g.path(to))
	}
	if err == nil {
		return true
	}
	var errno syscall.Errno
	if errors.As(err, &errno) && (errno == syscall.EXDEV || errno == syscall.EPERM || errno == syscall.EMLINK) {
		return copyFile(from, g.path("tmp/"+filepath.Base(to)), g.path(to)) == nil
	}
	return false
}

// copyFile copies from to tmp, fsyncs it and renames it to to.
func copyFile(from, tmp, to string) error {
	in, err := os.Open(from)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	_, err = io.Copy(out, in)
	if err == nil {
		err = out.Sync()
	}
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, to)
	}
	if err != nil {
		os.Remove(tmp)
	}
	return err
}

func (h *handle) Move(ctx context.Context, uids []store.UID, dest string) (store.CopyResult, []store.Expunged, error) {
	res, _, err := h.copy(uids, dest)
	if err != nil {
		return res, nil, err
	}
	gone := make(map[store.UID]bool, len(res.SourceUIDs))
	for _, uid := range res.SourceUIDs {
		gone[uid] = true
	}
	removed, err := h.remove(func(m rec, _ []string) bool { return gone[m.uid] })
	if err != nil {
		return res, nil, err
	}
	return res, h.view.Remove(removed), nil
}

func (h *handle) Expunge(ctx context.Context, uids []store.UID) ([]store.Expunged, error) {
	var only map[store.UID]bool
	if uids != nil {
		only = make(map[store.UID]bool, len(uids))
		for _, uid := range uids {
			only[uid] = true
		}
	}
	removed, err := h.remove(func(m rec, flags []string) bool {
		return store.HasFlag(flags, store.FlagDeleted) && (only == nil || only[m.uid])
	})
	if err != nil {
		return nil, err
	}
	return h.view.Remove(removed), nil
}

// remove deletes the messages sel picks: files first, their directories
// fsynced, then the X records. In that order a crash can leave an index
// record without a file (read as expunged) but never a file without its
// record that a later scan would bring back as a new message.
func (h *handle) remove(sel func(m rec, flags []string) bool) ([]store.UID, error) {
	if err := h.begin(); err != nil {
		return nil, err
	}
	defer h.end()
	f := h.f
	var recs []record
	var bytes int64
	for i, m := range f.st.msgs {
		if !sel(m, f.st.flags(i)) {
			continue
		}
		err := os.Remove(f.path(m.file))
		if errors.Is(err, fs.ErrNotExist) {
			if loc, found := f.locate(m); found {
				err = os.Remove(f.path(loc))
			} else {
				err = nil
			}
		}
		if err != nil {
			break // commit what is done; the rest stays
		}
		recs = append(recs, record{kind: 'X', uid: m.uid})
		bytes += m.size
	}
	if len(recs) == 0 {
		return nil, nil
	}
	for _, sub := range []string{"cur", "new"} {
		if err := syncDir(f.path(sub)); err != nil {
			return nil, err
		}
	}
	recs, err := f.commit(recs)
	if err != nil {
		return nil, err
	}
	h.m.addQuota(-bytes, -int64(len(recs)))
	out := make([]store.UID, len(recs))
	for i, r := range recs {
		out[i] = r.uid
	}
	return out, nil
}

func (h *handle) Poll(ctx context.Context, allowExpunge bool) (store.Changes, error) {
	if err := h.lock(true); err != nil {
		return store.Changes{}, err
	}
	defer h.f.mu.Unlock()
	st := &h.f.st
	if h.view.Current(st.highestModSeq, len(st.msgs)) {
		return store.Changes{}, nil
	}
	ch := h.view.Poll(st, st.keywords, allowExpunge)
	h.view.Mark(st.highestModSeq, len(st.msgs))
	return ch, nil
}

func (h *handle) Updates() <-chan struct{} { return h.updates }

func (h *handle) Close() error {
	h.f.mu.Lock()
	if h.closed {
		h.f.mu.Unlock()
		return nil
	}
	h.closed = true
	if h.f.notifier.Unsubscribe(h.updates) == 0 && h.f.stop != nil {
		close(h.f.stop)
		h.f.stop = nil
	}
	h.f.mu.Unlock()
	h.m.s.release(h.f)
	return nil
}
