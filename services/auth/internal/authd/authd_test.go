package authd

import (
	"context"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	authv1 "github.com/postcove/postcove/proto/postcove/auth/v1"
	"github.com/postcove/postcove/services/internal/grpcx"
	"github.com/postcove/postcove/services/internal/testlib"
)

// runAuth runs the whole service in-process, as cmd/auth does, and returns
// a client connection to it.
func runAuth(t *testing.T, cfg Config) authv1.AuthServiceClient {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Run(ctx, cfg, slog.New(slog.DiscardHandler)) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run returned %v after shutdown, want nil", err)
		}
	})
	conn, err := grpcx.Dial(cfg.Listen.GRPC, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return authv1.NewAuthServiceClient(conn)
}

func testConfig(t *testing.T, driver, dsn string) Config {
	cfg := DefaultConfig()
	cfg.Listen.GRPC = testlib.FreeAddr(t)
	cfg.Listen.Metrics = ""
	cfg.Database = Database{Driver: driver, DSN: dsn, HealthInterval: 200 * time.Millisecond}
	return cfg
}

// eventually retries f until it returns nil or the timeout passes.
func eventually(t *testing.T, timeout time.Duration, what string, f func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: still %v after %v", what, err, timeout)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func resolveErr(c authv1.AuthServiceClient) error {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	_, err := c.ResolveRecipient(ctx, &authv1.ResolveRecipientRequest{Address: "alice@example.org"})
	return err
}

// TestDatabaseKilledAndRestarted: with MariaDB killed (-9) mid-run, calls
// answer UNAVAILABLE — never a definite "unknown user" — and health says
// NOT_SERVING; when it is back, both recover with no restart of auth.
func TestDatabaseKilledAndRestarted(t *testing.T) {
	db := testlib.StartMariaDB(t)
	cfg := testConfig(t, "mysql", db.NewDatabase())
	client := runAuth(t, cfg)
	health := func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		return grpcx.CheckHealth(ctx, cfg.Listen.GRPC, nil, "")
	}
	eventually(t, 20*time.Second, "serving at start", health)
	eventually(t, 5*time.Second, "resolve at start", func() error { return resolveErr(client) })

	db.Kill()
	eventually(t, 10*time.Second, "UNAVAILABLE while the database is down", func() error {
		if code := status.Code(resolveErr(client)); code != codes.Unavailable {
			return status.Errorf(codes.Unknown, "code %v", code)
		}
		return nil
	})
	eventually(t, 10*time.Second, "NOT_SERVING while the database is down", func() error {
		if health() == nil {
			return status.Error(codes.Unknown, "still SERVING")
		}
		return nil
	})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	_, err := client.Authenticate(ctx, &authv1.AuthenticateRequest{Username: "alice@example.org", Password: "x"})
	cancel()
	if code := status.Code(err); code != codes.Unavailable {
		t.Errorf("Authenticate with the database down = %v, want UNAVAILABLE", err)
	}

	db.Start()
	eventually(t, 30*time.Second, "resolve after the database is back", func() error { return resolveErr(client) })
	eventually(t, 10*time.Second, "SERVING after the database is back", health)
}

// TestStartsBeforeDatabase: auth started while MariaDB is down waits for it
// and then serves; start order is not a correctness condition.
func TestStartsBeforeDatabase(t *testing.T) {
	db := testlib.StartMariaDB(t)
	dsn := db.NewDatabase()
	db.Kill()
	cfg := testConfig(t, "mysql", dsn)
	client := runAuth(t, cfg)
	time.Sleep(time.Second)
	db.Start()
	eventually(t, 40*time.Second, "resolve once the database is up", func() error { return resolveErr(client) })
}

func TestRunSQLite(t *testing.T) {
	cfg := testConfig(t, "sqlite", filepath.Join(t.TempDir(), "auth.db"))
	cfg.Listen.Metrics = testlib.FreeAddr(t)
	client := runAuth(t, cfg)
	eventually(t, 5*time.Second, "resolve", func() error { return resolveErr(client) })
}

func TestValidateNamesTheKey(t *testing.T) {
	tests := []struct {
		edit func(*Config)
		key  string
	}{
		{func(c *Config) { c.Database.Driver = "postgres" }, "database.driver"},
		{func(c *Config) { c.Database.DSN = "" }, "database.dsn"},
		{func(c *Config) { c.Listen.GRPC = "nonsense" }, "listen.grpc"},
		{func(c *Config) { c.LogLevel = "loud" }, "log_level"},
		{func(c *Config) { c.Lockout.IPThreshold = -1 }, "lockout.ip_threshold"},
		{func(c *Config) { c.Lockout.IPMax = time.Second }, "lockout.ip_max"},
		{func(c *Config) { c.Resolve.TagSeparator = "++" }, "resolve.tag_separator"},
		{func(c *Config) { c.MaxConcurrentLogins = 0 }, "max_concurrent_logins"},
		{func(c *Config) { c.TLS.Cert = "/nonexistent/cert.pem" }, "tls."},
	}
	for _, tt := range tests {
		cfg := DefaultConfig()
		tt.edit(&cfg)
		err := cfg.Validate()
		if err == nil || !strings.Contains(err.Error(), tt.key) {
			t.Errorf("Validate() = %v, want an error naming %q", err, tt.key)
		}
	}
	cfg := DefaultConfig()
	if err := cfg.Validate(); err != nil {
		t.Errorf("DefaultConfig().Validate() = %v, want nil", err)
	}
}
