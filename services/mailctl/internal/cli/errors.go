package cli

import (
	"fmt"
	"maps"
	"slices"
	"strings"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/postcove/postcove/services/internal/tlsconf"
)

// rpcError turns a gRPC error into a message that says what to do next.
func (a *app) rpcError(err error, hint string) error {
	st, ok := status.FromError(err)
	if !ok {
		return err
	}
	msg := st.Message()
	switch st.Code() {
	case codes.Unavailable:
		usingTLS := a.tls != (tlsconf.Files{})
		switch {
		case strings.Contains(msg, "connection refused"):
		case strings.Contains(msg, "tls:") || strings.Contains(msg, "x509:") || strings.Contains(msg, "certificate"),
			// A server refusing our client certificate under TLS 1.3 may
			// just close the connection: the client sees a reset or EOF.
			usingTLS && (strings.Contains(msg, "broken pipe") || strings.Contains(msg, "reset") || strings.Contains(msg, "EOF")):
			return fmt.Errorf("TLS with the auth service at %s failed (%s): check --tls-ca, --tls-cert and --tls-key (or MAILCTL_TLS_CA, MAILCTL_TLS_CERT, MAILCTL_TLS_KEY)", a.authAddr, msg)
		case !usingTLS && strings.Contains(msg, "EOF"):
			return fmt.Errorf("the auth service at %s closed the connection (%s): if it uses TLS, pass --tls-ca, and --tls-cert and --tls-key for mTLS", a.authAddr, msg)
		}
		return fmt.Errorf("auth service at %s unavailable (%s): is it running? Start it with 'make run', or point --auth or MAILCTL_AUTH_ADDR at it", a.authAddr, msg)
	case codes.DeadlineExceeded:
		return fmt.Errorf("no answer from the auth service at %s within %s: check that it is running and reachable", a.authAddr, a.timeout)
	case codes.Unauthenticated, codes.PermissionDenied:
		return fmt.Errorf("%s: check --tls-ca, --tls-cert and --tls-key", msg)
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
