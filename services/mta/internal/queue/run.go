package queue

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/postcove/postcove/services/mta/internal/dsn"
)

// Body is a queued message's content, CRLF lines. A Deliverer reads it as
// many times as it needs with io.NewSectionReader(body, 0, body.Size()).
// (*io.SectionReader is a Body.)
type Body interface {
	io.ReaderAt
	Size() int64
}

// Deliverer sends a message on. The queue calls it from several workers at
// once.
type Deliverer interface {
	// Deliver tries to deliver body to rcpts (those recipients of env that
	// are due now) and returns one Result per recipient, in the same order:
	// 2xx delivered, 4xx retry later, 5xx failed. Failing to reach the
	// next hop is 4xx for every recipient: the message stays queued.
	Deliver(ctx context.Context, env Envelope, rcpts []Recipient, body Body) []Result
}

// orphanAge is how old a lock file without a message must be before scan
// removes it: Enqueue creates the lock file an instant before it locks it.
const orphanAge = time.Minute

// maxFullReturn is the largest original a DSN returns whole (RET=FULL);
// larger ones are returned as their header only, as RFC 3461 §4.3 allows.
const maxFullReturn = 10 << 20

// jitter spreads retries of messages that failed together over ±10% of d,
// so that they do not all come back at once.
func jitter(d time.Duration) time.Duration {
	return d - d/10 + rand.N(d/5+1)
}

// backoff returns the delay before the next try after attempts failed
// ones: RetryMin doubled after each attempt, at most RetryMax.
func (q *Queue) backoff(attempts int) time.Duration {
	d := q.opts.RetryMin
	for i := 1; i < attempts && d < q.opts.RetryMax; i++ {
		d *= 2
	}
	return q.opts.jitter(min(d, q.opts.RetryMax))
}

// due returns when message env should next be looked at: the zero time
// when now (a recipient pending, or failed and not reported yet), else the
// earliest retry or the expiry of the queue lifetime.
func (q *Queue) due(env Envelope) time.Time {
	var next time.Time
	for _, r := range env.Recipients {
		switch {
		case r.Status == Pending, r.Status == Failed && !r.Reported:
			return time.Time{}
		case r.Status == Deferred && (next.IsZero() || r.Retry.Before(next)):
			next = r.Retry
			if next.IsZero() { // flushed
				return next
			}
		}
	}
	if next.IsZero() {
		return next // everything final: remove it
	}
	if expiry := env.ReceivedAt.Add(q.opts.Lifetime); expiry.Before(next) {
		return expiry
	}
	return next
}

// scanEntry caches the due time of an envelope file, keyed by what changes
// when the file is replaced.
type scanEntry struct {
	ino   uint64
	mtime time.Time
	size  int64
	due   time.Time
}

// scan lists the spool: the messages and their due times (read from the
// envelope files that changed since the last scan, per cache, which may be
// nil). It removes what crashed Enqueues left (bodies and temporary files
// without an envelope) and moves aside envelope files it cannot use.
func (q *Queue) scan() (map[string]time.Time, error) { return q.scanCached(nil) }

func (q *Queue) scanCached(cache map[string]scanEntry) (map[string]time.Time, error) {
	entries, err := os.ReadDir(q.dir)
	if err != nil {
		return nil, fmt.Errorf("read spool: %w", err)
	}
	type files struct{ msg, state, env, body, other, lock, msgTmp bool }
	byID := map[string]*files{}
	for _, e := range entries {
		if !e.Type().IsRegular() {
			continue // corrupt/, or anything an operator put there
		}
		name := e.Name()
		id, ext, _ := strings.Cut(name, ".")
		if !validID(id) {
			continue
		}
		f := byID[id]
		if f == nil {
			f = &files{}
			byID[id] = f
		}
		switch "." + ext {
		case msgExt:
			f.msg = true
		case stateExt:
			f.state = true
		case envExt:
			f.env = true
		case bodyExt:
			f.body = true
		case lockExt:
			f.lock = true
		case msgExt + tmpExt:
			f.msgTmp = true
		default:
			f.other = true
		}
	}
	out := make(map[string]time.Time, len(byID))
	for id, f := range byID {
		switch {
		case f.msg && !f.state:
			// Never tried yet (a tried message that is not finished
			// has a state file): due now. Its file is checked when a
			// worker opens it.
			out[id] = time.Time{}
		case f.msg:
			due, ok := q.scanEnvelope(id, stateExt, cache)
			if ok {
				out[id] = due
			}
		case f.env:
			due, ok := q.scanEnvelope(id, envExt, cache)
			if ok {
				out[id] = due
			}
		case f.state:
			q.removeStaleState(id)
		case f.body || f.other || f.msgTmp:
			q.removeOrphan(id, 0)
		case f.lock:
			q.removeOrphan(id, orphanAge)
		}
	}
	for id := range cache {
		if _, ok := out[id]; !ok {
			delete(cache, id)
		}
	}
	q.metrics.observe(out)
	return out, nil
}

// scanEnvelope returns the due time of message id, read from its
// envelope record file (ext: format 1's ID.env or format 2's ID.state), or
// from cache when that file has not changed.
func (q *Queue) scanEnvelope(id, ext string, cache map[string]scanEntry) (time.Time, bool) {
	fi, err := os.Stat(q.path(id, ext))
	if err != nil {
		return time.Time{}, ext == stateExt // finished meanwhile, or (ID.msg) state just removed
	}
	var ino uint64
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		ino = st.Ino
	}
	if e, ok := cache[id]; ok && e.ino == ino && e.mtime.Equal(fi.ModTime()) && e.size == fi.Size() {
		return e.due, true
	}
	env, err := q.readEnvelopeFile(id, ext)
	if errors.Is(err, errGone) {
		return time.Time{}, ext == stateExt
	}
	if err != nil {
		q.quarantine(id, err)
		return time.Time{}, false
	}
	due := q.due(env)
	if cache != nil {
		cache[id] = scanEntry{ino: ino, mtime: fi.ModTime(), size: fi.Size(), due: due}
	}
	return due, true
}

// removeStaleState removes the state file of a message that has no
// message file any more: removeFiles was interrupted between the two.
// A state file is only written while its message file exists, under its
// lock, and the message file is removed first, so once the message file
// is gone the message is finished.
func (q *Queue) removeStaleState(id string) {
	if _, err := os.Stat(q.path(id, msgExt)); !errors.Is(err, os.ErrNotExist) {
		return // there after all (listed while being created), or unknown
	}
	q.log.Warn("removing the state file of a finished message", "id", id)
	q.remove(id, stateExt)
	q.remove(id, stateExt+tmpExt)
}

// removeOrphan removes the files of a message that has no envelope: what
// an Enqueue killed before its end left behind (never delivered: only the
// envelope makes a message). A live Enqueue holds the lock, so it is left
// alone. Lock files alone are removed only once older than minAge.
func (q *Queue) removeOrphan(id string, minAge time.Duration) {
	if minAge > 0 {
		fi, err := os.Stat(q.path(id, lockExt))
		if err != nil || q.opts.now().Sub(fi.ModTime()) < minAge {
			return
		}
	}
	// A format-2 Enqueue holds the lock of its ID.msg.tmp from the
	// moment it creates it (or an instant after: then the scan may remove
	// the file under it, and that Enqueue fails and says 451).
	tmp, err := lockPath(q.path(id, msgExt+tmpExt), os.O_RDONLY)
	switch {
	case errors.Is(err, errBusy):
		return
	case err == nil:
		defer tmp.release()
	}
	l, err := tryLock(q.dir, id)
	switch {
	case errors.Is(err, errBusy):
		return
	case errors.Is(err, errGone):
		// No lock file: not a format-1 Enqueue in progress (it creates
		// the lock first).
	case err != nil:
		q.log.Error("remove leftovers", "id", id, "err", err)
		return
	default:
		defer l.release()
	}
	for _, ext := range []string{envExt, msgExt} {
		if _, err := os.Stat(q.path(id, ext)); err == nil {
			return // the Enqueue we waited for completed
		}
	}
	q.log.Warn("removing the leftovers of an unfinished enqueue", "id", id)
	q.removeFiles(id)
}

// quarantine moves a message whose envelope cannot be used into the
// corrupt/ subdirectory for the operator, and logs why. It is never
// delivered half.
func (q *Queue) quarantine(id string, why error) {
	l, err := tryLock(q.dir, id)
	if err != nil {
		return // busy: its holder will see it; gone: nothing to do
	}
	defer l.release()
	q.log.Error("unusable queue message moved to corrupt/", "id", id, "err", why)
	dst := filepath.Join(q.dir, "corrupt")
	if err := os.MkdirAll(dst, 0o700); err != nil {
		q.log.Error("quarantine", "id", id, "err", err)
		return
	}
	for _, ext := range []string{msgExt, stateExt, bodyExt, envExt} {
		if err := os.Rename(q.path(id, ext), filepath.Join(dst, id+ext)); err != nil && !errors.Is(err, os.ErrNotExist) {
			q.log.Error("quarantine", "id", id, "err", err)
		}
	}
	q.removeFiles(id)
}

// Run delivers queued messages with d until ctx is done, then waits for
// deliveries in progress (at most Options.DrainTimeout) and returns nil. It
// resumes what an earlier process left queued. Run at most once per Queue.
func (q *Queue) Run(ctx context.Context, d Deliverer) error {
	dctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	defer cancel()
	type doneMsg struct {
		id  string
		due time.Time
		ok  bool
	}
	jobs := make(chan string)
	done := make(chan doneMsg, q.opts.Workers)
	for range q.opts.Workers {
		go func() {
			for id := range jobs {
				due, ok := q.process(dctx, id, d)
				done <- doneMsg{id, due, ok}
			}
		}()
	}

	inFlight := map[string]bool{}
	// again are messages woken (flushed) while in flight: the wake-up is
	// handed on once their attempt ends instead of being dropped.
	again := map[string]bool{}
	cache := map[string]scanEntry{}
	timer := time.NewTimer(0)
	defer timer.Stop()
	// wakeAt brings the next scan forward to t. A message still due now
	// after its worker is done could not progress (its bounce could not be
	// routed): it waits for the regular scan rather than spin.
	wakeAt := func(t time.Time) {
		if dl := t.Sub(q.opts.now()); dl > 0 && dl < q.opts.ScanInterval {
			timer.Reset(dl)
		}
	}
	finished := func(m doneMsg) {
		delete(inFlight, m.id)
		if m.ok {
			wakeAt(m.due)
		}
		q.flushIfWanted(m.id) // wakes id when it flushes
		if again[m.id] {
			delete(again, m.id)
			q.wake(m.id)
		}
	}
	// dispatch hands id to a worker; false when ctx is done.
	dispatch := func(id string) bool {
		if inFlight[id] {
			again[id] = true
			return true
		}
		for {
			select {
			case jobs <- id:
				inFlight[id] = true
				return true
			case m := <-done:
				finished(m)
			case <-ctx.Done():
				return false
			}
		}
	}
loop:
	for {
		select {
		case <-ctx.Done():
			break loop
		case m := <-done:
			finished(m)
		case <-q.kick:
			for _, id := range q.takeFresh() {
				if !dispatch(id) {
					break loop
				}
			}
			if q.hasWantedFlushes() {
				wakeAt(q.opts.now().Add(flushRetry))
			}
		case <-timer.C:
			// Before the scan, so that a flush applied now is seen due.
			waiting := q.retryFlushes(inFlight)
			due, err := q.scanCached(cache)
			if err != nil {
				q.log.Error("scan", "err", err)
			}
			now := q.opts.now()
			next := now.Add(q.opts.ScanInterval)
			if waiting > 0 {
				next = minTime(next, now.Add(flushRetry))
			}
			for id, t := range due {
				if t.After(now) {
					next = minTime(next, t)
				} else if !dispatch(id) {
					break loop
				}
			}
			timer.Reset(next.Sub(q.opts.now()))
		}
	}

	// Drain: let the deliveries in progress end, cancelling them after
	// DrainTimeout.
	close(jobs)
	drain := time.AfterFunc(q.opts.DrainTimeout, cancel)
	defer drain.Stop()
	for len(inFlight) > 0 {
		delete(inFlight, (<-done).id)
	}
	return nil
}

// flushRetry is how often a flush of a message that another process is
// trying is attempted again.
const flushRetry = time.Second

func minTime(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}

// process delivers the due recipients of message id if it can take its
// lock, records the results durably, reports failures to the sender and
// removes the message once every recipient is final. It returns when the
// message is next due, with ok false when it is no longer queued.
func (q *Queue) process(ctx context.Context, id string, d Deliverer) (time.Time, bool) {
	l, err := tryLock(q.dir, id)
	if err != nil {
		if !errors.Is(err, errBusy) && !errors.Is(err, errGone) {
			q.log.Error("lock", "id", id, "err", err)
		}
		return time.Time{}, false
	}
	defer l.release()
	m, err := q.open(id, l)
	if errors.Is(err, errGone) {
		return time.Time{}, false
	}
	if err != nil {
		l.release()
		q.quarantine(id, err)
		return time.Time{}, false
	}
	defer m.close()
	env := m.env

	now := q.opts.now()
	expired := !now.Before(env.ReceivedAt.Add(q.opts.Lifetime))
	// expire fails a recipient whose queue lifetime ran out (RFC 3463
	// 4.4.7); its last answer, kept in Last, was temporary.
	expire := func(r *Recipient) {
		r.Status = Failed
		q.log.Warn("queue lifetime expired", "id", id, "rcpt", r.Address, "last", r.Last.String())
		q.metrics.result.WithLabelValues("expired").Inc()
	}
	var due []int
	for i := range env.Recipients {
		r := &env.Recipients[i]
		switch {
		case r.Status.final():
		case r.Status == Pending, !r.Retry.After(now):
			// Due recipients are tried even when the lifetime has
			// run out, once more, as postfix does: a queue that was
			// stopped for days does not bounce untried mail.
			due = append(due, i)
		case expired:
			expire(r)
		}
	}

	if len(due) > 0 {
		rcpts := make([]Recipient, len(due))
		for j, i := range due {
			rcpts[j] = env.Recipients[i]
		}
		results := d.Deliver(ctx, env, rcpts, m.body)
		if len(results) != len(rcpts) {
			q.log.Error("deliverer returned the wrong number of results", "id", id, "want", len(rcpts), "got", len(results))
		}
		now = q.opts.now()
		for j, i := range due {
			res := Result{Code: 451, Enhanced: "4.3.0", Text: "internal error: no delivery result"}
			if j < len(results) {
				res = results[j]
			}
			r := &env.Recipients[i]
			q.record(env, r, res, now)
			if expired && r.Status == Deferred {
				expire(r)
			}
		}
	}

	q.report(ctx, &env, m.body)

	finished := true
	for _, r := range env.Recipients {
		if !r.Status.final() || r.Status == Failed && !r.Reported {
			finished = false
		}
	}
	if finished {
		// The removal is made durable before the worker moves on.
		// Without it a power loss could bring the message back, and it
		// would be delivered again: a duplicate, never a loss
		// (DESIGN.md invariant 1 tolerates the one, not the other), so
		// this fsync is about not resurrecting delivered mail, and it is
		// kept. kill -9 alone cannot resurrect it: the removal is done
		// in the kernel, whose caches outlive the process. It costs the
		// worker one journal commit, shared (dirSyncer) with concurrent
		// Enqueues and removals; not waiting for it (syncing in the
		// background) measured no faster under load, as the syncs then
		// crowd the Enqueues' ones.
		q.removeDone(id, l)
		if err := q.dirSync.sync(); err != nil {
			q.log.Error("sync spool", "id", id, "err", err)
		}
		q.log.Info("done", "id", id)
		return time.Time{}, false
	}
	if err := q.writeEnvelope(l, env); err != nil {
		// The next attempt repeats this one's deliveries: delivered
		// twice rather than lost.
		q.log.Error("save delivery state", "id", id, "err", err)
	}
	return q.due(env), true
}

// record applies one delivery result to a recipient.
func (q *Queue) record(env Envelope, r *Recipient, res Result, now time.Time) {
	r.Attempts++
	r.Last = res
	// The reply text ends up in the envelope file and the DSN: keep it
	// one bounded line.
	r.Last.Text = strings.Map(func(c rune) rune {
		if c < 0x20 || c == 0x7f {
			return ' '
		}
		return c
	}, r.Last.Text)
	if len(r.Last.Text) > maxTextLen {
		r.Last.Text = r.Last.Text[:maxTextLen]
	}
	if checkField("", r.Last.Enhanced, 16) != nil {
		r.Last.Enhanced = ""
	}
	if checkField("", r.Last.RemoteMTA, maxAddrLen) != nil {
		r.Last.RemoteMTA = ""
	}
	log := q.log.With("id", env.ID, "rcpt", r.Address, "route", r.Route.String(), "attempt", r.Attempts, "reply", r.Last.String())
	switch res.Code / 100 {
	case 2:
		r.Status = Delivered
		r.Retry = time.Time{}
		log.Info("delivered")
		q.metrics.result.WithLabelValues("delivered").Inc()
	case 5:
		r.Status = Failed
		r.Retry = time.Time{}
		log.Warn("failed")
		q.metrics.result.WithLabelValues("failed").Inc()
	default:
		r.Status = Deferred
		r.Retry = now.Add(q.backoff(r.Attempts))
		log.Info("deferred", "retry", r.Retry)
		q.metrics.result.WithLabelValues("deferred").Inc()
	}
}

// wantsDSN reports whether a recipient's RFC 3461 NOTIFY asks for a DSN
// of the given kind ("FAILURE" or "DELAY"). Without NOTIFY the MTA
// decides (RFC 3461 §4.1): failures are reported, and delays too, when
// warnings are enabled, as postfix does.
func wantsDSN(notify, kind string) bool {
	if notify == "" {
		return true
	}
	for _, n := range strings.Split(notify, ",") {
		if strings.EqualFold(strings.TrimSpace(n), kind) {
			return true
		}
	}
	return false
}

// report sends the sender the DSNs due after an attempt: one for the
// recipients that failed since the last one, and one for those deferred
// longer than DelayWarning and not yet warned about. It marks them
// reported (warned); when a DSN cannot be queued they stay unmarked, and
// the next attempt tries again. Nothing is sent for the null sender: a
// bounce is never bounced, nor warned about.
func (q *Queue) report(ctx context.Context, env *Envelope, original Body) {
	var failed, delayed []int
	now := q.opts.now()
	for i, r := range env.Recipients {
		switch {
		case r.Status == Failed && !r.Reported:
			failed = append(failed, i)
		case r.Status == Deferred && !r.Warned && q.opts.DelayWarning > 0 &&
			now.Sub(env.ReceivedAt) >= q.opts.DelayWarning:
			delayed = append(delayed, i)
		}
	}
	if len(failed) > 0 && q.sendDSN(ctx, env, original, dsn.ActionFailed, failed) {
		for _, i := range failed {
			env.Recipients[i].Reported = true
		}
	}
	if len(delayed) > 0 && q.sendDSN(ctx, env, original, dsn.ActionDelayed, delayed) {
		for _, i := range delayed {
			env.Recipients[i].Warned = true
		}
	}
}

// sendDSN queues one DSN of action (failed or delayed) for the recipients
// at indices, to the sender. It returns whether they are dealt with: the
// DSN is queued, or none is due (null sender, NOTIFY, a sender that does
// not exist); false means try again later.
func (q *Queue) sendDSN(ctx context.Context, env *Envelope, original Body, action string, indices []int) bool {
	kind := "FAILURE"
	if action == dsn.ActionDelayed {
		kind = "DELAY"
	}
	rep := dsn.Report{
		ReportingMTA: q.opts.Hostname,
		Sender:       env.Sender,
		EnvID:        env.EnvID,
		QueueID:      env.ID,
		ArrivalDate:  env.ReceivedAt,
		// A warning carries the header only, as postfix's: the
		// message is still on its way.
		HeadersOnly: env.Ret != "FULL" || action == dsn.ActionDelayed,
	}
	if original.Size() > maxFullReturn {
		rep.HeadersOnly = true // a bounce should not carry tens of megabytes back
	}
	for _, i := range indices {
		r := env.Recipients[i]
		if !wantsDSN(r.Notify, kind) {
			continue
		}
		st := r.Last.Status()
		if action == dsn.ActionFailed && r.Last.Code/100 != 5 {
			st = "4.4.7" // lifetime expired while the answer was temporary
		}
		var diag string
		if r.Last.Code != 0 {
			diag = r.Last.String()
		}
		dr := dsn.Recipient{
			Final: r.Address, Orig: r.Orig, Action: action, Status: st,
			RemoteMTA: r.Last.RemoteMTA, Diagnostic: diag,
		}
		if action == dsn.ActionDelayed {
			dr.WillRetryUntil = env.ReceivedAt.Add(q.opts.Lifetime)
		}
		rep.Recipients = append(rep.Recipients, dr)
	}
	if env.Sender == "" || len(rep.Recipients) == 0 {
		return true
	}
	to, err := q.resolve(ctx, env.Sender)
	if err != nil {
		q.log.Warn("cannot route the DSN yet", "id", env.ID, "action", action, "to", env.Sender, "err", err)
		return false
	}
	if len(to) == 0 {
		q.log.Warn("DSN dropped: the sender does not exist", "id", env.ID, "action", action, "to", env.Sender)
		return true
	}
	body := io.NewSectionReader(original, 0, original.Size())
	pr, pw := io.Pipe()
	go func() { pw.CloseWithError(dsn.Write(pw, rep, body, q.opts.now())) }()
	bid, err := q.Enqueue(ctx, Envelope{Sender: "", Recipients: to}, pr)
	pr.CloseWithError(errors.New("DSN enqueue ended")) // unblocks the writer if Enqueue stopped early
	if err != nil {
		q.log.Error("queue the DSN", "id", env.ID, "action", action, "err", err)
		return false
	}
	if action == dsn.ActionFailed {
		q.metrics.bounces.Inc()
	} else {
		q.metrics.delayWarnings.Inc()
	}
	q.log.Info("DSN queued", "id", env.ID, "action", action, "dsn", bid, "to", env.Sender, "recipients", len(rep.Recipients))
	return true
}

// resolve routes a DSN to addr.
func (q *Queue) resolve(ctx context.Context, addr string) ([]Recipient, error) {
	if q.opts.Resolve == nil {
		return []Recipient{{Address: addr, Route: RouteRemote}}, nil
	}
	return q.opts.Resolve(ctx, addr)
}
