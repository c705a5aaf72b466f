package server

import (
	"context"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	authv1 "github.com/postcove/postcove/proto/postcove/auth/v1"
	"github.com/postcove/postcove/services/auth/internal/lockout"
	"github.com/postcove/postcove/services/auth/internal/password"
	"github.com/postcove/postcove/services/auth/internal/store/sqlite"
)

// TestLoginsWaitForASlot: when every verification slot is busy, a login
// waits (it does not start another argon2id computation) and gives up with
// its caller's deadline. This bound is what keeps a login flood from
// exhausting memory.
func TestLoginsWaitForASlot(t *testing.T) {
	st, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "auth.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	s := New(Options{Store: st, Hasher: password.New(password.DefaultParams()), Lockout: lockout.DefaultPolicy(), MaxConcurrentLogins: 2, Logger: slog.New(slog.DiscardHandler)})
	if cap(s.logins) != 2 {
		t.Fatalf("login slots = %d, want 2", cap(s.logins))
	}
	s.logins <- struct{}{}
	s.logins <- struct{}{}
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	t0 := time.Now()
	_, err = s.Authenticate(ctx, &authv1.AuthenticateRequest{Username: "a@example.org", Password: "x"})
	if status.Code(err) != codes.DeadlineExceeded || time.Since(t0) < 100*time.Millisecond {
		t.Errorf("Authenticate with all slots busy = %v after %v, want DeadlineExceeded after the 100ms deadline", err, time.Since(t0))
	}
	<-s.logins
	_, err = s.Authenticate(context.Background(), &authv1.AuthenticateRequest{Username: "a@example.org", Password: "x"})
	if status.Code(err) != codes.Unauthenticated {
		t.Errorf("Authenticate with a free slot = %v, want Unauthenticated", err)
	}
}

// TestHashingWaitsForASlot: CreateUser and SetPassword hash under the same
// bound as logins, so that parallel admin calls (a bulk import) cannot run
// more argon2id computations, each holding its memory cost, than there
// are slots.
func TestHashingWaitsForASlot(t *testing.T) {
	st, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "auth.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	s := New(Options{Store: st, Hasher: password.New(password.DefaultParams()), Lockout: lockout.DefaultPolicy(), MaxConcurrentLogins: 1, Logger: slog.New(slog.DiscardHandler)})
	if _, err := s.CreateDomain(context.Background(), &authv1.CreateDomainRequest{Name: "example.org"}); err != nil {
		t.Fatal(err)
	}
	s.logins <- struct{}{}
	calls := map[string]func(context.Context) error{
		"CreateUser": func(ctx context.Context) error {
			_, err := s.CreateUser(ctx, &authv1.CreateUserRequest{Address: "a@example.org", Password: "x"})
			return err
		},
		"SetPassword": func(ctx context.Context) error {
			_, err := s.SetPassword(ctx, &authv1.SetPasswordRequest{Address: "a@example.org", Password: "y"})
			return err
		},
	}
	for _, name := range []string{"CreateUser", "SetPassword"} {
		ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
		err := calls[name](ctx)
		cancel()
		if status.Code(err) != codes.DeadlineExceeded {
			t.Errorf("%s with all slots busy = %v, want DeadlineExceeded", name, err)
		}
	}
	<-s.logins
	for _, name := range []string{"CreateUser", "SetPassword"} {
		if err := calls[name](context.Background()); err != nil {
			t.Errorf("%s with a free slot = %v, want nil", name, err)
		}
	}
}
