// Package metrics serves a service's Prometheus metrics over HTTP (the text
// exposition format at /metrics) with a liveness answer at /healthz.
//
// There is no global registry: each service makes one with NewRegistry,
// hands it to whatever records metrics (grpcx.ServerOptions.Registry, its
// own collectors), and serves it here. Tests get a fresh one each.
package metrics

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/postcove/postcove/services/internal/logging"
)

// shutdownTimeout bounds how long a scrape in progress may delay shutdown.
const shutdownTimeout = 5 * time.Second

// NewRegistry returns a registry holding the Go runtime and process
// collectors (goroutines, memory, GC, open file descriptors, CPU time).
func NewRegistry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	return reg
}

// Handler serves reg at /metrics and "ok" at /healthz. It also counts its own
// scrapes in reg (promhttp_metric_handler_*).
func Handler(reg *prometheus.Registry, log *slog.Logger) http.Handler {
	if log == nil {
		log = logging.Discard()
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.InstrumentMetricHandler(reg, promhttp.HandlerFor(reg, promhttp.HandlerOpts{
		Registry: reg,
		ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	})))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		io.WriteString(w, "ok")
	})
	return mux
}

// Serve listens on addr and serves Handler until ctx is done, then shuts
// down gracefully. It returns nil after such a shutdown.
func Serve(ctx context.Context, addr string, reg *prometheus.Registry, log *slog.Logger) error {
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("metrics: %w", err)
	}
	return ServeListener(ctx, lis, reg, log)
}

// ServeListener is Serve on a listener the caller opened, for tests that
// listen on 127.0.0.1:0 and need the address before serving. It closes lis.
func ServeListener(ctx context.Context, lis net.Listener, reg *prometheus.Registry, log *slog.Logger) error {
	if log == nil {
		log = logging.Discard()
	}
	srv := &http.Server{
		Handler:           Handler(reg, log),
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
		BaseContext:       func(net.Listener) context.Context { return context.WithoutCancel(ctx) },
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(lis) }()
	log.Info("metrics listening", "addr", lis.Addr().String())

	select {
	case err := <-errc:
		return fmt.Errorf("metrics: serve on %s: %w", lis.Addr(), err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), shutdownTimeout)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		srv.Close()
	}
	if err := <-errc; !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("metrics: serve on %s: %w", lis.Addr(), err)
	}
	return nil
}
