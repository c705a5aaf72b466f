package servicecmd

import (
	"fmt"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"

	"github.com/postcove/postcove/services/internal/config"
	"github.com/postcove/postcove/services/internal/grpcx"
	"github.com/postcove/postcove/services/internal/tlsconf"
)

// AuthConfig is the [auth] table of a service that asks the auth service
// (mailbox and mta): how to reach it and how often to ask whether it
// serves. Its keys are auth.addr, auth.tls.*, auth.server_name and
// auth.health_interval, in the file and (with the service's prefix) in the
// environment.
type AuthConfig struct {
	// Addr is a gRPC target: host:port ("auth:9100"; every address of the
	// name is used), or "unix:///path".
	Addr string `toml:"addr"`
	// TLS: ca_file verifies auth's certificate, cert_file and key_file are
	// this service's client certificate (mTLS). All empty: plaintext.
	TLS tlsconf.Files `toml:"tls"`
	// ServerName is the name auth's certificate must carry; default the
	// host of Addr.
	ServerName string `toml:"server_name"`
	// HealthInterval is how often auth is asked whether it serves, for
	// this service's own health.
	HealthInterval time.Duration `toml:"health_interval"`
}

// DefaultAuthConfig reaches auth at its `make run` port (DESIGN.md) in
// plaintext and asks after its health every two seconds.
func DefaultAuthConfig() AuthConfig {
	return AuthConfig{Addr: "127.0.0.1:9100", HealthInterval: 2 * time.Second}
}

// Validate records in errs what is wrong with the table, each problem
// under its key below key ("auth": auth.addr, auth.tls.ca_file, ...).
func (a AuthConfig) Validate(errs *config.Errors, key string) {
	addrKey := config.Join(key, "addr")
	switch {
	case a.Addr == "":
		errs.Add(addrKey, "missing address (want host:port)")
	case !strings.Contains(a.Addr, "://") && !strings.HasPrefix(a.Addr, "unix:"):
		config.CheckAddr(errs, addrKey, a.Addr)
	}
	a.TLS.Validate(errs, config.Join(key, "tls"))
	if a.HealthInterval <= 0 {
		errs.Add(config.Join(key, "health_interval"), "must be a positive duration, got %s", a.HealthInterval)
	}
}

// Dial returns a connection to auth. It connects lazily and keeps
// retrying every few seconds while auth is down, so the service may start
// first (start order is not a correctness condition). key names the table
// in errors, as in Validate.
func (a AuthConfig) Dial(key string) (*grpc.ClientConn, error) {
	tlsCfg, err := tlsconf.ClientConfig(a.TLS, a.ServerName)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", config.Join(key, "tls"), err)
	}
	// gRPC's default backoff grows to two minutes, which would keep mail
	// tempfailing (451) for up to two minutes after auth is back; auth is
	// a local service, so trying every few seconds costs nothing.
	retry := grpc.ConnectParams{
		Backoff:           backoff.Config{BaseDelay: 250 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: 3 * time.Second},
		MinConnectTimeout: 5 * time.Second,
	}
	conn, err := grpcx.Dial(a.Addr, tlsCfg, grpc.WithConnectParams(retry))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", config.Join(key, "addr"), err)
	}
	return conn, nil
}
