package grpcx

import (
	"context"
	"crypto/tls"
	"fmt"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/keepalive"
)

// defaultServiceConfig balances calls over every resolved address instead of
// grpc's default pick_first, which would send them all to the first replica.
const defaultServiceConfig = `{"loadBalancingConfig": [{"round_robin": {}}]}`

// Dial returns a client connection to addr. It connects lazily (the first
// call connects, so a service may start before its dependency), with TLS
// when tlsCfg is set and plaintext otherwise, keepalive pings, and
// round-robin balancing over every address the name resolves to, so that
// "auth:9100" with several replicas behind it spreads calls over them.
//
// An addr without a scheme is resolved with "dns:///"; pass "unix:///path"
// or "passthrough:///addr" to choose otherwise. opts come last and win.
func Dial(addr string, tlsCfg *tls.Config, opts ...grpc.DialOption) (*grpc.ClientConn, error) {
	creds := insecure.NewCredentials()
	if tlsCfg != nil {
		creds = credentials.NewTLS(tlsCfg)
	}
	dopts := []grpc.DialOption{
		grpc.WithTransportCredentials(creds),
		grpc.WithKeepaliveParams(keepalive.ClientParameters{
			Time:                clientPingTime,
			Timeout:             clientPingTimeout,
			PermitWithoutStream: true,
		}),
		grpc.WithDefaultServiceConfig(defaultServiceConfig),
	}
	conn, err := grpc.NewClient(target(addr), append(dopts, opts...)...)
	if err != nil {
		return nil, fmt.Errorf("grpc client for %s: %w", addr, err)
	}
	return conn, nil
}

// target adds the dns scheme to a bare host:port. grpc.NewClient defaults
// to it today, but the round-robin balancing only means something with a
// resolver that returns every address, so it is spelled out.
func target(addr string) string {
	if strings.Contains(addr, "://") || strings.HasPrefix(addr, "unix:") {
		return addr
	}
	return "dns:///" + addr
}

// CheckHealth asks the grpc.health.v1 service at addr about service ("" for
// the whole server) and returns nil only when it answers SERVING. Every
// binary's `healthcheck` subcommand uses it: the runtime image has no curl
// and no grpc_health_probe. Give ctx a deadline.
func CheckHealth(ctx context.Context, addr string, tlsCfg *tls.Config, service string) error {
	conn, err := Dial(addr, tlsCfg)
	if err != nil {
		return err
	}
	defer conn.Close()
	resp, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{Service: service})
	if err != nil {
		return fmt.Errorf("health check %s (service %q): %w", addr, service, err)
	}
	if s := resp.GetStatus(); s != healthpb.HealthCheckResponse_SERVING {
		return fmt.Errorf("health check %s (service %q): %s", addr, service, s)
	}
	return nil
}
