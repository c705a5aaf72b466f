// Package mtad wires the MTA service together: configuration, the SMTP
// listeners (inbound, submission, submissions), the auth client, the
// durable queue with local (LMTP) and remote (SMTP) delivery, gRPC health
// and metrics. cmd/mta only parses flags and calls Run.
package mtad

import (
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/postcove/postcove/services/internal/config"
	"github.com/postcove/postcove/services/internal/servicecmd"
	"github.com/postcove/postcove/services/internal/tlsconf"
	"github.com/postcove/postcove/services/mta/internal/queue"
	"github.com/postcove/postcove/services/mta/internal/smtpd"
	"github.com/postcove/postcove/services/mta/internal/verify"
)

// EnvPrefix prefixes the environment variables that override the config
// file: POSTCOVE_MTA_QUEUE_DIR overrides queue.dir, and so on.
const EnvPrefix = "POSTCOVE_MTA"

// Config is the MTA's configuration file (TOML).
type Config struct {
	// LogLevel is debug, info, warn or error.
	LogLevel string `toml:"log_level"`
	// Hostname is the MTA's public name: the greeting, EHLO outbound,
	// Received fields, our authserv-id, DSNs. Default the host name.
	Hostname string `toml:"hostname"`
	Listen   Listen `toml:"listen"`
	// TLS is the certificate SMTP clients see: STARTTLS on listen.smtp
	// and listen.submission, implicit TLS on listen.submissions.
	TLS tlsconf.Files `toml:"tls"`
	// GRPCTLS is the TLS of the gRPC listener (health; queue admin
	// later). With ca_file set, clients must present a certificate
	// signed by it (mTLS).
	GRPCTLS tlsconf.Files `toml:"grpc_tls"`
	// Auth is how to reach the auth service.
	Auth   servicecmd.AuthConfig `toml:"auth"`
	Limits Limits                `toml:"limits"`
	Queue  Queue                 `toml:"queue"`
	LMTP   LMTP                  `toml:"lmtp"`
	Remote Remote                `toml:"remote"`
	Relay  Relay                 `toml:"relay"`
	DNS    DNS                   `toml:"dns"`
	DKIM   DKIM                  `toml:"dkim"`
	Verify Verify                `toml:"verify"`
	// ShutdownTimeout bounds the wait for SMTP sessions and deliveries in
	// flight on SIGTERM.
	ShutdownTimeout time.Duration `toml:"shutdown_timeout"`
}

// Listen holds the listen addresses.
type Listen struct {
	SMTP        string `toml:"smtp" help:"inbound SMTP from the world (MX, port 25)"`
	Submission  string `toml:"submission" help:"submission with STARTTLS and AUTH (port 587); empty disables"`
	Submissions string `toml:"submissions" help:"submission over implicit TLS (port 465, needs tls.cert_file); auto: 127.0.0.1:2465 when tls.cert_file is set, else off; empty disables"`
	GRPC        string `toml:"grpc" help:"gRPC: queue admin (mailctl queue) and grpc.health.v1"`
	Metrics     string `toml:"metrics" help:"Prometheus /metrics; empty disables"`
}

// SubmissionsAuto is the default of listen.submissions: implicit TLS
// needs a certificate, so port 465 (2465 locally) is served only when
// tls.cert_file is set, and left off otherwise rather than failing the
// start. Any other value is taken as written: an address, which then
// requires the certificate, or "" for off.
const SubmissionsAuto = "auto"

// autoSubmissions is where listen.submissions = "auto" listens when there
// is a certificate: the local port of DESIGN.md.
const autoSubmissions = "127.0.0.1:2465"

// submissionsAddr is the address listen.submissions binds, "" for none.
func (c *Config) submissionsAddr() string {
	if c.Listen.Submissions != SubmissionsAuto {
		return c.Listen.Submissions
	}
	if c.TLS.Cert == "" {
		return ""
	}
	return autoSubmissions
}

// Limits bound what one SMTP client may make the service do; they apply
// to each listener.
type Limits struct {
	// MaxMessageSize is the largest message accepted, in bytes (SIZE).
	MaxMessageSize int64 `toml:"max_message_size"`
	// MaxRecipients is the most RCPT commands of one transaction.
	MaxRecipients int `toml:"max_recipients"`
	// MaxLineLength bounds a command line and a message line, CRLF
	// included.
	MaxLineLength int `toml:"max_line_length"`
	// MaxHeaderSize bounds the header block of a message, in bytes.
	MaxHeaderSize int `toml:"max_header_size"`
	// ReadTimeout is how long a client may stay silent between commands.
	ReadTimeout time.Duration `toml:"read_timeout"`
	// DataTimeout bounds the transfer of one message (DATA).
	DataTimeout time.Duration `toml:"data_timeout"`
	// WriteTimeout is how long a reply may wait for the client to read.
	WriteTimeout time.Duration `toml:"write_timeout"`
	// MaxConnections bounds the sessions of a listener.
	MaxConnections int `toml:"max_connections"`
	// MaxConnectionsPerIP bounds the sessions of one client IP on a
	// listener.
	MaxConnectionsPerIP int `toml:"max_connections_per_ip"`
}

// Queue locates and tunes the durable queue.
type Queue struct {
	// Dir is the spool directory; several mta processes may share it.
	Dir string `toml:"dir"`
	// Lifetime is how long a message is retried before it bounces.
	Lifetime time.Duration `toml:"lifetime"`
	// DelayWarning, when set, is how long a recipient may stay deferred
	// before the sender is sent one "delayed" notification (postfix's
	// delay_warning_time; e.g. "4h"). Off by default, as postfix's.
	DelayWarning time.Duration `toml:"delay_warning"`
	// RetryMin is the first retry delay, doubled up to RetryMax.
	RetryMin time.Duration `toml:"retry_min"`
	RetryMax time.Duration `toml:"retry_max"`
	// Workers is how many messages are delivered at once.
	Workers int `toml:"workers"`
}

// LMTP is local delivery to the mailbox service.
type LMTP struct {
	// Addrs are the mailbox LMTP servers, host:port; a name with several
	// addresses counts as several servers. Load is spread over them.
	Addrs []string `toml:"addrs"`
}

// Remote is delivery to other domains' MX.
type Remote struct {
	// Port is the exchangers' SMTP port: 25, except in tests.
	Port int `toml:"port"`
}

// Relay is a smarthost for servers whose port 25 is blocked: when Host
// is set, all remote mail goes there.
type Relay struct {
	// Host is host:port; port 465 means implicit TLS, others STARTTLS.
	Host string `toml:"host"`
	// Username for AUTH PLAIN; empty: no AUTH.
	Username string `toml:"username"`
	// PasswordFile holds the password (first line), kept out of the
	// config file and the environment.
	PasswordFile string `toml:"password_file"`
}

// DNS is the resolver for MX lookups and the SPF, DKIM and DMARC checks.
type DNS struct {
	// Resolver is host:port of a DNS server; empty: the nameservers of
	// /etc/resolv.conf.
	Resolver string `toml:"resolver"`
}

// DKIM is the signing of submitted mail.
type DKIM struct {
	// KeysDir holds <domain>/<selector>.key (mailctl dkim keygen writes
	// them). A domain without keys is sent unsigned; empty disables
	// signing.
	KeysDir string `toml:"keys_dir"`
}

// Verify is the check of mail arriving on listen.smtp: SPF, DKIM and
// DMARC, written into Authentication-Results; DMARC p=reject refused,
// p=quarantine filed into Junk, and mail claiming one of our domains
// without passing SPF or DKIM for it refused.
type Verify struct {
	// Enabled turns the checks on. Off, mail from anywhere may claim our
	// domains: only for a filter in front that does the checks, or a
	// benchmark.
	Enabled bool `toml:"enabled"`
	// Timeout bounds the checks of one message (DNS lookups mostly);
	// past it, what is unknown counts as a temporary error.
	Timeout time.Duration `toml:"timeout"`
}

// DefaultConfig is the configuration `make run` uses: the local ports of
// DESIGN.md and the queue under ./data/queue.
func DefaultConfig() Config {
	return Config{
		LogLevel: "info",
		Listen: Listen{
			SMTP: "127.0.0.1:2525", Submission: "127.0.0.1:2587", Submissions: SubmissionsAuto,
			GRPC: "127.0.0.1:9101", Metrics: "127.0.0.1:9201",
		},
		Auth: servicecmd.DefaultAuthConfig(),
		Limits: Limits{
			MaxMessageSize:      smtpd.DefaultMaxMessageBytes,
			MaxRecipients:       smtpd.DefaultMaxRecipients,
			MaxLineLength:       smtpd.DefaultMaxLineLength,
			MaxHeaderSize:       smtpd.DefaultMaxHeaderBytes,
			ReadTimeout:         smtpd.DefaultReadTimeout,
			DataTimeout:         smtpd.DefaultDataTimeout,
			WriteTimeout:        smtpd.DefaultWriteTimeout,
			MaxConnections:      smtpd.DefaultMaxConnections,
			MaxConnectionsPerIP: smtpd.DefaultMaxConnectionsPerIP,
		},
		Queue: Queue{
			Dir:      "data/queue",
			Lifetime: queue.DefaultLifetime,
			RetryMin: queue.DefaultRetryMin,
			RetryMax: queue.DefaultRetryMax,
			Workers:  queue.DefaultWorkers,
		},
		LMTP:            LMTP{Addrs: []string{"127.0.0.1:2424"}},
		Remote:          Remote{Port: 25},
		DKIM:            DKIM{KeysDir: "keys"},
		Verify:          Verify{Enabled: true, Timeout: verify.DefaultTimeout},
		ShutdownTimeout: 30 * time.Second,
	}
}

// Validate checks every field and names each bad one.
func (c *Config) Validate() error {
	var errs config.Errors
	config.CheckOneOf(&errs, "log_level", c.LogLevel, "debug", "info", "warn", "error")
	if c.Hostname != "" && !validHostname(c.Hostname) {
		errs.Add("hostname", "%q is not a host name (letters, digits, hyphens, dots)", c.Hostname)
	}
	config.CheckAddr(&errs, "listen.smtp", c.Listen.SMTP)
	config.CheckAddr(&errs, "listen.grpc", c.Listen.GRPC)
	for key, addr := range map[string]string{
		"listen.submission": c.Listen.Submission, "listen.submissions": c.submissionsAddr(), "listen.metrics": c.Listen.Metrics,
	} {
		if addr != "" {
			config.CheckAddr(&errs, key, addr)
		}
	}
	c.TLS.Validate(&errs, "tls")
	// An explicit address without a certificate is a mistake to report;
	// the default ("auto") without one just leaves port 465 off.
	if c.submissionsAddr() != "" && c.TLS.Cert == "" {
		errs.Add("listen.submissions", "implicit TLS needs a certificate: set tls.cert_file and tls.key_file, or leave listen.submissions empty")
	}
	c.GRPCTLS.Validate(&errs, "grpc_tls")
	if c.GRPCTLS.Cert == "" && c.GRPCTLS.CA != "" {
		errs.Add("grpc_tls.ca_file", "client certificates need a TLS listener: set grpc_tls.cert_file too")
	}
	c.Auth.Validate(&errs, "auth")

	l := c.Limits
	if l.MaxMessageSize < 1024 {
		errs.Add("limits.max_message_size", "must be at least 1024 bytes, got %d", l.MaxMessageSize)
	}
	// RFC 5321 section 4.5.3.1.8: at least 100 recipients.
	if l.MaxRecipients < 100 {
		errs.Add("limits.max_recipients", "must be at least 100 (RFC 5321 section 4.5.3.1.8), got %d", l.MaxRecipients)
	}
	// RFC 5321 section 4.5.3.1.6: a text line may be 1000 octets.
	if l.MaxLineLength < 1000 {
		errs.Add("limits.max_line_length", "must be at least 1000 (RFC 5321 section 4.5.3.1.6), got %d", l.MaxLineLength)
	}
	if l.MaxHeaderSize < l.MaxLineLength {
		errs.Add("limits.max_header_size", "must be at least limits.max_line_length (%d), got %d", l.MaxLineLength, l.MaxHeaderSize)
	}
	positive(&errs, "limits.read_timeout", l.ReadTimeout)
	positive(&errs, "limits.data_timeout", l.DataTimeout)
	positive(&errs, "limits.write_timeout", l.WriteTimeout)
	if l.MaxConnections < 1 {
		errs.Add("limits.max_connections", "must be at least 1, got %d", l.MaxConnections)
	}
	if l.MaxConnectionsPerIP < 1 {
		errs.Add("limits.max_connections_per_ip", "must be at least 1, got %d", l.MaxConnectionsPerIP)
	}

	q := c.Queue
	if q.Dir == "" {
		errs.Add("queue.dir", "is required")
	}
	positive(&errs, "queue.lifetime", q.Lifetime)
	if q.DelayWarning < 0 || q.DelayWarning > 0 && q.DelayWarning >= q.Lifetime {
		errs.Add("queue.delay_warning", "must be 0 (off) or a positive duration shorter than queue.lifetime (%s), got %s", q.Lifetime, q.DelayWarning)
	}
	positive(&errs, "queue.retry_min", q.RetryMin)
	positive(&errs, "queue.retry_max", q.RetryMax)
	if q.RetryMax < q.RetryMin {
		errs.Add("queue.retry_max", "must be at least queue.retry_min (%s), got %s", q.RetryMin, q.RetryMax)
	}
	if q.Workers < 1 {
		errs.Add("queue.workers", "must be at least 1, got %d", q.Workers)
	}
	if len(c.LMTP.Addrs) == 0 {
		errs.Add("lmtp.addrs", "at least one host:port is required")
	}
	for i, a := range c.LMTP.Addrs {
		config.CheckAddr(&errs, "lmtp.addrs["+strconv.Itoa(i)+"]", a)
	}
	if c.Remote.Port < 1 || c.Remote.Port > 65535 {
		errs.Add("remote.port", "must be a port number, got %d", c.Remote.Port)
	}
	if c.Relay.Host != "" {
		config.CheckAddr(&errs, "relay.host", c.Relay.Host)
	}
	if c.Relay.Username != "" && c.Relay.PasswordFile == "" {
		errs.Add("relay.password_file", "relay.username is set: the password file is required")
	}
	if (c.Relay.Username != "" || c.Relay.PasswordFile != "") && c.Relay.Host == "" {
		errs.Add("relay.host", "relay credentials are set but no relay host")
	}
	if c.DNS.Resolver != "" {
		config.CheckAddr(&errs, "dns.resolver", c.DNS.Resolver)
	}
	positive(&errs, "verify.timeout", c.Verify.Timeout)
	positive(&errs, "shutdown_timeout", c.ShutdownTimeout)
	return errs.Err()
}

func positive(errs *config.Errors, key string, d time.Duration) {
	if d <= 0 {
		errs.Add(key, "must be a positive duration, got %s", d)
	}
}

// validHostname reports whether s is a plausible host name: dot-separated
// LDH labels (RFC 1123 section 2.1). It ends up in replies and headers.
func validHostname(s string) bool {
	if len(s) > 253 || net.ParseIP(s) != nil {
		return false
	}
	for _, label := range strings.Split(s, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for _, r := range label {
			if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-') {
				return false
			}
		}
	}
	return true
}
