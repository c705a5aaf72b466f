package servicecmd

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/health"

	"github.com/postcove/postcove/services/internal/grpcx"
	"github.com/postcove/postcove/services/internal/metrics"
)

// Listeners are a service's bound TCP sockets. A service binds every one
// of its ports before it starts anything, so that a port clash fails the
// start at once and names the setting; CloseAll, deferred, closes them
// when the service returns (the servers close theirs too: a second Close
// is harmless).
type Listeners []net.Listener

// Listen binds addr; errors name key, the setting the address came from.
func (ls *Listeners) Listen(key, addr string) (net.Listener, error) {
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", key, err)
	}
	*ls = append(*ls, lis)
	return lis, nil
}

// Optional binds addr like Listen, unless addr is empty (the listener is
// disabled): then it returns nil and no error.
func (ls *Listeners) Optional(key, addr string) (net.Listener, error) {
	if addr == "" {
		return nil, nil
	}
	return ls.Listen(key, addr)
}

// CloseAll closes every listener bound.
func (ls Listeners) CloseAll() {
	for _, l := range ls {
		l.Close()
	}
}

// ProtocolServer is a mail protocol's server (LMTP, IMAP, POP3, SMTP) as a
// service runs it. Serve blocks until Shutdown; Shutdown stops accepting,
// lets the sessions in flight finish until ctx ends, then cuts what is
// left.
type ProtocolServer interface {
	Serve(net.Listener) error
	Shutdown(ctx context.Context) error
}

// Serve serves srv on lis until ctx is done, then shuts it down, giving
// the sessions in flight up to drain to finish, and returns nil. A server
// that stops by itself before is an error naming key, the listener's
// setting.
func Serve(ctx context.Context, key string, srv ProtocolServer, lis net.Listener, drain time.Duration, log *slog.Logger) error {
	served := make(chan error, 1)
	go func() { served <- srv.Serve(lis) }()
	select {
	case err := <-served:
		if err == nil {
			err = errors.New("server stopped by itself")
		}
		return fmt.Errorf("%s: %w", key, err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), drain)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		log.Warn("sessions cut at shutdown", "listener", key, "after", drain.String(), "err", err)
	}
	// Whatever Serve says now is about being shut down (some servers
	// return nil, others their ErrServerClosed): not a failure.
	if err := <-served; err != nil {
		log.Debug("server stopped", "listener", key, "err", err)
	}
	return nil
}

// Parts are what a service runs at once: its protocol servers, its gRPC
// server, metrics, the health watcher and anything of its own (the MTA's
// queue). Run runs them all.
type Parts struct {
	// Drain is how long servers shutting down give the work in flight.
	Drain time.Duration
	Log   *slog.Logger
	list  []func(context.Context) error
}

// Go adds a part: f runs until ctx ends, and an error from it stops the
// service.
func (p *Parts) Go(f func(ctx context.Context) error) { p.list = append(p.list, f) }

// Protocol adds a mail protocol's server on lis (Serve); key is the
// listener's setting, for messages.
func (p *Parts) Protocol(key string, srv ProtocolServer, lis net.Listener) {
	p.Go(func(ctx context.Context) error { return Serve(ctx, key, srv, lis, p.Drain, p.Log) })
}

// GRPC adds the service's gRPC server (health, admin) on lis.
func (p *Parts) GRPC(g *grpc.Server, lis net.Listener) {
	p.Go(func(ctx context.Context) error { return grpcx.Serve(ctx, g, lis, p.Drain) })
}

// Metrics adds Prometheus /metrics of reg on lis; nothing when lis is nil
// (metrics disabled).
func (p *Parts) Metrics(lis net.Listener, reg *prometheus.Registry) {
	if lis != nil {
		p.Go(func(ctx context.Context) error { return metrics.ServeListener(ctx, lis, reg, p.Log) })
	}
}

// Health adds the watcher that keeps hs in step with auth and the
// service's own check.
func (p *Parts) Health(h *AuthHealth, hs *health.Server) {
	p.Go(func(ctx context.Context) error {
		h.Watch(ctx, hs, p.Log)
		return nil
	})
}

// Run runs every part until ctx ends, then returns once they all have;
// the first part to fail stops the others (runAll).
func (p *Parts) Run(ctx context.Context) error { return runAll(ctx, p.list...) }

// runAll runs parts at once until ctx ends; the first part to fail
// cancels the others, so that a service is never left half running. It
// returns once every part has returned, with every failure joined.
func runAll(ctx context.Context, parts ...func(context.Context) error) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	errc := make(chan error, len(parts))
	for _, run := range parts {
		go func() { errc <- run(ctx) }()
	}
	var errs []error
	for range parts {
		if err := <-errc; err != nil {
			errs = append(errs, err)
			cancel()
		}
	}
	return errors.Join(errs...)
}
