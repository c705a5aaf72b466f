package queue

import (
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/postcove/postcove/services/internal/testlib"
)

// Concurrent callers all get a successful fsync that started after their
// call, and never more fsyncs than callers.
func TestDirSyncerConcurrent(t *testing.T) {
	s := newDirSyncer(testlib.TempDir(t))
	const callers = 32
	var wg sync.WaitGroup
	errs := make(chan error, callers)
	for range callers {
		wg.Go(func() { errs <- s.sync() })
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Errorf("sync: %v", err)
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.running || s.done != s.started || s.started == 0 || s.started > callers {
		t.Errorf("after %d calls: running %v, started %d, done %d", callers, s.running, s.started, s.done)
	}
	// A later call needs a fsync of its own.
	before := s.started
	s.mu.Unlock()
	err := s.sync()
	s.mu.Lock()
	if err != nil || s.started != before+1 {
		t.Errorf("later sync: err %v, fsyncs %d, want %d", err, s.started, before+1)
	}
}

// A failed fsync reaches its caller, and one that failed earlier does not
// taint a later success.
func TestDirSyncerError(t *testing.T) {
	dir := filepath.Join(testlib.TempDir(t), "spool")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	s := newDirSyncer(dir)
	if err := os.Remove(dir); err != nil {
		t.Fatal(err)
	}
	if err := s.sync(); err == nil {
		t.Fatal("sync of a missing directory succeeded")
	}
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := s.sync(); err != nil {
		t.Fatalf("sync after the directory came back: %v", err)
	}
}
