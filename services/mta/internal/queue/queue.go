// Package queue is the MTA's durable spool: every message SMTP accepted,
// as one file holding its body and envelope (msgfile.go), until each
// recipient is delivered or has failed for good.
//
// Durability (the "nothing is lost" invariant): Enqueue returns only after
// the message file was written, renamed into place, and both it and its
// directory fsynced, so a message Enqueue accepted survives kill -9 and
// power loss. After a delivery attempt that leaves recipients to retry,
// the per-recipient state is written to a state file, fsynced too, so a
// restart never delivers again to a recipient that got 2xx — except when
// the crash falls between the 2xx and that write: then the message is
// delivered twice, never zero times. A message finished at its first
// attempt is removed without a state file.
//
// Several processes may share one spool directory: a worker delivers a
// message only while it holds the message's flock(2) lock, so no message is
// delivered by two workers at once, and a killed process's locks vanish
// with it.
//
// Retries back off exponentially from Options.RetryMin to Options.RetryMax
// with jitter (RFC 5321 §4.5.4.1 asks for at least 30 minutes between
// tries by default; postfix starts at 5 minutes, as we do); after
// Options.Lifetime the remaining recipients fail (RFC 3463 4.4.7) and the
// sender gets an RFC 3464 delivery status notification.
package queue

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

var (
	// ErrNoSpace: the disk or quota is full (SMTP 452 4.3.1). Nothing of
	// the message is left behind.
	ErrNoSpace = errors.New("queue: no space left on device")
	// ErrNotFound: no message with that ID is queued.
	ErrNotFound = errors.New("queue: no such message")
	// ErrBusy: the message is being delivered right now; try again.
	ErrBusy = errors.New("queue: message is being delivered")
)

// Defaults for Options fields left zero.
const (
	DefaultLifetime     = 5 * 24 * time.Hour
	DefaultRetryMin     = 5 * time.Minute
	DefaultRetryMax     = time.Hour
	DefaultWorkers      = 16
	DefaultScanInterval = 30 * time.Second
	DefaultDrainTimeout = 30 * time.Second
)

// Options configure a Queue. Zero fields take the defaults above.
type Options struct {
	// Dir is the spool directory (queue.dir), created when missing.
	Dir string
	// Lifetime is how long a message is retried before its remaining
	// recipients fail (queue.lifetime).
	Lifetime time.Duration
	// DelayWarning, when positive, is how long a recipient may stay
	// deferred before the sender gets one "delayed" DSN for it (RFC 3464
	// Action: delayed), as postfix's delay_warning_time. Zero (the
	// default, as postfix's) sends none.
	DelayWarning time.Duration
	// RetryMin is the delay after the first failed attempt, doubled after
	// each further one up to RetryMax (queue.retry_min, queue.retry_max).
	// Tests shorten both.
	RetryMin, RetryMax time.Duration
	// Workers is how many messages are delivered at once (queue.workers).
	Workers int
	// ScanInterval is how often Run rereads the spool directory, to find
	// messages that became due and those other processes sharing the
	// spool queued or deferred.
	ScanInterval time.Duration
	// DrainTimeout bounds how long Run waits, once its context is done,
	// for deliveries in progress to finish; then their contexts are
	// cancelled.
	DrainTimeout time.Duration

	// Hostname names this MTA in the DSNs it sends (Reporting-MTA, From).
	Hostname string
	// Resolve routes the DSN for a failed message to its sender: it
	// returns the recipients to enqueue (as FRONT resolves a RCPT TO). An
	// error means "try again later": the bounce is retried at the next
	// scan. nil routes every sender RouteRemote.
	Resolve func(ctx context.Context, addr string) ([]Recipient, error)

	// Logger receives the queue's log; nil discards it.
	Logger *slog.Logger
	// Registerer receives the queue's Prometheus metrics; nil: none.
	Registerer prometheus.Registerer

	// now and jitter are replaced by tests.
	now    func() time.Time
	jitter func(time.Duration) time.Duration
}

// Queue is a spool directory. Its methods are safe for concurrent use, and
// several Queues (in one process or many) may share a directory.
type Queue struct {
	opts    Options
	dir     string
	dirSync *dirSyncer
	log     *slog.Logger
	metrics *metrics

	// wrapBody lets tests make body writes fail (a full disk).
	wrapBody func(io.Writer) io.Writer

	// bufPool holds *writeBuffers for Enqueue.
	bufPool sync.Pool
	// free holds spent message files for reuse (recycle.go).
	free *freeFiles

	mu    sync.Mutex // protects fresh and flushWanted
	fresh []string   // IDs enqueued or flushed since Run last looked: due now
	// flushWanted are messages flushed while this process was delivering
	// them: Run flushes each again once its attempt ends, so an operator's
	// flush is never lost to that window.
	flushWanted map[string]bool
	kick        chan struct{} // wakes Run; buffered, one pending kick is enough
}

// Open opens (creating it if needed) the spool directory and removes what
// crashed Enqueues left behind. Queued messages are delivered by Run.
func Open(opts Options) (*Queue, error) {
	if opts.Dir == "" {
		return nil, errors.New("queue: no directory")
	}
	if opts.Lifetime <= 0 {
		opts.Lifetime = DefaultLifetime
	}
	if opts.RetryMin <= 0 {
		opts.RetryMin = DefaultRetryMin
	}
	if opts.RetryMax <= 0 {
		opts.RetryMax = max(DefaultRetryMax, opts.RetryMin)
	}
	opts.RetryMax = max(opts.RetryMax, opts.RetryMin)
	if opts.Workers <= 0 {
		opts.Workers = DefaultWorkers
	}
	if opts.ScanInterval <= 0 {
		opts.ScanInterval = DefaultScanInterval
	}
	if opts.DrainTimeout <= 0 {
		opts.DrainTimeout = DefaultDrainTimeout
	}
	if opts.Hostname == "" {
		opts.Hostname, _ = os.Hostname()
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.now == nil {
		opts.now = time.Now
	}
	if opts.jitter == nil {
		opts.jitter = jitter
	}
	if err := os.MkdirAll(opts.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("queue: %w", err)
	}
	q := &Queue{
		opts:    opts,
		dir:     opts.Dir,
		dirSync: newDirSyncer(opts.Dir),
		log:     opts.Logger,
		kick:    make(chan struct{}, 1),
	}
	q.metrics = newMetrics(opts.Registerer, q)
	free, err := openFreeFiles(filepath.Join(opts.Dir, freeDirName))
	if err != nil {
		return nil, fmt.Errorf("queue: %w", err)
	}
	q.free = free
	if _, err := q.scan(); err != nil {
		return nil, fmt.Errorf("queue: %w", err)
	}
	return q, nil
}

// newID returns a fresh message ID: the time, so that IDs sort by age, and
// 64 random bits, so that processes sharing the spool never collide.
func newID(now time.Time) string {
	var r [8]byte
	rand.Read(r[:])
	return fmt.Sprintf("%013x-%s", now.UnixMilli(), hex.EncodeToString(r[:]))
}

// Enqueue stores env and the body durably — the message file and its
// directory fsynced — and returns the message ID. Only then may SMTP
// answer 250. Any bare CR or LF in body is stored as CRLF. env.ID and the
// recipients' delivery state are set here; duplicate recipients (same
// address and route) are kept once.
//
// Errors: ErrNoSpace when the disk is full (SMTP 452 4.3.1), anything else
// is a local error (451 4.3.0). On error nothing of the message remains.
func (q *Queue) Enqueue(ctx context.Context, env Envelope, body io.Reader) (string, error) {
	env.ID = newID(q.opts.now())
	if env.ReceivedAt.IsZero() {
		env.ReceivedAt = q.opts.now()
	}
	env.ReceivedAt = env.ReceivedAt.UTC()
	env.Recipients = cleanRecipients(env.Recipients)
	if err := validate(env); err != nil {
		return "", fmt.Errorf("queue: %w", err)
	}
	if err := q.store(ctx, env, body); err != nil {
		return "", q.enqueueErr(env.ID, err)
	}
	q.metrics.queued.Inc()
	q.log.Info("queued", "id", env.ID, "from", env.Sender, "recipients", len(env.Recipients))
	q.wake(env.ID) // after store released the lock, so a worker can take it
	return env.ID, nil
}

func (q *Queue) enqueueErr(id string, err error) error {
	if noSpace(err) {
		return fmt.Errorf("%w (message %s: %v)", ErrNoSpace, id, err)
	}
	return fmt.Errorf("queue: message %s: %w", id, err)
}

// cleanRecipients returns the recipients without duplicates and with a
// clean delivery state.
func cleanRecipients(rcpts []Recipient) []Recipient {
	type key struct {
		addr  string
		route Route
	}
	seen := make(map[key]bool, len(rcpts))
	out := make([]Recipient, 0, len(rcpts))
	for _, r := range rcpts {
		k := key{strings.ToLower(r.Address), r.Route}
		if seen[k] {
			continue
		}
		seen[k] = true
		out = append(out, Recipient{Address: r.Address, Orig: r.Orig, Route: r.Route, Notify: r.Notify})
	}
	return out
}

// ctxReader stops a copy when the context is done (the SMTP client went
// away mid-DATA).
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}

func (q *Queue) path(id, ext string) string { return filepath.Join(q.dir, id+ext) }

// removeFiles removes everything of message id, in either format: the
// file that makes the message exist first (ID.msg, or ID.env of format 1),
// then its delivery state, temporary files, body and lock file. The caller
// holds the lock, or the message has no file that makes it exist.
//
// ID.msg goes before ID.state: a crash between the two leaves a state
// file without its message, which scan removes; the other order could
// leave the message with its queued state, and deliver again to
// recipients that already have it.
func (q *Queue) removeFiles(id string) {
	for _, ext := range []string{msgExt, envExt, stateExt, msgExt + tmpExt, envExt + tmpExt, stateExt + tmpExt, bodyExt, bodyExt + tmpExt, lockExt} {
		q.remove(id, ext)
	}
}

// removeDone removes message id, whose lock l the caller holds, once it is
// finished.
func (q *Queue) removeDone(id string, l *lease) {
	if !l.msg {
		q.removeFiles(id)
		return
	}
	if !q.free.retire(id, q.path(id, msgExt), l.f) {
		q.remove(id, msgExt)
	}
	q.remove(id, stateExt)
}

func (q *Queue) remove(id, ext string) {
	if err := os.Remove(q.path(id, ext)); err != nil && !errors.Is(err, os.ErrNotExist) {
		q.log.Error("remove queue file", "id", id, "err", err)
	}
}

// wake tells Run that message id is due now.
func (q *Queue) wake(id string) {
	q.mu.Lock()
	q.fresh = append(q.fresh, id)
	q.mu.Unlock()
	select {
	case q.kick <- struct{}{}:
	default:
	}
}

// wantFlush remembers that id was flushed while locked: being delivered
// here, or by another process sharing the spool. That process sets the
// message's next attempt when its own attempt ends, which would overwrite
// the flush, so the flush is applied again once the lock is free:
// flushIfWanted when the attempt was ours, retryFlushes otherwise. The
// kick makes Run schedule that retry.
func (q *Queue) wantFlush(id string) {
	q.mu.Lock()
	if q.flushWanted == nil {
		q.flushWanted = map[string]bool{}
	}
	q.flushWanted[id] = true
	q.mu.Unlock()
	select {
	case q.kick <- struct{}{}:
	default:
	}
}

// flushIfWanted flushes id again when a flush came while it was locked.
// Run calls it once this process's attempt on id has ended.
func (q *Queue) flushIfWanted(id string) {
	q.mu.Lock()
	wanted := q.flushWanted[id]
	q.mu.Unlock()
	if wanted {
		q.applyWantedFlush(id)
	}
}

// retryFlushes applies the wanted flushes of messages not being tried by
// this process (skip), and returns how many are still locked elsewhere.
func (q *Queue) retryFlushes(skip map[string]bool) (waiting int) {
	q.mu.Lock()
	var ids []string
	for id := range q.flushWanted {
		if !skip[id] {
			ids = append(ids, id)
		}
	}
	q.mu.Unlock()
	for _, id := range ids {
		if !q.applyWantedFlush(id) {
			waiting++
		}
	}
	return waiting
}

// applyWantedFlush flushes id and forgets the wish, unless id is still
// locked (false: try again later).
func (q *Queue) applyWantedFlush(id string) bool {
	err := q.flushOne(id)
	if errors.Is(err, ErrBusy) {
		return false
	}
	q.mu.Lock()
	delete(q.flushWanted, id)
	q.mu.Unlock()
	if err != nil && !errors.Is(err, ErrNotFound) {
		q.log.Warn("flush after delivery attempt", "id", id, "err", err)
	}
	return true
}

// hasWantedFlushes reports whether a flush waits for a lock.
func (q *Queue) hasWantedFlushes() bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.flushWanted) > 0
}

// takeFresh returns and forgets the IDs passed to wake.
func (q *Queue) takeFresh() []string {
	q.mu.Lock()
	defer q.mu.Unlock()
	ids := q.fresh
	q.fresh = nil
	return ids
}

// readEnvelopeFile reads an envelope record file of message id: ID.env
// (format 1) or ID.state (format 2). errGone when there is none.
func (q *Queue) readEnvelopeFile(id, ext string) (Envelope, error) {
	b, err := os.ReadFile(q.path(id, ext))
	if errors.Is(err, os.ErrNotExist) {
		return Envelope{}, errGone
	}
	if err != nil {
		return Envelope{}, err
	}
	env, err := parseEnvelope(b)
	if err != nil {
		return Envelope{}, err
	}
	if env.ID != id {
		return Envelope{}, fmt.Errorf("envelope file %s holds message ID %q", id+ext, env.ID)
	}
	return env, nil
}

// spooled is a queued message opened for work.
type spooled struct {
	env  Envelope
	body *io.SectionReader
	// bodyFile is format 1's ID.body, to close; format 2's body is in
	// the locked file itself.
	bodyFile *os.File
}

func (s spooled) close() {
	if s.bodyFile != nil {
		s.bodyFile.Close()
	}
}

// open reads message id, whose lock l the caller holds, in either format.
// errGone: the message is finished; errBodyMissing: format 1 without its
// body; other errors: the message is unusable.
func (q *Queue) open(id string, l *lease) (spooled, error) {
	if l.msg {
		bufs := q.getBuffers()
		defer q.putBuffers(bufs)
		env, n, err := q.msgEnvelope(id, l.f, bufs.buf)
		if err != nil {
			return spooled{}, err
		}
		return spooled{env: env, body: io.NewSectionReader(l.f, 0, n)}, nil
	}
	env, err := q.readEnvelopeFile(id, envExt)
	if err != nil {
		return spooled{}, err
	}
	f, err := os.Open(q.path(id, bodyExt))
	if err != nil {
		return spooled{}, fmt.Errorf("%w: %w", errBodyMissing, err)
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return spooled{}, fmt.Errorf("stat body: %w", err)
	}
	return spooled{env: env, body: io.NewSectionReader(f, 0, fi.Size()), bodyFile: f}, nil
}

// peek reads message id without its lock (List): its envelope and body
// size. errGone when it is not queued.
func (q *Queue) peek(id string) (Envelope, int64, error) {
	f, err := os.Open(q.path(id, msgExt))
	if err == nil {
		defer f.Close()
		return q.msgEnvelope(id, f, nil)
	}
	if !errors.Is(err, os.ErrNotExist) {
		return Envelope{}, 0, err
	}
	env, err := q.readEnvelopeFile(id, envExt)
	if err != nil {
		return Envelope{}, 0, err
	}
	var size int64
	if fi, err := os.Stat(q.path(id, bodyExt)); err == nil {
		size = fi.Size()
	}
	return env, size, nil
}

// writeEnvelope records the delivery state of a message whose lock l the
// caller holds: into ID.state for format 2, by replacing ID.env for
// format 1.
//
// The write is fsynced (file, then directory). Losing it could only lose
// progress, never mail — the message would be tried again from its
// previous state, so recipients that got it would get it twice — but a
// rename made durable before the file's content could leave an empty
// state file, which does not parse, and the message would end in corrupt/.
// It is the rare path: only an attempt that leaves recipients to retry
// writes it. A message finished at its first attempt is just removed
// (removeDone).
func (q *Queue) writeEnvelope(l *lease, env Envelope) error {
	data, err := marshalEnvelope(env)
	if err != nil {
		return err
	}
	ext := envExt
	if l.msg {
		ext = stateExt
	}
	if err := writeFileSync(q.path(env.ID, ext), data); err != nil {
		return err
	}
	return q.dirSync.sync()
}

// Message is a queued message as List shows it.
type Message struct {
	Envelope
	Size int64 // of the body, in bytes
	// Next is when delivery is next tried; zero when it is due now.
	Next time.Time
}

// List returns the queued messages, oldest first.
func (q *Queue) List(ctx context.Context) ([]Message, error) {
	ids, err := q.ids()
	if err != nil {
		return nil, fmt.Errorf("queue: list: %w", err)
	}
	var out []Message
	for _, id := range ids {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		env, size, err := q.peek(id)
		if errors.Is(err, errGone) || errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			q.log.Warn("list: unreadable message", "id", id, "err", err)
			continue
		}
		m := Message{Envelope: env, Size: size}
		if due := q.due(env); due.After(q.opts.now()) {
			m.Next = due
		}
		out = append(out, m)
	}
	return out, nil
}

// ids returns the IDs of the messages in the spool (those with a message
// file, or a format-1 envelope), oldest first.
func (q *Queue) ids() ([]string, error) {
	entries, err := os.ReadDir(q.dir)
	if err != nil {
		return nil, err
	}
	var ids []string
	for _, e := range entries {
		name := e.Name()
		for _, ext := range []string{msgExt, envExt} {
			if id, ok := strings.CutSuffix(name, ext); ok && validID(id) {
				ids = append(ids, id)
			}
		}
	}
	slices.Sort(ids)
	return ids, nil
}

// Flush makes the deferred recipients of message id due now, or those of
// every message when id is "". A message being delivered at that moment is
// left alone (it is being tried now). Flushing a missing ID is ErrNotFound.
func (q *Queue) Flush(ctx context.Context, id string) error {
	if id != "" {
		err := q.flushOne(id)
		if errors.Is(err, ErrBusy) {
			q.wantFlush(id)
			return nil
		}
		return err
	}
	ids, err := q.ids()
	if err != nil {
		return fmt.Errorf("queue: flush: %w", err)
	}
	for _, id := range ids {
		if err := ctx.Err(); err != nil {
			return err
		}
		err := q.flushOne(id)
		if errors.Is(err, ErrBusy) {
			q.wantFlush(id)
		} else if err != nil && !errors.Is(err, ErrNotFound) {
			return err
		}
	}
	return nil
}

func (q *Queue) flushOne(id string) error {
	if !validID(id) {
		return fmt.Errorf("%w: %q", ErrNotFound, id)
	}
	l, err := q.lock(id)
	if err != nil {
		return err
	}
	defer l.release()
	m, err := q.open(id, l)
	if errors.Is(err, errGone) {
		return fmt.Errorf("%w: %s", ErrNotFound, id)
	}
	if err != nil {
		return fmt.Errorf("queue: flush %s: %w", id, err)
	}
	m.close()
	env := m.env
	changed := false
	for i := range env.Recipients {
		if r := &env.Recipients[i]; r.Status == Deferred && !r.Retry.IsZero() {
			r.Retry = time.Time{}
			changed = true
		}
	}
	if changed {
		if err := q.writeEnvelope(l, env); err != nil {
			return fmt.Errorf("queue: flush %s: %w", id, err)
		}
	}
	l.release() // before waking Run, so that a worker can take it
	q.wake(id)
	return nil
}

// Delete removes message id from the queue without delivering it or
// telling its sender (postsuper -d). A message being delivered right now
// gives ErrBusy.
func (q *Queue) Delete(ctx context.Context, id string) error {
	if !validID(id) {
		return fmt.Errorf("%w: %q", ErrNotFound, id)
	}
	l, err := q.lock(id)
	if err != nil {
		return err
	}
	defer l.release()
	if _, err := os.Stat(q.path(id, envExt)); !l.msg && errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("%w: %s", ErrNotFound, id)
	}
	q.removeFiles(id)
	if err := q.dirSync.sync(); err != nil {
		return fmt.Errorf("queue: delete %s: %w", id, err)
	}
	q.log.Info("deleted by the operator", "id", id)
	return nil
}

// lock takes message id's lock for an admin operation.
func (q *Queue) lock(id string) (*lease, error) {
	l, err := tryLock(q.dir, id)
	switch {
	case errors.Is(err, errBusy):
		return nil, fmt.Errorf("%w: %s", ErrBusy, id)
	case errors.Is(err, errGone):
		return nil, fmt.Errorf("%w: %s", ErrNotFound, id)
	case err != nil:
		return nil, fmt.Errorf("queue: %s: %w", id, err)
	}
	return l, nil
}
