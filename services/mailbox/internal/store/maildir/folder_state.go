package maildir

import (
	"cmp"
	"errors"
	"fmt"
	"hash/maphash"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

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
	// scannedName records the mtime of cur/ when it was last scanned
	// completely: see firstScan.
	scannedName = "postcove-index.scanned"
	// bigRebuild is the number of messages above which a rebuild
	// collects garbage between its phases (a few ms for a peak lower by
	// tens of MB at 100,000 messages), and above which building or
	// dropping a state returns memory to the OS (Options.returnMemory).
	bigRebuild = 10000
	// scanQuiet is how long cur/ must have been unchanged for a scan of it
	// to be recorded as complete: far more than a clock tick.
	scanQuiet = 2 * time.Second
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
	// idleMsgs is how many messages the state held when refs last fell
	// to 0: what keeping it idle costs (release); protected by s.mu.
	idleMsgs int

	mu sync.Mutex
	// dirFile is the folder's directory, open for opening message files
	// relative to it (openIn); nil until a message is opened. Protected
	// by mu; used outside it through SyscallConn, which keeps it open
	// for the call.
	dirFile *os.File
	lock    lockFile
	log     *os.File // the index log, opened for appending
	logIno  uint64
	logLen  int64 // bytes of the log applied to st
	// syncedLen is how much of the log this process knows to be durable:
	// what it fsynced itself. Records past it (a delivery's, or another
	// process's) are fsynced before a session is shown them.
	syncedLen int64
	loaded    bool
	st        indexState
	kw        map[byte]string // dovecot-keywords letters
	newMtime  time.Time       // mtime of new/ when last scanned
	stop      chan struct{}   // closes the watcher goroutine; nil when none runs

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
	fi, err := lf.Stat()
	if err != nil {
		lf.Close()
		return fmt.Errorf("stat index: %w", err)
	}
	// Read what the stat saw (we hold the lock: nobody appends meanwhile).
	var st indexState
	good, err := st.readLog(lf, fi.Size(), indexReadBuffer)
	if err != nil && !errors.Is(err, errCorruptIndex) {
		lf.Close()
		return err
	}
	if err == nil && st.uidValidity == 0 {
		err = fmt.Errorf("%w: no header", errCorruptIndex)
	}
	if err != nil {
		lf.Close()
		return f.rebuild()
	}
	if good < fi.Size() {
		if err := lf.Truncate(good); err != nil {
			lf.Close()
			return fmt.Errorf("truncate torn index: %w", err)
		}
	}
	f.setLog(lf, ino(fi), good, 0, st)
	return nil
}

// indexReadBuffer is the buffer load reads an index through.
const indexReadBuffer = 256 << 10

func (f *folder) setLog(lf *os.File, inode uint64, length, synced int64, st indexState) {
	if f.log != nil {
		f.log.Close()
	}
	if f.dirFile != nil {
		// The index was (re)read: the folder may be a new directory of
		// the same name (deleted and created again while a session kept
		// the old state). Open the directory again when next needed.
		f.dirFile.Close()
		f.dirFile = nil
	}
	wasLoaded := f.loaded
	f.log, f.logIno, f.logLen, f.syncedLen, f.st, f.loaded = lf, inode, length, synced, st, true
	if wasLoaded {
		f.notifier.Notify()
	}
}

// writeIndex replaces the index with st (lock held): compaction and
// rebuild. The rename makes the switch atomic for readers.
func (f *folder) writeIndex(st indexState) error {
	size, err := writeSnapshot(f.path(indexName), &st)
	if err != nil {
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
	f.setLog(lf, ino(fi), size, size, st)
	return nil
}

// writeSnapshot is writeFileSync(path, st.snapshot()) without the whole
// snapshot in memory at once (12 MB for 100,000 messages, on top of the
// state itself when a rebuild makes it): the records go out through a
// buffer. It returns the size written.
func writeSnapshot(path string, st *indexState) (int64, error) {
	tmp := path + ".tmp"
	file, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return 0, err
	}
	fail := func(err error) (int64, error) {
		file.Close()
		os.Remove(tmp)
		return 0, err
	}
	var size int64
	buf := appendRecord(make([]byte, 0, 64<<10), record{kind: 'H', uidValidity: st.uidValidity, uidNext: st.uidNext, highestModSeq: st.highestModSeq})
	for i := range st.msgs {
		buf = appendRecord(buf, st.addRecord(i))
		if len(buf) >= 60<<10 {
			if _, err := file.Write(buf); err != nil {
				return fail(err)
			}
			size += int64(len(buf))
			buf = buf[:0]
		}
	}
	if _, err := file.Write(buf); err != nil {
		return fail(err)
	}
	size += int64(len(buf))
	if err := file.Sync(); err != nil {
		return fail(err)
	}
	if err := file.Close(); err != nil {
		os.Remove(tmp)
		return 0, err
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return 0, err
	}
	return size, syncDir(filepath.Dir(path))
}

// diskFile is a message file found in cur/ or new/.
type diskFile struct {
	file string // "cur/<name>" or "new/<name>"
	fn   fileName
}

// scan lists the message files of sub ("cur" or "new").
func (f *folder) scan(sub string) ([]diskFile, error) {
	var out []diskFile
	err := f.scanBatches(sub, func(batch []diskFile) {
		if out == nil {
			out = batch
		} else {
			out = append(out, batch...)
		}
	})
	return out, err
}

// scanBatch is how many names are read from a directory at a time.
const scanBatch = 4096

// scanBatches calls fn with the message files of sub ("cur" or "new"),
// scanBatch directory entries at a time, so that going over a cur/ of
// 100,000 files holds a few thousand names, not all of them.
func (f *folder) scanBatches(sub string, fn func([]diskFile)) error {
	d, err := os.Open(f.path(sub))
	if err != nil {
		return err
	}
	defer d.Close()
	for {
		names, err := d.Readdirnames(scanBatch)
		batch := make([]diskFile, 0, len(names))
		for _, entry := range names {
			// The name is parsed from file, so that its fields share file's
			// bytes and entry's can be freed: a kept diskFile holds its name
			// once.
			file := sub + "/" + entry
			name, err := parseFileName(file[len(sub)+1:])
			if err != nil {
				continue // dot files and the like are not messages (Maildir spec)
			}
			batch = append(batch, diskFile{file: file, fn: name})
		}
		fn(batch)
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("read %s: %w", sub, err)
		}
	}
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

// rebuildKey is a file's place in the order rebuild gives UIDs in.
type rebuildKey struct {
	dovecotUID store.UID // from dovecot-uidlist, or 0
	uid        store.UID // postcove's, from the name (",U="), or 0
	sec        int64     // delivery time, from the name
	i          int       // the file's index in the slice sorted
}

// compareRebuildKeys orders files as rebuild numbers them: those with a
// dovecot UID first, by it; then those with a postcove UID (",U="), by
// it; then by delivery (byDelivery). Ties end with the base name, so the
// files of one message sort next to each other.
func compareRebuildKeys(files []diskFile, a, b rebuildKey) int {
	ua, ub := a.dovecotUID, b.dovecotUID
	switch {
	case ua != 0 && ub != 0 && ua != ub:
		return cmp.Compare(ua, ub)
	case ua != 0 && ub == 0:
		return -1
	case ua == 0 && ub != 0:
		return 1
	case a.uid != 0 && b.uid != 0 && a.uid != b.uid:
		return cmp.Compare(a.uid, b.uid)
	case a.uid != 0 && b.uid == 0:
		return -1
	case a.uid == 0 && b.uid != 0:
		return 1
	}
	if a.sec != b.sec {
		return cmp.Compare(a.sec, b.sec)
	}
	return strings.Compare(files[a.i].fn.base, files[b.i].fn.base)
}

// fileStat is fileInfo's answer for one file.
type fileStat struct {
	size  int64
	mtime time.Time
	err   error
}

// fileInfos is fileInfo for many files: a rebuild of 100,000 messages
// stats each (INTERNALDATE is the file's mtime). It stats them relative
// to cur/ and new/ opened once, which spares the kernel walking the whole
// path each time, on several goroutines.
func (f *folder) fileInfos(files []diskFile) []fileStat {
	out := make([]fileStat, len(files))
	dirs := map[string]int{}
	for _, sub := range []string{"cur", "new"} {
		fd, err := unix.Open(f.path(sub), unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
		if err != nil {
			continue // fall back to paths
		}
		defer unix.Close(fd)
		dirs[sub] = fd
	}
	one := func(i int) {
		df := files[i]
		sub, name, _ := strings.Cut(df.file, "/")
		fd, ok := dirs[sub]
		if !ok {
			size, mtime, err := f.fileInfo(df)
			out[i] = fileStat{size, mtime, err}
			return
		}
		var st unix.Stat_t
		if err := unix.Fstatat(fd, name, &st, 0); err != nil {
			out[i].err = &fs.PathError{Op: "stat", Path: f.path(df.file), Err: err}
			return
		}
		size := df.fn.size
		if size < 0 {
			size = st.Size
		}
		out[i] = fileStat{size: size, mtime: time.Unix(st.Mtim.Unix())}
	}
	workers := min(runtime.GOMAXPROCS(0), 4, len(files)/1000+1)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := w; i < len(files); i += workers {
				one(i)
			}
		})
	}
	wg.Wait()
	return out
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
		if files == nil {
			files = fs // no copy of a big cur/ when new/ is empty
		} else {
			files = append(files, fs...)
		}
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
	// Files with a dovecot UID first in UID order, then the others in the
	// order of the UIDs postcove gave them (",U="), then the rest in
	// delivery order. The keys are computed once, not at each of the
	// million comparisons that sorting 100,000 files takes.
	keyed := make([]rebuildKey, len(files))
	for i, df := range files {
		sec, _ := sortKey(df.fn.base)
		keyed[i] = rebuildKey{dovecotUID: ul.uids[df.fn.base], uid: df.fn.uid, sec: sec, i: i}
	}
	slices.SortFunc(keyed, func(a, b rebuildKey) int { return compareRebuildKeys(files, a, b) })
	big := len(files) >= f.s.opts.bigState
	if big {
		// What the scan read and parsed is garbage now: collected here,
		// the heap does not grow to hold it and the new index together.
		runtime.GC()
	}
	infos := f.fileInfos(files)
	st.msgs = make([]rec, 0, len(files))
	byLetters := map[string]flagsRef{} // flag lists by letters: a few distinct ones
	var last store.UID
	for j, k := range keyed {
		df := files[k.i]
		// A message in both cur/ and new/ (a crash between link and
		// unlink) is indexed once: the two sort next to each other.
		if j > 0 && files[keyed[j-1].i].fn.base == df.fn.base {
			continue
		}
		size, mtime, err := infos[k.i].size, infos[k.i].mtime, infos[k.i].err
		if err != nil {
			continue // gone meanwhile
		}
		uid := ul.uids[df.fn.base]
		if uid == 0 || uid <= last {
			uid = max(st.uidNext, last+1)
		}
		last = uid
		ref, ok := byLetters[df.fn.letters]
		if !ok {
			ref = st.intern(flagsFromLetters(df.fn.letters, f.kw))
			if len(byLetters) < maxInternedFlagLists {
				byLetters[df.fn.letters] = ref
			}
		}
		st.highestModSeq = 1
		st.msgs = append(st.msgs, makeRec(uid, 1, size, mtime, ref, df.file, df.fn))
		st.uidNext = max(st.uidNext, uid+1)
		st.addKeywords(st.flagLists[ref])
	}
	st.recount()
	if err := f.writeIndex(st); err != nil {
		return err
	}
	if big {
		// The last collection saw the scan's names, the sort keys and the
		// stat results live beside the new index, and sized the heap to
		// twice all that: without a collection now, the process would
		// keep that much resident for as long as the index stays loaded.
		go f.s.opts.returnMemory()
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
// process renamed into cur/ but did not index, whose UID its name keeps,
// and files other programs removed or renamed) and clears tmp/ of
// abandoned files.
//
// The scan of cur/ is skipped when cur/ has not changed since a scan that
// was recorded as complete (scannedName): every change to cur/ (a
// delivery's rename, a flag change, an unlink, by us or anyone) sets its
// mtime to the current time. A scan counts as complete only if cur/ was
// quiet for scanQuiet before it started, so that a change made during the
// scan, or in the same clock tick as the mtime it saw, cannot carry that
// same mtime (the rule dovecot applies to its own Maildir syncs).
func (f *folder) firstScan() error {
	if tmp, err := os.ReadDir(f.path("tmp")); err == nil {
		for _, e := range tmp {
			if fi, err := e.Info(); err == nil && time.Since(fi.ModTime()) > tmpMaxAge {
				os.Remove(f.path("tmp/" + e.Name()))
			}
		}
	}
	curMtime := mtimeOf(f.path("cur"))
	if !curMtime.IsZero() && f.scannedAt() == curMtime.UnixNano() {
		return f.reconcile(false)
	}
	quiet := !curMtime.IsZero() && time.Since(curMtime) > scanQuiet // before the scan starts
	if err := f.reconcile(true); err != nil {
		return err
	}
	if quiet && mtimeOf(f.path("cur")).Equal(curMtime) {
		// Losing this file costs one scan; it needs no fsync.
		_ = os.WriteFile(f.path(scannedName), strconv.AppendInt(nil, curMtime.UnixNano(), 10), 0o600)
	}
	return nil
}

// scannedAt returns the cur/ mtime (Unix ns) of the last complete scan,
// or 0.
func (f *folder) scannedAt() int64 {
	data, err := os.ReadFile(f.path(scannedName))
	if err != nil {
		return 0
	}
	n, err := strconv.ParseInt(string(data), 10, 64)
	if err != nil {
		return 0
	}
	return n
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
	if len(files) == 0 && !withCur {
		// The usual case when only new/ is looked at: nothing to match,
		// so no index of every message's name.
		return nil
	}
	known := newBaseIndex(f.st.msgs)
	var recs []record
	var fresh []diskFile
	seen := make([]bool, len(f.st.msgs))
	match := func(df diskFile) {
		i, ok := known.find(df.fn.base)
		if !ok {
			fresh = append(fresh, df)
			return
		}
		seen[i] = true
		m := &f.st.msgs[i]
		if m.file == df.file {
			return
		}
		// Renamed by another program (a Maildir MUA changing flags) or our
		// rename survived a crash that lost its record: the name wins for
		// the flags it can express.
		flags := mergeLetterFlags(f.st.flags(i), df.fn.letters, f.kw)
		recs = append(recs, record{kind: 'F', uid: m.uid, flags: flags, file: df.file})
	}
	for _, df := range files {
		match(df)
	}
	if withCur {
		// cur/ is matched as it is read: only the files that differ from
		// the index are kept.
		err := f.scanBatches("cur", func(batch []diskFile) {
			for _, df := range batch {
				match(df)
			}
		})
		if err != nil {
			return err
		}
		for i := range f.st.msgs {
			if !seen[i] {
				recs = append(recs, record{kind: 'X', uid: f.st.msgs[i].uid})
			}
		}
	}
	// Files whose names carry a UID not given out yet (",U=": deliveries
	// whose unsynced records a crash lost) get that UID back, in UID order,
	// before the others, which get new ones in delivery order. A U= below
	// UIDNEXT was given to another message or burnt: the file (a copy made
	// by hand from another folder, say) gets a new UID.
	uidNext := f.st.uidNext
	keepsUID := func(df diskFile) bool { return df.fn.uid >= uidNext && df.fn.uid != maxUID }
	slices.SortFunc(fresh, func(a, b diskFile) int {
		ka, kb := keepsUID(a), keepsUID(b)
		switch {
		case ka && kb && a.fn.uid != b.fn.uid:
			return cmp.Compare(a.fn.uid, b.fn.uid)
		case ka != kb:
			if ka {
				return -1
			}
			return 1
		}
		return byDelivery(a, b)
	})
	added := make(map[string]bool)
	var lastKept store.UID
	var renumbered []record // after the kept ones, which are in recs
	for _, df := range fresh {
		if added[df.fn.base] {
			continue
		}
		added[df.fn.base] = true
		size, mtime, err := f.fileInfo(df)
		if err != nil {
			continue
		}
		var uid store.UID // 0: the next one
		if keepsUID(df) && df.fn.uid > lastKept {
			uid, lastKept = df.fn.uid, df.fn.uid
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
		r := record{kind: 'A', uid: uid, size: size, date: mtime, flags: flagsFromLetters(df.fn.letters, f.kw), file: file}
		if uid != 0 {
			recs = append(recs, r)
		} else {
			renumbered = append(renumbered, r)
		}
	}
	recs = append(recs, renumbered...)
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

// baseIndex finds the message of a state by the base of its file name. It
// is a sorted array of hashes rather than a map: 16 bytes a message
// instead of about 70 (7 MB for 100,000), for the one pass of a rescan.
type baseIndex struct {
	seed   maphash.Seed
	hashes []baseHash // by h, then i
	msgs   []rec
}

type baseHash struct {
	h uint64
	i int
}

func newBaseIndex(msgs []rec) baseIndex {
	x := baseIndex{seed: maphash.MakeSeed(), hashes: make([]baseHash, len(msgs)), msgs: msgs}
	for i, m := range msgs {
		x.hashes[i] = baseHash{h: maphash.String(x.seed, baseOf(m.file)), i: i}
	}
	slices.SortFunc(x.hashes, func(a, b baseHash) int {
		if c := cmp.Compare(a.h, b.h); c != 0 {
			return c
		}
		return cmp.Compare(a.i, b.i)
	})
	return x
}

// find returns the index in msgs of the message whose file has base, the
// last one if a broken index holds several.
func (x baseIndex) find(base string) (int, bool) {
	h := maphash.String(x.seed, base)
	j, _ := slices.BinarySearchFunc(x.hashes, h, func(e baseHash, h uint64) int { return cmp.Compare(e.h, h) })
	found := -1
	for ; j < len(x.hashes) && x.hashes[j].h == h; j++ {
		if i := x.hashes[j].i; baseOf(x.msgs[i].file) == base {
			found = i
		}
	}
	return found, found >= 0
}

func baseOf(file string) string {
	_, name, _ := strings.Cut(file, "/")
	base, _, _ := strings.Cut(name, ":")
	return base
}

// commit appends recs to the index, fsyncs it and applies them (lock
// held, state in sync). It gives A records without a UID the next ones
// (those with one, from their file name, keep it: it is never below
// UIDNEXT), every record its MODSEQ, and returns the records as written.
func (f *folder) commit(recs []record) ([]record, error) {
	return f.write(recs, true)
}

// commitNoSync is commit without the fsync, for records that a crash may
// lose because the Maildir itself can restore them: A records of files in
// a synced cur/ whose names carry their UIDs.
func (f *folder) commitNoSync(recs []record) ([]record, error) {
	return f.write(recs, false)
}

func (f *folder) write(recs []record, sync bool) ([]record, error) {
	if len(recs) == 0 {
		return nil, nil
	}
	uidNext, modSeq := f.st.uidNext, f.st.highestModSeq
	var buf []byte
	for i := range recs {
		r := &recs[i]
		if r.kind == 'A' {
			if r.uid == 0 {
				r.uid = uidNext
			}
			if r.uid == maxUID {
				return nil, errOutOfUIDs
			}
			if r.uid < uidNext { // a bug: UIDs given out must ascend
				return nil, fmt.Errorf("maildir: uid %d below UIDNEXT %d", r.uid, uidNext)
			}
			uidNext = r.uid + 1
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
	if sync {
		if err := f.log.Sync(); err != nil {
			_ = f.log.Truncate(f.logLen)
			return nil, fmt.Errorf("fsync index: %w", err)
		}
	}
	f.logLen += int64(len(buf))
	if sync {
		f.syncedLen = f.logLen
	}
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

// syncForReaders makes the index durable before a session is shown what
// it says (lock held): a delivery's record is written without an fsync
// (commitNoSync), and a UID or UIDNEXT that a client has seen must not go
// back after a crash, even if the message's file, which also carries its
// UID, were removed by another program before postcove started again.
func (f *folder) syncForReaders() error {
	if f.log == nil || f.syncedLen >= f.logLen {
		return nil
	}
	if err := f.log.Sync(); err != nil {
		return fmt.Errorf("fsync index: %w", err)
	}
	f.syncedLen = f.logLen
	return nil
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
