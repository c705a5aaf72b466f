package servicecmd

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	authv1 "github.com/postcove/postcove/proto/postcove/auth/v1"
	"github.com/postcove/postcove/services/internal/config"
	"github.com/postcove/postcove/services/internal/grpcx"
	"github.com/postcove/postcove/services/internal/testlib"
)

// TestAuthConfigValidate: each bad value is reported under its key below
// the table's, which the caller names.
func TestAuthConfigValidate(t *testing.T) {
	tests := []struct {
		name string
		edit func(*AuthConfig)
		want []string // keys reported, nil for none
	}{
		{"default", func(*AuthConfig) {}, nil},
		{"address missing", func(a *AuthConfig) { a.Addr = "" }, []string{"auth.addr"}},
		{"address without port", func(a *AuthConfig) { a.Addr = "auth" }, []string{"auth.addr"}},
		{"dns target", func(a *AuthConfig) { a.Addr = "dns:///auth:9100" }, nil},
		{"unix socket", func(a *AuthConfig) { a.Addr = "unix:///run/auth.sock" }, nil},
		{"tls files", func(a *AuthConfig) { a.TLS.CA = "/nonexistent/ca.pem" }, []string{"auth.tls.ca_file"}},
		{"health interval", func(a *AuthConfig) { a.HealthInterval = 0 }, []string{"auth.health_interval"}},
		{"everything", func(a *AuthConfig) { *a = AuthConfig{TLS: a.TLS} }, []string{"auth.addr", "auth.health_interval"}},
	}
	for _, tt := range tests {
		a := DefaultAuthConfig()
		tt.edit(&a)
		var errs config.Errors
		a.Validate(&errs, "auth")
		var got []string
		var ve *config.ValidationError
		if errors.As(errs.Err(), &ve) {
			for _, f := range ve.Fields {
				got = append(got, f.Key)
			}
		}
		if strings.Join(got, ",") != strings.Join(tt.want, ",") {
			t.Errorf("%s: Validate reported %q, want %q (%v)", tt.name, got, tt.want, errs.Err())
		}
	}
}

// TestAuthConfigDial: a bad TLS file names auth.tls; a good config dials
// lazily, so auth need not be up yet.
func TestAuthConfigDial(t *testing.T) {
	a := DefaultAuthConfig()
	a.TLS.CA = "/nonexistent/ca.pem"
	if _, err := a.Dial("auth"); err == nil || !strings.HasPrefix(err.Error(), "auth.tls:") {
		t.Errorf("Dial with a missing CA = %v, want an error naming auth.tls", err)
	}
	a = DefaultAuthConfig()
	a.Addr = testlib.FreeAddr(t) // nobody there
	conn, err := a.Dial("auth")
	if err != nil {
		t.Fatalf("Dial of an address nobody serves = %v, want a lazy connection", err)
	}
	conn.Close()
}

// TestListeners: a taken port names its setting, an empty address is a
// disabled listener, and CloseAll closes what was bound.
func TestListeners(t *testing.T) {
	var ls Listeners
	lis, err := ls.Listen("listen.one", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ls.Listen("listen.two", lis.Addr().String()); err == nil || !strings.HasPrefix(err.Error(), "listen.two:") {
		t.Errorf("Listen on a taken port = %v, want an error naming listen.two", err)
	}
	if off, err := ls.Optional("listen.three", ""); off != nil || err != nil {
		t.Errorf("Optional(\"\") = %v, %v, want nil, nil", off, err)
	}
	if len(ls) != 1 {
		t.Errorf("bound %d listeners, want 1", len(ls))
	}
	ls.CloseAll()
	if c, err := net.DialTimeout("tcp", lis.Addr().String(), time.Second); err == nil {
		c.Close()
		t.Errorf("listener still accepts after CloseAll")
	}
}

// stubServer is a ProtocolServer that accepts until shut down, or fails
// at once when fail is set.
type stubServer struct {
	fail     error
	lis      net.Listener // the one it serves, closed by Shutdown
	shutdown atomic.Bool
}

func (s *stubServer) Serve(lis net.Listener) error {
	if s.fail != nil {
		return s.fail
	}
	for {
		c, err := lis.Accept()
		if err != nil {
			return err
		}
		c.Close()
	}
}

func (s *stubServer) Shutdown(context.Context) error {
	s.shutdown.Store(true)
	return s.lis.Close()
}

// TestServe: a server stopping by itself is an error naming its listener;
// the end of ctx shuts it down and is no error.
func TestServe(t *testing.T) {
	log := slog.New(slog.DiscardHandler)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer lis.Close()
	err = Serve(context.Background(), "listen.lmtp", &stubServer{fail: errors.New("boom")}, lis, time.Second, log)
	if err == nil || err.Error() != "listen.lmtp: boom" {
		t.Errorf("Serve of a failing server = %v, want listen.lmtp: boom", err)
	}

	srv := &stubServer{lis: lis}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Serve(ctx, "listen.lmtp", srv, lis, time.Second, log) }()
	c, err := net.DialTimeout("tcp", lis.Addr().String(), 5*time.Second) // served
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	cancel()
	select {
	case err := <-done:
		if err != nil || !srv.shutdown.Load() {
			t.Errorf("Serve after cancel = %v (shut down: %v), want nil after Shutdown", err, srv.shutdown.Load())
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Serve did not return after cancel")
	}
}

// TestAuthHealth: the service is SERVING only while auth says SERVING and
// its own check passes, follows every change without a restart, counts
// auth's state in its gauge, and says NOT_SERVING for good once ctx ends.
func TestAuthHealth(t *testing.T) {
	// A stand-in for auth: a real gRPC server whose health we set.
	authSrv, authHS := grpcx.NewServer(grpcx.ServerOptions{})
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	served := make(chan error, 1)
	go func() { served <- grpcx.Serve(ctx, authSrv, lis, time.Second) }()
	t.Cleanup(func() {
		cancel()
		if err := <-served; err != nil {
			t.Errorf("auth stand-in: %v", err)
		}
	})
	authName := authv1.AuthService_ServiceDesc.ServiceName
	authHS.SetServingStatus(authName, healthpb.HealthCheckResponse_SERVING)

	a := DefaultAuthConfig()
	a.Addr = lis.Addr().String()
	conn, err := a.Dial("auth")
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	var localErr atomic.Pointer[error]
	local := func(context.Context) error {
		if p := localErr.Load(); p != nil {
			return *p
		}
		return nil
	}
	reg := prometheus.NewRegistry()
	h := NewAuthHealth(conn, 20*time.Millisecond, local, reg, "demo")
	hs := health.NewServer()
	wctx, wcancel := context.WithCancel(context.Background())
	watched := make(chan struct{})
	go func() {
		h.Watch(wctx, hs, slog.New(slog.DiscardHandler))
		close(watched)
	}()
	defer func() {
		wcancel()
		<-watched
	}()

	status := func(want healthpb.HealthCheckResponse_ServingStatus, up float64) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for {
			resp, err := hs.Check(context.Background(), &healthpb.HealthCheckRequest{})
			if err == nil && resp.GetStatus() == want && authUp(t, reg) == up {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("health %v (%v), auth_up %v; want %v, auth_up %v", resp.GetStatus(), err, authUp(t, reg), want, up)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	status(healthpb.HealthCheckResponse_SERVING, 1)
	authHS.SetServingStatus(authName, healthpb.HealthCheckResponse_NOT_SERVING)
	status(healthpb.HealthCheckResponse_NOT_SERVING, 0)
	authHS.SetServingStatus(authName, healthpb.HealthCheckResponse_SERVING)
	status(healthpb.HealthCheckResponse_SERVING, 1)
	lost := errors.New("store.root: gone")
	localErr.Store(&lost)
	status(healthpb.HealthCheckResponse_NOT_SERVING, 1) // auth is fine, the service is not
	if err := h.Check(context.Background()); !errors.Is(err, lost) {
		t.Errorf("Check with the local check failing = %v, want %v", err, lost)
	}
	localErr.Store(nil)
	status(healthpb.HealthCheckResponse_SERVING, 1)

	wcancel()
	<-watched
	resp, err := hs.Check(context.Background(), &healthpb.HealthCheckRequest{})
	if err != nil || resp.GetStatus() != healthpb.HealthCheckResponse_NOT_SERVING {
		t.Errorf("health after the watch ended = %v (%v), want NOT_SERVING", resp.GetStatus(), err)
	}
}

// authUp reads the gauge postcove_demo_auth_up from reg; -1 when it is
// not there.
func authUp(t *testing.T, reg *prometheus.Registry) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == "postcove_demo_auth_up" && len(mf.GetMetric()) == 1 {
			return mf.GetMetric()[0].GetGauge().GetValue()
		}
	}
	return -1
}

// TestRunAll: the first part to fail cancels the others; RunAll returns
// once all have returned, with every failure; ending ctx is no failure.
func TestRunAll(t *testing.T) {
	boom := errors.New("boom")
	var stopped atomic.Int32
	waiter := func(ctx context.Context) error {
		<-ctx.Done()
		stopped.Add(1)
		return nil
	}
	err := runAll(context.Background(), waiter, func(context.Context) error { return boom }, waiter)
	if !errors.Is(err, boom) || stopped.Load() != 2 {
		t.Errorf("runAll with a failing part = %v, %d others stopped; want boom, 2", err, stopped.Load())
	}

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- runAll(ctx, waiter, waiter) }()
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("runAll after cancel = %v, want nil", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("runAll did not return after cancel")
	}
}
