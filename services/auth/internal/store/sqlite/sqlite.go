// Package sqlite is the auth store in one SQLite file, the embedded default
// (modernc.org/sqlite: pure Go, no cgo). The queries are store/sqlstore's;
// this package opens the database and supplies the SQLite dialect.
//
// The file is in WAL mode, so readers do not wait for the writer, and every
// transaction begins IMMEDIATE: it takes the write lock at BEGIN rather than
// at its first write, so two transactions (also in two processes) queue on
// busy_timeout instead of failing with SQLITE_BUSY on the upgrade of a read
// lock. See https://www.sqlite.org/lang_transaction.html and
// https://www.sqlite.org/wal.html.
package sqlite

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"

	"github.com/postcove/postcove/services/auth/internal/store"
	"github.com/postcove/postcove/services/auth/internal/store/sqlstore"
)

//go:embed migrations/*.sql
var migrations embed.FS

// Memory is the path of a private in-memory database, for tests: it lives as
// long as the Store and is gone after Close.
const Memory = ":memory:"

// Store is the SQLite store.
type Store struct {
	*sqlstore.Store
}

var _ store.Store = (*Store)(nil)

// maxOpenConns bounds the pool on a file: readers run in parallel under WAL,
// writers take turns anyway.
const maxOpenConns = 8

// Open opens (creating it and its directory when missing) the database at
// path, or an in-memory one for Memory, and migrates it to the current
// schema.
func Open(ctx context.Context, path string) (*Store, error) {
	// The driver takes everything after "?" for parameters.
	if path == "" || strings.Contains(path, "?") {
		return nil, fmt.Errorf("open sqlite %q: want a file path without \"?\", or %q", path, Memory)
	}
	params := url.Values{}
	// busy_timeout goes first (the driver sees to that): the pragmas after it
	// may already have to wait for another process.
	params.Add("_pragma", "busy_timeout(5000)")
	params.Add("_pragma", "foreign_keys(1)")
	params.Set("_txlock", "immediate")
	memory := path == Memory
	if !memory {
		if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
			return nil, fmt.Errorf("open sqlite %s: %w", path, err)
		}
		params.Add("_pragma", "journal_mode(WAL)")
	}
	dsn := path + "?" + params.Encode()
	// Processes opening a new database at once race to switch it to WAL
	// and to migrate it, and SQLite answers some of those steps with
	// SQLITE_BUSY at once instead of waiting out busy_timeout. The loser
	// tries again, on a fresh pool: the winner is done within milliseconds.
	start := time.Now()
	for wait := 10 * time.Millisecond; ; wait = min(2*wait, 500*time.Millisecond) {
		st, err := openOnce(ctx, dsn, memory)
		if err == nil {
			return st, nil
		}
		if !busy(err) || ctx.Err() != nil || time.Since(start) > openRetryFor {
			return nil, fmt.Errorf("open sqlite %s: %w", path, err)
		}
		select {
		case <-ctx.Done():
		case <-time.After(wait):
		}
	}
}

func openOnce(ctx context.Context, dsn string, memory bool) (*Store, error) {
	db, err := sql.Open("sqlite", dsn)
	if err != nil {
		return nil, err
	}
	if memory {
		// Each connection to ":memory:" is a database of its own: one
		// connection, kept forever, is the database.
		db.SetMaxOpenConns(1)
		db.SetConnMaxIdleTime(0)
		db.SetConnMaxLifetime(0)
	} else {
		db.SetMaxOpenConns(maxOpenConns)
		db.SetMaxIdleConns(maxOpenConns)
	}
	core, err := sqlstore.New(ctx, db, sqlstore.Dialect{
		Name:       "sqlite",
		Migrations: migrations,
		Upsert:     "ON CONFLICT DO UPDATE SET",
		Classify:   classify,
	})
	if err != nil {
		db.Close()
		return nil, err
	}
	return &Store{core}, nil
}

// openRetryFor bounds how long Open retries a busy database.
const openRetryFor = 15 * time.Second

// busy reports whether err is SQLITE_BUSY or SQLITE_LOCKED (any extended
// code of them).
func busy(err error) bool {
	var e *sqlite.Error
	if !errors.As(err, &e) {
		return false
	}
	switch e.Code() & 0xff {
	case sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED:
		return true
	}
	return false
}

// classify sorts SQLite's extended result codes, which the driver turns on.
func classify(err error) sqlstore.Class {
	var e *sqlite.Error
	if !errors.As(err, &e) {
		return sqlstore.Other
	}
	switch e.Code() {
	case sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY, sqlite3.SQLITE_CONSTRAINT_UNIQUE:
		return sqlstore.Duplicate
	case sqlite3.SQLITE_CONSTRAINT_FOREIGNKEY:
		return sqlstore.ForeignKey
	}
	return sqlstore.Other
}
