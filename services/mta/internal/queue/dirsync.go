package queue

import "sync"

// dirSyncer fsyncs the spool directory on behalf of many goroutines at
// once (group commit). A directory fsync makes durable every rename and
// removal done in the directory before it started, so callers that
// renamed while one fsync was running all share the next one instead of
// queueing one fsync each: under concurrent Enqueues and deliveries the
// number of directory fsyncs per message falls well below one, while each
// caller still returns only once its own change is on disk.
type dirSyncer struct {
	dir string

	mu      sync.Mutex
	cond    *sync.Cond
	running bool   // an fsync is in progress
	started uint64 // fsyncs started so far; the running one is number started
	done    uint64 // fsyncs ended so far, in order
	// failed is the number of the last fsync that failed, and err its
	// error. A failed fsync may have lost the error state of the changes
	// before it, so a later success does not vouch for them: every
	// caller waiting for a fsync numbered at most failed gets the error.
	failed uint64
	err    error
}

func newDirSyncer(dir string) *dirSyncer {
	s := &dirSyncer{dir: dir}
	s.cond = sync.NewCond(&s.mu)
	return s
}

// sync returns once a directory fsync that started after the call began
// has ended: the caller's renames and removals, done before the call, are
// then durable.
func (s *dirSyncer) sync() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	// The fsync running now may have started before our change: we need
	// the next one.
	want := s.started + 1
	for s.done < want {
		if s.running {
			s.cond.Wait()
			continue
		}
		s.running = true
		s.started++
		n := s.started
		s.mu.Unlock()
		err := syncDir(s.dir)
		s.mu.Lock()
		s.running = false
		s.done = n
		if err != nil {
			s.failed, s.err = n, err
		}
		s.cond.Broadcast()
	}
	if s.failed >= want {
		return s.err
	}
	return nil
}
