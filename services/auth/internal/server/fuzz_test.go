package server

import (
	"context"
	"log/slog"
	"path/filepath"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	authv1 "github.com/postcove/postcove/proto/postcove/auth/v1"
	"github.com/postcove/postcove/services/auth/internal/lockout"
	"github.com/postcove/postcove/services/auth/internal/password"
	"github.com/postcove/postcove/services/auth/internal/resolve"
	"github.com/postcove/postcove/services/auth/internal/store"
	"github.com/postcove/postcove/services/auth/internal/store/sqlite"
)

// FuzzAuthService feeds arbitrary strings to every AuthService method and
// the admin methods that parse input. Whatever arrives over gRPC must get
// an answer with a meaningful code, never a panic and never a blanket
// INTERNAL or UNKNOWN.
func FuzzAuthService(f *testing.F) {
	for _, s := range [][3]string{
		{"alice@example.org", "pw", "192.0.2.1"},
		{"ALICE+tag@Example.ORG", "", "::ffff:192.0.2.1"},
		{"jörg@bücher.example", "pässwörd", "2001:db8::1"},
		{"@example.org", "x", ""},
		{"../../etc/passwd@example.org", "x", "fe80::1%eth0"},
		{"a@b@c", "\x00", "999.1.1.1"},
		{"\"quoted\"@example.org", "x", "1.2.3.4"},
		{"team@example.org", "x", "not-an-ip"},
	} {
		f.Add(s[0], s[1], s[2])
	}
	st, err := sqlite.Open(context.Background(), filepath.Join(f.TempDir(), "auth.db"))
	if err != nil {
		f.Fatal(err)
	}
	defer st.Close()
	seed(f, st)
	// Cheap argon2 parameters: the fuzzer explores parsing, not hashing.
	h := password.New(password.Params{Time: 1, MemoryKiB: 64, Threads: 1, SaltLen: 16, KeyLen: 32})
	s := New(Options{Store: st, Hasher: h, Lockout: lockout.DefaultPolicy(), Resolver: resolve.Options{TagSeparator: "+"}, Logger: slog.New(slog.DiscardHandler)})
	ctx := context.Background()
	ok := map[codes.Code]bool{codes.OK: true, codes.InvalidArgument: true, codes.Unauthenticated: true, codes.ResourceExhausted: true, codes.NotFound: true}
	f.Fuzz(func(t *testing.T, user, pw, ip string) {
		check := func(op string, err error) {
			if c := status.Code(err); !ok[c] {
				t.Errorf("%s(%q, %q, %q) = %v: unexpected code %v", op, user, pw, ip, err, c)
			}
		}
		_, err := s.Authenticate(ctx, &authv1.AuthenticateRequest{Username: user, Password: pw, RemoteIp: ip, Service: pw})
		check("Authenticate", err)
		_, err = s.ResolveRecipient(ctx, &authv1.ResolveRecipientRequest{Address: user})
		check("ResolveRecipient", err)
		_, err = s.CanSendAs(ctx, &authv1.CanSendAsRequest{User: user, Address: pw})
		check("CanSendAs", err)
		_, err = s.GetUser(ctx, &authv1.GetUserRequest{Address: user})
		check("GetUser", err)
		_, err = s.ListUsers(ctx, &authv1.ListUsersRequest{Domain: ip})
		check("ListUsers", err)
		_, err = s.ClearLockout(ctx, &authv1.ClearLockoutRequest{Username: user, RemoteIp: ip})
		check("ClearLockout", err)
	})
}

func seed(tb testing.TB, st store.Store) {
	ctx := context.Background()
	if _, err := st.CreateDomain(ctx, "example.org"); err != nil {
		tb.Fatal(err)
	}
	if _, err := st.CreateUser(ctx, store.User{Address: "alice@example.org", Domain: "example.org", PasswordHash: "{PLAIN}pw", Enabled: true}); err != nil {
		tb.Fatal(err)
	}
	if _, err := st.AddAliasDestinations(ctx, "team@example.org", "example.org", []string{"alice@example.org", "x@remote.example"}); err != nil {
		tb.Fatal(err)
	}
}
