package cli

import (
	"fmt"
	"maps"
	"slices"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
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
