package grpcx

import (
	"context"
	"errors"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/status"
)

// serverMetrics counts calls and times them. The names and labels follow the
// go-grpc-middleware Prometheus provider, so existing dashboards work.
type serverMetrics struct {
	handled *prometheus.CounterVec
	latency *prometheus.HistogramVec
}

func newServerMetrics(reg prometheus.Registerer) *serverMetrics {
	m := &serverMetrics{
		handled: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "grpc_server_handled_total",
			Help: "gRPC calls completed on the server, by method and status code.",
		}, []string{"grpc_type", "grpc_service", "grpc_method", "grpc_code"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "grpc_server_handling_seconds",
			Help: "Time the server took to complete gRPC calls, by method.",
			// From a cached lookup (about a millisecond) to a password hash
			// (tens of milliseconds) to a stuck dependency (seconds).
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}, []string{"grpc_type", "grpc_service", "grpc_method"}),
	}
	m.handled = register(reg, m.handled)
	m.latency = register(reg, m.latency)
	return m
}

// register registers c, or returns the collector already registered under
// its name, so that two servers in one process (a service's API and admin
// ports) share the metrics instead of panicking.
func register[C prometheus.Collector](reg prometheus.Registerer, c C) C {
	if err := reg.Register(c); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			if existing, ok := are.ExistingCollector.(C); ok {
				return existing
			}
		}
		// Only a programming error (a clashing name with other labels)
		// gets here.
		panic(err)
	}
	return c
}

func (m *serverMetrics) unary(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	start := time.Now()
	resp, err := handler(ctx, req)
	m.observe("unary", info.FullMethod, start, err)
	return resp, err
}

func (m *serverMetrics) stream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	start := time.Now()
	err := handler(srv, ss)
	typ := "bidi_stream"
	switch {
	case info.IsClientStream && !info.IsServerStream:
		typ = "client_stream"
	case !info.IsClientStream && info.IsServerStream:
		typ = "server_stream"
	}
	m.observe(typ, info.FullMethod, start, err)
	return err
}

func (m *serverMetrics) observe(typ, fullMethod string, start time.Time, err error) {
	service, method := splitMethod(fullMethod)
	m.handled.WithLabelValues(typ, service, method, status.Code(err).String()).Inc()
	m.latency.WithLabelValues(typ, service, method).Observe(time.Since(start).Seconds())
}

// splitMethod splits "/package.Service/Method".
func splitMethod(full string) (service, method string) {
	full = strings.TrimPrefix(full, "/")
	if i := strings.LastIndexByte(full, '/'); i >= 0 {
		return full[:i], full[i+1:]
	}
	return "unknown", full
}
