// Package grpcx sets up gRPC servers and clients the same way in every
// service: TLS or mTLS, panic recovery, per-call logs and Prometheus metrics,
// keepalive, the standard health service (grpc.health.v1, see
// https://github.com/grpc/grpc/blob/master/doc/health-checking.md), graceful
// shutdown, and client-side round-robin over every address a DNS name has.
package grpcx

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/keepalive"

	"github.com/postcove/postcove/services/internal/logging"
)

// ServerOptions configure NewServer.
type ServerOptions struct {
	TLS      *tls.Config          // nil serves plaintext
	Logger   *slog.Logger         // nil discards
	Registry *prometheus.Registry // nil records no metrics

	// Unary and Stream run inside the built-in interceptors (after logging,
	// metrics and panic recovery), in order: authorization checks go here.
	Unary  []grpc.UnaryServerInterceptor
	Stream []grpc.StreamServerInterceptor
	// Extra are passed to grpc.NewServer after the built-in options.
	Extra []grpc.ServerOption
}

// Keepalive settings. The server pings an idle client every minute to notice
// dead peers (a NAT or a killed container drops no FIN), and tolerates
// client pings down to every 10 s; Dial's clients ping every 30 s, which
// stays above that floor, so they are never sent GOAWAY "too_many_pings".
// Connections are recycled after 5 minutes so that clients re-resolve DNS
// and spread over replicas added since they connected.
const (
	serverPingTime     = time.Minute
	serverPingTimeout  = 20 * time.Second
	minClientPingTime  = 10 * time.Second
	maxConnectionAge   = 5 * time.Minute
	maxConnectionGrace = time.Minute
	clientPingTime     = 30 * time.Second
	clientPingTimeout  = 10 * time.Second
)

// NewServer builds a gRPC server with TLS when opts.TLS is set, panic
// recovery (a panic becomes codes.Internal and a logged stack; the server
// keeps serving), a debug log line per call (warn for Internal and Unknown),
// call counts and latencies in opts.Registry, keepalive enforcement, and the
// grpc.health.v1 service.
//
// The returned health server reports NOT_SERVING for the whole server ("")
// until the service says otherwise: call SetServingStatus("", SERVING) once
// the service can do its job (its database answers, say), and set it back
// while it cannot, so that compose and load balancers wait for it. Set the
// service's own names ("postcove.auth.v1.Auth") the same way.
func NewServer(opts ServerOptions) (*grpc.Server, *health.Server) {
	log := opts.Logger
	if log == nil {
		log = logging.Discard()
	}
	unary := []grpc.UnaryServerInterceptor{unaryLogger(log)}
	stream := []grpc.StreamServerInterceptor{streamLogger(log)}
	if opts.Registry != nil {
		m := newServerMetrics(opts.Registry)
		unary = append(unary, m.unary)
		stream = append(stream, m.stream)
	}
	// Recovery is innermost of the built-ins so that the logger and metrics
	// see the codes.Internal it produces.
	unary = append(append(unary, unaryRecoverer(log)), opts.Unary...)
	stream = append(append(stream, streamRecoverer(log)), opts.Stream...)

	sopts := []grpc.ServerOption{
		grpc.ChainUnaryInterceptor(unary...),
		grpc.ChainStreamInterceptor(stream...),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{
			MinTime:             minClientPingTime,
			PermitWithoutStream: true,
		}),
		grpc.KeepaliveParams(keepalive.ServerParameters{
			Time:                  serverPingTime,
			Timeout:               serverPingTimeout,
			MaxConnectionAge:      maxConnectionAge,
			MaxConnectionAgeGrace: maxConnectionGrace,
		}),
		// Stop waits for handlers to return (they see their context
		// cancelled), so that once Serve returns the caller may close what
		// they use, the database say.
		grpc.WaitForHandlers(true),
	}
	if opts.TLS != nil {
		sopts = append(sopts, grpc.Creds(credentials.NewTLS(opts.TLS)))
	}
	srv := grpc.NewServer(append(sopts, opts.Extra...)...)

	hs := health.NewServer()
	hs.SetServingStatus("", healthpb.HealthCheckResponse_NOT_SERVING)
	healthpb.RegisterHealthServer(srv, hs)
	return srv, hs
}

// Serve serves srv on lis until ctx is done, then stops accepting calls and
// waits up to drain for the running ones (GracefulStop), then cuts the rest
// (Stop), which cancels their contexts and waits for their handlers to
// return. It returns nil on such a shutdown and the error when serving fails
// first. Call the health server's Shutdown when ctx is done (before Serve
// returns) to tell load balancers first.
func Serve(ctx context.Context, srv *grpc.Server, lis net.Listener, drain time.Duration) error {
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(lis) }()

	select {
	case err := <-errc:
		// Serve returns nil only if someone else stopped srv.
		if err != nil {
			return fmt.Errorf("grpc serve on %s: %w", lis.Addr(), err)
		}
		return nil
	case <-ctx.Done():
	}

	stopped := make(chan struct{})
	go func() {
		srv.GracefulStop()
		close(stopped)
	}()
	timer := time.NewTimer(drain)
	defer timer.Stop()
	select {
	case <-stopped:
	case <-timer.C:
		// Calls still running after the drain time (a stuck stream, a slow
		// client) are cut; GracefulStop then returns.
		srv.Stop()
		<-stopped
	}
	if err := <-errc; err != nil && !errors.Is(err, grpc.ErrServerStopped) {
		return fmt.Errorf("grpc serve on %s: %w", lis.Addr(), err)
	}
	return nil
}
