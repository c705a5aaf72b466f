// Package authd wires the auth service together: configuration, the store,
// the gRPC server, health and metrics. cmd/auth only parses flags and calls
// Run.
package authd

import (
	"runtime"
	"time"

	"github.com/postcove/postcove/services/internal/config"
	"github.com/postcove/postcove/services/internal/tlsconf"
)

// EnvPrefix prefixes the environment variables that override the config
// file: POSTCOVE_AUTH_DATABASE_DSN overrides database.dsn, and so on.
const EnvPrefix = "POSTCOVE_AUTH"

// Config is the auth service's configuration file (TOML).
type Config struct {
	// LogLevel is debug, info, warn or error.
	LogLevel string `toml:"log_level"`
	Listen   Listen `toml:"listen"`
	// TLS for the gRPC listener. With ca_file set, clients must present a
	// certificate signed by it (mTLS).
	TLS      tlsconf.Files `toml:"tls"`
	Database Database      `toml:"database"`
	Lockout  Lockout       `toml:"lockout"`
	Resolve  Resolve       `toml:"resolve"`
	// MaxConcurrentLogins bounds password verifications in flight.
	MaxConcurrentLogins int `toml:"max_concurrent_logins"`
	// ShutdownTimeout bounds the wait for in-flight calls on SIGTERM.
	ShutdownTimeout time.Duration `toml:"shutdown_timeout"`
}

// Listen holds the listen addresses.
type Listen struct {
	GRPC    string `toml:"grpc"`    // gRPC API and health
	Metrics string `toml:"metrics"` // Prometheus /metrics; "" disables
}

// Database selects the store.
type Database struct {
	// Driver is "sqlite" (embedded, the default) or "mysql" (MySQL/MariaDB).
	Driver string `toml:"driver"`
	// DSN is a file path for sqlite, or a go-sql-driver/mysql DSN such as
	// "postcove:secret@tcp(db:3306)/postcove".
	DSN string `toml:"dsn"`
	// HealthInterval is how often the database is pinged for the health
	// status.
	HealthInterval time.Duration `toml:"health_interval"`
}

// Lockout is the brute-force policy; see package lockout.
type Lockout struct {
	IPThreshold      int           `toml:"ip_threshold"`
	AccountThreshold int           `toml:"account_threshold"`
	IPBase           time.Duration `toml:"ip_base"`
	IPMax            time.Duration `toml:"ip_max"`
	AccountBase      time.Duration `toml:"account_base"`
	AccountMax       time.Duration `toml:"account_max"`
	ForgetAfter      time.Duration `toml:"forget_after"`
}

// Resolve configures recipient resolution.
type Resolve struct {
	// TagSeparator starts the +tag of plus addressing; "" disables it.
	TagSeparator string `toml:"tag_separator"`
	// CacheTTL is how long answers are reused; 0 disables the cache.
	CacheTTL time.Duration `toml:"cache_ttl"`
}

// DefaultConfig is the configuration `make run` uses: SQLite under ./data
// and the local ports of DESIGN.md.
func DefaultConfig() Config {
	return Config{
		LogLevel: "info",
		Listen:   Listen{GRPC: "127.0.0.1:9100", Metrics: "127.0.0.1:9200"},
		Database: Database{Driver: "sqlite", DSN: "data/auth.db", HealthInterval: 2 * time.Second},
		Lockout: Lockout{
			IPThreshold: 5, IPBase: time.Minute, IPMax: time.Hour,
			AccountThreshold: 10, AccountBase: time.Minute, AccountMax: 15 * time.Minute,
			ForgetAfter: 24 * time.Hour,
		},
		Resolve: Resolve{TagSeparator: "+", CacheTTL: 5 * time.Second},
		// argon2id with p=1 keeps one core busy per login: more logins in
		// flight than cores add memory, not throughput.
		MaxConcurrentLogins: runtime.NumCPU(),
		ShutdownTimeout:     10 * time.Second,
	}
}

// Validate checks every field and names each bad one.
func (c *Config) Validate() error {
	var errs config.Errors
	switch c.LogLevel {
	case "debug", "info", "warn", "error":
	default:
		errs.Add("log_level", "must be debug, info, warn or error, got %q", c.LogLevel)
	}
	config.CheckAddr(&errs, "listen.grpc", c.Listen.GRPC)
	if c.Listen.Metrics != "" {
		config.CheckAddr(&errs, "listen.metrics", c.Listen.Metrics)
	}
	c.TLS.Validate(&errs, "tls")
	switch c.Database.Driver {
	case "sqlite", "mysql":
	default:
		errs.Add("database.driver", "must be sqlite or mysql, got %q", c.Database.Driver)
	}
	if c.Database.DSN == "" {
		errs.Add("database.dsn", "is required")
	}
	positive(&errs, "database.health_interval", c.Database.HealthInterval)
	l := c.Lockout
	for key, v := range map[string]int{"lockout.ip_threshold": l.IPThreshold, "lockout.account_threshold": l.AccountThreshold} {
		if v < 0 {
			errs.Add(key, "must be 0 (off) or more, got %d", v)
		}
	}
	for key, v := range map[string]time.Duration{
		"lockout.ip_base": l.IPBase, "lockout.ip_max": l.IPMax,
		"lockout.account_base": l.AccountBase, "lockout.account_max": l.AccountMax,
		"lockout.forget_after": l.ForgetAfter,
	} {
		positive(&errs, key, v)
	}
	if l.IPMax < l.IPBase {
		errs.Add("lockout.ip_max", "must not be less than lockout.ip_base")
	}
	if l.AccountMax < l.AccountBase {
		errs.Add("lockout.account_max", "must not be less than lockout.account_base")
	}
	if len(c.Resolve.TagSeparator) > 1 {
		errs.Add("resolve.tag_separator", "must be one character or empty, got %q", c.Resolve.TagSeparator)
	}
	if c.Resolve.CacheTTL < 0 {
		errs.Add("resolve.cache_ttl", "must not be negative")
	}
	if c.MaxConcurrentLogins < 1 {
		errs.Add("max_concurrent_logins", "must be at least 1, got %d", c.MaxConcurrentLogins)
	}
	positive(&errs, "shutdown_timeout", c.ShutdownTimeout)
	return errs.Err()
}

func positive(errs *config.Errors, key string, d time.Duration) {
	if d <= 0 {
		errs.Add(key, "must be a positive duration, got %s", d)
	}
}
