package testlib

import (
	"context"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	authv1 "github.com/postcove/postcove/proto/postcove/auth/v1"
)

// TestStartAuth: the helpers set up a domain, a user and an alias that the
// running service then resolves, and the data survives Stop and Start on
// the same address, while calls in between fail with UNAVAILABLE.
func TestStartAuth(t *testing.T) {
	a := StartAuth(t)
	a.Domain(t, "example.org")
	a.User(t, "alice@example.org", "s3cret", 1<<20)
	a.Alias(t, "team@example.org", "alice@example.org", "bob@remote.example")
	client := authv1.NewAuthServiceClient(a.Conn())

	resolve := func(addr string) (*authv1.ResolveRecipientResponse, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		return client.ResolveRecipient(ctx, &authv1.ResolveRecipientRequest{Address: addr})
	}
	check := func() {
		t.Helper()
		tests := []struct {
			addr      string
			result    authv1.ResolveRecipientResponse_Result
			mailboxes int
			forwards  int
		}{
			{"alice@example.org", authv1.ResolveRecipientResponse_RESULT_DELIVER, 1, 0},
			{"team@example.org", authv1.ResolveRecipientResponse_RESULT_DELIVER, 1, 1},
			{"nobody@example.org", authv1.ResolveRecipientResponse_RESULT_UNKNOWN_USER, 0, 0},
			{"x@elsewhere.example", authv1.ResolveRecipientResponse_RESULT_NOT_LOCAL_DOMAIN, 0, 0},
		}
		for _, tt := range tests {
			got, err := resolve(tt.addr)
			if err != nil {
				t.Fatalf("ResolveRecipient(%q) = %v", tt.addr, err)
			}
			if got.GetResult() != tt.result || len(got.GetMailboxes()) != tt.mailboxes || len(got.GetForwards()) != tt.forwards {
				t.Errorf("ResolveRecipient(%q) = %v, want %v with %d mailboxes and %d forwards", tt.addr, got, tt.result, tt.mailboxes, tt.forwards)
			}
		}
		if got, err := resolve("alice@example.org"); err == nil && got.GetMailboxes()[0].GetQuotaBytes() != 1<<20 {
			t.Errorf("ResolveRecipient(alice) quota = %d, want %d", got.GetMailboxes()[0].GetQuotaBytes(), 1<<20)
		}
	}
	check()

	a.Stop()
	if _, err := resolve("alice@example.org"); status.Code(err) != codes.Unavailable {
		t.Errorf("ResolveRecipient with auth stopped = %v, want code Unavailable", err)
	}
	a.Start()
	check()
}

// TestStartAuthExtraEnv: extra environment reaches the service (here a
// lockout after two failures).
func TestStartAuthExtraEnv(t *testing.T) {
	a := StartAuth(t, "POSTCOVE_AUTH_LOCKOUT_IP_THRESHOLD=2")
	a.Domain(t, "example.org")
	a.User(t, "alice@example.org", "s3cret", 0)
	client := authv1.NewAuthServiceClient(a.Conn())
	want := []codes.Code{codes.Unauthenticated, codes.Unauthenticated, codes.ResourceExhausted}
	for i, code := range want {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_, err := client.Authenticate(ctx, &authv1.AuthenticateRequest{Username: "alice@example.org", Password: "wrong", RemoteIp: "192.0.2.1"})
		cancel()
		if status.Code(err) != code {
			t.Errorf("Authenticate #%d = %v, want code %v", i+1, err, code)
		}
	}
}
