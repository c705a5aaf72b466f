package pop3d

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"time"
	"unicode/utf8"

	"github.com/postcove/postcove/services/internal/authclient"
)

// Authenticator checks a login. It is the one method pop3d needs from the
// auth service; *authclient.Client implements it, and tests may use a fake
// that returns the same errors: authclient.ErrBadCredentials and
// authclient.ErrInvalid (a refused login), an error for which
// errors.Is(err, authclient.ErrLocked) holds, preferably a
// *authclient.LockedError with its RetryAfter (lockout), and anything else
// (authclient.ErrUnavailable) for a temporary failure.
type Authenticator interface {
	Authenticate(ctx context.Context, username, password, service, remoteIP string, tls bool) (authclient.User, error)
}

var _ Authenticator = (*authclient.Client)(nil)

// authService is the service name sent to auth, for its logs and metrics.
const authService = "pop3"

// loginResult classifies the outcome of a login for the reply, the metrics
// and the logs.
type loginResult string

const (
	loginOK          loginResult = "ok"
	loginFailed      loginResult = "failed"      // -ERR [AUTH]
	loginLocked      loginResult = "locked"      // -ERR [LOGIN-DELAY]
	loginUnavailable loginResult = "unavailable" // -ERR [SYS/TEMP]
	loginRefused     loginResult = "refused"     // plaintext before TLS
)

// classifyAuthError maps an Authenticate error to a loginResult and, for a
// lockout, the delay auth asked for (0 when unknown).
func classifyAuthError(err error) (loginResult, time.Duration) {
	switch {
	case errors.Is(err, authclient.ErrBadCredentials), errors.Is(err, authclient.ErrInvalid):
		// ErrInvalid is a user name auth cannot parse: to the client that
		// is a failed login like any other.
		return loginFailed, 0
	case errors.Is(err, authclient.ErrLocked):
		var le *authclient.LockedError
		if errors.As(err, &le) {
			return loginLocked, le.RetryAfter
		}
		return loginLocked, 0
	}
	// ErrUnavailable and anything unforeseen: temporary, never a claim
	// that the password is wrong (DESIGN.md invariant 2).
	return loginUnavailable, 0
}

// errSASL is a malformed SASL PLAIN message; the client gets [AUTH].
var errSASL = errors.New("malformed SASL PLAIN response")

// decodePlain decodes a SASL PLAIN client response (RFC 4616 section 2:
// [authzid] NUL authcid NUL passwd, base64-encoded per RFC 5034 section 4).
// An authorization identity other than the user's own is refused: pop3d
// has no notion of acting on behalf of another user.
func decodePlain(b64 string) (user, pass string, err error) {
	raw, err := base64.StdEncoding.DecodeString(b64)
	if err != nil {
		return "", "", fmt.Errorf("%w: %w", errSASL, err)
	}
	parts := bytes.Split(raw, []byte{0})
	if len(parts) != 3 {
		return "", "", fmt.Errorf("%w: %d fields, want 3", errSASL, len(parts))
	}
	authz, authc, pw := string(parts[0]), string(parts[1]), string(parts[2])
	if authc == "" || pw == "" {
		return "", "", fmt.Errorf("%w: empty user name or password", errSASL)
	}
	if !utf8.ValidString(authz) || !utf8.ValidString(authc) || !utf8.ValidString(pw) {
		return "", "", fmt.Errorf("%w: not UTF-8", errSASL)
	}
	if authz != "" && authz != authc {
		return "", "", fmt.Errorf("%w: authorization identity %q differs from %q", errSASL, authz, authc)
	}
	return authc, pw, nil
}
