package server

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"runtime"
	"strings"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	authv1 "github.com/postcove/postcove/proto/postcove/auth/v1"
	"github.com/postcove/postcove/services/auth/internal/password"
	"github.com/postcove/postcove/services/auth/internal/resolve"
	"github.com/postcove/postcove/services/auth/internal/store"
	"github.com/postcove/postcove/services/internal/address"
)

// errLoginFailed is the one answer for an unknown user, a wrong password and
// a disabled account: a client must not learn which addresses exist.
var errLoginFailed = status.Error(codes.Unauthenticated, "authentication failed")

// Authenticate implements AuthService.Authenticate.
//
// Every refused login costs the same work whatever the reason: the store
// lookup, one password verification (against a dummy hash when the user
// does not exist) and the failure counters. That keeps unknown user and
// wrong password indistinguishable in timing as well as in the reply.
func (s *Server) Authenticate(ctx context.Context, req *authv1.AuthenticateRequest) (*authv1.AuthenticateResponse, error) {
	if req.GetUsername() == "" {
		return nil, required("username")
	}
	svc := req.GetService()
	if svc == "" {
		svc = "unknown"
	}
	ip, err := ipKey(req.GetRemoteIp())
	if err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "remote_ip: %v", err)
	}
	// A username that is not a valid address cannot exist; it is counted
	// and answered like any unknown user, under the text given.
	account := req.GetUsername()
	if a, err := address.Parse(account); err == nil {
		account = a.String()
	}

	wait, err := s.guard.Locked(ctx, ip, account)
	if err != nil {
		return nil, storeError(s.log, "authenticate", err)
	}
	if wait > 0 {
		s.log.Warn("authentication refused: locked out", "service", svc, "ip", req.GetRemoteIp(), "user", account, "retry_after", wait.Round(time.Second).String())
		s.metrics.login(svc, "locked")
		return nil, lockedOut(wait)
	}

	user, ok, reason, err := s.checkPassword(ctx, account, req.GetPassword())
	if err != nil {
		return nil, err
	}
	if !ok {
		// One line per failure, with the fields a fail2ban filter needs.
		s.log.Warn("authentication failed", "service", svc, "ip", req.GetRemoteIp(), "user", account, "tls", req.GetTls(), "reason", reason)
		s.metrics.login(svc, "failed")
		if err := s.guard.Fail(ctx, ip, account); err != nil {
			return nil, storeError(s.log, "authenticate", err)
		}
		return nil, errLoginFailed
	}
	if err := s.guard.Succeed(ctx, account); err != nil {
		return nil, storeError(s.log, "authenticate", err)
	}
	s.log.Info("authenticated", "service", svc, "ip", req.GetRemoteIp(), "user", account, "tls", req.GetTls())
	s.metrics.login(svc, "ok")
	return &authv1.AuthenticateResponse{User: userProto(user)}, nil
}

// checkPassword verifies a login under the concurrency bound and rehashes
// an old-scheme hash after success. reason says why a login failed, for the
// log only.
func (s *Server) checkPassword(ctx context.Context, account, plain string) (u store.User, ok bool, reason string, err error) {
	release, err := s.hashSlot(ctx)
	if err != nil {
		return u, false, "", err
	}
	defer release()

	u, err = s.store.GetUser(ctx, account)
	found := err == nil
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return u, false, "", storeError(s.log, "authenticate", err)
	}
	hash := u.PasswordHash
	if !found {
		hash = s.hasher.Dummy()
	}
	match, rehash, verr := s.hasher.Verify(hash, plain)
	switch {
	case !found:
		return u, false, "unknown user", nil
	case verr != nil:
		s.log.Error("stored password hash unusable", "user", account, "err", verr)
		return u, false, "unusable password hash", nil
	case !match:
		return u, false, "bad password", nil
	case plain == "":
		return u, false, "empty password", nil
	case !u.Enabled:
		return u, false, "account disabled", nil
	}
	if rehash {
		s.rehash(ctx, u.Address, plain)
	}
	return u, true, "", nil
}

// hashSlot waits for one of the MaxConcurrentLogins slots that every
// argon2id computation (a login's verification, a new hash) runs in: each
// holds its memory cost (19 MiB by default) while it runs, so the slots
// bound the memory as well as the CPU. When that memory is Go heap
// (password.HashMemoryOnHeap), the returned release collects garbage
// before it gives the slot back: the computation's memory is garbage by
// then, but the collector would only reclaim it after more hashes had
// allocated theirs (measured with two slots: four times m of heap, not
// two). A collection of auth's small heap costs a few percent of a hash.
func (s *Server) hashSlot(ctx context.Context) (release func(), err error) {
	select {
	case s.logins <- struct{}{}:
		return func() {
			if password.HashMemoryOnHeap {
				runtime.GC()
			}
			<-s.logins
		}, nil
	case <-ctx.Done():
		return nil, status.FromContextError(ctx.Err()).Err()
	}
}

// hashPassword hashes a new password in a hash slot, so that admin calls
// creating users in parallel (a provisioning script, an import) do not
// multiply argon2's memory by their concurrency. The caller must not hold
// a slot already (rehash runs inside checkPassword's).
func (s *Server) hashPassword(ctx context.Context, plain string) (string, error) {
	release, err := s.hashSlot(ctx)
	if err != nil {
		return "", err
	}
	defer release()
	h, err := s.hasher.Hash(plain)
	if err != nil {
		return "", status.Errorf(codes.Internal, "hash password: %v", err)
	}
	return h, nil
}

// rehash upgrades a stored hash to the current argon2id parameters. It is
// best effort: the login already succeeded. It runs in checkPassword's
// slot.
func (s *Server) rehash(ctx context.Context, addr, plain string) {
	h, err := s.hasher.Hash(plain)
	if err == nil {
		err = s.store.SetPasswordHash(ctx, addr, h)
	}
	if err != nil {
		s.log.Warn("password rehash failed", "user", addr, "err", err)
		return
	}
	s.log.Info("password rehashed to argon2id", "user", addr)
}

// lockedOut is RESOURCE_EXHAUSTED with a RetryInfo detail, so callers can
// tell the client when to come back.
func lockedOut(wait time.Duration) error {
	st := status.New(codes.ResourceExhausted, fmt.Sprintf("too many failed logins, retry in %s", wait.Round(time.Second)))
	if d, err := st.WithDetails(&errdetails.RetryInfo{RetryDelay: durationpb.New(wait)}); err == nil {
		st = d
	}
	return st.Err()
}

// ipKey is the counter key for a client address. IPv4-mapped IPv6 is
// unmapped; IPv6 is counted per /64, the smallest block a single customer
// usually holds, so that an attacker cannot rotate through its own
// addresses.
func ipKey(s string) (string, error) {
	if s == "" {
		return "", nil
	}
	ip, err := netip.ParseAddr(s)
	if err != nil {
		return "", fmt.Errorf("not an IP address: %q", s)
	}
	ip = ip.Unmap().WithZone("")
	if ip.Is4() {
		return ip.String(), nil
	}
	p, _ := ip.Prefix(64)
	return p.String(), nil
}

// ResolveRecipient implements AuthService.ResolveRecipient.
func (s *Server) ResolveRecipient(ctx context.Context, req *authv1.ResolveRecipientRequest) (*authv1.ResolveRecipientResponse, error) {
	if req.GetAddress() == "" {
		return nil, required("address")
	}
	a, err := address.Parse(req.GetAddress())
	if err != nil {
		return nil, badAddress("address", err)
	}
	res, err := s.resolver.Resolve(ctx, a)
	if err != nil {
		return nil, storeError(s.log, "resolve recipient", err)
	}
	out := &authv1.ResolveRecipientResponse{Address: res.Address, Forwards: res.Forwards}
	switch res.Kind {
	case resolve.Deliver:
		out.Result = authv1.ResolveRecipientResponse_RESULT_DELIVER
	case resolve.NotLocalDomain:
		out.Result = authv1.ResolveRecipientResponse_RESULT_NOT_LOCAL_DOMAIN
	case resolve.UnknownUser:
		out.Result = authv1.ResolveRecipientResponse_RESULT_UNKNOWN_USER
	case resolve.AliasLoop:
		s.log.Error("alias loop", "address", res.Address)
		out.Result = authv1.ResolveRecipientResponse_RESULT_ALIAS_LOOP
	}
	for _, m := range res.Mailboxes {
		local := m.Address[:strings.LastIndexByte(m.Address, '@')]
		out.Mailboxes = append(out.Mailboxes, &authv1.Mailbox{Address: m.Address, Domain: m.Domain, LocalPart: local, QuotaBytes: m.QuotaBytes})
	}
	s.metrics.resolve(out.Result.String())
	return out, nil
}

// CanSendAs implements AuthService.CanSendAs.
func (s *Server) CanSendAs(ctx context.Context, req *authv1.CanSendAsRequest) (*authv1.CanSendAsResponse, error) {
	if req.GetUser() == "" {
		return nil, required("user")
	}
	if req.GetAddress() == "" {
		return nil, required("address")
	}
	user, err := address.Parse(req.GetUser())
	if err != nil {
		return nil, badAddress("user", err)
	}
	addr, err := address.Parse(req.GetAddress())
	if err != nil {
		return nil, badAddress("address", err)
	}
	ok, err := s.resolver.CanSendAs(ctx, user, addr)
	if err != nil {
		return nil, storeError(s.log, "can send as", err)
	}
	return &authv1.CanSendAsResponse{Allowed: ok}, nil
}

func userProto(u store.User) *authv1.User {
	return &authv1.User{Address: u.Address, QuotaBytes: u.QuotaBytes, Enabled: u.Enabled, CreatedUnix: u.CreatedAt.Unix()}
}
