// Package sqlstore is the SQL core that both store implementations share:
// every query, the transaction and retry rules, the mapping of constraint
// violations to the store's sentinel errors, and the migration runner. A
// Dialect carries the few things in which SQLite and MySQL/MariaDB differ;
// store/sqlite and store/mysql only open the database and pick a Dialect.
//
// Integrity is left to the schema: primary keys make CreateDomain and
// CreateUser fail with store.ErrExists, foreign keys (ON DELETE RESTRICT)
// make a user or alias in a missing domain fail with store.ErrNoSuchDomain
// and the deletion of a domain still in use fail with
// store.ErrDomainNotEmpty. The constraint decides even when two processes
// race, which a check-then-write in Go could not.
package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"slices"
	"strings"
	"time"

	"github.com/postcove/postcove/services/auth/internal/store"
)

// Class sorts a driver error into the few kinds the store acts on.
type Class int

const (
	// Other is any error the store does not interpret: the database could
	// not answer.
	Other Class = iota
	// Duplicate: a primary key or unique constraint was violated.
	Duplicate
	// ForeignKey: a foreign key was violated, by an insert (the parent is
	// missing) or by a delete (children remain).
	ForeignKey
	// Retry: the server aborted the transaction to break a deadlock or a
	// lock wait; running it again is safe and normally succeeds.
	Retry
)

// Dialect is what differs between the SQL databases the store runs on.
type Dialect struct {
	// Name names the dialect in errors ("sqlite", "mysql").
	Name string
	// Migrations holds the schema as migrations/NNNN_name.sql files, applied
	// in the order of their numbers. See Migrate for the file format.
	Migrations fs.FS
	// Upsert is the clause that turns an INSERT whose primary key is taken
	// into an UPDATE of that row; the assignments follow it. The existing
	// row's columns are referred to by their bare names.
	Upsert string
	// Classify sorts an error returned by the driver.
	Classify func(error) Class
	// Lock, when not nil, takes a lock that serialises migrations among
	// processes, on conn, and returns its release. When nil, the migration
	// transaction itself must serialise them (SQLite: BEGIN IMMEDIATE).
	Lock func(ctx context.Context, conn *sql.Conn) (unlock func() error, err error)
}

// Store implements store.Store on a *sql.DB; its methods are documented
// there. Times are stored as integers: seconds for CreatedAt, milliseconds
// for login failures.
type Store struct {
	db *sql.DB
	d  Dialect

	// Statements that embed the dialect's Upsert, built once by New.
	addAliasSQL      string
	recordFailureSQL string
}

// maxTxAttempts bounds how often a transaction the server aborted (Class
// Retry) is run again.
const maxTxAttempts = 5

// New migrates db to the current schema and returns a Store on it. New owns
// db from then on: it closes it when the migration fails, Close closes it
// otherwise.
func New(ctx context.Context, db *sql.DB, d Dialect) (*Store, error) {
	if err := Migrate(ctx, db, d); err != nil {
		db.Close()
		return nil, fmt.Errorf("migrate %s database: %w", d.Name, err)
	}
	return &Store{
		db: db,
		d:  d,
		addAliasSQL: "INSERT INTO aliases (source, destination, domain) VALUES (?, ?, ?) " +
			d.Upsert + " domain = domain",
		// The assignments run in order in MySQL and on the old row in
		// SQLite; with failures first both read the previous last_unix_ms.
		// Last only moves forward, so that a process with a slow clock
		// cannot make the counter look older than it is.
		recordFailureSQL: "INSERT INTO login_failures (scope, `key`, failures, last_unix_ms) VALUES (?, ?, 1, ?) " +
			d.Upsert + " failures = CASE WHEN last_unix_ms < ? THEN 1 ELSE failures + 1 END," +
			" last_unix_ms = CASE WHEN last_unix_ms < ? THEN ? ELSE last_unix_ms END",
	}, nil
}

// sentinel returns the store error that err stands for: store.ErrExists for
// a duplicate key, onForeignKey for a foreign key violation (what that means
// depends on the statement), err itself otherwise.
func (s *Store) sentinel(err error, onForeignKey error) error {
	switch s.d.Classify(err) {
	case Duplicate:
		return store.ErrExists
	case ForeignKey:
		if onForeignKey != nil {
			return onForeignKey
		}
	}
	return err
}

// inTx runs fn in a transaction and commits it, running it again when the
// server aborted it (deadlock): concurrent upserts of one key in InnoDB do
// deadlock now and then, and the loser must not count as "unavailable".
func (s *Store) inTx(ctx context.Context, fn func(tx *sql.Tx) error) error {
	for attempt := 1; ; attempt++ {
		err := s.tryTx(ctx, fn)
		if err == nil || attempt == maxTxAttempts || s.d.Classify(err) != Retry {
			return err
		}
		// A short random pause lets the winner of the deadlock commit.
		pause := time.Duration(1+rand.IntN(5*attempt)) * time.Millisecond
		select {
		case <-ctx.Done():
			return errors.Join(err, ctx.Err())
		case <-time.After(pause):
		}
	}
}

func (s *Store) tryTx(ctx context.Context, fn func(tx *sql.Tx) error) error {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	if err := fn(tx); err != nil {
		tx.Rollback()
		return err
	}
	return tx.Commit()
}

// mustAffect returns store.ErrNotFound when res changed no row.
func mustAffect(res sql.Result, err error) error {
	if err != nil {
		return err
	}
	n, err := res.RowsAffected()
	if err != nil {
		return err
	}
	if n == 0 {
		return store.ErrNotFound
	}
	return nil
}

// querier is what *sql.DB and *sql.Tx have in common for reading.
type querier interface {
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
}

// scanner is a *sql.Row or *sql.Rows.
type scanner interface {
	Scan(dest ...any) error
}

// queryAll runs query and scans every row with scan.
func queryAll[T any](ctx context.Context, q querier, scan func(scanner) (T, error), query string, args ...any) ([]T, error) {
	rows, err := q.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var all []T
	for rows.Next() {
		v, err := scan(rows)
		if err != nil {
			return nil, err
		}
		all = append(all, v)
	}
	return all, rows.Err()
}

// whereDomain is the WHERE clause and arguments of the List methods, where
// domain "" means all domains.
func whereDomain(domain string) (string, []any) {
	if domain == "" {
		return "", nil
	}
	return " WHERE domain = ?", []any{domain}
}

func unixTime(sec int64) time.Time { return time.Unix(sec, 0).UTC() }

func (s *Store) CreateDomain(ctx context.Context, name string) (store.Domain, error) {
	d := store.Domain{Name: name, CreatedAt: unixTime(time.Now().Unix())}
	_, err := s.db.ExecContext(ctx, "INSERT INTO domains (name, created_unix) VALUES (?, ?)", name, d.CreatedAt.Unix())
	if err != nil {
		return store.Domain{}, fmt.Errorf("create domain %s: %w", name, s.sentinel(err, nil))
	}
	return d, nil
}

func (s *Store) DeleteDomain(ctx context.Context, name string) error {
	err := mustAffect(s.db.ExecContext(ctx, "DELETE FROM domains WHERE name = ?", name))
	if err != nil {
		return fmt.Errorf("delete domain %s: %w", name, s.sentinel(err, store.ErrDomainNotEmpty))
	}
	return nil
}

func scanDomain(sc scanner) (store.Domain, error) {
	var d store.Domain
	var created int64
	err := sc.Scan(&d.Name, &created)
	d.CreatedAt = unixTime(created)
	return d, err
}

func (s *Store) ListDomains(ctx context.Context) ([]store.Domain, error) {
	ds, err := queryAll(ctx, s.db, scanDomain, "SELECT name, created_unix FROM domains ORDER BY name")
	if err != nil {
		return nil, fmt.Errorf("list domains: %w", err)
	}
	return ds, nil
}

func (s *Store) DomainExists(ctx context.Context, name string) (bool, error) {
	var n int
	err := s.db.QueryRowContext(ctx, "SELECT COUNT(*) FROM domains WHERE name = ?", name).Scan(&n)
	if err != nil {
		return false, fmt.Errorf("look up domain %s: %w", name, err)
	}
	return n > 0, nil
}

const userColumns = "address, domain, password_hash, quota_bytes, enabled, created_unix"

func scanUser(sc scanner) (store.User, error) {
	var u store.User
	var created int64
	err := sc.Scan(&u.Address, &u.Domain, &u.PasswordHash, &u.QuotaBytes, &u.Enabled, &created)
	u.CreatedAt = unixTime(created)
	return u, err
}

func (s *Store) CreateUser(ctx context.Context, u store.User) (store.User, error) {
	u.CreatedAt = unixTime(time.Now().Unix())
	_, err := s.db.ExecContext(ctx, "INSERT INTO users ("+userColumns+") VALUES (?, ?, ?, ?, ?, ?)",
		u.Address, u.Domain, u.PasswordHash, u.QuotaBytes, u.Enabled, u.CreatedAt.Unix())
	if err != nil {
		return store.User{}, fmt.Errorf("create user %s: %w", u.Address, s.sentinel(err, store.ErrNoSuchDomain))
	}
	return u, nil
}

func (s *Store) GetUser(ctx context.Context, address string) (store.User, error) {
	u, err := scanUser(s.db.QueryRowContext(ctx, "SELECT "+userColumns+" FROM users WHERE address = ?", address))
	if errors.Is(err, sql.ErrNoRows) {
		err = store.ErrNotFound
	}
	if err != nil {
		return store.User{}, fmt.Errorf("get user %s: %w", address, err)
	}
	return u, nil
}

func (s *Store) DeleteUser(ctx context.Context, address string) error {
	if err := mustAffect(s.db.ExecContext(ctx, "DELETE FROM users WHERE address = ?", address)); err != nil {
		return fmt.Errorf("delete user %s: %w", address, err)
	}
	return nil
}

func (s *Store) ListUsers(ctx context.Context, domain string) ([]store.User, error) {
	where, args := whereDomain(domain)
	us, err := queryAll(ctx, s.db, scanUser, "SELECT "+userColumns+" FROM users"+where+" ORDER BY address", args...)
	if err != nil {
		return nil, fmt.Errorf("list users of %q: %w", domain, err)
	}
	return us, nil
}

// setUser sets one column of a user; column is one of our constants.
func (s *Store) setUser(ctx context.Context, address, column string, value any) error {
	// MySQL counts matched rather than changed rows only because
	// store/mysql sets clientFoundRows: setting a value a user already has
	// is no ErrNotFound.
	err := mustAffect(s.db.ExecContext(ctx, "UPDATE users SET "+column+" = ? WHERE address = ?", value, address))
	if err != nil {
		return fmt.Errorf("set %s of user %s: %w", column, address, err)
	}
	return nil
}

func (s *Store) SetPasswordHash(ctx context.Context, address, hash string) error {
	return s.setUser(ctx, address, "password_hash", hash)
}

func (s *Store) SetQuota(ctx context.Context, address string, quotaBytes int64) error {
	return s.setUser(ctx, address, "quota_bytes", quotaBytes)
}

func (s *Store) SetEnabled(ctx context.Context, address string, enabled bool) error {
	return s.setUser(ctx, address, "enabled", enabled)
}

// aliasRow is one (source, destination) row of the aliases table.
type aliasRow struct{ source, domain, destination string }

func scanAliasRow(sc scanner) (aliasRow, error) {
	var r aliasRow
	err := sc.Scan(&r.source, &r.domain, &r.destination)
	return r, err
}

// listAliases reads the aliases that match where, grouped by source; the
// rows come sorted by source, then destination.
func listAliases(ctx context.Context, q querier, where string, args ...any) ([]store.Alias, error) {
	rows, err := queryAll(ctx, q, scanAliasRow,
		"SELECT source, domain, destination FROM aliases"+where+" ORDER BY source, destination", args...)
	if err != nil {
		return nil, err
	}
	var as []store.Alias
	for _, r := range rows {
		if len(as) == 0 || as[len(as)-1].Source != r.source {
			as = append(as, store.Alias{Source: r.source, Domain: r.domain})
		}
		a := &as[len(as)-1]
		a.Destinations = append(a.Destinations, r.destination)
	}
	return as, nil
}

// getAlias reads one alias, store.ErrNotFound when it has no destinations.
func getAlias(ctx context.Context, q querier, source string) (store.Alias, error) {
	as, err := listAliases(ctx, q, " WHERE source = ?", source)
	if err != nil {
		return store.Alias{}, err
	}
	if len(as) == 0 {
		return store.Alias{}, store.ErrNotFound
	}
	return as[0], nil
}

// AddAliasDestinations adds the destinations in one transaction, so that the
// alias returned is the one that was committed. With no destinations it adds
// nothing and returns the alias as it is (store.ErrNotFound when there is
// none).
func (s *Store) AddAliasDestinations(ctx context.Context, source, domain string, destinations []string) (store.Alias, error) {
	var a store.Alias
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		for _, dest := range destinations {
			if _, err := tx.ExecContext(ctx, s.addAliasSQL, source, dest, domain); err != nil {
				return s.sentinel(err, store.ErrNoSuchDomain)
			}
		}
		var err error
		a, err = getAlias(ctx, tx, source)
		return err
	})
	if err != nil {
		return store.Alias{}, fmt.Errorf("add alias %s: %w", source, err)
	}
	return a, nil
}

func (s *Store) GetAlias(ctx context.Context, source string) (store.Alias, error) {
	a, err := getAlias(ctx, s.db, source)
	if err != nil {
		return store.Alias{}, fmt.Errorf("get alias %s: %w", source, err)
	}
	return a, nil
}

func (s *Store) DeleteAlias(ctx context.Context, source string) error {
	if err := mustAffect(s.db.ExecContext(ctx, "DELETE FROM aliases WHERE source = ?", source)); err != nil {
		return fmt.Errorf("delete alias %s: %w", source, err)
	}
	return nil
}

func (s *Store) ListAliases(ctx context.Context, domain string) ([]store.Alias, error) {
	where, args := whereDomain(domain)
	as, err := listAliases(ctx, s.db, where, args...)
	if err != nil {
		return nil, fmt.Errorf("list aliases of %q: %w", domain, err)
	}
	return as, nil
}

// LookupEntries reads the domain, users and aliases with one UNION query:
// one round trip instead of three or four, which is what makes uncached
// resolution cheap on a networked MySQL.
func (s *Store) LookupEntries(ctx context.Context, domain string, addresses []string) (store.Entries, error) {
	e := store.Entries{Users: map[string]store.User{}, Aliases: map[string][]string{}}
	in := strings.TrimSuffix(strings.Repeat("?, ", len(addresses)), ", ")
	query := "SELECT 0, name, '', 0, 0 FROM domains WHERE name = ?"
	args := []any{domain}
	if len(addresses) > 0 {
		query += " UNION ALL SELECT 1, address, domain, quota_bytes, enabled FROM users WHERE address IN (" + in + ")" +
			" UNION ALL SELECT 2, source, destination, 0, 0 FROM aliases WHERE source IN (" + in + ")"
		for range 2 {
			for _, a := range addresses {
				args = append(args, a)
			}
		}
	}
	rows, err := s.db.QueryContext(ctx, query, args...)
	if err != nil {
		return store.Entries{}, fmt.Errorf("look up %s %v: %w", domain, addresses, err)
	}
	defer rows.Close()
	for rows.Next() {
		var kind int
		var key, text string
		var quota int64
		var enabled bool
		if err := rows.Scan(&kind, &key, &text, &quota, &enabled); err != nil {
			return store.Entries{}, fmt.Errorf("look up %s: %w", domain, err)
		}
		switch kind {
		case 0:
			e.DomainExists = true
		case 1:
			e.Users[key] = store.User{Address: key, Domain: text, QuotaBytes: quota, Enabled: enabled}
		case 2:
			e.Aliases[key] = append(e.Aliases[key], text)
		}
	}
	if err := rows.Err(); err != nil {
		return store.Entries{}, fmt.Errorf("look up %s: %w", domain, err)
	}
	for _, dests := range e.Aliases {
		slices.Sort(dests)
	}
	return e, nil
}

func scanString(sc scanner) (string, error) {
	var v string
	err := sc.Scan(&v)
	return v, err
}

func (s *Store) AliasesTo(ctx context.Context, destination string) ([]string, error) {
	sources, err := queryAll(ctx, s.db, scanString,
		"SELECT source FROM aliases WHERE destination = ? ORDER BY source", destination)
	if err != nil {
		return nil, fmt.Errorf("list aliases to %s: %w", destination, err)
	}
	return sources, nil
}

const getFailuresSQL = "SELECT failures, last_unix_ms FROM login_failures WHERE scope = ? AND `key` = ?"

func scanFailures(sc scanner) (store.Failures, error) {
	var f store.Failures
	var lastMS int64
	err := sc.Scan(&f.Count, &lastMS)
	f.Last = time.UnixMilli(lastMS).UTC()
	return f, err
}

// RecordFailure upserts and reads the counter in one transaction. The
// upsert locks the row (SQLite: the whole database, as the store begins
// transactions IMMEDIATE), so the read sees this change and no other
// process's: each caller gets its own count.
func (s *Store) RecordFailure(ctx context.Context, scope store.FailureScope, key string, now, forgetBefore time.Time) (store.Failures, error) {
	nowMS, forgetMS := now.UnixMilli(), forgetBefore.UnixMilli()
	var f store.Failures
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, s.recordFailureSQL, scope, key, nowMS, forgetMS, nowMS, nowMS); err != nil {
			return err
		}
		var err error
		f, err = scanFailures(tx.QueryRowContext(ctx, getFailuresSQL, scope, key))
		return err
	})
	if err != nil {
		return store.Failures{}, fmt.Errorf("record %s failure of %s: %w", scope, key, err)
	}
	return f, nil
}

func (s *Store) GetFailures(ctx context.Context, scope store.FailureScope, key string) (store.Failures, error) {
	f, err := scanFailures(s.db.QueryRowContext(ctx, getFailuresSQL, scope, key))
	if errors.Is(err, sql.ErrNoRows) {
		return store.Failures{}, nil
	}
	if err != nil {
		return store.Failures{}, fmt.Errorf("get %s failures of %s: %w", scope, key, err)
	}
	return f, nil
}

func (s *Store) ClearFailures(ctx context.Context, scope store.FailureScope, key string) error {
	_, err := s.db.ExecContext(ctx, "DELETE FROM login_failures WHERE scope = ? AND `key` = ?", scope, key)
	if err != nil {
		return fmt.Errorf("clear %s failures of %s: %w", scope, key, err)
	}
	return nil
}

func (s *Store) PruneFailures(ctx context.Context, before time.Time) (int64, error) {
	res, err := s.db.ExecContext(ctx, "DELETE FROM login_failures WHERE last_unix_ms < ?", before.UnixMilli())
	if err != nil {
		return 0, fmt.Errorf("prune login failures: %w", err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return 0, fmt.Errorf("prune login failures: %w", err)
	}
	return n, nil
}

func (s *Store) Ping(ctx context.Context) error {
	if err := s.db.PingContext(ctx); err != nil {
		return fmt.Errorf("ping %s database: %w", s.d.Name, err)
	}
	return nil
}

func (s *Store) Close() error { return s.db.Close() }
