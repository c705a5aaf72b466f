// Package mailboxd wires the mailbox service together: configuration, the
// Maildir store, the auth client, the mail protocol servers (LMTP, POP3
// and IMAP), gRPC health and metrics. cmd/mailbox only parses
// flags and calls Run.
package mailboxd

import (
	"math"
	"time"

	"github.com/postcove/postcove/services/internal/config"
	"github.com/postcove/postcove/services/internal/servicecmd"
	"github.com/postcove/postcove/services/internal/tlsconf"
	"github.com/postcove/postcove/services/mailbox/internal/imapd"
	"github.com/postcove/postcove/services/mailbox/internal/lmtpd"
	"github.com/postcove/postcove/services/mailbox/internal/pop3d"
)

// EnvPrefix prefixes the environment variables that override the config
// file: POSTCOVE_MAILBOX_STORE_ROOT overrides store.root, and so on.
const EnvPrefix = "POSTCOVE_MAILBOX"

// Config is the mailbox service's configuration file (TOML).
type Config struct {
	// LogLevel is debug, info, warn or error.
	LogLevel string `toml:"log_level"`
	Listen   Listen `toml:"listen"`
	// GRPCTLS is the TLS of the gRPC listener (health now). With ca_file
	// set, clients must present a certificate signed by it (mTLS). The
	// [tls] table is left for the certificate IMAP and POP3 clients see.
	GRPCTLS tlsconf.Files `toml:"grpc_tls"`
	// TLS is the certificate IMAP and POP3 clients see: STARTTLS on
	// listen.imap, STLS on listen.pop3, implicit TLS on listen.imaps and
	// listen.pop3s.
	TLS tlsconf.Files `toml:"tls"`
	// Auth is how to reach the auth service.
	Auth   servicecmd.AuthConfig `toml:"auth"`
	Store  Store                 `toml:"store"`
	LMTP   LMTP                  `toml:"lmtp"`
	IMAP   IMAP                  `toml:"imap"`
	POP3   POP3                  `toml:"pop3"`
	Limits Limits                `toml:"limits"`
	// ShutdownTimeout bounds the wait for sessions and deliveries in
	// flight on SIGTERM.
	ShutdownTimeout time.Duration `toml:"shutdown_timeout"`
}

// Listen holds the listen addresses.
type Listen struct {
	LMTP    string `toml:"lmtp" help:"LMTP from the MTA (internal: never publish it)"`
	IMAP    string `toml:"imap" help:"IMAP with STARTTLS; empty disables"`
	IMAPS   string `toml:"imaps" help:"IMAP over implicit TLS (needs tls.cert_file); empty disables"`
	POP3    string `toml:"pop3" help:"POP3 with STLS; empty disables"`
	POP3S   string `toml:"pop3s" help:"POP3 over implicit TLS (needs tls.cert_file); empty disables"`
	GRPC    string `toml:"grpc" help:"grpc.health.v1 for compose and load balancers"`
	Metrics string `toml:"metrics" help:"Prometheus /metrics; empty disables"`
}

// IMAP configures the IMAP listeners.
type IMAP struct {
	// AllowPlaintextAuth allows LOGIN and AUTHENTICATE PLAIN before TLS.
	AllowPlaintextAuth bool `toml:"allow_plaintext_auth"`
	// MaxSessions bounds the connections served at once (each listener).
	MaxSessions int `toml:"max_sessions"`
	// MaxAppendSize is the largest message APPEND accepts, in bytes
	// (APPENDLIMIT); 0: limits.max_message_size.
	MaxAppendSize int64 `toml:"max_append_size"`
}

// appendLimit is the effective APPEND limit.
func (c *Config) appendLimit() int64 {
	if c.IMAP.MaxAppendSize > 0 {
		return c.IMAP.MaxAppendSize
	}
	return c.Limits.MaxMessageSize
}

// POP3 configures the POP3 listeners.
type POP3 struct {
	// AllowPlaintextAuth allows USER/PASS and AUTH PLAIN before TLS.
	AllowPlaintextAuth bool `toml:"allow_plaintext_auth"`
	// IdleTimeout closes silent connections (RFC 1939: at least 10 min).
	IdleTimeout time.Duration `toml:"idle_timeout"`
	// MaxSessions bounds the connections served at once.
	MaxSessions int `toml:"max_sessions"`
}

// Store locates the mail.
type Store struct {
	// Root holds <domain>/<user>/Maildir for every user (dovecot's
	// mail_location = maildir:<root>/%d/%n/Maildir).
	Root string `toml:"root"`
}

// LMTP tunes the LMTP server.
type LMTP struct {
	// Hostname is announced in the greeting; default the host name.
	Hostname string `toml:"hostname"`
	// SpoolDir holds large messages while they are delivered (unlinked
	// files); default the system's temporary directory.
	SpoolDir string `toml:"spool_dir"`
	// SpoolMemory is the largest message held in memory instead.
	SpoolMemory int64 `toml:"spool_memory"`
	// MaxConnections bounds the LMTP connections served at once.
	MaxConnections int `toml:"max_connections"`
	// RecipientCache is how long an answer of auth about a recipient is
	// reused (authclient.RecipientCache): a burst of deliveries to the same
	// users asks auth once. It adds to auth's own resolve.cache_ttl in how
	// long a new or removed user or alias takes to be seen; 0 asks auth
	// for every recipient.
	RecipientCache time.Duration `toml:"recipient_cache"`
}

// Limits bound what one client may make the service do.
type Limits struct {
	// MaxMessageSize is the largest message accepted, in bytes (LMTP SIZE;
	// keep it at least the MTA's).
	MaxMessageSize int64 `toml:"max_message_size"`
	// MaxRecipients is the most recipients of one LMTP transaction.
	MaxRecipients int `toml:"max_recipients"`
	// MaxLineLength bounds a command line and a message line, in bytes.
	MaxLineLength int `toml:"max_line_length"`
	// ReadTimeout is how long a client may stay silent (and, for LMTP
	// DATA, how long a whole message transfer may take).
	ReadTimeout time.Duration `toml:"read_timeout"`
	// WriteTimeout is how long a reply may wait for the client to read.
	WriteTimeout time.Duration `toml:"write_timeout"`
	// MemoryLimit is a soft limit on the process's memory, in bytes
	// (runtime/debug.SetMemoryLimit): past it the garbage collector runs
	// more often and returns freed memory to the system sooner, which
	// keeps the peaks of index builds and large FETCHes down. It is not a
	// cap: a process whose live data (the indexes of the mailboxes open at
	// once: about 130 bytes a message) outgrows it only spends more CPU on
	// collection, so raise it on a server with many large mailboxes open.
	// 0, the default, leaves the runtime's default (none, or GOMEMLIMIT
	// from the environment, which also wins over this setting). 64 MiB
	// suits a server with a few mailboxes of 100,000 messages open.
	MemoryLimit int64 `toml:"memory_limit"`
}

// DefaultConfig is the configuration `make run` uses: the local ports of
// DESIGN.md and mail under ./data/mail.
func DefaultConfig() Config {
	return Config{
		LogLevel: "info",
		Listen:   Listen{LMTP: "127.0.0.1:2424", IMAP: "127.0.0.1:2143", POP3: "127.0.0.1:2110", GRPC: "127.0.0.1:9102", Metrics: "127.0.0.1:9202"},
		IMAP:     IMAP{MaxSessions: imapd.DefaultMaxSessions},
		POP3:     POP3{IdleTimeout: pop3d.DefaultIdleTimeout, MaxSessions: pop3d.DefaultMaxSessions},
		Auth:     servicecmd.DefaultAuthConfig(),
		Store:    Store{Root: "data/mail"},
		LMTP:     LMTP{SpoolMemory: lmtpd.DefaultSpoolMemory, MaxConnections: lmtpd.DefaultMaxConnections, RecipientCache: time.Second},
		Limits: Limits{
			MaxMessageSize: lmtpd.DefaultMaxMessageBytes,
			MaxRecipients:  lmtpd.DefaultMaxRecipients,
			MaxLineLength:  lmtpd.DefaultMaxLineLength,
			ReadTimeout:    lmtpd.DefaultReadTimeout,
			WriteTimeout:   lmtpd.DefaultWriteTimeout,
		},
		ShutdownTimeout: 30 * time.Second,
	}
}

// Validate checks every field and names each bad one.
func (c *Config) Validate() error {
	var errs config.Errors
	config.CheckOneOf(&errs, "log_level", c.LogLevel, "debug", "info", "warn", "error")
	config.CheckAddr(&errs, "listen.lmtp", c.Listen.LMTP)
	config.CheckAddr(&errs, "listen.grpc", c.Listen.GRPC)
	if c.Listen.Metrics != "" {
		config.CheckAddr(&errs, "listen.metrics", c.Listen.Metrics)
	}
	for key, addr := range map[string]string{"listen.pop3": c.Listen.POP3, "listen.pop3s": c.Listen.POP3S,
		"listen.imap": c.Listen.IMAP, "listen.imaps": c.Listen.IMAPS} {
		if addr != "" {
			config.CheckAddr(&errs, key, addr)
		}
	}
	c.TLS.Validate(&errs, "tls")
	for key, addr := range map[string]string{"listen.pop3s": c.Listen.POP3S, "listen.imaps": c.Listen.IMAPS} {
		if addr != "" && c.TLS.Cert == "" {
			errs.Add(key, "implicit TLS needs a certificate: set tls.cert_file and tls.key_file, or leave %s empty", key)
		}
	}
	if c.IMAP.MaxSessions < 1 {
		errs.Add("imap.max_sessions", "must be at least 1, got %d", c.IMAP.MaxSessions)
	}
	// APPENDLIMIT is a 32-bit number (RFC 7889 uses number, go-imap uint32).
	if a := c.IMAP.MaxAppendSize; a < 0 || a > math.MaxUint32 || a > 0 && a < 1024 {
		errs.Add("imap.max_append_size", "must be 0 (limits.max_message_size) or between 1024 and %d bytes, got %d", uint32(math.MaxUint32), a)
	}
	// RFC 1939 section 3: the autologout timer is at least 10 minutes.
	if c.POP3.IdleTimeout < pop3d.DefaultIdleTimeout {
		errs.Add("pop3.idle_timeout", "must be at least 10m (RFC 1939 section 3), got %s", c.POP3.IdleTimeout)
	}
	if c.POP3.MaxSessions < 1 {
		errs.Add("pop3.max_sessions", "must be at least 1, got %d", c.POP3.MaxSessions)
	}
	c.GRPCTLS.Validate(&errs, "grpc_tls")
	if c.GRPCTLS.Cert == "" && c.GRPCTLS.CA != "" {
		errs.Add("grpc_tls.ca_file", "client certificates need a TLS listener: set grpc_tls.cert_file too")
	}
	c.Auth.Validate(&errs, "auth")

	if c.Store.Root == "" {
		errs.Add("store.root", "is required")
	}
	if c.LMTP.SpoolMemory < 0 {
		errs.Add("lmtp.spool_memory", "must not be negative, got %d", c.LMTP.SpoolMemory)
	}
	if c.LMTP.RecipientCache < 0 {
		errs.Add("lmtp.recipient_cache", "must not be negative (0 turns the cache off), got %s", c.LMTP.RecipientCache)
	}
	if c.LMTP.MaxConnections < 1 {
		errs.Add("lmtp.max_connections", "must be at least 1, got %d", c.LMTP.MaxConnections)
	}

	l := c.Limits
	if l.MaxMessageSize < 1024 {
		errs.Add("limits.max_message_size", "must be at least 1024 bytes, got %d", l.MaxMessageSize)
	}
	if l.MaxRecipients < 1 {
		errs.Add("limits.max_recipients", "must be at least 1, got %d", l.MaxRecipients)
	}
	// RFC 5321 section 4.5.3.1.6: a text line may be 1000 octets.
	if l.MaxLineLength < 1000 {
		errs.Add("limits.max_line_length", "must be at least 1000 (RFC 5321 section 4.5.3.1.6), got %d", l.MaxLineLength)
	}
	if l.MemoryLimit < 0 {
		errs.Add("limits.memory_limit", "must be 0 (none) or a number of bytes, got %d", l.MemoryLimit)
	}
	positive(&errs, "limits.read_timeout", l.ReadTimeout)
	positive(&errs, "limits.write_timeout", l.WriteTimeout)
	positive(&errs, "shutdown_timeout", c.ShutdownTimeout)
	return errs.Err()
}

func positive(errs *config.Errors, key string, d time.Duration) {
	if d <= 0 {
		errs.Add(key, "must be a positive duration, got %s", d)
	}
}
