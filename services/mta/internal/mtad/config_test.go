package mtad

import (
	"errors"
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
	// Without one, port 465 cannot run; emptied, it is not asked for.
	c = DefaultConfig()
	if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "listen.submissions") {
		t.Errorf("default config without certificate: %v, want listen.submissions named", err)
	}
	c.Listen.Submissions = ""
	if err := c.Validate(); err != nil {
		t.Errorf("no certificate, no 465: %v", err)
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
