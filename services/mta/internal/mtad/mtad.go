package mtad

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strings"

	mtav1 "github.com/postcove/postcove/proto/postcove/mta/v1"
	"github.com/postcove/postcove/services/internal/authclient"
	"github.com/postcove/postcove/services/internal/dnsclient"
	"github.com/postcove/postcove/services/internal/grpcx"
	"github.com/postcove/postcove/services/internal/metrics"
	"github.com/postcove/postcove/services/internal/servicecmd"
	"github.com/postcove/postcove/services/internal/tlsconf"
	"github.com/postcove/postcove/services/mta/internal/admin"
	"github.com/postcove/postcove/services/mta/internal/deliver"
	"github.com/postcove/postcove/services/mta/internal/deliver/lmtp"
	"github.com/postcove/postcove/services/mta/internal/deliver/remote"
	"github.com/postcove/postcove/services/mta/internal/dkimsign"
	"github.com/postcove/postcove/services/mta/internal/queue"
	"github.com/postcove/postcove/services/mta/internal/smtpd"
	"github.com/postcove/postcove/services/mta/internal/verify"
)

// listener is one SMTP port of the service.
type listener struct {
	key  string // config key, for messages
	lis  net.Listener
	srv  *smtpd.Server
	mode smtpd.Mode
}

// Run serves the MTA until ctx is cancelled, then stops taking mail,
// lets SMTP sessions and deliveries in flight finish (up to
// cfg.ShutdownTimeout) and returns. Every port is bound first, so that a
// clash fails at once. Neither auth nor mailbox need be up: RCPT answers
// 451 and mail stays queued meanwhile, and health says NOT_SERVING until
// auth answers (start order is not a correctness condition).
func Run(ctx context.Context, cfg Config, log *slog.Logger) error {
	if cfg.Hostname == "" {
		h, err := os.Hostname()
		if err != nil {
			return fmt.Errorf("hostname: not set and the system has none: %w", err)
		}
		cfg.Hostname = h
	}
	smtpTLS, err := tlsconf.ServerConfig(cfg.TLS)
	if err != nil {
		return fmt.Errorf("tls: %w", err)
	}
	grpcTLS, err := tlsconf.ServerConfig(cfg.GRPCTLS)
	if err != nil {
		return fmt.Errorf("grpc_tls: %w", err)
	}
	relay, err := relayOf(cfg.Relay)
	if err != nil {
		return err
	}
	var dnsServers []string
	if cfg.DNS.Resolver != "" {
		dnsServers = []string{cfg.DNS.Resolver}
	}
	resolver, err := dnsclient.New(dnsServers, 0)
	if err != nil {
		return fmt.Errorf("dns.resolver: %w", err)
	}

	// Bind everything before starting anything.
	var ls servicecmd.Listeners
	defer ls.CloseAll()
	var smtpListeners []listener
	for _, l := range []struct {
		key, addr string
		mode      smtpd.Mode
	}{
		{"listen.smtp", cfg.Listen.SMTP, smtpd.Inbound},
		{"listen.submission", cfg.Listen.Submission, smtpd.Submission},
		{"listen.submissions", cfg.submissionsAddr(), smtpd.Submission},
	} {
		lis, err := ls.Optional(l.key, l.addr)
		if err != nil {
			return err
		}
		if lis != nil {
			smtpListeners = append(smtpListeners, listener{key: l.key, lis: lis, mode: l.mode})
		}
	}
	grpcLis, err := ls.Listen("listen.grpc", cfg.Listen.GRPC)
	if err != nil {
		return err
	}
	metricsLis, err := ls.Optional("listen.metrics", cfg.Listen.Metrics)
	if err != nil {
		return err
	}
	if cfg.Listen.Submission != "" && smtpTLS == nil {
		log.Warn("listen.submission has no certificate (tls.cert_file): AUTH needs TLS, so no user can submit there")
	}

	conn, err := cfg.Auth.Dial("auth")
	if err != nil {
		return err
	}
	defer conn.Close()
	auth := authclient.New(conn)

	reg := metrics.NewRegistry()
	q, err := queue.Open(queue.Options{
		Dir:          cfg.Queue.Dir,
		Lifetime:     cfg.Queue.Lifetime,
		DelayWarning: cfg.Queue.DelayWarning,
		RetryMin:     cfg.Queue.RetryMin,
		RetryMax:     cfg.Queue.RetryMax,
		Workers:      cfg.Queue.Workers,
		Hostname:     cfg.Hostname,
		Resolve:      bounceRoute(auth),
		Logger:       log.With("part", "queue"),
		Registerer:   reg,
	})
	if err != nil {
		return fmt.Errorf("queue.dir: %w", err)
	}
	local, err := lmtp.New(lmtp.Options{Addrs: cfg.LMTP.Addrs, Hostname: cfg.Hostname, Logger: log.With("part", "lmtp")})
	if err != nil {
		return fmt.Errorf("lmtp: %w", err)
	}
	defer local.Close()
	world, err := remote.New(remote.Options{
		Hostname: cfg.Hostname, Port: cfg.Remote.Port, Resolver: resolver, Relay: relay,
		Logger: log.With("part", "remote"),
	})
	if err != nil {
		return fmt.Errorf("remote: %w", err)
	}

	var signer smtpd.DKIMSigner
	if cfg.DKIM.KeysDir != "" {
		signer = dkimsign.New(cfg.DKIM.KeysDir, 0)
	}
	var verifier smtpd.Verifier // SPF, DKIM and DMARC on port 25
	if cfg.Verify.Enabled {
		verifier, err = verify.New(verify.Options{Hostname: cfg.Hostname, Resolver: resolver, Domains: auth,
			Timeout: cfg.Verify.Timeout, Logger: log.With("part", "verify")})
		if err != nil {
			return fmt.Errorf("verify: %w", err)
		}
	}
	smtpMetrics := smtpd.NewMetrics(reg)
	for i := range smtpListeners {
		l := &smtpListeners[i]
		l.srv, err = smtpd.New(smtpd.Options{
			Mode:                l.mode,
			Hostname:            cfg.Hostname,
			TLS:                 smtpTLS,
			ImplicitTLS:         l.key == "listen.submissions",
			Auth:                auth,
			Spool:               q,
			DKIM:                signer,
			Verifier:            verifier,
			Logger:              log.With("part", "smtp"),
			Metrics:             smtpMetrics,
			MaxMessageBytes:     cfg.Limits.MaxMessageSize,
			MaxRecipients:       cfg.Limits.MaxRecipients,
			MaxLineLength:       cfg.Limits.MaxLineLength,
			MaxHeaderBytes:      cfg.Limits.MaxHeaderSize,
			ReadTimeout:         cfg.Limits.ReadTimeout,
			DataTimeout:         cfg.Limits.DataTimeout,
			WriteTimeout:        cfg.Limits.WriteTimeout,
			MaxConnections:      cfg.Limits.MaxConnections,
			MaxConnectionsPerIP: cfg.Limits.MaxConnectionsPerIP,
		})
		if err != nil {
			return fmt.Errorf("%s: %w", l.key, err)
		}
	}
	g, hs := grpcx.NewServer(grpcx.ServerOptions{TLS: grpcTLS, Logger: log, Registry: reg})
	// Queue admin for mailctl (postqueue/postsuper), beside health.
	mtav1.RegisterQueueAdminServer(g, admin.New(q, log.With("part", "admin")))

	// Able to take mail: auth answers (every RCPT asks it) and the queue
	// directory takes files (a full or read-only volume would make every
	// DATA fail).
	health := servicecmd.NewAuthHealth(conn, cfg.Auth.HealthInterval, queueWritable(cfg.Queue.Dir), reg, "mta")
	parts := servicecmd.Parts{Drain: cfg.ShutdownTimeout, Log: log}
	parts.Health(health, hs)
	parts.GRPC(g, grpcLis)
	parts.Metrics(metricsLis, reg)
	parts.Go(func(ctx context.Context) error { return q.Run(ctx, deliver.Router{Local: local, Remote: world}) })
	for _, l := range smtpListeners {
		parts.Protocol(l.key, l.srv, l.lis)
	}
	attrs := []any{"hostname", cfg.Hostname, "grpc", grpcLis.Addr().String(), "metrics", cfg.Listen.Metrics,
		"auth", cfg.Auth.Addr, "queue", cfg.Queue.Dir, "lmtp", strings.Join(cfg.LMTP.Addrs, ",")}
	for _, l := range smtpListeners {
		attrs = append(attrs, strings.TrimPrefix(l.key, "listen."), l.lis.Addr().String())
	}
	log.Info("mta serving", attrs...)
	err = parts.Run(ctx)
	log.Info("mta stopped")
	return err
}

// bounceRoute routes a DSN to the sender of a failed message the way
// RCPT routes mail: local users by LMTP, other domains by SMTP, unknown
// local senders nowhere (the bounce is dropped, never sent to a guess).
func bounceRoute(auth *authclient.Client) func(context.Context, string) ([]queue.Recipient, error) {
	return func(ctx context.Context, addr string) ([]queue.Recipient, error) {
		r, err := auth.ResolveRecipient(ctx, addr)
		if errors.Is(err, authclient.ErrInvalid) {
			return nil, nil // not an address anyone can receive at
		}
		if err != nil {
			return nil, err
		}
		if r.Kind == authclient.AliasLoop {
			return nil, fmt.Errorf("resolve %s: %v", addr, r.Kind)
		}
		return smtpd.Routes(r, addr), nil
	}
}

// relayOf reads the smarthost settings, nil when there is none.
func relayOf(c Relay) (*remote.Relay, error) {
	if c.Host == "" {
		return nil, nil
	}
	r := &remote.Relay{Addr: c.Host, Username: c.Username}
	if c.PasswordFile != "" {
		b, err := os.ReadFile(c.PasswordFile)
		if err != nil {
			return nil, fmt.Errorf("relay.password_file: %w", err)
		}
		r.Password, _, _ = strings.Cut(strings.TrimRight(string(b), "\r\n"), "\n")
	}
	return r, nil
}

// queueWritable returns the MTA's own health check: a file can be
// created in the queue directory.
func queueWritable(dir string) func(context.Context) error {
	return func(context.Context) error {
		// The probe is no queue file (those end in .env, .body, .lock).
		f, err := os.CreateTemp(dir, ".health-")
		if err != nil {
			return fmt.Errorf("queue.dir not writable: %w", err)
		}
		f.Close()
		os.Remove(f.Name())
		return nil
	}
}
