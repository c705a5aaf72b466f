package authbench

import (
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
	"strings"
	"time"

	"github.com/go-sql-driver/mysql"
	"google.golang.org/grpc"

	authv1 "github.com/postcove/postcove/proto/postcove/auth/v1"
	"github.com/postcove/postcove/services/bench/internal/proc"
	"github.com/postcove/postcove/services/internal/grpcx"
)

// envPrefix is the prefix of the auth service's configuration variables
// (README, "Configuration").
const envPrefix = "POSTCOVE_AUTH_"

// backend is a database postcove's auth runs on.
type backend struct {
	name   string // "sqlite", "mysql"
	driver string // database.driver
	dsn    string // database.dsn
	// drop removes what the benchmark created in the database server; nil
	// when there is nothing to remove outside the temp dir.
	drop func(context.Context) error
}

func sqliteBackend(dir string) backend {
	return backend{name: "sqlite", driver: "sqlite", dsn: filepath.Join(dir, "auth.db")}
}

// mysqlBackend creates a fresh database on the server serverDSN names
// (go-sql-driver syntax, without a database, like
// POSTCOVE_TEST_MYSQL_DSN) and returns the backend using it.
func mysqlBackend(ctx context.Context, serverDSN string) (backend, error) {
	cfg, err := mysql.ParseDSN(serverDSN)
	if err != nil {
		return backend{}, fmt.Errorf("mysql DSN: %w", err)
	}
	cfg.DBName = ""
	if cfg.Timeout == 0 {
		cfg.Timeout = 5 * time.Second
	}
	salt := make([]byte, 6)
	if _, err := rand.Read(salt); err != nil {
		return backend{}, err
	}
	name := "postcove_bench_" + hex.EncodeToString(salt)
	run := func(ctx context.Context, query string) error {
		connector, err := mysql.NewConnector(cfg)
		if err != nil {
			return err
		}
		db := sql.OpenDB(connector)
		defer db.Close()
		ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		_, err = db.ExecContext(ctx, query)
		return err
	}
	if err := run(ctx, "CREATE DATABASE "+name+" CHARACTER SET utf8mb4 COLLATE utf8mb4_bin"); err != nil {
		return backend{}, fmt.Errorf("create database %s on %s: %w", name, cfg.Addr, err)
	}
	db := cfg.Clone()
	db.DBName = name
	return backend{
		name:   "mysql",
		driver: "mysql",
		dsn:    db.FormatDSN(),
		drop: func(ctx context.Context) error {
			if err := run(ctx, "DROP DATABASE IF EXISTS "+name); err != nil {
				return fmt.Errorf("drop database %s on %s: %w", name, cfg.Addr, err)
			}
			return nil
		},
	}, nil
}

// postcove is a running auth service and a client of it.
type postcove struct {
	proc  *proc.Process
	addr  string
	conn  *grpc.ClientConn
	auth  authv1.AuthServiceClient
	admin authv1.AdminServiceClient
}

// postcoveConfig is one way of running the auth binary.
type postcoveConfig struct {
	bin      string
	backend  backend
	cacheTTL time.Duration // resolve.cache_ttl
	logPath  string        // its stdout and stderr
}

// startPostcove starts the auth binary on a free loopback port with the
// configuration in environment variables, and waits until its health
// service says SERVING. The lockout is off (thresholds 0): a benchmark
// logs in thousands of times a second from one IP, and only correct
// passwords, so it would not trigger, but the counters would cost work
// that dovecot's equivalent (the anvil penalty) only spends on failures.
func startPostcove(ctx context.Context, c postcoveConfig) (*postcove, error) {
	addr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	out, err := os.OpenFile(c.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	defer out.Close() // the child has its own copy
	cmd := exec.Command(c.bin)
	cmd.Env = append(cleanEnv(os.Environ()),
		envPrefix+"LISTEN_GRPC="+addr,
		envPrefix+"LISTEN_METRICS=", // off: nothing scrapes it here
		envPrefix+"DATABASE_DRIVER="+c.backend.driver,
		envPrefix+"DATABASE_DSN="+c.backend.dsn,
		envPrefix+"LOCKOUT_IP_THRESHOLD=0",
		envPrefix+"LOCKOUT_ACCOUNT_THRESHOLD=0",
		envPrefix+"RESOLVE_CACHE_TTL="+c.cacheTTL.String(),
	)
	cmd.Stdout, cmd.Stderr = out, out
	p, err := proc.Start("postcove auth", cmd)
	if err != nil {
		return nil, err
	}
	pc := &postcove{proc: p, addr: addr}
	if err := pc.waitHealthy(ctx, 60*time.Second); err != nil {
		return nil, errors.Join(fmt.Errorf("postcove auth (%s) did not start: %w; log: %s", c.backend.name, err, c.logPath), pc.stop())
	}
	// One client connection for every worker: gRPC multiplexes calls on
	// it, and it is how the mail services will call auth.
	if pc.conn, err = grpcx.Dial(addr, nil); err != nil {
		return nil, errors.Join(err, pc.stop())
	}
	pc.auth = authv1.NewAuthServiceClient(pc.conn)
	pc.admin = authv1.NewAdminServiceClient(pc.conn)
	return pc, nil
}

// waitHealthy polls the gRPC health service until it reports SERVING.
func (pc *postcove) waitHealthy(ctx context.Context, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	for {
		cctx, ccancel := context.WithTimeout(ctx, time.Second)
		err := grpcx.CheckHealth(cctx, pc.addr, nil, "")
		ccancel()
		if err == nil {
			return nil
		}
		select {
		case <-pc.proc.Done():
			return fmt.Errorf("exited: %v", pc.proc.ExitErr())
		case <-ctx.Done():
			return fmt.Errorf("not healthy after %v: %w", timeout, err)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func (pc *postcove) stop() error {
	var errs []error
	if pc.conn != nil {
		errs = append(errs, pc.conn.Close())
	}
	errs = append(errs, pc.proc.Stop(15*time.Second))
	return errors.Join(errs...)
}

// cleanEnv drops the auth service's variables from env, so that the
// operator's own configuration (POSTCOVE_AUTH_CONFIG and the like) cannot
// change what is measured.
func cleanEnv(env []string) []string {
	var out []string
	for _, kv := range env {
		if !strings.HasPrefix(kv, envPrefix) {
			out = append(out, kv)
		}
	}
	return out
}

// freeAddr returns a loopback address with a port that was free a moment
// ago, for a server in another process.
func freeAddr() (string, error) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("find a free port: %w", err)
	}
	addr := lis.Addr().String()
	if err := lis.Close(); err != nil {
		return "", fmt.Errorf("find a free port: %w", err)
	}
	return addr, nil
}
