package maildir

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/postcove/postcove/services/mailbox/internal/store"
)

// Files of a folder directory besides cur/, new/ and tmp/.
const (
	indexName     = "postcove-index"      // the index log (index.go)
	indexLockName = "postcove-index.lock" // flock: whoever holds it may read-modify-write the index
	// importedName marks a folder whose dovecot-uidlist was imported once:
	// a later rebuild must not import it again, because UIDs given out by
	// postcove since then are not in it.
	importedName = "postcove-uidlist-imported"
	// compactMin is the log size below which it is never compacted.
	compactMin = 1 << 20
	// tmpMaxAge: the Maildir spec's rule for abandoned files in tmp/.
	tmpMaxAge = 36 * time.Hour
)

// folder is this process's shared state of one folder directory: every
// handle on the folder in this process uses it, so the index is read once
// and kept up to date incrementally.
//
// Locking: mu serialises this process's goroutines and protects all fields
// below it. The index lock file (flock) serialises processes: it is held
// while the index is read or changed and while message files are renamed
// into or out of the folder, so that the files and the index always agree
// for whoever holds it. Order: mu, then the flock; the user's namespace
// lock, when held, is taken before both, and the quota and UIDVALIDITY
// locks are leaves taken inside. No goroutine holds two folders' locks.
type folder struct {
	s    *Store
	user string // the user's Maildir
	dir  string // this folder's directory

	refs     int       // handles and calls using the folder; protected by s.mu
	lastUsed time.Time // when refs last fell to 0; protected by s.mu

	mu       sync.Mutex
	lock     lockFile
	log      *os.File // the index log, opened for appending
	logIno   uint64
	logLen   int64 // bytes of the log applied to st
	loaded   bool
	st       indexState
	kw       map[byte]string // dovecot-keywords letters
	newMtime time.Time       // mtime of new/ when last scanned
	stop     chan struct{}   // closes the watcher goroutine; nil when none runs

	notifier store.Notifier
}

func (f *folder) path(name string) string { return filepath.Join(f.dir, name) }

// exists reports whether the folder directory is still there.
func (f *folder) exists() bool {
	_, err := os.Stat(f.path("cur"))
	return err == nil
}

// changedOnDisk reports, without a lock, whether the index or new/ may have
// changed since the state was last brought up to date.
func (f *folder) changedOnDisk(scanNew bool) bool {
	if !f.loaded {
		return true
	}
	fi, err := os.Stat(f.path(indexName))
	if err != nil {
		return true
	}
	if ino(fi) != f.logIno || fi.Size() != f.logLen {
		return true
	}
	if scanNew {
		if ni, err := os.Stat(f.path("new")); err == nil && !ni.ModTime().Equal(f.newMtime) {
			return true
		}
	}
	return false
}

func ino(fi fs.FileInfo) uint64 {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return st.Ino
	}
	return 0
}

// refresh brings the state up to date (mu held). scanNew also looks for
// messages other programs delivered into new/.
func (f *folder) refresh(scanNew bool) error {
	if !f.changedOnDisk(scanNew) {
		return nil
	}
	if err := f.begin(); err != nil {
		return err
	}
	defer f.end()
	if scanNew {
		return f.reconcile(false)
	}
	return nil
}

// begin takes the folder lock and catches up with the index (mu held).
// Every change to the folder happens between begin and end.
func (f *folder) begin() error {
	if !f.exists() {
		return fmt.Errorf("%w: %s", store.ErrNoSuchMailbox, filepath.Base(f.dir))
	}
	if err := f.lock.lock(); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("%w: %s", store.ErrNoSuchMailbox, filepath.Base(f.dir))
		}
		return err
	}
	if err := f.syncLocked(); err != nil {
		f.lock.unlock()
		return err
	}
	return nil
}

func (f *folder) end() { f.lock.unlock() }

// syncLocked applies what other processes appended to the index, or loads
// it when it was replaced, or rebuilds it when it is missing or corrupt.
func (f *folder) syncLocked() error {
	fi, err := os.Stat(f.path(indexName))
	if errors.Is(err, fs.ErrNotExist) {
		if !f.exists() {
			return fmt.Errorf("%w: %s", store.ErrNoSuchMailbox, filepath.Base(f.dir))
		}
		return f.rebuild()
	}
	if err != nil {
		return fmt.Errorf("stat index: %w", err)
	}
	if !f.loaded || ino(fi) != f.logIno || fi.Size() < f.logLen {
		first := !f.loaded
		if err := f.load(); err != nil {
			return err
		}
		if first {
			return f.firstScan()
		}
		return nil
	}
	if fi.Size() == f.logLen {
		return nil
	}
	buf := make([]byte, fi.Size()-f.logLen)
	if _, err := f.log.ReadAt(buf, f.logLen); err != nil && !errors.Is(err, io.EOF) {
		return fmt.Errorf("read index: %w", err)
	}
	recs, good, err := parseLog(buf)
	if err != nil {
		return f.rebuild()
	}
	if err := f.st.apply(recs); err != nil {
		return f.rebuild()
	}
	f.logLen += int64(good)
	if good < len(buf) {
		if err := f.log.Truncate(f.logLen); err != nil {
			return fmt.Errorf("truncate torn index: %w", err)
		}
	}
	if len(recs) > 0 {
		f.notifier.Notify()
	}
	return nil
}

// load reads the whole index (lock held).
func (f *folder) load() error {
	if f.kw == nil {
		f.kw = map[byte]string{}
		if data, err := os.ReadFile(f.path(keywordsFile)); err == nil {
			f.kw = parseKeywords(data)
		}
	}
	lf, err := os.OpenFile(f.path(indexName), os.O_RDWR|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("open index: %w", err)
	}
	data, err := io.ReadAll(lf)
	if err != nil {
		lf.Close()
		return fmt.Errorf("read index: %w", err)
	}
	fi, err := lf.Stat()
	if err != nil {
		lf.Close()
		return fmt.Errorf("stat index: %w", err)
	}
	recs, good, err := parseLog(data)
	var st indexState
	if err == nil {
		err = st.apply(recs)
	}
	if err == nil && st.uidValidity == 0 {
		err = fmt.Errorf("%w: no header", errCorruptIndex)
	}
	if err != nil {
		lf.Close()
		return f.rebuild()
	}
	if good < len(data) {
		if err := lf.Truncate(int64(good)); err != nil {
			lf.Close()
			return fmt.Errorf("truncate torn index: %w", err)
		}
	}
	f.setLog(lf, ino(fi), int64(good), st)
	return nil
}

func (f *folder) setLog(lf *os.File, inode uint64, length int64, st indexState) {
	if f.log != nil {
		f.log.Close()
	}
	wasLoaded := f.loaded
	f.log, f.logIno, f.logLen, f.st, f.loaded = lf, inode, length, st, true
	if wasLoaded {
		f.notifier.Notify()
	}
}

// writeIndex replaces the index with st (lock held): compaction and
// rebuild. The rename makes the switch atomic for readers.
func (f *folder) writeIndex(st indexState) error {
	data := st.snapshot()
	if err := writeFileSync(f.path(indexName), data); err != nil {
		return fmt.Errorf("write index: %w", err)
	}
	lf, err := os.OpenFile(f.path(indexName), os.O_RDWR|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("open index: %w", err)
	}
	fi, err := lf.Stat()
	if err != nil {
		lf.Close()
		return fmt.Errorf("stat index: %w", err)
	}
	f.setLog(lf, ino(fi), int64(len(data)), st)
	return nil
}

// diskFile is a message file found in cur/ or new/.
type diskFile struct {
	file string // "cur/<name>" or "new/<name>"
	fn   fileName
}

// scan lists the message files of sub ("cur" or "new").
func (f *folder) scan(sub string) ([]diskFile, error) {
	d, err := os.Open(f.path(sub))
	if err != nil {
		return nil, err
	}
	defer d.Close()
	names, err := d.Readdirnames(-1)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", sub, err)
	}
	out := make([]diskFile, 0, len(names))
	for _, n := range names {
		fn, err := parseFileName(n)
		if err != nil {
			continue // dot files and the like are not messages (Maildir spec)
		}
		out = append(out, diskFile{file: sub + "/" + n, fn: fn})
	}
	return out, nil
}

// fileInfo returns the size and mtime of a message file, using ",S=" for
// the size when the name has it.
func (f *folder) fileInfo(df diskFile) (int64, time.Time, error) {
	fi, err := os.Stat(f.path(df.file))
	if err != nil {
		return 0, time.Time{}, err
	}
	size := df.fn.size
	if size < 0 {
		size = fi.Size()
	}
	return size, fi.ModTime(), nil
}

// rebuild makes a new index from the files (lock held). UIDs come from an
// unimported dovecot-uidlist when there is one; otherwise they cannot be
// recovered and the folder gets a new UIDVALIDITY (RFC 3501 section
// 2.3.1.1), so clients drop their caches instead of trusting wrong UIDs.
func (f *folder) rebuild() error {
	if f.kw == nil {
		f.kw = map[byte]string{}
		if data, err := os.ReadFile(f.path(keywordsFile)); err == nil {
			f.kw = parseKeywords(data)
		}
	}
	var files []diskFile
	for _, sub := range []string{"cur", "new"} {
		fs, err := f.scan(sub)
		if err != nil {
			return err
		}
		files = append(files, fs...)
	}
	var st indexState
	var ul uidList
	imported := false
	if _, err := os.Stat(f.path(importedName)); errors.Is(err, fs.ErrNotExist) {
		if data, err := os.ReadFile(f.path(uidListFile)); err == nil {
			if l, err := parseUIDList(data); err == nil {
				ul, imported = l, true
			}
		}
	}
	if imported {
		st.uidValidity, st.uidNext = ul.uidValidity, ul.nextUID
	} else {
		uv, err := f.s.nextUIDValidity(f.user)
		if err != nil {
			return err
		}
		st.uidValidity, st.uidNext = uv, 1
	}
	// Files with a dovecot UID first in UID order, then the others in
	// delivery order.
	uidOf := func(df diskFile) store.UID { return ul.uids[df.fn.base] }
	slices.SortFunc(files, func(a, b diskFile) int {
		ua, ub := uidOf(a), uidOf(b)
		switch {
		case ua != 0 && ub != 0:
			return int(ua) - int(ub)
		case ua != 0:
			return -1
		case ub != 0:
			return 1
		}
		return byDelivery(a, b)
	})
	seen := make(map[string]bool, len(files))
	var last store.UID
	for _, df := range files {
		if seen[df.fn.base] {
			continue
		}
		seen[df.fn.base] = true
		size, mtime, err := f.fileInfo(df)
		if err != nil {
			continue // gone meanwhile
		}
		uid := uidOf(df)
		if uid == 0 || uid <= last {
			uid = max(st.uidNext, last+1)
		}
		last = uid
		flags := flagsFromLetters(df.fn.letters, f.kw)
		st.highestModSeq = 1
		st.msgs = append(st.msgs, rec{Message: store.Message{
			UID: uid, ID: df.fn.id(), Flags: flags, ModSeq: 1, Size: size, InternalDate: mtime,
		}, file: df.file})
		st.uidNext = max(st.uidNext, uid+1)
		st.keywords = store.AddKeywords(st.keywords, flags)
	}
	if err := f.writeIndex(st); err != nil {
		return err
	}
	if imported {
		if err := writeFileSync(f.path(importedName), fmt.Appendf(nil, "%d %d\n", ul.uidValidity, ul.nextUID)); err != nil {
			return fmt.Errorf("mark dovecot-uidlist imported: %w", err)
		}
	}
	f.newMtime = mtimeOf(f.path("new"))
	return nil
}

func mtimeOf(path string) time.Time {
	fi, err := os.Stat(path)
	if err != nil {
		return time.Time{}
	}
	return fi.ModTime()
}

// firstScan runs when this process first loads the index: it reconciles
// the index with cur/ as well as new/ (picking up a message a crashed
// process renamed into cur/ but did not index, and files other programs
// removed or renamed) and clears tmp/ of abandoned files.
func (f *folder) firstScan() error {
	if tmp, err := os.ReadDir(f.path("tmp")); err == nil {
		for _, e := range tmp {
			if fi, err := e.Info(); err == nil && time.Since(fi.ModTime()) > tmpMaxAge {
				os.Remove(f.path("tmp/" + e.Name()))
			}
		}
	}
	return f.reconcile(true)
}

// reconcile indexes files that are in new/ (and in cur/ with withCur)
// without being in the index, and with withCur also notices indexed files
// that were removed or renamed by other programs (lock held).
func (f *folder) reconcile(withCur bool) error {
	f.newMtime = mtimeOf(f.path("new"))
	files, err := f.scan("new")
	if err != nil {
		return err
	}
	if withCur {
		cur, err := f.scan("cur")
		if err != nil {
			return err
		}
		files = append(files, cur...)
	}
	byBase := make(map[string]int, len(f.st.msgs))
	for i, m := range f.st.msgs {
		byBase[baseOf(m.file)] = i
	}
	var recs []record
	var fresh []diskFile
	seen := make(map[int]bool)
	for _, df := range files {
		i, ok := byBase[df.fn.base]
		if !ok {
			fresh = append(fresh, df)
			continue
		}
		seen[i] = true
		m := f.st.msgs[i]
		if m.file == df.file {
			continue
		}
		// Renamed by another program (a Maildir MUA changing flags) or our
		// rename survived a crash that lost its record: the name wins for
		// the flags it can express.
		flags := mergeLetterFlags(m.Flags, df.fn.letters, f.kw)
		recs = append(recs, record{kind: 'F', uid: m.UID, flags: flags, file: df.file})
	}
	if withCur {
		for i, m := range f.st.msgs {
			if !seen[i] {
				recs = append(recs, record{kind: 'X', uid: m.UID})
			}
		}
	}
	slices.SortFunc(fresh, byDelivery)
	added := make(map[string]bool)
	for _, df := range fresh {
		if added[df.fn.base] {
			continue
		}
		added[df.fn.base] = true
		size, mtime, err := f.fileInfo(df)
		if err != nil {
			continue
		}
		file := df.file
		if strings.HasPrefix(file, "new/") {
			// Move it to cur/ so new/ stays small: it is scanned whenever
			// it changes.
			to := "cur/" + df.fn.withLetters(df.fn.letters)
			if err := os.Rename(f.path(file), f.path(to)); err == nil {
				file = to
			}
		}
		recs = append(recs, record{kind: 'A', size: size, date: mtime, flags: flagsFromLetters(df.fn.letters, f.kw), file: file})
	}
	if len(recs) == 0 {
		return nil
	}
	_, err = f.commit(recs)
	return err
}

// byDelivery orders files by the delivery time their names start with,
// then by name: the order in which new UIDs are given to found files.
func byDelivery(a, b diskFile) int {
	ta, na := sortKey(a.fn.base)
	tb, nb := sortKey(b.fn.base)
	if ta != tb {
		if ta < tb {
			return -1
		}
		return 1
	}
	return strings.Compare(na, nb)
}

// mergeLetterFlags returns the flags a file name's letters express, plus
// the keywords of cur that letters cannot express.
func mergeLetterFlags(cur []string, letters string, kw map[byte]string) []string {
	out := flagsFromLetters(letters, kw)
	for _, k := range store.Keywords(cur) {
		if k == forwarded {
			continue
		}
		expressible := false
		for _, w := range kw {
			if strings.EqualFold(w, k) {
				expressible = true
			}
		}
		if !expressible && !store.HasFlag(out, k) {
			out = append(out, k)
		}
	}
	slices.Sort(out)
	return out
}

func baseOf(file string) string {
	_, name, _ := strings.Cut(file, "/")
	base, _, _ := strings.Cut(name, ":")
	return base
}

// commit appends recs to the index, fsyncs it and applies them (lock
// held, state in sync). It gives A records their UIDs and every record its
// MODSEQ, and returns the records as written.
func (f *folder) commit(recs []record) ([]record, error) {
	if len(recs) == 0 {
		return nil, nil
	}
	uidNext, modSeq := f.st.uidNext, f.st.highestModSeq
	var buf []byte
	for i := range recs {
		r := &recs[i]
		if r.kind == 'A' {
			if uidNext == ^store.UID(0) {
				return nil, fmt.Errorf("mailbox ran out of UIDs")
			}
			r.uid = uidNext
			uidNext++
		}
		modSeq++
		r.modSeq = modSeq
		buf = appendRecord(buf, *r)
	}
	if _, err := f.log.Write(buf); err != nil {
		// Leave no partial record for the next writer to append after.
		_ = f.log.Truncate(f.logLen)
		return nil, fmt.Errorf("append to index: %w", err)
	}
	if err := f.log.Sync(); err != nil {
		_ = f.log.Truncate(f.logLen)
		return nil, fmt.Errorf("fsync index: %w", err)
	}
	f.logLen += int64(len(buf))
	if err := f.st.apply(recs); err != nil {
		return nil, err // cannot happen: commit only writes valid records
	}
	f.notifier.Notify()
	if f.logLen > compactMin && f.logLen > 4*int64(len(f.st.msgs)+1)*200 {
		if err := f.writeIndex(f.st); err != nil {
			return recs, nil // the log is intact; compaction can wait
		}
	}
	return recs, nil
}

// find returns the message file's current path relative to the folder:
// the indexed one, or, when another program renamed it, the one found by
// its base name.
func (f *folder) locate(m rec) (string, bool) {
	if _, err := os.Lstat(f.path(m.file)); err == nil {
		return m.file, true
	}
	base := baseOf(m.file)
	for _, sub := range []string{"cur", "new"} {
		files, err := f.scan(sub)
		if err != nil {
			continue
		}
		for _, df := range files {
			if df.fn.base == base {
				return df.file, true
			}
		}
	}
	return "", false
}
