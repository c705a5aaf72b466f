package maildir

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/postcove/postcove/services/mailbox/internal/store"
)

// Quota use is kept the Maildir++ way, in the maildirsize file of the
// Maildir (https://www.courier-mta.org/imap/README.maildirquota.html), which
// dovecot's "maildir" quota backend reads and writes too:
//
//	<limit>S                 first line: the limit in bytes (0: none)
//	<bytes> <messages>       then one line per change, signed
//
// Usage is the sum of the lines. Each append or expunge adds a line; when
// the file grows past 5120 bytes, or is missing or unreadable, it is
// recalculated from the file names (",S=") and sizes of every folder. The
// count is advisory, as in Maildir++: a change racing with a recalculation
// may be counted twice until the next one, never lost for good.
const (
	quotaName     = "maildirsize"
	quotaLockName = "postcove-quota.lock"
	quotaMaxFile  = 5120
	// maxQuotaCache bounds the users whose maildirsize a Store remembers.
	maxQuotaCache = 4096
)

// quotaFile is the parsed maildirsize.
type quotaFile struct {
	limit           int64
	bytes, messages int64
}

func parseQuotaFile(data string) (quotaFile, error) {
	var q quotaFile
	sc := bufio.NewScanner(strings.NewReader(data))
	if !sc.Scan() {
		return q, errors.New("empty maildirsize")
	}
	for _, part := range strings.Split(sc.Text(), ",") {
		if v, ok := strings.CutSuffix(part, "S"); ok {
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil || n < 0 {
				return q, fmt.Errorf("bad maildirsize limit %q", part)
			}
			q.limit = n
		}
	}
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) != 2 {
			return q, fmt.Errorf("bad maildirsize line %q", sc.Text())
		}
		b, err1 := strconv.ParseInt(f[0], 10, 64)
		n, err2 := strconv.ParseInt(f[1], 10, 64)
		if err1 != nil || err2 != nil {
			return q, fmt.Errorf("bad maildirsize line %q", sc.Text())
		}
		q.bytes += b
		q.messages += n
	}
	return q, nil
}

func (m *mailboxes) quotaLock(fn func() error) error {
	return withLock(filepath.Join(m.root, quotaLockName), fn)
}

// quotaSeen is a parsed maildirsize and the file it was parsed from: the
// same inode with the same size and mtime has the same content, because
// the file is only ever appended to or replaced by a rename.
type quotaSeen struct {
	ino   uint64
	size  int64
	mtime time.Time
	q     quotaFile
}

func (c quotaSeen) matches(fi fs.FileInfo) bool {
	return fi != nil && ino(fi) == c.ino && fi.Size() == c.size && fi.ModTime().Equal(c.mtime)
}

// cachedQuota returns the usage without taking the quota lock or reading
// the file when it has not changed since this Store last parsed it; a
// delivery checks the quota twice (SetQuotaLimit, Append), and most of
// the time nothing changed in between.
func (m *mailboxes) cachedQuota() (quotaFile, bool) {
	fi, err := os.Stat(filepath.Join(m.root, quotaName))
	if err != nil {
		return quotaFile{}, false
	}
	m.s.quotaMu.Lock()
	defer m.s.quotaMu.Unlock()
	c, ok := m.s.quotas[m.root]
	if !ok || !c.matches(fi) {
		return quotaFile{}, false
	}
	return c.q, true
}

// remember records what maildirsize, as fi says it is now, sums to.
func (m *mailboxes) remember(fi fs.FileInfo, q quotaFile) {
	m.s.quotaMu.Lock()
	defer m.s.quotaMu.Unlock()
	if len(m.s.quotas) >= maxQuotaCache {
		clear(m.s.quotas) // crude, but the cache only saves reads
	}
	m.s.quotas[m.root] = quotaSeen{ino: ino(fi), size: fi.Size(), mtime: fi.ModTime(), q: q}
}

// readQuota returns the usage: from the cache, or under the quota lock.
func (m *mailboxes) readQuota() (quotaFile, error) {
	if q, ok := m.cachedQuota(); ok {
		return q, nil
	}
	var q quotaFile
	err := m.quotaLock(func() error {
		var err error
		q, err = m.readQuotaLocked()
		return err
	})
	return q, err
}

// readQuotaLocked returns the usage, recalculating when needed (quota
// lock held).
func (m *mailboxes) readQuotaLocked() (quotaFile, error) {
	path := filepath.Join(m.root, quotaName)
	f, err := os.Open(path)
	var data []byte
	var fi fs.FileInfo
	if err == nil {
		fi, err = f.Stat()
		if err == nil {
			data, err = io.ReadAll(io.LimitReader(f, quotaMaxFile+1))
		}
		f.Close()
	}
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return quotaFile{}, fmt.Errorf("read quota: %w", err)
	}
	q, perr := parseQuotaFile(string(data))
	if err == nil && perr == nil && len(data) <= quotaMaxFile && q.bytes >= 0 && q.messages >= 0 {
		if int64(len(data)) == fi.Size() {
			m.remember(fi, q)
		}
		return q, nil
	}
	return m.recalcLocked(q.limit)
}

// recalcLocked counts every message of every folder and rewrites
// maildirsize (quota lock held).
func (m *mailboxes) recalcLocked(limit int64) (quotaFile, error) {
	q := quotaFile{limit: limit}
	dirs := []string{m.root}
	entries, err := os.ReadDir(m.root)
	if err != nil {
		return q, fmt.Errorf("recalculate quota: %w", err)
	}
	for _, e := range entries {
		if _, ok := nameFromDisk(e.Name()); ok && e.IsDir() {
			dirs = append(dirs, filepath.Join(m.root, e.Name()))
		}
	}
	for _, d := range dirs {
		f := &folder{dir: d}
		for _, sub := range []string{"cur", "new"} {
			files, err := f.scan(sub)
			if err != nil {
				continue
			}
			for _, df := range files {
				size := df.fn.size // a stat only when the name has no ",S="
				if size < 0 {
					fi, err := os.Stat(f.path(df.file))
					if err != nil {
						continue
					}
					size = fi.Size()
				}
				q.bytes += size
				q.messages++
			}
		}
	}
	data := fmt.Sprintf("%dS\n%d %d\n", q.limit, q.bytes, q.messages)
	path := filepath.Join(m.root, quotaName)
	// Not fsynced: the count is advisory and rebuilt from the files
	// whenever maildirsize is missing or unreadable, so a crash costs at
	// most a recalculation (or, if it left the file short, a count that is
	// off until the next one), never a message.
	if err := replaceFile(path, []byte(data), false); err != nil {
		return q, fmt.Errorf("write quota: %w", err)
	}
	if fi, err := os.Stat(path); err == nil && fi.Size() == int64(len(data)) {
		m.remember(fi, q)
	}
	return q, nil
}

func (m *mailboxes) recalcQuota() error {
	return m.quotaLock(func() error {
		q, _ := m.readQuotaLocked()
		_, err := m.recalcLocked(q.limit)
		return err
	})
}

// checkQuota fails with ErrQuotaExceeded when adding bytes would exceed
// the limit.
func (m *mailboxes) checkQuota(bytes int64) error {
	q, err := m.readQuota()
	if err != nil {
		return err
	}
	if q.limit > 0 && q.bytes+bytes > q.limit {
		return fmt.Errorf("%w: %d of %d bytes used, %d more", store.ErrQuotaExceeded, q.bytes, q.limit, bytes)
	}
	return nil
}

// addQuota records a change of use. Failing to record it is not worth
// failing a delivery or expunge over: the next recalculation repairs it.
func (m *mailboxes) addQuota(bytes, messages int64) {
	if bytes == 0 && messages == 0 {
		return
	}
	_ = m.quotaLock(func() error {
		path := filepath.Join(m.root, quotaName)
		before, err := os.Stat(path)
		if err != nil {
			_, err := m.recalcLocked(0) // counts the change already on disk
			return err
		}
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0o600)
		if err != nil {
			return err
		}
		defer f.Close()
		if _, err := fmt.Fprintf(f, "%d %d\n", bytes, messages); err != nil {
			return err
		}
		// Keep the cache in step when it described the file before this
		// line, so that the next delivery need not read it.
		m.s.quotaMu.Lock()
		c, ok := m.s.quotas[m.root]
		m.s.quotaMu.Unlock()
		if ok && c.matches(before) {
			if after, err := f.Stat(); err == nil {
				q := c.q
				q.bytes += bytes
				q.messages += messages
				m.remember(after, q)
			}
		}
		return nil
	})
}

func (m *mailboxes) Quota(ctx context.Context) (store.Quota, error) {
	q, err := m.readQuota()
	return store.Quota{UsedBytes: q.bytes, UsedMessages: q.messages, LimitBytes: q.limit}, err
}

func (m *mailboxes) SetQuotaLimit(ctx context.Context, limitBytes int64) error {
	if limitBytes < 0 {
		return fmt.Errorf("negative quota limit %d", limitBytes)
	}
	if q, ok := m.cachedQuota(); ok && q.limit == limitBytes {
		return nil // what LMTP finds on nearly every delivery
	}
	return m.quotaLock(func() error {
		q, err := m.readQuotaLocked()
		if err != nil || q.limit == limitBytes {
			return err
		}
		_, err = m.recalcLocked(limitBytes)
		return err
	})
}
