package imapd

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/emersion/go-imap/v2"

	"github.com/postcove/postcove/services/internal/authclient"
)

// loginError maps an Authenticate error to the answer and the result
// counted in postcove_imap_logins_total.
func loginError(err error) (*imap.Error, string) {
	if errors.Is(err, authclient.ErrBadCredentials) || errors.Is(err, authclient.ErrInvalid) {
		// ErrInvalid (a user name auth cannot parse) is a failed login
		// like any other to the client.
		return no(imap.ResponseCodeAuthenticationFailed, "authentication failed"), "failed"
	}
	if errors.Is(err, authclient.ErrLocked) {
		text := "too many failed logins, try again later"
		if le := (*authclient.LockedError)(nil); errors.As(err, &le) && le.RetryAfter > 0 {
			text = fmt.Sprintf("too many failed logins, try again in %d seconds", int64((le.RetryAfter+time.Second-1)/time.Second))
		}
		return no(imap.ResponseCodeUnavailable, text), "locked"
	}
	// ErrUnavailable and the unforeseen are temporary, never a claim that
	// the password is wrong (DESIGN.md invariant 2).
	return no(imap.ResponseCodeUnavailable, "authentication service unavailable, try again later"), "unavailable"
}

// Authenticator is what imapd asks of the auth service: *authclient.Client
// in production, a fake in tests. Its errors decide the answer (see
// loginError): authclient.ErrBadCredentials or ErrInvalid, a lockout
// (errors.Is ErrLocked, ideally a *authclient.LockedError), anything else
// temporary.
type Authenticator interface {
	Authenticate(ctx context.Context, username, password, service, remoteIP string, tls bool) (authclient.User, error)
}

var _ Authenticator = (*authclient.Client)(nil)
