package mailboxd

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/postcove/postcove/services/internal/config"
)

func TestDefaultConfigValid(t *testing.T) {
	cfg := DefaultConfig()
	if err := cfg.Validate(); err != nil {
		t.Errorf("DefaultConfig().Validate() = %v, want nil", err)
	}
}

// TestValidate: each bad value is reported under its key, all at once.
func TestValidate(t *testing.T) {
	tests := []struct {
		name   string
		change func(*Config)
		keys   []string
	}{
		{"log level", func(c *Config) { c.LogLevel = "loud" }, []string{"log_level"}},
		{"lmtp address", func(c *Config) { c.Listen.LMTP = "2424" }, []string{"listen.lmtp"}},
		{"grpc address", func(c *Config) { c.Listen.GRPC = "" }, []string{"listen.grpc"}},
		{"metrics address", func(c *Config) { c.Listen.Metrics = "localhost:x" }, []string{"listen.metrics"}},
		{"metrics off", func(c *Config) { c.Listen.Metrics = "" }, nil},
		{"grpc tls ca only", func(c *Config) { c.GRPCTLS.CA = "/nonexistent/ca.pem" }, []string{"grpc_tls.ca_file"}},
		{"grpc tls cert without key", func(c *Config) { c.GRPCTLS.Cert = "/nonexistent/cert.pem" }, []string{"grpc_tls.key_file", "grpc_tls.cert_file"}},
		{"auth address missing", func(c *Config) { c.Auth.Addr = "" }, []string{"auth.addr"}},
		{"auth address bad", func(c *Config) { c.Auth.Addr = "auth" }, []string{"auth.addr"}},
		{"auth address dns target", func(c *Config) { c.Auth.Addr = "dns:///auth:9100" }, nil},
		{"auth address unix", func(c *Config) { c.Auth.Addr = "unix:///run/auth.sock" }, nil},
		{"auth tls files", func(c *Config) { c.Auth.TLS.CA = "/nonexistent/ca.pem" }, []string{"auth.tls.ca_file"}},
		{"auth health interval", func(c *Config) { c.Auth.HealthInterval = 0 }, []string{"auth.health_interval"}},
		{"store root", func(c *Config) { c.Store.Root = "" }, []string{"store.root"}},
		{"spool memory", func(c *Config) { c.LMTP.SpoolMemory = -1 }, []string{"lmtp.spool_memory"}},
		{"recipient cache", func(c *Config) { c.LMTP.RecipientCache = -time.Second }, []string{"lmtp.recipient_cache"}},
		{"max connections", func(c *Config) { c.LMTP.MaxConnections = 0 }, []string{"lmtp.max_connections"}},
		{"message size", func(c *Config) { c.Limits.MaxMessageSize = 10 }, []string{"limits.max_message_size"}},
		{"recipients", func(c *Config) { c.Limits.MaxRecipients = 0 }, []string{"limits.max_recipients"}},
		{"line length", func(c *Config) { c.Limits.MaxLineLength = 998 }, []string{"limits.max_line_length"}},
		{"timeouts", func(c *Config) {
			c.Limits.ReadTimeout, c.Limits.WriteTimeout, c.ShutdownTimeout = 0, -time.Second, 0
		}, []string{"limits.read_timeout", "limits.write_timeout", "shutdown_timeout"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := DefaultConfig()
			tt.change(&cfg)
			err := cfg.Validate()
			var verr *config.ValidationError
			if len(tt.keys) == 0 {
				if err != nil {
					t.Errorf("Validate() = %v, want nil", err)
				}
				return
			}
			if !errors.As(err, &verr) {
				t.Fatalf("Validate() = %v, want a *config.ValidationError", err)
			}
			var got []string
			for _, f := range verr.Fields {
				got = append(got, f.Key)
			}
			for _, k := range tt.keys {
				if !strings.Contains(strings.Join(got, " "), k) {
					t.Errorf("Validate() = %v, want key %q among %q", err, k, got)
				}
			}
		})
	}
}
