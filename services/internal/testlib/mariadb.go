package testlib

import (
	"bytes"
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"
)

// MySQLDSNEnv names the environment variable with the DSN of a MySQL or
// MariaDB server for tests (go-sql-driver syntax, no database), e.g.
// "root@unix(/run/mysqld/mysqld.sock)/". The account must be allowed to
// create and drop databases.
const MySQLDSNEnv = "POSTCOVE_TEST_MYSQL_DSN"

// MySQLDSN returns the DSN of a new, empty database on the server that
// MySQLDSNEnv names, dropped when t ends. Without the variable the test is
// skipped, in CI it fails.
func MySQLDSN(t testing.TB) string {
	t.Helper()
	server := os.Getenv(MySQLDSNEnv)
	if server == "" {
		Unavailable(t, "no MySQL server: set "+MySQLDSNEnv+" to a server DSN such as root@unix(/run/mysqld/mysqld.sock)/")
	}
	return newDatabase(t, server, true)
}

// newDatabase creates a database with a random name on the server that
// serverDSN names and returns a DSN for it; with drop, it drops it when t
// ends.
func newDatabase(t testing.TB, serverDSN string, drop bool) string {
	t.Helper()
	cfg, err := mysql.ParseDSN(serverDSN)
	if err != nil {
		t.Fatalf("parse MySQL server DSN: %v", err)
	}
	cfg.DBName = ""
	if cfg.Timeout == 0 {
		cfg.Timeout = 3 * time.Second
	}
	name := "postcove_test_" + hex.EncodeToString(randomBytes(t, 8))
	run := func(query string) error {
		connector, err := mysql.NewConnector(cfg)
		if err != nil {
			return err
		}
		db := sql.OpenDB(connector)
		defer db.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_, err = db.ExecContext(ctx, query)
		return err
	}
	if err := run("CREATE DATABASE " + name + " CHARACTER SET utf8mb4 COLLATE utf8mb4_bin"); err != nil {
		t.Fatalf("create test database on %s: %v", cfg.Addr, err)
	}
	if drop {
		t.Cleanup(func() {
			if err := run("DROP DATABASE IF EXISTS " + name); err != nil {
				t.Errorf("drop test database %s on %s: %v", name, cfg.Addr, err)
			}
		})
	}
	cfg.DBName = name
	return cfg.FormatDSN()
}

func randomBytes(t testing.TB, n int) []byte {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

// MariaDB is a private MariaDB server for one test, for tests that stop or
// kill their database. It listens on 127.0.0.1 only, root logs in without a
// password, and its data lives in a temporary directory that is removed
// when the test ends, or kept (and logged) when it failed.
//
// A MariaDB is used from the test's goroutine; its methods fail the test on
// errors.
type MariaDB struct {
	t    testing.TB
	bin  string // mariadbd
	dir  string // holds data/ (with the socket) and the logs
	addr string // 127.0.0.1:port

	cmd    *exec.Cmd     // the running server, nil when stopped
	exited chan struct{} // closed when cmd has exited
}

// How long a private server may take to answer after it starts. Cold starts
// take well under a second; the margin is for loaded CI machines.
const mariadbStartTimeout = 60 * time.Second

// StartMariaDB creates the data directory of a new server (mysql_install_db)
// and starts it on a free port. Without MariaDB installed the test is
// skipped, in CI it fails.
func StartMariaDB(t testing.TB) *MariaDB {
	t.Helper()
	m := &MariaDB{t: t, bin: requireServer(t)}
	install := RequireTool(t, "mysql_install_db")
	m.dir = TempDir(t)
	// Registered after TempDir's cleanup, so it runs before it.
	t.Cleanup(m.Kill)
	m.addr = FreeAddr(t)

	// root@127.0.0.1 without a password ("normal"), no test database; the
	// server options go to the bootstrap server too, so that it creates the
	// InnoDB files at the small size the server then runs with.
	args := []string{"--no-defaults", "--datadir=" + m.path("data"), "--auth-root-authentication-method=normal", "--skip-test-db"}
	args = append(args, serverArgs()...)
	out, err := exec.Command(install, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("mysql_install_db %q: %v\n%s", args, err, out)
	}
	m.Start()
	return m
}

// requireServer finds mariadbd, which lives in /usr/sbin, outside the PATH
// of most users.
func requireServer(t testing.TB) string {
	t.Helper()
	if path, err := exec.LookPath("mariadbd"); err == nil {
		return path
	}
	if path, err := exec.LookPath("/usr/sbin/mariadbd"); err == nil {
		return path
	}
	Unavailable(t, "mariadbd is not installed")
	return ""
}

// serverArgs are the options that mysql_install_db and the server share.
// Small and quick: a test server holds a few tables, and its startup time is
// test time. Commits reach the OS at once but the disk only about once a
// second, and without the doublewrite buffer: what is lost that way is lost
// to an OS crash or power cut, never to Kill.
func serverArgs() []string {
	args := []string{
		"--performance-schema=OFF",
		"--innodb-buffer-pool-size=16M",
		"--innodb-log-file-size=8M",
		"--innodb-flush-log-at-trx-commit=2",
		"--innodb-doublewrite=OFF",
	}
	// MariaDB refuses to run as root (as in a container) without this;
	// other users run as themselves.
	if os.Geteuid() == 0 {
		args = append(args, "--user=root")
	}
	return args
}

func (m *MariaDB) path(name string) string { return filepath.Join(m.dir, name) }

// DSN returns the go-sql-driver DSN of database db on the server ("" for
// none), over TCP: the way production connects, and what a kill breaks.
func (m *MariaDB) DSN(db string) string {
	cfg := mysql.NewConfig()
	cfg.User = "root"
	cfg.Net = "tcp"
	cfg.Addr = m.addr
	cfg.DBName = db
	return cfg.FormatDSN()
}

// NewDatabase creates a database with a random name and returns its DSN.
func (m *MariaDB) NewDatabase() string {
	m.t.Helper()
	// Not dropped: the server and its data go when the test ends.
	return newDatabase(m.t, m.DSN(""), false)
}

// Start starts the server on its data directory and port, and waits until it
// answers.
func (m *MariaDB) Start() {
	m.t.Helper()
	if m.cmd != nil {
		m.t.Fatal("mariadb: Start while running")
	}
	_, port, err := net.SplitHostPort(m.addr)
	if err != nil {
		m.t.Fatal(err)
	}
	// --no-defaults keeps the host's my.cnf out.
	args := []string{
		"--no-defaults",
		"--datadir=" + m.path("data"),
		// Relative, so in the data directory, where mariadbd changes to:
		// a unix socket path is limited to 108 bytes, and a temp dir
		// named after the test can come close.
		"--socket=mysqld.sock",
		"--pid-file=" + m.path("mariadbd.pid"),
		"--log-error=" + m.path("error.log"),
		"--tmpdir=" + m.dir,
		"--port=" + port,
		"--bind-address=127.0.0.1",
		"--skip-name-resolve",
	}
	args = append(args, serverArgs()...)
	cmd := exec.Command(m.bin, args...)
	out, err := os.OpenFile(m.path("mariadbd.out"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		m.t.Fatal(err)
	}
	defer out.Close()
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		m.t.Fatalf("start mariadbd: %v", err)
	}
	exited := make(chan struct{})
	go func() {
		cmd.Wait()
		close(exited)
	}()
	m.cmd, m.exited = cmd, exited
	if err := m.waitReady(); err != nil {
		m.Kill()
		m.t.Fatalf("mariadb on %s: %v\n%s", m.addr, err, m.logTail())
	}
}

// waitReady polls the server until it answers, exits or times out.
func (m *MariaDB) waitReady() error {
	cfg, err := mysql.ParseDSN(m.DSN(""))
	if err != nil {
		return err
	}
	cfg.Timeout = time.Second
	connector, err := mysql.NewConnector(cfg)
	if err != nil {
		return err
	}
	db := sql.OpenDB(connector)
	defer db.Close()
	deadline := time.Now().Add(mariadbStartTimeout)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		err := db.PingContext(ctx)
		cancel()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("no answer after %v: %w", mariadbStartTimeout, err)
		}
		select {
		case <-m.exited:
			return errors.New("mariadbd exited during startup")
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// logTail returns the end of the server's error log, for failure messages.
func (m *MariaDB) logTail() []byte {
	log, _ := os.ReadFile(m.path("error.log"))
	if i := len(log) - 4000; i > 0 {
		log = log[i:]
		log = log[bytes.IndexByte(log, '\n')+1:]
	}
	return log
}

// Kill kills the server with SIGKILL, as a crash or an OOM kill would, and
// waits until it is gone. Killing a stopped server does nothing.
func (m *MariaDB) Kill() {
	m.t.Helper()
	if m.cmd == nil {
		return
	}
	// Only our own child, by its pid: never by name.
	if err := m.cmd.Process.Kill(); err != nil && !errors.Is(err, os.ErrProcessDone) {
		m.t.Fatalf("kill mariadbd %d: %v", m.cmd.Process.Pid, err)
	}
	<-m.exited
	m.cmd, m.exited = nil, nil
}
