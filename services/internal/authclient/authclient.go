// Package authclient is the mail services' client of the auth service
// (proto/postcove/auth/v1): logins for IMAP, POP3 and SMTP AUTH, recipient
// lookups for LMTP and SMTP, send-as checks for submission.
//
// It turns gRPC status codes into a few errors a protocol server can map to
// its replies without knowing gRPC:
//
//	ErrBadCredentials  UNAUTHENTICATED: wrong user or password (IMAP NO
//	                   [AUTHENTICATIONFAILED], POP3 -ERR [AUTH], SMTP 535 5.7.8)
//	*LockedError       RESOURCE_EXHAUSTED: brute-force lockout, with the
//	                   delay auth sent in a RetryInfo detail; errors.Is(err,
//	                   ErrLocked) holds
//	ErrInvalid         INVALID_ARGUMENT: the request is malformed (an address
//	                   that does not parse)
//	ErrUnavailable     everything else: UNAVAILABLE, DEADLINE_EXCEEDED, a
//	                   connection that cannot be made, an answer this client
//	                   does not understand. Callers answer with a temporary
//	                   failure (SMTP/LMTP 4xx, IMAP NO [UNAVAILABLE], POP3
//	                   -ERR [SYS/TEMP]), never a permanent one: a dependency
//	                   being down must not bounce mail (DESIGN.md, invariant 2)
//
// The underlying gRPC error stays wrapped for the logs.
package authclient

import (
	"context"
	"errors"
	"fmt"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	authv1 "github.com/postcove/postcove/proto/postcove/auth/v1"
)

// DefaultTimeout bounds a call whose context has no deadline. A mail
// session waiting on auth holds a client; ten seconds is far above a
// healthy answer (milliseconds, an argon2id login ~50 ms) and well inside
// the minutes SMTP clients wait for a reply (RFC 5321 section 4.5.3.2).
const DefaultTimeout = 10 * time.Second

// Errors; see the package documentation for the codes they stand for.
var (
	ErrBadCredentials = errors.New("authentication failed")
	ErrLocked         = errors.New("locked out after too many failed logins")
	ErrUnavailable    = errors.New("auth service unavailable")
	ErrInvalid        = errors.New("invalid request")
)

// LockedError is a login refused because the client IP or the account is
// locked out. errors.Is(err, ErrLocked) reports true for it.
type LockedError struct {
	// RetryAfter is how long until the lockout ends, as auth said; 0 when
	// auth sent no delay.
	RetryAfter time.Duration
}

func (e *LockedError) Error() string {
	if e.RetryAfter <= 0 {
		return ErrLocked.Error()
	}
	return fmt.Sprintf("%v, retry in %s", ErrLocked, e.RetryAfter.Round(time.Second))
}

// Is makes errors.Is(err, ErrLocked) true.
func (e *LockedError) Is(target error) bool { return target == ErrLocked }

// Client calls the auth service. It is safe for concurrent use; it holds no
// state besides the connection, which the caller owns and closes.
type Client struct {
	auth authv1.AuthServiceClient
}

// New returns a client on conn, typically from grpcx.Dial (which connects
// lazily, so auth may start after the caller).
func New(conn grpc.ClientConnInterface) *Client {
	return &Client{auth: authv1.NewAuthServiceClient(conn)}
}

// User is an authenticated user.
type User struct {
	// Address is the canonical address (lowercase local part, A-label
	// domain): use it, not what the client typed.
	Address    string
	QuotaBytes int64 // 0: unlimited
}

// Authenticate checks a login. service names the protocol ("imap", "pop3",
// "smtp") for auth's logs and metrics; remoteIP (may be "") is what the
// lockout counts failures against; tls says whether the client connection
// is encrypted. Errors: ErrBadCredentials, *LockedError, ErrInvalid,
// ErrUnavailable.
func (c *Client) Authenticate(ctx context.Context, username, password, service, remoteIP string, tls bool) (User, error) {
	ctx, cancel := withDefaultTimeout(ctx)
	defer cancel()
	resp, err := c.auth.Authenticate(ctx, &authv1.AuthenticateRequest{
		Username: username,
		Password: password,
		Service:  service,
		RemoteIp: remoteIP,
		Tls:      tls,
	})
	if err != nil {
		return User{}, callError("authenticate", err, true)
	}
	u := resp.GetUser()
	if u.GetAddress() == "" {
		return User{}, fmt.Errorf("%w: authenticate: answer without a user", ErrUnavailable)
	}
	return User{Address: u.GetAddress(), QuotaBytes: u.GetQuotaBytes()}, nil
}

// Kind is the kind of answer ResolveRecipient gives.
type Kind int

const (
	// Deliver: mail is accepted, for Mailboxes and/or Forwards.
	Deliver Kind = iota + 1
	// NotLocalDomain: the domain is not one of ours.
	NotLocalDomain
	// UnknownUser: the domain is ours but nothing matches the address.
	UnknownUser
	// AliasLoop: the address expands through a loop or too deep; an
	// operator's configuration error, so callers fail temporarily.
	AliasLoop
)

func (k Kind) String() string {
	switch k {
	case Deliver:
		return "deliver"
	case NotLocalDomain:
		return "not_local_domain"
	case UnknownUser:
		return "unknown_user"
	case AliasLoop:
		return "alias_loop"
	}
	return fmt.Sprintf("kind(%d)", int(k))
}

// Mailbox is a local user's mail store, as a delivery agent needs it.
type Mailbox struct {
	Address    string // canonical, e.g. "alice@example.org"
	Domain     string // A-label, e.g. "example.org"
	LocalPart  string // e.g. "alice"
	QuotaBytes int64  // 0: unlimited
}

// Recipient is where mail for one address goes.
type Recipient struct {
	Kind      Kind
	Address   string    // the canonical form of the address asked about
	Mailboxes []Mailbox // local mailboxes, deduplicated, in a stable order
	Forwards  []string  // external addresses, deduplicated, in a stable order
}

// ResolveRecipient says where mail for address goes. Errors: ErrInvalid
// (the address does not parse: a permanent "bad address"), ErrUnavailable.
func (c *Client) ResolveRecipient(ctx context.Context, address string) (Recipient, error) {
	ctx, cancel := withDefaultTimeout(ctx)
	defer cancel()
	resp, err := c.auth.ResolveRecipient(ctx, &authv1.ResolveRecipientRequest{Address: address})
	if err != nil {
		return Recipient{}, callError("resolve recipient", err, false)
	}
	r := Recipient{Address: resp.GetAddress(), Forwards: resp.GetForwards()}
	switch resp.GetResult() {
	case authv1.ResolveRecipientResponse_RESULT_DELIVER:
		r.Kind = Deliver
	case authv1.ResolveRecipientResponse_RESULT_NOT_LOCAL_DOMAIN:
		r.Kind = NotLocalDomain
	case authv1.ResolveRecipientResponse_RESULT_UNKNOWN_USER:
		r.Kind = UnknownUser
	case authv1.ResolveRecipientResponse_RESULT_ALIAS_LOOP:
		r.Kind = AliasLoop
	default:
		// A server newer or older than this client: not a definite
		// answer, so never one that bounces mail.
		return Recipient{}, fmt.Errorf("%w: resolve recipient: unknown result %v", ErrUnavailable, resp.GetResult())
	}
	for _, m := range resp.GetMailboxes() {
		r.Mailboxes = append(r.Mailboxes, Mailbox{
			Address:    m.GetAddress(),
			Domain:     m.GetDomain(),
			LocalPart:  m.GetLocalPart(),
			QuotaBytes: m.GetQuotaBytes(),
		})
	}
	return r, nil
}

// CanSendAs says whether the authenticated user may use address as
// envelope sender or in From:. Errors: ErrInvalid, ErrUnavailable.
func (c *Client) CanSendAs(ctx context.Context, user, address string) (bool, error) {
	ctx, cancel := withDefaultTimeout(ctx)
	defer cancel()
	resp, err := c.auth.CanSendAs(ctx, &authv1.CanSendAsRequest{User: user, Address: address})
	if err != nil {
		return false, callError("can send as", err, false)
	}
	return resp.GetAllowed(), nil
}

// withDefaultTimeout gives ctx DefaultTimeout unless it has a deadline.
func withDefaultTimeout(ctx context.Context) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok {
		return context.WithCancel(ctx)
	}
	return context.WithTimeout(ctx, DefaultTimeout)
}

// callError maps a failed call to the package's errors, keeping the gRPC
// error wrapped for the logs. UNAUTHENTICATED and RESOURCE_EXHAUSTED are
// answers about a login only when login is set; on other calls they come
// from the transport (a refused client certificate, a message too large)
// and mean auth cannot be asked right now.
func callError(op string, err error, login bool) error {
	st, ok := status.FromError(err)
	if !ok {
		return fmt.Errorf("%w: %s: %w", ErrUnavailable, op, err)
	}
	switch code := st.Code(); {
	case login && code == codes.Unauthenticated:
		return fmt.Errorf("%w: %s", ErrBadCredentials, st.Message())
	case login && code == codes.ResourceExhausted:
		locked := &LockedError{}
		for _, d := range st.Details() {
			if ri, ok := d.(*errdetails.RetryInfo); ok {
				locked.RetryAfter = ri.GetRetryDelay().AsDuration()
			}
		}
		return locked
	case code == codes.InvalidArgument:
		return fmt.Errorf("%w: %s", ErrInvalid, st.Message())
	}
	return fmt.Errorf("%w: %s: %w", ErrUnavailable, op, err)
}
