// Package mysql is the auth store on MySQL or MariaDB, for production and
// for several auth processes sharing one database (go-sql-driver/mysql). The
// queries are store/sqlstore's; this package opens the database and supplies
// the MySQL dialect.
//
// Open needs the server: it migrates the schema before it returns, and fails
// when the server does not answer. The auth service therefore retries Open
// with backoff at start (a compose stack starts the database and auth
// together). Once open, the pool reconnects by itself: a method that fails
// because the server is gone returns an error that is none of the store's
// sentinels, and the next call after the server is back succeeds.
package mysql

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"embed"
	"errors"
	"fmt"
	"time"

	gomysql "github.com/go-sql-driver/mysql"

	"github.com/postcove/postcove/services/auth/internal/store"
	"github.com/postcove/postcove/services/auth/internal/store/sqlstore"
)

//go:embed migrations/*.sql
var migrations embed.FS

// Store is the MySQL/MariaDB store.
type Store struct {
	*sqlstore.Store
}

var _ store.Store = (*Store)(nil)

// Defaults for what the DSN leaves out. The lock wait timeout is below the
// read timeout, so that a statement queued behind a row lock fails on the
// server (and is retried, see sqlstore.Retry) before the client gives up on
// the connection.
const (
	dialTimeout     = 3 * time.Second
	readTimeout     = 5 * time.Second
	writeTimeout    = 5 * time.Second
	lockWaitSeconds = "3"
	// STRICT_ALL_TABLES: a value too long for its column is an error, never
	// silently cut (two long addresses cut alike would become one).
	sqlMode = "'STRICT_ALL_TABLES,NO_ENGINE_SUBSTITUTION'"
)

// maxConns bounds the connections one auth process holds.
const maxConns = 16

// Migration lock: GET_LOCK waits at most lockTry per call, under the read
// timeout, and Open tries until lockWait has passed.
const (
	lockName = "postcove_migrate"
	lockTry  = 2 * time.Second
	lockWait = 30 * time.Second
)

// Open connects to the database that dsn names (go-sql-driver syntax, e.g.
// "auth:secret@tcp(db:3306)/postcove") and migrates it to the current
// schema. Timeouts and session settings the DSN does not set get the
// defaults above.
func Open(ctx context.Context, dsn string) (*Store, error) {
	cfg, err := gomysql.ParseDSN(dsn)
	if err != nil {
		// The error does not quote the DSN, which may hold a password.
		return nil, fmt.Errorf("open mysql: %w", err)
	}
	if cfg.DBName == "" {
		return nil, errors.New("open mysql: the DSN names no database")
	}
	setDefaults(cfg)
	connector, err := gomysql.NewConnector(cfg)
	if err != nil {
		return nil, fmt.Errorf("open mysql: %w", err)
	}
	db := sql.OpenDB(connector)
	// As many idle connections as open ones: a pool that closes connections
	// after every burst pays a TCP and login handshake per query under load.
	db.SetMaxOpenConns(maxConns)
	db.SetMaxIdleConns(maxConns)
	// Recycle connections before a server's wait_timeout or a proxy's idle
	// timeout cuts them.
	db.SetConnMaxLifetime(5 * time.Minute)
	db.SetConnMaxIdleTime(time.Minute)
	core, err := sqlstore.New(ctx, db, sqlstore.Dialect{
		Name:       "mysql",
		Migrations: migrations,
		Upsert:     "ON DUPLICATE KEY UPDATE",
		Classify:   classify,
		Lock:       lock,
	})
	if err != nil {
		return nil, fmt.Errorf("open mysql %s/%s: %w", cfg.Addr, cfg.DBName, err)
	}
	return &Store{core}, nil
}

// setDefaults fills in what cfg leaves out.
func setDefaults(cfg *gomysql.Config) {
	if cfg.Timeout == 0 {
		cfg.Timeout = dialTimeout
	}
	if cfg.ReadTimeout == 0 {
		cfg.ReadTimeout = readTimeout
	}
	if cfg.WriteTimeout == 0 {
		cfg.WriteTimeout = writeTimeout
	}
	// Not a default: the store needs UPDATE to report the rows it matched,
	// not the rows it changed, or setting a user's quota to the quota it
	// already has would say ErrNotFound.
	cfg.ClientFoundRows = true
	// Without it every query with arguments is a server-side prepare,
	// execute and close: three round trips where one does. The driver
	// escapes arguments itself and refuses to with the few multibyte
	// charsets where that is unsafe; postcove uses utf8mb4.
	cfg.InterpolateParams = true
	if cfg.Params == nil {
		cfg.Params = map[string]string{}
	}
	if _, ok := cfg.Params["innodb_lock_wait_timeout"]; !ok {
		cfg.Params["innodb_lock_wait_timeout"] = lockWaitSeconds
	}
	if _, ok := cfg.Params["sql_mode"]; !ok {
		cfg.Params["sql_mode"] = sqlMode
	}
}

// MySQL and MariaDB error numbers the store interprets.
// https://mariadb.com/kb/en/mariadb-error-code-reference/
const (
	errDupEntry            = 1062 // ER_DUP_ENTRY
	errDupEntryWithKeyName = 1586 // ER_DUP_ENTRY_WITH_KEY_NAME
	errNoReferencedRow     = 1216 // ER_NO_REFERENCED_ROW
	errRowIsReferenced     = 1217 // ER_ROW_IS_REFERENCED
	errRowIsReferenced2    = 1451 // ER_ROW_IS_REFERENCED_2
	errNoReferencedRow2    = 1452 // ER_NO_REFERENCED_ROW_2
	errLockWaitTimeout     = 1205 // ER_LOCK_WAIT_TIMEOUT
	errLockDeadlock        = 1213 // ER_LOCK_DEADLOCK
)

func classify(err error) sqlstore.Class {
	var e *gomysql.MySQLError
	if !errors.As(err, &e) {
		return sqlstore.Other
	}
	switch e.Number {
	case errDupEntry, errDupEntryWithKeyName:
		return sqlstore.Duplicate
	case errNoReferencedRow, errRowIsReferenced, errRowIsReferenced2, errNoReferencedRow2:
		return sqlstore.ForeignKey
	case errLockWaitTimeout, errLockDeadlock:
		return sqlstore.Retry
	}
	return sqlstore.Other
}

// lock takes the server-wide named lock that serialises migrations among
// auth processes starting at once. GET_LOCK holds the connection while it
// waits, so it waits in slices shorter than the read timeout.
func lock(ctx context.Context, conn *sql.Conn) (unlock func() error, err error) {
	deadline := time.Now().Add(lockWait)
	for {
		var got sql.NullInt64
		err := conn.QueryRowContext(ctx, "SELECT GET_LOCK(?, ?)", lockName, int(lockTry/time.Second)).Scan(&got)
		switch {
		case err != nil:
			return nil, err
		case got.Valid && got.Int64 == 1:
			return func() error { return release(ctx, conn) }, nil
		case time.Now().After(deadline):
			return nil, fmt.Errorf("lock %s: still held by another session after %v", lockName, lockWait)
		}
	}
}

// release frees the migration lock. The lock lives as long as the session,
// and conn goes back to the pool: when RELEASE_LOCK fails, the connection is
// discarded so that the session, and the lock with it, ends.
func release(ctx context.Context, conn *sql.Conn) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), readTimeout)
	defer cancel()
	_, err := conn.ExecContext(ctx, "DO RELEASE_LOCK(?)", lockName)
	if err != nil {
		conn.Raw(func(any) error { return driver.ErrBadConn })
		return fmt.Errorf("release lock %s: %w", lockName, err)
	}
	return nil
}
