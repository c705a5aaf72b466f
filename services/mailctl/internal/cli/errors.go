package cli

import (
	"fmt"
	"maps"
	"slices"
	"strings"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/status"

	"github.com/postcove/postcove/services/internal/tlsconf"
)

// rpcError turns an auth service error into a message that says what to
// do next.
func (a *app) rpcError(err error, hint string) error { return a.peerError(&a.auth, err, hint) }

// mtaError turns an MTA error into a message that says what to do next.
func (a *app) mtaError(err error, hint string) error { return a.peerError(&a.mta, err, hint) }

// peerError turns an error from a call to p into a message that says what
// to do next; hint is added to the answers that mean "not like this"
// (NotFound, AlreadyExists, FailedPrecondition).
func (a *app) peerError(p *peer, err error, hint string) error {
	st, ok := status.FromError(err)
	if !ok {
		return err
	}
	msg := st.Message()
	switch st.Code() {
	case codes.Unavailable:
		if p.conn != nil && p.conn.GetState() == connectivity.Ready {
			// Connected, so the service itself said it cannot do the job
			// now (its database or spool failing): not a reachability
			// problem.
			return fmt.Errorf("%s at %s cannot do that now (%s): retry later, and look at its log if it goes on", p.name, p.addr, msg)
		}
		usingTLS := a.tls != (tlsconf.Files{})
		switch {
		case strings.Contains(msg, "connection refused"):
		case strings.Contains(msg, "tls:") || strings.Contains(msg, "x509:") || strings.Contains(msg, "certificate"),
			// A server refusing our client certificate under TLS 1.3 may
			// just close the connection: the client sees a reset or EOF.
			usingTLS && (strings.Contains(msg, "broken pipe") || strings.Contains(msg, "reset") || strings.Contains(msg, "EOF")):
			return fmt.Errorf("TLS with %s at %s failed (%s): check --tls-ca, --tls-cert and --tls-key (or MAILCTL_TLS_CA, MAILCTL_TLS_CERT, MAILCTL_TLS_KEY)", p.name, p.addr, msg)
		case !usingTLS && (strings.Contains(msg, "server preface") || strings.Contains(msg, "EOF") || strings.Contains(msg, "reset")):
			// A TLS server reading our plaintext HTTP/2 preface closes the
			// connection; depending on timing the client sees EOF or a reset
			// while waiting for the server's preface.
			return fmt.Errorf("%s at %s closed the connection (%s): if it uses TLS, pass --tls-ca, and --tls-cert and --tls-key for mTLS", p.name, p.addr, msg)
		}
		return fmt.Errorf("cannot reach %s at %s (%s): is it running? Start it with 'make run', or point %s or %s at it", p.name, p.addr, msg, p.flag, p.env)
	case codes.DeadlineExceeded:
		return fmt.Errorf("no answer from %s at %s within %s: check that it is running and reachable", p.name, p.addr, a.timeout)
	case codes.Unauthenticated, codes.PermissionDenied:
		return fmt.Errorf("%s: check --tls-ca, --tls-cert and --tls-key", msg)
	case codes.Unimplemented:
		return fmt.Errorf("%s at %s does not offer this (%s): is %s pointing at the right service, and is it as new as mailctl?", p.name, p.addr, msg, p.flag)
	case codes.FailedPrecondition, codes.NotFound, codes.AlreadyExists:
		if hint != "" {
			return fmt.Errorf("%s; %s", msg, hint)
		}
	}
	return fmt.Errorf("%s", msg)
}

func sortedKeys[V any](m map[string]V) []string {
	return slices.Sorted(maps.Keys(m))
}
