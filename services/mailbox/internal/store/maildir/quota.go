package maildir

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"

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

// readQuotaLocked returns the usage, recalculating when needed (quota
// lock held).
func (m *mailboxes) readQuotaLocked() (quotaFile, error) {
	path := filepath.Join(m.root, quotaName)
	data, err := os.ReadFile(path)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return quotaFile{}, fmt.Errorf("read quota: %w", err)
	}
	q, perr := parseQuotaFile(string(data))
	if err == nil && perr == nil && len(data) <= quotaMaxFile && q.bytes >= 0 && q.messages >= 0 {
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
				size, _, err := f.fileInfo(df)
				if err != nil {
					continue
				}
				q.bytes += size
				q.messages++
			}
		}
	}
	data := fmt.Sprintf("%dS\n%d %d\n", q.limit, q.bytes, q.messages)
	if err := writeFileSync(filepath.Join(m.root, quotaName), []byte(data)); err != nil {
		return q, fmt.Errorf("write quota: %w", err)
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
	return m.quotaLock(func() error {
		q, err := m.readQuotaLocked()
		if err != nil {
			return err
		}
		if q.limit > 0 && q.bytes+bytes > q.limit {
			return fmt.Errorf("%w: %d of %d bytes used, %d more", store.ErrQuotaExceeded, q.bytes, q.limit, bytes)
		}
		return nil
	})
}

// addQuota records a change of use. Failing to record it is not worth
// failing a delivery or expunge over: the next recalculation repairs it.
func (m *mailboxes) addQuota(bytes, messages int64) {
	if bytes == 0 && messages == 0 {
		return
	}
	_ = m.quotaLock(func() error {
		path := filepath.Join(m.root, quotaName)
		if _, err := os.Stat(path); err != nil {
			_, err := m.recalcLocked(0) // counts the change already on disk
			return err
		}
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0o600)
		if err != nil {
			return err
		}
		defer f.Close()
		_, err = fmt.Fprintf(f, "%d %d\n", bytes, messages)
		return err
	})
}

func (m *mailboxes) Quota(ctx context.Context) (store.Quota, error) {
	var q quotaFile
	err := m.quotaLock(func() error {
		var err error
		q, err = m.readQuotaLocked()
		return err
	})
	return store.Quota{UsedBytes: q.bytes, UsedMessages: q.messages, LimitBytes: q.limit}, err
}

func (m *mailboxes) SetQuotaLimit(ctx context.Context, limitBytes int64) error {
	if limitBytes < 0 {
		return fmt.Errorf("negative quota limit %d", limitBytes)
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
