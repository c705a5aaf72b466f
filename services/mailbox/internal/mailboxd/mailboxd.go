package mailboxd

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"runtime/debug"

	"github.com/postcove/postcove/services/internal/authclient"
	"github.com/postcove/postcove/services/internal/grpcx"
	"github.com/postcove/postcove/services/internal/metrics"
	"github.com/postcove/postcove/services/internal/servicecmd"
	"github.com/postcove/postcove/services/internal/tlsconf"
	"github.com/postcove/postcove/services/mailbox/internal/imapd"
	"github.com/postcove/postcove/services/mailbox/internal/lmtpd"
	"github.com/postcove/postcove/services/mailbox/internal/pop3d"
	"github.com/postcove/postcove/services/mailbox/internal/store/maildir"
)

// protocol is one listener of the service. Its server (lmtpd, pop3d or
// imapd) returns from Shutdown once nothing touches the store any more.
type protocol struct {
	key string // the config key of its address, for messages
	lis net.Listener
	srv servicecmd.ProtocolServer
}

// Run serves the mailbox service until ctx is cancelled, then lets
// sessions and deliveries in flight finish (up to cfg.ShutdownTimeout) and
// returns. It binds every listener first, so a port clash fails at once.
// Auth need not be up: the connection is made lazily and retried, RCPT
// answers 451 meanwhile, and health reports NOT_SERVING until auth answers
// (start order is not a correctness condition).
func Run(ctx context.Context, cfg Config, log *slog.Logger) error {
	setMemoryLimit(cfg.Limits.MemoryLimit, log)
	setGCPercent(log)
	grpcTLS, err := tlsconf.ServerConfig(cfg.GRPCTLS)
	if err != nil {
		return fmt.Errorf("grpc_tls: %w", err)
	}

	var ls servicecmd.Listeners
	defer ls.CloseAll()
	grpcLis, err := ls.Listen("listen.grpc", cfg.Listen.GRPC)
	if err != nil {
		return err
	}
	lmtpLis, err := ls.Listen("listen.lmtp", cfg.Listen.LMTP)
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
		if l.lis, err = ls.Optional(l.key, l.addr); err != nil {
			return err
		}
	}
	metricsLis, err := ls.Optional("listen.metrics", cfg.Listen.Metrics)
	if err != nil {
		return err
	}

	conn, err := cfg.Auth.Dial("auth")
	if err != nil {
		return err
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

	var resolver lmtpd.Resolver = auth
	if cfg.LMTP.RecipientCache > 0 {
		resolver = authclient.NewRecipientCache(auth, cfg.LMTP.RecipientCache, 0)
	}
	lmtpSrv, err := lmtpd.New(lmtpd.Options{
		Store:           st,
		Resolver:        resolver,
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
		var srv servicecmd.ProtocolServer
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

	// Able to deliver: auth answers (every RCPT asks it) and the mail
	// store's root is there (a lost volume). Compose waits on it before
	// starting the MTA.
	health := servicecmd.NewAuthHealth(conn, cfg.Auth.HealthInterval, storeThere(cfg.Store.Root), reg, "mailbox")
	parts := servicecmd.Parts{Drain: cfg.ShutdownTimeout, Log: log}
	parts.Health(health, hs)
	parts.GRPC(g, grpcLis)
	parts.Metrics(metricsLis, reg)
	for _, p := range protocols {
		parts.Protocol(p.key, p.srv, p.lis)
	}
	log.Info("mailbox serving", "lmtp", lmtpLis.Addr().String(), "grpc", grpcLis.Addr().String(),
		"metrics", cfg.Listen.Metrics, "auth", cfg.Auth.Addr, "store", cfg.Store.Root)
	err = parts.Run(ctx)
	log.Info("mailbox stopped")
	return err
}

// mailListener is one optional listener of a user protocol.
type mailListener struct {
	key, addr string
	implicit  bool // implicit TLS, else STLS/STARTTLS
	imap      bool // IMAP, else POP3
	lis       net.Listener
}

// storeThere returns the service's own health check: the mail store's
// root is a directory.
func storeThere(root string) func(context.Context) error {
	return func(context.Context) error {
		fi, err := os.Stat(root)
		if err == nil && !fi.IsDir() {
			err = errors.New("not a directory")
		}
		if err != nil {
			return fmt.Errorf("store.root: %w", err)
		}
		return nil
	}
}

// gcPercent is the mailbox's GOGC. Most of its heap is the indexes of
// the folders loaded (about 130 bytes a message, one pointer each), long
// lived, while what it allocates per command is short lived: collecting
// when the heap has grown by half of what is live rather than all of it
// keeps the peak a quarter lower (bench imap with a 100,000-message
// mailbox loaded: 56 -> 52 MiB) for collections that cost little, since
// the indexes hold few pointers to follow. The IMAP and LMTP rates of
// make bench did not move.
const gcPercent = 50

// setGCPercent applies gcPercent unless GOGC, the runtime's own knob, is
// set in the environment.
func setGCPercent(log *slog.Logger) {
	if os.Getenv("GOGC") != "" {
		return
	}
	debug.SetGCPercent(gcPercent)
	log.Debug("GC percent set", "percent", gcPercent)
}

// setMemoryLimit applies limits.memory_limit unless GOMEMLIMIT, the
// runtime's own knob, is set in the environment.
func setMemoryLimit(limit int64, log *slog.Logger) {
	if limit <= 0 || os.Getenv("GOMEMLIMIT") != "" {
		return
	}
	debug.SetMemoryLimit(limit)
	log.Debug("memory limit set", "bytes", limit)
}
