package authd

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net"
	"runtime/debug"
	"time"

	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	authv1 "github.com/postcove/postcove/proto/postcove/auth/v1"
	"github.com/postcove/postcove/services/auth/internal/lockout"
	"github.com/postcove/postcove/services/auth/internal/password"
	"github.com/postcove/postcove/services/auth/internal/resolve"
	"github.com/postcove/postcove/services/auth/internal/server"
	"github.com/postcove/postcove/services/auth/internal/store"
	"github.com/postcove/postcove/services/auth/internal/store/mysql"
	"github.com/postcove/postcove/services/auth/internal/store/sqlite"
	"github.com/postcove/postcove/services/internal/grpcx"
	"github.com/postcove/postcove/services/internal/metrics"
	"github.com/postcove/postcove/services/internal/tlsconf"
)

// healthServices are the names the health service reports on: "" for the
// whole server, as compose's healthcheck asks, and each API.
var healthServices = []string{"", authv1.AuthService_ServiceDesc.ServiceName, authv1.AdminService_ServiceDesc.ServiceName}

// Run serves the auth service until ctx is cancelled, then drains in-flight
// calls and returns. It binds its listeners first, so a port clash fails at
// once, then opens the database, retrying with backoff while it is down:
// start order is not a correctness condition.
func Run(ctx context.Context, cfg Config, log *slog.Logger) error {
	tlsCfg, err := tlsconf.ServerConfig(cfg.TLS)
	if err != nil {
		return fmt.Errorf("tls: %w", err)
	}
	lis, err := net.Listen("tcp", cfg.Listen.GRPC)
	if err != nil {
		return fmt.Errorf("listen.grpc: %w", err)
	}
	defer lis.Close()

	st, err := openStore(ctx, cfg.Database, log)
	if ctx.Err() != nil {
		return nil // stopped while waiting for the database: a clean shutdown
	}
	if err != nil {
		return err
	}
	defer st.Close()

	// Checked without hashing: a hash at startup would leave its 19 MiB
	// of argon2 memory as garbage that the first logins' memory then
	// stacks on, raising the process's peak by a third.
	if err := password.DefaultParams().Validate(); err != nil {
		return fmt.Errorf("password parameters: %w", err)
	}
	hasher := password.New(password.DefaultParams())
	if password.HashMemoryOnHeap {
		limitMemory(cfg.MaxConcurrentLogins, password.DefaultParams(), log)
	}

	reg := metrics.NewRegistry()
	g, hs := grpcx.NewServer(grpcx.ServerOptions{TLS: tlsCfg, Logger: log, Registry: reg})
	srv := server.New(server.Options{
		Store:  st,
		Hasher: hasher,
		Lockout: lockout.Policy{
			IP:          lockout.Rule{Threshold: cfg.Lockout.IPThreshold, Base: cfg.Lockout.IPBase, Max: cfg.Lockout.IPMax},
			Account:     lockout.Rule{Threshold: cfg.Lockout.AccountThreshold, Base: cfg.Lockout.AccountBase, Max: cfg.Lockout.AccountMax},
			ForgetAfter: cfg.Lockout.ForgetAfter,
		},
		Resolver:            resolve.Options{TagSeparator: cfg.Resolve.TagSeparator, CacheTTL: cfg.Resolve.CacheTTL},
		MaxConcurrentLogins: cfg.MaxConcurrentLogins,
		Logger:              log,
		Metrics:             server.NewMetrics(reg),
	})
	srv.Register(g)

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	errc := make(chan error, 2)
	go func() { errc <- grpcx.Serve(ctx, g, lis, cfg.ShutdownTimeout) }()
	running := 1
	if cfg.Listen.Metrics != "" {
		running++
		go func() { errc <- metrics.Serve(ctx, cfg.Listen.Metrics, reg, log) }()
	}
	go watchHealth(ctx, srv, hs, cfg.Database.HealthInterval, log)
	go pruneLockouts(ctx, srv, log)
	log.Info("auth serving", "grpc", lis.Addr().String(), "metrics", cfg.Listen.Metrics, "database", cfg.Database.Driver, "tls", tlsCfg != nil, "argon2", password.Argon2Implementation)

	var first error
	for range running {
		if err := <-errc; err != nil && first == nil {
			first = err
			cancel() // one listener failed: stop the other too
		}
	}
	log.Info("auth stopped")
	return first
}

// openStore opens the configured database, retrying with exponential
// backoff (capped at 30 s) while it cannot be reached.
func openStore(ctx context.Context, db Database, log *slog.Logger) (store.Store, error) {
	backoff := 500 * time.Millisecond
	for {
		var st store.Store
		var err error
		switch db.Driver {
		case "sqlite":
			st, err = sqlite.Open(ctx, db.DSN)
		case "mysql":
			st, err = mysql.Open(ctx, db.DSN)
		default:
			return nil, fmt.Errorf("database.driver: unknown driver %q", db.Driver)
		}
		if err == nil {
			return st, nil
		}
		if db.Driver == "sqlite" {
			return nil, fmt.Errorf("database: %w", err) // a local file: retrying will not help
		}
		log.Warn("database unavailable, retrying", "driver", db.Driver, "err", err, "retry_in", backoff.String())
		select {
		case <-ctx.Done():
			return nil, errors.Join(ctx.Err(), err)
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 30*time.Second)
	}
}

// watchHealth pings the database and reports SERVING or NOT_SERVING, so
// that compose and load balancers stop sending work while it is down. The
// database/sql pool reconnects by itself; nothing here restarts anything.
func watchHealth(ctx context.Context, srv *server.Server, hs *health.Server, every time.Duration, log *slog.Logger) {
	last := healthpb.HealthCheckResponse_UNKNOWN
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		pctx, cancel := context.WithTimeout(ctx, every)
		err := srv.Ping(pctx)
		cancel()
		st := healthpb.HealthCheckResponse_SERVING
		if err != nil {
			st = healthpb.HealthCheckResponse_NOT_SERVING
		}
		if st != last {
			if err != nil {
				log.Error("database down: not serving", "err", err)
			} else if last != healthpb.HealthCheckResponse_UNKNOWN {
				log.Info("database back: serving")
			}
			for _, name := range healthServices {
				hs.SetServingStatus(name, st)
			}
			last = st
		}
		select {
		case <-ctx.Done():
			hs.Shutdown()
			return
		case <-t.C:
		}
	}
}

// pruneLockouts deletes stale login-failure counters once an hour. Every
// instance does it; the DELETE is idempotent, so that is harmless.
func pruneLockouts(ctx context.Context, srv *server.Server, log *slog.Logger) {
	t := time.NewTicker(time.Hour)
	defer t.Stop()
	for {
		if err := srv.PruneLockouts(ctx); err != nil && ctx.Err() == nil {
			log.Warn("pruning login-failure counters failed", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// limitMemory sets a soft memory limit for the Go runtime unless GOMEMLIMIT
// already did. Each argon2id verification allocates its memory cost afresh
// (19 MiB by default) and drops it ~30 ms later. The heap itself stays
// near what is live, as the hash slots collect garbage (server.hashSlot),
// but a freed 19 MiB range that small allocations have moved into can no
// longer hold the next hash, which then takes fresh pages while the old
// ones are still resident: bench imap saw auth at 78-80 MiB with two hashes
// in flight (38 MiB of them). Near the limit the runtime returns free pages
// to the OS before taking new ones, so the limit is what is live: a small
// base for the server and its caches, plus the logins in flight (new
// hashes, CreateUser and SetPassword, share their slots:
// server.Options.MaxConcurrentLogins). Measured with 8 concurrent logins
// and two slots: peak RSS 62-66 MiB instead of up to 80, logins/s the same.
func limitMemory(logins int, p password.Params, log *slog.Logger) {
	if debug.SetMemoryLimit(-1) != math.MaxInt64 {
		return // set by GOMEMLIMIT
	}
	const base = 12 << 20
	limit := int64(base) + int64(logins)*int64(p.MemoryKiB)*1024*21/20
	debug.SetMemoryLimit(limit)
	log.Debug("memory limit set", "bytes", limit)
}
