package server_test

import (
	"context"
	"io"
	"log/slog"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	authv1 "github.com/postcove/postcove/proto/postcove/auth/v1"
	"github.com/postcove/postcove/services/auth/internal/lockout"
	"github.com/postcove/postcove/services/auth/internal/password"
	"github.com/postcove/postcove/services/auth/internal/resolve"
	"github.com/postcove/postcove/services/auth/internal/server"
	"github.com/postcove/postcove/services/auth/internal/store"
	"github.com/postcove/postcove/services/auth/internal/store/mysql"
	"github.com/postcove/postcove/services/auth/internal/store/sqlite"
	"github.com/postcove/postcove/services/internal/grpcx"
	"github.com/postcove/postcove/services/internal/testlib"
)

// backends are the stores every server test runs on.
var backends = []struct {
	name string
	open func(testing.TB) store.Store
}{
	{"sqlite", openSQLite},
	{"mariadb", openMariaDB},
}

func openSQLite(t testing.TB) store.Store {
	t.Helper()
	st, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "auth.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

func openMariaDB(t testing.TB) store.Store {
	t.Helper()
	st, err := mysql.Open(context.Background(), testlib.MySQLDSN(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

// env is a Server behind a real gRPC listener on loopback.
type env struct {
	st    store.Store
	auth  authv1.AuthServiceClient
	admin authv1.AdminServiceClient
}

type options struct {
	policy  lockout.Policy
	hasher  *password.Hasher
	noCache bool      // resolve without the answer cache
	logs    io.Writer // JSON logs go here; discarded when nil
}

func start(t testing.TB, st store.Store, o options) *env {
	t.Helper()
	if o.hasher == nil {
		o.hasher = password.New(password.DefaultParams())
	}
	log := slog.New(slog.DiscardHandler)
	if o.logs != nil {
		log = slog.New(slog.NewJSONHandler(o.logs, nil))
	}
	g, _ := grpcx.NewServer(grpcx.ServerOptions{Logger: log})
	ttl := time.Minute
	if o.noCache {
		ttl = 0
	}
	srv := server.New(server.Options{
		Store: st, Hasher: o.hasher, Lockout: o.policy,
		Resolver: resolve.Options{TagSeparator: "+", CacheTTL: ttl},
		Logger:   log,
	})
	srv.Register(g)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go g.Serve(lis)
	t.Cleanup(g.Stop)
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return &env{st: st, auth: authv1.NewAuthServiceClient(conn), admin: authv1.NewAdminServiceClient(conn)}
}

func (e *env) mustDomain(t testing.TB, name string) {
	t.Helper()
	if _, err := e.admin.CreateDomain(context.Background(), &authv1.CreateDomainRequest{Name: name}); err != nil {
		t.Fatalf("CreateDomain(%q): %v", name, err)
	}
}

func (e *env) mustUser(t testing.TB, addr, pw string) {
	t.Helper()
	if _, err := e.admin.CreateUser(context.Background(), &authv1.CreateUserRequest{Address: addr, Password: pw}); err != nil {
		t.Fatalf("CreateUser(%q): %v", addr, err)
	}
}

// mustUserFast inserts a user straight into the store with a {PLAIN}
// hash, for fixtures too large to hash each password with argon2id.
func (e *env) mustUserFast(t testing.TB, addr string) {
	t.Helper()
	_, domain, _ := strings.Cut(addr, "@")
	if _, err := e.st.CreateUser(context.Background(), store.User{Address: addr, Domain: domain, PasswordHash: "{PLAIN}pw", Enabled: true}); err != nil {
		t.Fatalf("CreateUser(%q): %v", addr, err)
	}
}

func (e *env) mustAlias(t testing.TB, src string, dests ...string) {
	t.Helper()
	if _, err := e.admin.AddAlias(context.Background(), &authv1.AddAliasRequest{Source: src, Destinations: dests}); err != nil {
		t.Fatalf("AddAlias(%q): %v", src, err)
	}
}

func (e *env) login(user, pw, ip string) error {
	_, err := e.auth.Authenticate(context.Background(), &authv1.AuthenticateRequest{Username: user, Password: pw, Service: "imap", RemoteIp: ip})
	return err
}

func wantCode(t testing.TB, what string, err error, want codes.Code) {
	t.Helper()
	if got := status.Code(err); got != want {
		t.Errorf("%s: code %v (%v), want %v", what, got, err, want)
	}
}

// forEachBackend runs f on every store.
func forEachBackend(t *testing.T, f func(t *testing.T, open func(testing.TB) store.Store)) {
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) { f(t, b.open) })
	}
}
