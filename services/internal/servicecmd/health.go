package servicecmd

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	authv1 "github.com/postcove/postcove/proto/postcove/auth/v1"
)

// AuthHealth keeps the gRPC health of a service that depends on auth
// (mailbox, mta): SERVING only while auth answers SERVING (every RCPT and
// login asks it) and the service's own check passes. Compose and load
// balancers wait on it; while it says NOT_SERVING, mail is tempfailed or
// stays queued (DESIGN.md, invariants 2 and 6).
type AuthHealth struct {
	health   healthpb.HealthClient // of auth
	interval time.Duration
	local    func(context.Context) error
	authUp   prometheus.Gauge
}

// NewAuthHealth returns the watcher of auth at conn, asking every interval
// (each question bounded by interval too). local, when not nil, says why
// the service itself cannot work (a lost volume), or nil; it is asked only
// while auth serves. The gauge postcove_<service>_auth_up, registered on
// reg, says whether auth answered SERVING last.
func NewAuthHealth(conn grpc.ClientConnInterface, interval time.Duration, local func(context.Context) error,
	reg prometheus.Registerer, service string) *AuthHealth {
	up := prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "postcove_" + service + "_auth_up",
		Help: "1 when the auth service answered the last health check as SERVING, else 0.",
	})
	reg.MustRegister(up)
	return &AuthHealth{health: healthpb.NewHealthClient(conn), interval: interval, local: local, authUp: up}
}

// Check returns why the service cannot serve now, or nil.
func (h *AuthHealth) Check(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, h.interval)
	defer cancel()
	resp, err := h.health.Check(ctx, &healthpb.HealthCheckRequest{Service: authv1.AuthService_ServiceDesc.ServiceName})
	if err == nil && resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		err = fmt.Errorf("status %v", resp.GetStatus())
	}
	if err != nil {
		h.authUp.Set(0)
		return fmt.Errorf("auth: %w", err)
	}
	h.authUp.Set(1)
	if h.local != nil {
		return h.local(ctx)
	}
	return nil
}

// Watch checks every interval and sets the server-wide status of hs on
// each change, logging it. When ctx ends it reports NOT_SERVING for good
// (hs.Shutdown), first thing in the shutdown, so that load balancers stop
// sending work.
func (h *AuthHealth) Watch(ctx context.Context, hs *health.Server, log *slog.Logger) {
	defer hs.Shutdown()
	tick := time.NewTicker(h.interval)
	defer tick.Stop()
	last := healthpb.HealthCheckResponse_UNKNOWN
	for {
		err := h.Check(ctx)
		if ctx.Err() != nil {
			return
		}
		st, level := healthpb.HealthCheckResponse_SERVING, slog.LevelInfo
		if err != nil {
			st, level = healthpb.HealthCheckResponse_NOT_SERVING, slog.LevelWarn
		}
		if st != last {
			log.Log(ctx, level, "health changed", "status", st.String(), "err", err)
			hs.SetServingStatus("", st)
			last = st
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}
