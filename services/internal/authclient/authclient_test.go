package authclient

import (
	"context"
	"errors"
	"net"
	"reflect"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	authv1 "github.com/postcove/postcove/proto/postcove/auth/v1"
	"github.com/postcove/postcove/services/internal/grpcx"
	"github.com/postcove/postcove/services/internal/testlib"
)

// setup starts a real auth service with a domain, two users and a few
// aliases, and returns a client of it.
func setup(t *testing.T, env ...string) (*Client, *testlib.Auth) {
	t.Helper()
	a := testlib.StartAuth(t, env...)
	a.Domain(t, "example.org")
	a.User(t, "alice@example.org", "s3cret", 5<<20)
	a.User(t, "bob@example.org", "pw", 0)
	a.Alias(t, "team@example.org", "alice@example.org", "bob@example.org", "carol@remote.example")
	a.Alias(t, "loop1@example.org", "loop2@example.org")
	a.Alias(t, "loop2@example.org", "loop1@example.org")
	return New(a.Conn()), a
}

func TestAuthenticate(t *testing.T) {
	c, _ := setup(t)
	tests := []struct {
		user, pass, ip string
		want           User
		wantErr        error
	}{
		{"alice@example.org", "s3cret", "192.0.2.1", User{Address: "alice@example.org", QuotaBytes: 5 << 20}, nil},
		{"ALICE@Example.ORG", "s3cret", "", User{Address: "alice@example.org", QuotaBytes: 5 << 20}, nil},
		{"alice@example.org", "wrong", "192.0.2.2", User{}, ErrBadCredentials},
		{"nobody@example.org", "s3cret", "192.0.2.3", User{}, ErrBadCredentials},
		{"", "s3cret", "192.0.2.4", User{}, ErrInvalid},
		{"alice@example.org", "s3cret", "not an ip", User{}, ErrInvalid},
	}
	for _, tt := range tests {
		got, err := c.Authenticate(context.Background(), tt.user, tt.pass, "imap", tt.ip, true)
		if got != tt.want || !errors.Is(err, tt.wantErr) || (tt.wantErr == nil) != (err == nil) {
			t.Errorf("Authenticate(%q, %q, ip %q) = %+v, %v, want %+v, %v", tt.user, tt.pass, tt.ip, got, err, tt.want, tt.wantErr)
		}
	}
}

// TestAuthenticateLocked: past the threshold a login is refused with a
// *LockedError carrying auth's retry delay, even with the right password.
func TestAuthenticateLocked(t *testing.T) {
	c, _ := setup(t, "POSTCOVE_AUTH_LOCKOUT_IP_THRESHOLD=2", "POSTCOVE_AUTH_LOCKOUT_IP_BASE=90s")
	for range 2 {
		if _, err := c.Authenticate(context.Background(), "alice@example.org", "wrong", "pop3", "192.0.2.9", false); !errors.Is(err, ErrBadCredentials) {
			t.Fatalf("Authenticate(wrong password) = %v, want ErrBadCredentials", err)
		}
	}
	_, err := c.Authenticate(context.Background(), "alice@example.org", "s3cret", "pop3", "192.0.2.9", false)
	var locked *LockedError
	if !errors.As(err, &locked) || !errors.Is(err, ErrLocked) {
		t.Fatalf("Authenticate while locked = %v, want a *LockedError that is ErrLocked", err)
	}
	if locked.RetryAfter <= 0 || locked.RetryAfter > 90*time.Second {
		t.Errorf("LockedError.RetryAfter = %v, want in (0, 90s]", locked.RetryAfter)
	}
	// Another IP still logs in.
	if _, err := c.Authenticate(context.Background(), "alice@example.org", "s3cret", "pop3", "192.0.2.10", false); err != nil {
		t.Errorf("Authenticate from another IP = %v, want nil", err)
	}
}

func TestResolveRecipient(t *testing.T) {
	c, _ := setup(t)
	alice := Mailbox{Address: "alice@example.org", Domain: "example.org", LocalPart: "alice", QuotaBytes: 5 << 20}
	bob := Mailbox{Address: "bob@example.org", Domain: "example.org", LocalPart: "bob"}
	tests := []struct {
		addr    string
		want    Recipient
		wantErr error
	}{
		{"alice@example.org", Recipient{Kind: Deliver, Address: "alice@example.org", Mailboxes: []Mailbox{alice}}, nil},
		{"Alice+news@EXAMPLE.org", Recipient{Kind: Deliver, Address: "alice+news@example.org", Mailboxes: []Mailbox{alice}}, nil},
		{"team@example.org", Recipient{Kind: Deliver, Address: "team@example.org", Mailboxes: []Mailbox{alice, bob}, Forwards: []string{"carol@remote.example"}}, nil},
		{"nobody@example.org", Recipient{Kind: UnknownUser, Address: "nobody@example.org"}, nil},
		{"x@elsewhere.example", Recipient{Kind: NotLocalDomain, Address: "x@elsewhere.example"}, nil},
		{"loop1@example.org", Recipient{Kind: AliasLoop, Address: "loop1@example.org"}, nil},
		{"not an address", Recipient{}, ErrInvalid},
		{"", Recipient{}, ErrInvalid},
	}
	for _, tt := range tests {
		got, err := c.ResolveRecipient(context.Background(), tt.addr)
		if !reflect.DeepEqual(got, tt.want) || !errors.Is(err, tt.wantErr) || (tt.wantErr == nil) != (err == nil) {
			t.Errorf("ResolveRecipient(%q) = %+v, %v, want %+v, %v", tt.addr, got, err, tt.want, tt.wantErr)
		}
	}
}

func TestCanSendAs(t *testing.T) {
	c, _ := setup(t)
	tests := []struct {
		user, addr string
		want       bool
		wantErr    error
	}{
		{"alice@example.org", "alice@example.org", true, nil},
		{"alice@example.org", "alice+x@example.org", true, nil},
		{"alice@example.org", "team@example.org", true, nil},
		{"alice@example.org", "bob@example.org", false, nil},
		{"alice@example.org", "not an address", false, ErrInvalid},
	}
	for _, tt := range tests {
		got, err := c.CanSendAs(context.Background(), tt.user, tt.addr)
		if got != tt.want || !errors.Is(err, tt.wantErr) || (tt.wantErr == nil) != (err == nil) {
			t.Errorf("CanSendAs(%q, %q) = %v, %v, want %v, %v", tt.user, tt.addr, got, err, tt.want, tt.wantErr)
		}
	}
}

// TestAuthDown: with auth stopped every call is ErrUnavailable, never a
// definite answer; after a restart the same client works again.
func TestAuthDown(t *testing.T) {
	c, a := setup(t)
	a.Stop()
	ctx := context.Background()
	if _, err := c.Authenticate(ctx, "alice@example.org", "s3cret", "imap", "", false); !errors.Is(err, ErrUnavailable) {
		t.Errorf("Authenticate with auth down = %v, want ErrUnavailable", err)
	}
	if _, err := c.ResolveRecipient(ctx, "alice@example.org"); !errors.Is(err, ErrUnavailable) {
		t.Errorf("ResolveRecipient with auth down = %v, want ErrUnavailable", err)
	}
	if _, err := c.CanSendAs(ctx, "alice@example.org", "alice@example.org"); !errors.Is(err, ErrUnavailable) {
		t.Errorf("CanSendAs with auth down = %v, want ErrUnavailable", err)
	}
	a.Start()
	if r, err := c.ResolveRecipient(ctx, "alice@example.org"); err != nil || r.Kind != Deliver {
		t.Errorf("ResolveRecipient after restart = %+v, %v, want Deliver", r, err)
	}
}

// fakeAuth answers every call with the error or resolve result it holds,
// for the answers a real auth service does not give on demand.
type fakeAuth struct {
	authv1.UnimplementedAuthServiceServer
	err    error
	result authv1.ResolveRecipientResponse_Result
	block  bool // never answer (until the call's context ends)
}

func (f *fakeAuth) Authenticate(ctx context.Context, _ *authv1.AuthenticateRequest) (*authv1.AuthenticateResponse, error) {
	if f.block {
		<-ctx.Done()
		return nil, ctx.Err()
	}
	if f.err != nil {
		return nil, f.err
	}
	return &authv1.AuthenticateResponse{}, nil // no user: a broken answer
}

func (f *fakeAuth) ResolveRecipient(context.Context, *authv1.ResolveRecipientRequest) (*authv1.ResolveRecipientResponse, error) {
	if f.err != nil {
		return nil, f.err
	}
	return &authv1.ResolveRecipientResponse{Result: f.result}, nil
}

func startFake(t *testing.T, f *fakeAuth) *Client {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	authv1.RegisterAuthServiceServer(srv, f)
	go srv.Serve(lis)
	t.Cleanup(srv.Stop)
	conn, err := grpcx.Dial(lis.Addr().String(), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return New(conn)
}

func lockedStatus(t *testing.T, delay time.Duration) error {
	st := status.New(codes.ResourceExhausted, "locked")
	st, err := st.WithDetails(&errdetails.RetryInfo{RetryDelay: durationpb.New(delay)})
	if err != nil {
		t.Fatal(err)
	}
	return st.Err()
}

// TestErrorMapping: each gRPC answer maps to the error the package
// documents; anything unexpected is ErrUnavailable.
func TestErrorMapping(t *testing.T) {
	tests := []struct {
		name          string
		fake          fakeAuth
		wantLogin     error
		wantRetry     time.Duration
		wantResolve   error
		wantResolveOK Kind
	}{
		{"unauthenticated", fakeAuth{err: status.Error(codes.Unauthenticated, "no")}, ErrBadCredentials, 0, ErrUnavailable, 0},
		{"locked with delay", fakeAuth{err: lockedStatus(t, 42*time.Second)}, ErrLocked, 42 * time.Second, ErrUnavailable, 0},
		{"locked without delay", fakeAuth{err: status.Error(codes.ResourceExhausted, "locked")}, ErrLocked, 0, ErrUnavailable, 0},
		{"invalid", fakeAuth{err: status.Error(codes.InvalidArgument, "bad")}, ErrInvalid, 0, ErrInvalid, 0},
		{"unavailable", fakeAuth{err: status.Error(codes.Unavailable, "db down")}, ErrUnavailable, 0, ErrUnavailable, 0},
		{"internal", fakeAuth{err: status.Error(codes.Internal, "bug")}, ErrUnavailable, 0, ErrUnavailable, 0},
		{"not found", fakeAuth{err: status.Error(codes.NotFound, "?")}, ErrUnavailable, 0, ErrUnavailable, 0},
		{"unspecified result", fakeAuth{result: authv1.ResolveRecipientResponse_RESULT_UNSPECIFIED}, ErrUnavailable, 0, ErrUnavailable, 0},
		{"future result", fakeAuth{result: 99}, ErrUnavailable, 0, ErrUnavailable, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := startFake(t, &tt.fake)
			_, err := c.Authenticate(context.Background(), "a@example.org", "pw", "imap", "", false)
			if !errors.Is(err, tt.wantLogin) {
				t.Errorf("Authenticate() = %v, want %v", err, tt.wantLogin)
			}
			var locked *LockedError
			if errors.As(err, &locked) && locked.RetryAfter != tt.wantRetry {
				t.Errorf("Authenticate() RetryAfter = %v, want %v", locked.RetryAfter, tt.wantRetry)
			}
			if _, err := c.ResolveRecipient(context.Background(), "a@example.org"); !errors.Is(err, tt.wantResolve) {
				t.Errorf("ResolveRecipient() = %v, want %v", err, tt.wantResolve)
			}
		})
	}
}

// TestDeadline: a call without a deadline gets DefaultTimeout; one with a
// deadline keeps it and fails as ErrUnavailable when it passes.
func TestDeadline(t *testing.T) {
	ctx, cancel := withDefaultTimeout(context.Background())
	dl, ok := ctx.Deadline()
	cancel()
	if left := time.Until(dl); !ok || left > DefaultTimeout || left < DefaultTimeout-time.Second {
		t.Errorf("withDefaultTimeout(no deadline) deadline in %v (set %v), want about %v", left, ok, DefaultTimeout)
	}
	want := time.Now().Add(time.Minute)
	parent, cancelParent := context.WithDeadline(context.Background(), want)
	defer cancelParent()
	ctx, cancel = withDefaultTimeout(parent)
	dl, _ = ctx.Deadline()
	cancel()
	if !dl.Equal(want) {
		t.Errorf("withDefaultTimeout(deadline %v) = deadline %v, want it kept", want, dl)
	}

	c := startFake(t, &fakeAuth{block: true})
	short, cancelShort := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancelShort()
	start := time.Now()
	_, err := c.Authenticate(short, "a@example.org", "pw", "imap", "", false)
	if !errors.Is(err, ErrUnavailable) || time.Since(start) > 5*time.Second {
		t.Errorf("Authenticate(past deadline) = %v after %v, want ErrUnavailable at the deadline", err, time.Since(start))
	}
}

func TestLockedErrorText(t *testing.T) {
	tests := []struct {
		err  *LockedError
		want string
	}{
		{&LockedError{}, "locked out after too many failed logins"},
		{&LockedError{RetryAfter: 90 * time.Second}, "locked out after too many failed logins, retry in 1m30s"},
	}
	for _, tt := range tests {
		if got := tt.err.Error(); got != tt.want {
			t.Errorf("(%+v).Error() = %q, want %q", *tt.err, got, tt.want)
		}
	}
}
