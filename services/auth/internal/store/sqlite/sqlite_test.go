package sqlite

import (
	"database/sql"
	"os"
	"path/filepath"
	"testing"

	"github.com/postcove/postcove/services/auth/internal/store"
	"github.com/postcove/postcove/services/auth/internal/store/storetest"
)

func TestMemory(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store { return storetest.Open(t, Open, Memory) })
}

// TestFile runs the suite on files, where the pool has several connections
// and concurrent writers queue on the database lock.
func TestFile(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store {
		return storetest.Open(t, Open, filepath.Join(t.TempDir(), "auth.db"))
	})
}

func TestShared(t *testing.T) {
	path := filepath.Join(t.TempDir(), "auth.db")
	storetest.RunShared(t, func() (store.Store, error) { return Open(t.Context(), path) })
}

func TestOpenFile(t *testing.T) {
	// A missing directory is created, private.
	path := filepath.Join(t.TempDir(), "data", "auth.db")
	storetest.Open(t, Open, path)
	fi, err := os.Stat(filepath.Dir(path))
	if err != nil || fi.Mode().Perm() != 0o700 {
		t.Errorf("Stat(%s) = %v, %v, want a 0700 directory", filepath.Dir(path), fi.Mode(), err)
	}
	storetest.Open(t, Open, path) // again: the migration has nothing to do

	db, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	for _, tt := range []struct{ query, want string }{
		{"PRAGMA journal_mode", "wal"},
		{"SELECT group_concat(version) FROM schema_migrations", "1"},
	} {
		var got string
		if err := db.QueryRow(tt.query).Scan(&got); err != nil || got != tt.want {
			t.Errorf("QueryRow(%q) = %q, %v, want %q", tt.query, got, err, tt.want)
		}
	}
}

func TestOpenBadPath(t *testing.T) {
	file := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, path := range []string{
		filepath.Join(file, "auth.db"), // a directory that is a file
		filepath.Join(t.TempDir(), "auth.db?mode=ro"),
		"",
	} {
		if s, err := Open(t.Context(), path); err == nil {
			s.Close()
			t.Errorf("Open(%q) = nil error, want one", path)
		}
	}
}
