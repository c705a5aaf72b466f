package mysql

import (
	"errors"
	"testing"
	"time"

	"github.com/postcove/postcove/services/auth/internal/store"
	"github.com/postcove/postcove/services/auth/internal/store/storetest"
	"github.com/postcove/postcove/services/internal/testlib"
)

// TestStore runs the suite on the shared test server
// (POSTCOVE_TEST_MYSQL_DSN), a new database per subtest.
func TestStore(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store { return storetest.Open(t, Open, testlib.MySQLDSN(t)) })
}

// TestShared opens one database from several "processes" at once: the
// migration lock lets one migrate, the others find the schema.
func TestShared(t *testing.T) {
	dsn := testlib.MySQLDSN(t)
	storetest.RunShared(t, func() (store.Store, error) { return Open(t.Context(), dsn) })
}

// TestServerDown kills a private server under an open store: calls fail with
// errors that are none of the sentinels (the caller's "unavailable"), Open
// fails, and after a restart the same store works again.
func TestServerDown(t *testing.T) {
	m := testlib.StartMariaDB(t)
	dsn := m.NewDatabase()
	s := storetest.Open(t, Open, dsn)
	ctx := t.Context()
	if _, err := s.CreateDomain(ctx, "example.org"); err != nil {
		t.Fatalf("CreateDomain(example.org) = %v", err)
	}

	m.Kill()
	for _, tt := range []struct {
		name string
		call func() error
	}{
		{"DomainExists", func() error { _, err := s.DomainExists(ctx, "example.org"); return err }},
		{"CreateDomain", func() error { _, err := s.CreateDomain(ctx, "example.net"); return err }},
		{"RecordFailure", func() error {
			_, err := s.RecordFailure(ctx, store.ScopeIP, "192.0.2.1", time.Now(), time.Now().Add(-time.Hour))
			return err
		}},
		{"Ping", func() error { return s.Ping(ctx) }},
	} {
		err := tt.call()
		if err == nil || isSentinel(err) {
			t.Errorf("%s() with the server down = %v, want an error that is no sentinel", tt.name, err)
		}
	}
	start := time.Now()
	if s2, err := Open(ctx, dsn); err == nil {
		s2.Close()
		t.Errorf("Open() with the server down = nil error, want one")
	} else if d := time.Since(start); d > 10*time.Second {
		t.Errorf("Open() with the server down took %v, want it to fail fast", d)
	}

	m.Start()
	if ok, err := s.DomainExists(ctx, "example.org"); err != nil || !ok {
		t.Errorf("DomainExists(example.org) after restart = %v, %v, want true, nil", ok, err)
	}
}

func isSentinel(err error) bool {
	for _, sentinel := range []error{store.ErrNotFound, store.ErrExists, store.ErrDomainNotEmpty, store.ErrNoSuchDomain} {
		if errors.Is(err, sentinel) {
			return true
		}
	}
	return false
}

func TestOpenBadDSN(t *testing.T) {
	for _, dsn := range []string{
		"root@tcp(127.0.0.1:1)/",     // no database
		"not a dsn",                  // unparsable
		"root@tcp(127.0.0.1:1)/auth", // nothing listens
	} {
		if s, err := Open(t.Context(), dsn); err == nil {
			s.Close()
			t.Errorf("Open(%q) = nil error, want one", dsn)
		}
	}
}
