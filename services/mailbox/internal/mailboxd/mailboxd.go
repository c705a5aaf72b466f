package mailboxd

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	authv1 "github.com/postcove/postcove/proto/postcove/auth/v1"
	"github.com/postcove/postcove/services/internal/authclient"
	"github.com/postcove/postcove/services/internal/grpcx"
	"github.com/postcove/postcove/services/internal/metrics"
	"github.com/postcove/postcove/services/internal/tlsconf"
	"github.com/postcove/postcove/services/mailbox/internal/imapd"
	"github.com/postcove/postcove/services/mailbox/internal/lmtpd"
	"github.com/postcove/postcove/services/mailbox/internal/pop3d"
	"github.com/postcove/postcove/services/mailbox/internal/store/maildir"
)

// authBackoff is how the connection to auth is retried while auth is down.
// gRPC's default grows to two minutes, which would keep mail tempfailing
// (451) for up to two minutes after auth is back; auth is a local service,
// so trying every few seconds costs nothing.
var authBackoff = grpc.ConnectParams{
	Backoff:           backoff.Config{BaseDelay: 250 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: 3 * time.Second},
	MinConnectTimeout: 5 * time.Second,
}

// protocolServer is a mail protocol's server as the service runs it:
// lmtpd, pop3d and imapd. Serve blocks until Shutdown; Shutdown stops
// accepting, lets the work in flight finish until ctx ends, then cuts what
// is left, and returns once nothing touches the store any more.
type protocolServer interface {
	Serve(net.Listener) error
	Shutdown(ctx context.Context) error
}

// protocol is one listener of the service.
type protocol struct {
	key string // the config key of its address, for messages
	lis net.Listener
	srv protocolServer
}

// Run serves the mailbox service until ctx is cancelled, then lets
// sessions and deliveries in flight finish (up to cfg.ShutdownTimeout) and
// returns. It binds every listener first, so a port clash fails at once.
// Auth need not be up: the connection is made lazily and retried, RCPT
// answers 451 meanwhile, and health reports NOT_SERVING until auth answers
// (start order is not a correctness condition).
func Run(ctx context.Context, cfg Config, log *slog.Logger) error {
	grpcTLS, err := tlsconf.ServerConfig(cfg.GRPCTLS)
	if err != nil {
		return fmt.Errorf("grpc_tls: %w", err)
	}
	authTLS, err := tlsconf.ClientConfig(cfg.Auth.TLS, cfg.Auth.ServerName)
	if err != nil {
		return fmt.Errorf("auth.tls: %w", err)
	}

	var ls listeners
	defer ls.closeAll()
	grpcLis, err := ls.listen("listen.grpc", cfg.Listen.GRPC)
	if err != nil {
		return err
	}
	lmtpLis, err := ls.listen("listen.lmtp", cfg.Listen.LMTP)
	if err != nil {
		return err
	}
	mailTLS, err := tlsconf.ServerConfig(cfg.TLS)
	if err != nil {
		return fmt.Errorf("tls: %w", err)
	}
	// The users' protocols, each optional: POP3 and IMAP with STLS or
	// STARTTLS, and with implicit TLS.
	mailListeners := []mailListener{
		{key: "listen.pop3", addr: cfg.Listen.POP3}, {key: "listen.pop3s", addr: cfg.Listen.POP3S, implicit: true},
		{key: "listen.imap", addr: cfg.Listen.IMAP, imap: true}, {key: "listen.imaps", addr: cfg.Listen.IMAPS, implicit: true, imap: true},
	}
	for i := range mailListeners {
		l := &mailListeners[i]
		if l.lis, err = ls.optional(l.key, l.addr); err != nil {
			return err
		}
	}
	var metricsLis net.Listener
	if cfg.Listen.Metrics != "" {
		if metricsLis, err = ls.listen("listen.metrics", cfg.Listen.Metrics); err != nil {
			return err
		}
	}

	conn, err := grpcx.Dial(cfg.Auth.Addr, authTLS, grpc.WithConnectParams(authBackoff))
	if err != nil {
		return fmt.Errorf("auth.addr: %w", err)
	}
	defer conn.Close()
	auth := authclient.New(conn)

	st, err := maildir.Open(maildir.Options{
		Root: cfg.Store.Root,
		// Room for the trace fields delivery adds, so that a message the
		// LMTP limit accepts is not refused by the store.
		MaxMessageSize: cfg.Limits.MaxMessageSize + lmtpd.HeaderOverhead(cfg.Limits.MaxLineLength),
	})
	if err != nil {
		return fmt.Errorf("store.root: %w", err)
	}
	defer st.Close()

	reg := metrics.NewRegistry()
	g, hs := grpcx.NewServer(grpcx.ServerOptions{TLS: grpcTLS, Logger: log, Registry: reg})

	lmtpSrv, err := lmtpd.New(lmtpd.Options{
		Store:           st,
		Resolver:        auth,
		Logger:          log.With("protocol", "lmtp"),
		Registry:        reg,
		Hostname:        cfg.LMTP.Hostname,
		MaxMessageBytes: cfg.Limits.MaxMessageSize,
		MaxRecipients:   cfg.Limits.MaxRecipients,
		MaxLineLength:   cfg.Limits.MaxLineLength,
		ReadTimeout:     cfg.Limits.ReadTimeout,
		WriteTimeout:    cfg.Limits.WriteTimeout,
		MaxConnections:  cfg.LMTP.MaxConnections,
		SpoolDir:        cfg.LMTP.SpoolDir,
		SpoolMemory:     cfg.LMTP.SpoolMemory,
	})
	if err != nil {
		return err
	}

	// The mail protocols. A new one is its server here and its listener
	// above; Run serves and shuts down each the same way.
	protocols := []protocol{{key: "listen.lmtp", lis: lmtpLis, srv: lmtpSrv}}
	// The servers of one protocol share its metrics.
	pop3Metrics, imapMetrics := pop3d.NewMetrics(reg), imapd.NewMetrics(reg)
	for _, l := range mailListeners {
		if l.lis == nil {
			continue
		}
		var srv protocolServer
		if l.imap {
			srv = imapd.New(imapd.Options{
				Store: st, Auth: auth, TLS: mailTLS, ImplicitTLS: l.implicit,
				AllowPlaintextAuth: cfg.IMAP.AllowPlaintextAuth,
				MaxSessions:        cfg.IMAP.MaxSessions,
				MaxAppendSize:      cfg.appendLimit(),
				Logger:             log.With("protocol", "imap"),
				Metrics:            imapMetrics,
			})
		} else {
			srv = pop3d.New(pop3d.Options{
				Store: st, Auth: auth, TLS: mailTLS, ImplicitTLS: l.implicit,
				AllowPlaintextAuth: cfg.POP3.AllowPlaintextAuth,
				IdleTimeout:        cfg.POP3.IdleTimeout,
				MaxSessions:        cfg.POP3.MaxSessions,
				Logger:             log.With("protocol", "pop3"),
				Metrics:            pop3Metrics,
				Hostname:           cfg.LMTP.Hostname,
			})
		}
		protocols = append(protocols, protocol{key: l.key, lis: l.lis, srv: srv})
	}

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	errc := make(chan error, len(protocols)+2)
	for _, p := range protocols {
		go func() { errc <- serveProtocol(ctx, p, cfg.ShutdownTimeout, log) }()
	}
	go func() { errc <- grpcx.Serve(ctx, g, grpcLis, cfg.ShutdownTimeout) }()
	running := len(protocols) + 1
	if metricsLis != nil {
		running++
		go func() { errc <- metrics.ServeListener(ctx, metricsLis, reg, log) }()
	}
	checker := &healthChecker{
		health:   healthpb.NewHealthClient(conn),
		root:     cfg.Store.Root,
		authUp:   newAuthUpGauge(reg),
		interval: cfg.Auth.HealthInterval,
	}
	go checker.watch(ctx, hs, log)
	log.Info("mailbox serving", "lmtp", lmtpLis.Addr().String(), "grpc", grpcLis.Addr().String(),
		"metrics", cfg.Listen.Metrics, "auth", cfg.Auth.Addr, "store", cfg.Store.Root)

	// Wait for every server; the first failure stops the others too.
	var errs []error
	for range running {
		if err := <-errc; err != nil {
			errs = append(errs, err)
			cancel()
		}
	}
	log.Info("mailbox stopped")
	return errors.Join(errs...)
}

// serveProtocol serves p until ctx is done, then shuts it down, giving the
// sessions in flight up to drain to finish.
func serveProtocol(ctx context.Context, p protocol, drain time.Duration, log *slog.Logger) error {
	served := make(chan error, 1)
	go func() { served <- p.srv.Serve(p.lis) }()
	select {
	case err := <-served:
		if err == nil {
			err = errors.New("server stopped by itself")
		}
		return fmt.Errorf("%s: %w", p.key, err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), drain)
	defer cancel()
	if err := p.srv.Shutdown(sctx); err != nil {
		log.Warn("sessions cut at shutdown", "listener", p.key, "after", drain.String(), "err", err)
	}
	// Whatever Serve says now is about being shut down (some servers
	// return nil, others their ErrServerClosed): not a failure.
	if err := <-served; err != nil {
		log.Debug("server stopped", "listener", p.key, "err", err)
	}
	return nil
}

// mailListener is one optional listener of a user protocol.
type mailListener struct {
	key, addr string
	implicit  bool // implicit TLS, else STLS/STARTTLS
	imap      bool // IMAP, else POP3
	lis       net.Listener
}

// listeners are the service's bound sockets, closed when Run returns (the
// servers close theirs too; a second Close is harmless).
type listeners []net.Listener

// optional binds addr unless it is empty (the listener is disabled).
func (ls *listeners) optional(key, addr string) (net.Listener, error) {
	if addr == "" {
		return nil, nil
	}
	return ls.listen(key, addr)
}

func (ls *listeners) listen(key, addr string) (net.Listener, error) {
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", key, err)
	}
	*ls = append(*ls, lis)
	return lis, nil
}

func (ls listeners) closeAll() {
	for _, l := range ls {
		l.Close()
	}
}

// healthChecker reports the service SERVING only while it can deliver:
// auth answers (every RCPT asks it) and the mail store's root is there (a
// lost volume). Compose waits on it before starting the MTA.
type healthChecker struct {
	health   healthpb.HealthClient // of auth
	root     string
	authUp   prometheus.Gauge
	interval time.Duration
}

func newAuthUpGauge(reg prometheus.Registerer) prometheus.Gauge {
	g := prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "postcove_mailbox_auth_up",
		Help: "1 when the auth service answered the last health check as SERVING, else 0.",
	})
	reg.MustRegister(g)
	return g
}

// check returns why the service cannot serve, or nil.
func (h *healthChecker) check(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, h.interval)
	defer cancel()
	resp, err := h.health.Check(ctx, &healthpb.HealthCheckRequest{Service: authv1.AuthService_ServiceDesc.ServiceName})
	switch {
	case err != nil:
		h.authUp.Set(0)
		return fmt.Errorf("auth: %w", err)
	case resp.GetStatus() != healthpb.HealthCheckResponse_SERVING:
		h.authUp.Set(0)
		return fmt.Errorf("auth: %v", resp.GetStatus())
	}
	h.authUp.Set(1)
	fi, err := os.Stat(h.root)
	if err == nil && !fi.IsDir() {
		err = errors.New("not a directory")
	}
	if err != nil {
		return fmt.Errorf("store.root: %w", err)
	}
	return nil
}

// watch checks every interval and sets the status on a change. When ctx
// ends it reports NOT_SERVING for good (hs.Shutdown), first thing in the
// shutdown, so that load balancers stop sending work.
func (h *healthChecker) watch(ctx context.Context, hs *health.Server, log *slog.Logger) {
	defer hs.Shutdown()
	t := time.NewTicker(h.interval)
	defer t.Stop()
	last := healthpb.HealthCheckResponse_UNKNOWN
	for ctx.Err() == nil {
		err := h.check(ctx)
		st := healthpb.HealthCheckResponse_SERVING
		if err != nil {
			st = healthpb.HealthCheckResponse_NOT_SERVING
		}
		if st != last && ctx.Err() == nil {
			level := slog.LevelInfo
			if err != nil {
				level = slog.LevelWarn
			}
			log.Log(ctx, level, "health changed", "status", st.String(), "err", err)
			hs.SetServingStatus("", st)
			last = st
		}
		select {
		case <-ctx.Done():
		case <-t.C:
		}
	}
}
