package mtad

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/postcove/postcove/services/internal/config"
	"github.com/postcove/postcove/services/internal/testlib"
)

// validConfig is the default with a certificate, as make run has it.
func validConfig(t *testing.T) Config {
	t.Helper()
	certs := testlib.NewCerts(t)
	c := DefaultConfig()
	c.TLS.Cert, c.TLS.Key = certs.ServerCert, certs.ServerKey
	return c
}

func TestDefaultConfigValid(t *testing.T) {
	c := validConfig(t)
	if err := c.Validate(); err != nil {
		t.Errorf("default config with a certificate: %v", err)
	}
	// Without one, the default leaves port 465 off rather than failing.
	c = DefaultConfig()
	if err := c.Validate(); err != nil {
		t.Errorf("default config without certificate: %v", err)
	}
}

// TestSubmissionsDefault: listen.submissions defaults to "auto", which is
// 127.0.0.1:2465 with a certificate and off without one; an address
// written out is taken as is, and without a certificate it is an error
// naming listen.submissions, whether it came from the file or the
// environment.
func TestSubmissionsDefault(t *testing.T) {
	certs := testlib.NewCerts(t)
	tests := []struct {
		name     string
		value    string // listen.submissions
		cert     bool   // tls.cert_file set
		wantAddr string
		wantErr  bool
	}{
		{"auto with certificate", SubmissionsAuto, true, "127.0.0.1:2465", false},
		{"auto without certificate", SubmissionsAuto, false, "", false},
		{"explicit without certificate", "127.0.0.1:2465", false, "127.0.0.1:2465", true},
		{"explicit with certificate", "0.0.0.0:465", true, "0.0.0.0:465", false},
		{"off with certificate", "", true, "", false},
		{"off without certificate", "", false, "", false},
	}
	for _, tt := range tests {
		c := DefaultConfig()
		c.Listen.Submissions = tt.value
		if tt.cert {
			c.TLS.Cert, c.TLS.Key = certs.ServerCert, certs.ServerKey
		}
		if got := c.submissionsAddr(); got != tt.wantAddr {
			t.Errorf("%s: submissionsAddr() = %q, want %q", tt.name, got, tt.wantAddr)
		}
		err := c.Validate()
		if tt.wantErr != (err != nil) || err != nil && !strings.Contains(err.Error(), "listen.submissions:") {
			t.Errorf("%s: Validate() = %v, want error %v naming listen.submissions", tt.name, err, tt.wantErr)
		}
	}

	// Loaded as the service loads it: the default passes, an explicit
	// address without a certificate does not, from either source.
	file := filepath.Join(testlib.TempDir(t), "mta.toml")
	if err := os.WriteFile(file, []byte("[listen]\nsubmissions = \"127.0.0.1:2465\"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c := DefaultConfig()
	if err := config.Load("", EnvPrefix, &c); err != nil {
		t.Errorf("Load of the defaults = %v", err)
	}
	c = DefaultConfig()
	if err := config.Load(file, EnvPrefix, &c); err == nil || !strings.Contains(err.Error(), "listen.submissions:") {
		t.Errorf("Load with listen.submissions in the file and no certificate = %v, want it named", err)
	}
	t.Setenv(EnvPrefix+"_LISTEN_SUBMISSIONS", "127.0.0.1:2465")
	c = DefaultConfig()
	if err := config.Load("", EnvPrefix, &c); err == nil || !strings.Contains(err.Error(), "POSTCOVE_MTA_LISTEN_SUBMISSIONS") {
		t.Errorf("Load with POSTCOVE_MTA_LISTEN_SUBMISSIONS and no certificate = %v, want it named", err)
	}
}

// TestValidateNamesEveryField: each bad value is reported under its key.
func TestValidateNamesEveryField(t *testing.T) {
	tests := []struct {
		key  string
		edit func(*Config)
	}{
		{"log_level", func(c *Config) { c.LogLevel = "loud" }},
		{"hostname", func(c *Config) { c.Hostname = "-bad-.example" }},
		{"hostname", func(c *Config) { c.Hostname = "192.0.2.1" }},
		{"listen.smtp", func(c *Config) { c.Listen.SMTP = "" }},
		{"listen.submission", func(c *Config) { c.Listen.Submission = "x" }},
		{"listen.submissions", func(c *Config) { c.Listen.Submissions = "x:y" }},
		{"listen.grpc", func(c *Config) { c.Listen.GRPC = "nope" }},
		{"listen.metrics", func(c *Config) { c.Listen.Metrics = "nope" }},
		{"tls.key_file", func(c *Config) { c.TLS.Key = "" }},
		{"grpc_tls.ca_file", func(c *Config) { c.GRPCTLS.CA = c.TLS.Cert }},
		{"auth.addr", func(c *Config) { c.Auth.Addr = "" }},
		{"auth.health_interval", func(c *Config) { c.Auth.HealthInterval = 0 }},
		{"limits.max_message_size", func(c *Config) { c.Limits.MaxMessageSize = 10 }},
		{"limits.max_recipients", func(c *Config) { c.Limits.MaxRecipients = 99 }},
		{"limits.max_line_length", func(c *Config) { c.Limits.MaxLineLength = 998 }},
		{"limits.max_header_size", func(c *Config) { c.Limits.MaxHeaderSize = 100 }},
		{"limits.read_timeout", func(c *Config) { c.Limits.ReadTimeout = 0 }},
		{"limits.data_timeout", func(c *Config) { c.Limits.DataTimeout = -time.Second }},
		{"limits.write_timeout", func(c *Config) { c.Limits.WriteTimeout = 0 }},
		{"limits.max_connections", func(c *Config) { c.Limits.MaxConnections = 0 }},
		{"limits.max_connections_per_ip", func(c *Config) { c.Limits.MaxConnectionsPerIP = 0 }},
		{"queue.dir", func(c *Config) { c.Queue.Dir = "" }},
		{"queue.lifetime", func(c *Config) { c.Queue.Lifetime = 0 }},
		{"queue.delay_warning", func(c *Config) { c.Queue.DelayWarning = -time.Hour }},
		{"queue.delay_warning", func(c *Config) { c.Queue.DelayWarning = c.Queue.Lifetime }},
		{"queue.retry_min", func(c *Config) { c.Queue.RetryMin = 0 }},
		{"queue.retry_max", func(c *Config) { c.Queue.RetryMax = time.Minute }},
		{"queue.workers", func(c *Config) { c.Queue.Workers = 0 }},
		{"lmtp.addrs", func(c *Config) { c.LMTP.Addrs = nil }},
		{"lmtp.addrs[1]", func(c *Config) { c.LMTP.Addrs = []string{"127.0.0.1:2424", "mailbox"} }},
		{"remote.port", func(c *Config) { c.Remote.Port = 0 }},
		{"relay.host", func(c *Config) { c.Relay.Host = "smarthost" }},
		{"relay.host", func(c *Config) { c.Relay.Username, c.Relay.PasswordFile = "u", "/p" }},
		{"relay.password_file", func(c *Config) { c.Relay.Host, c.Relay.Username = "smtp.example:587", "u" }},
		{"dns.resolver", func(c *Config) { c.DNS.Resolver = "8.8.8.8" }},
		{"verify.timeout", func(c *Config) { c.Verify.Timeout = 0 }},
		{"shutdown_timeout", func(c *Config) { c.ShutdownTimeout = 0 }},
	}
	for _, tt := range tests {
		c := validConfig(t)
		tt.edit(&c)
		err := c.Validate()
		var ve *config.ValidationError
		if !errors.As(err, &ve) || !strings.Contains(err.Error(), tt.key+":") {
			t.Errorf("Validate with bad %s = %v, want it named", tt.key, err)
		}
	}
}
