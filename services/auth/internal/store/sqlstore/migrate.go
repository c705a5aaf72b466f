package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"slices"
	"strconv"
	"strings"
	"time"
)

// migration is one numbered file of a dialect's schema.
type migration struct {
	version    int
	name       string
	statements []string
}

// createMigrationsTable records which migrations a database has. It is the
// one piece of schema outside the migration files: the runner needs it
// before it can read them, and its SQL is the same in every dialect.
const createMigrationsTable = `CREATE TABLE IF NOT EXISTS schema_migrations (
	version INTEGER NOT NULL PRIMARY KEY,
	applied_unix BIGINT NOT NULL
)`

// Migrate brings db to the newest schema of d: it applies, in order, each
// migration that schema_migrations does not list yet, each in a transaction
// together with its schema_migrations row. Running it again changes nothing,
// and several processes may run it at once: d.Lock, or else the IMMEDIATE
// migration transaction, lets one at a time in, and each rereads what is
// applied inside its transaction.
//
// Migration files are named NNNN_name.sql. A statement ends with ";" at the
// end of a line (so none may hold such a line inside, as a trigger body
// would); lines starting with "--" are comments.
//
// MySQL commits DDL at once, whatever the transaction: there a migration that
// fails halfway stays half applied and is not recorded, so each MySQL
// migration file should hold statements that can be rerun or one DDL
// statement only.
func Migrate(ctx context.Context, db *sql.DB, d Dialect) (err error) {
	ms, err := loadMigrations(d.Migrations)
	if err != nil {
		return err
	}
	// One connection throughout: a MySQL named lock belongs to a session.
	conn, err := db.Conn(ctx)
	if err != nil {
		return err
	}
	defer conn.Close()
	if d.Lock != nil {
		unlock, err := d.Lock(ctx, conn)
		if err != nil {
			return fmt.Errorf("lock for migration: %w", err)
		}
		defer func() { err = errors.Join(err, unlock()) }()
	}
	if _, err := conn.ExecContext(ctx, createMigrationsTable); err != nil {
		return fmt.Errorf("create schema_migrations: %w", err)
	}
	for _, m := range ms {
		if err := applyMigration(ctx, conn, m); err != nil {
			return fmt.Errorf("migration %s: %w", m.name, err)
		}
	}
	return nil
}

// applyMigration applies m unless schema_migrations lists it.
func applyMigration(ctx context.Context, conn *sql.Conn, m migration) error {
	tx, err := conn.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	var applied int
	err = tx.QueryRowContext(ctx, "SELECT COUNT(*) FROM schema_migrations WHERE version = ?", m.version).Scan(&applied)
	if err != nil || applied > 0 {
		return err
	}
	for _, stmt := range m.statements {
		if _, err := tx.ExecContext(ctx, stmt); err != nil {
			return err
		}
	}
	_, err = tx.ExecContext(ctx, "INSERT INTO schema_migrations (version, applied_unix) VALUES (?, ?)", m.version, time.Now().Unix())
	if err != nil {
		return err
	}
	return tx.Commit()
}

// loadMigrations reads migrations/*.sql of fsys, sorted by version.
func loadMigrations(fsys fs.FS) ([]migration, error) {
	names, err := fs.Glob(fsys, "migrations/*.sql")
	if err != nil {
		return nil, err
	}
	if len(names) == 0 {
		return nil, errors.New("no migrations")
	}
	ms := make([]migration, 0, len(names))
	for _, name := range names {
		base := path.Base(name)
		version, err := migrationVersion(base)
		if err != nil {
			return nil, err
		}
		src, err := fs.ReadFile(fsys, name)
		if err != nil {
			return nil, err
		}
		ms = append(ms, migration{version: version, name: base, statements: splitStatements(string(src))})
	}
	slices.SortFunc(ms, func(a, b migration) int { return a.version - b.version })
	for i := 1; i < len(ms); i++ {
		if ms[i].version == ms[i-1].version {
			return nil, fmt.Errorf("migrations %s and %s have one version", ms[i-1].name, ms[i].name)
		}
	}
	return ms, nil
}

// migrationVersion parses the number of a file named NNNN_name.sql.
func migrationVersion(name string) (int, error) {
	num, _, ok := strings.Cut(name, "_")
	v, err := strconv.Atoi(num)
	if !ok || err != nil || v <= 0 || !strings.HasSuffix(name, ".sql") {
		return 0, fmt.Errorf("migration file %q is not named NNNN_name.sql", name)
	}
	return v, nil
}

// splitStatements splits a migration into its statements, without the
// final ";". We split rather than send the file at once because the MySQL
// driver runs one statement per call unless multiStatements is on, which we
// leave off for the rest of the store's sake.
func splitStatements(src string) []string {
	var stmts []string
	var cur strings.Builder
	flush := func() {
		if s := strings.TrimSpace(cur.String()); s != "" {
			stmts = append(stmts, s)
		}
		cur.Reset()
	}
	for line := range strings.Lines(src) {
		trimmed := strings.TrimSpace(line)
		if strings.HasPrefix(trimmed, "--") {
			continue
		}
		if before, ok := strings.CutSuffix(trimmed, ";"); ok {
			cur.WriteString(before)
			flush()
			continue
		}
		cur.WriteString(line)
	}
	flush()
	return stmts
}
