package testlib

import (
	"context"
	"database/sql"
	"strings"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"
)

// openDB opens dsn with short timeouts, so that a dead server fails fast.
func openDB(t *testing.T, dsn string) *sql.DB {
	t.Helper()
	cfg, err := mysql.ParseDSN(dsn)
	if err != nil {
		t.Fatalf("ParseDSN(%q) = %v", dsn, err)
	}
	cfg.Timeout, cfg.ReadTimeout, cfg.WriteTimeout = time.Second, 2*time.Second, 2*time.Second
	connector, err := mysql.NewConnector(cfg)
	if err != nil {
		t.Fatal(err)
	}
	db := sql.OpenDB(connector)
	t.Cleanup(func() { db.Close() })
	return db
}

func count(ctx context.Context, db *sql.DB) (int, error) {
	var n int
	err := db.QueryRowContext(ctx, "SELECT COUNT(*) FROM t").Scan(&n)
	return n, err
}

func TestMariaDBKillAndStart(t *testing.T) {
	start := time.Now()
	m := StartMariaDB(t)
	t.Logf("StartMariaDB took %v", time.Since(start))
	ctx := t.Context()

	dsn := m.NewDatabase()
	db := openDB(t, dsn)
	for _, q := range []string{"CREATE TABLE t (v INT PRIMARY KEY) ENGINE=InnoDB", "INSERT INTO t VALUES (1), (2)"} {
		if _, err := db.ExecContext(ctx, q); err != nil {
			t.Fatalf("Exec(%q) = %v", q, err)
		}
	}
	if n, err := count(ctx, db); err != nil || n != 2 {
		t.Fatalf("count() = %v, %v, want 2, nil", n, err)
	}

	m.Kill()
	if n, err := count(ctx, db); err == nil {
		t.Fatalf("count() after Kill = %v, nil, want an error", n)
	}
	m.Kill() // a second Kill is harmless

	start = time.Now()
	m.Start()
	t.Logf("Start after Kill took %v", time.Since(start))
	// The committed rows survive the crash; the pool reconnects.
	if n, err := count(ctx, db); err != nil || n != 2 {
		t.Fatalf("count() after Start = %v, %v, want 2, nil", n, err)
	}
}

func TestMariaDBNewDatabase(t *testing.T) {
	m := StartMariaDB(t)
	a, b := m.NewDatabase(), m.NewDatabase()
	if a == b {
		t.Fatalf("NewDatabase() twice = %q, want two databases", a)
	}
	var name string
	if err := openDB(t, a).QueryRowContext(t.Context(), "SELECT DATABASE()").Scan(&name); err != nil || !strings.HasPrefix(name, "postcove_test_") {
		t.Errorf("SELECT DATABASE() on %q = %q, %v, want postcove_test_*", a, name, err)
	}
}

func TestMySQLDSN(t *testing.T) {
	dsn := MySQLDSN(t)
	cfg, err := mysql.ParseDSN(dsn)
	if err != nil || !strings.HasPrefix(cfg.DBName, "postcove_test_") {
		t.Fatalf("MySQLDSN() = %q (%v), want a postcove_test_* database", dsn, err)
	}
	db := openDB(t, dsn)
	if _, err := db.ExecContext(t.Context(), "CREATE TABLE t (v INT)"); err != nil {
		t.Fatalf("CREATE TABLE in %s: %v", cfg.DBName, err)
	}

	// The cleanup drops the database: run it in a subtest and look after.
	var inner string
	t.Run("fresh", func(t *testing.T) { inner = MySQLDSN(t) })
	innerCfg, err := mysql.ParseDSN(inner)
	if err != nil {
		t.Fatal(err)
	}
	var n int
	err = db.QueryRowContext(t.Context(),
		"SELECT COUNT(*) FROM information_schema.schemata WHERE schema_name = ?", innerCfg.DBName).Scan(&n)
	if err != nil || n != 0 {
		t.Errorf("database %s after its test = %d, %v, want dropped", innerCfg.DBName, n, err)
	}
}
