package grpcx

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/resolver"
	"google.golang.org/grpc/resolver/manual"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/postcove/postcove/services/internal/testlib"
	"github.com/postcove/postcove/services/internal/tlsconf"
)

// echoServer is a tiny service registered by hand (no protos): Echo returns
// its input, or panics when the input is "panic", or blocks until released
// when the input is "block". Watch, a server stream, panics.
type echoServer struct {
	started chan struct{} // receives when a "block" call starts
	release chan struct{} // closed to let "block" calls return
}

const echoService = "postcove.test.Echo"

func (s *echoServer) echo(ctx context.Context, in *wrapperspb.StringValue) (*wrapperspb.StringValue, error) {
	switch in.GetValue() {
	case "panic":
		panic("test panic")
	case "notfound":
		return nil, status.Error(codes.NotFound, "no such thing")
	case "block":
		s.started <- struct{}{}
		select {
		case <-s.release:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	return in, nil
}

func echoDesc() *grpc.ServiceDesc {
	return &grpc.ServiceDesc{
		ServiceName: echoService,
		HandlerType: (*any)(nil),
		Methods: []grpc.MethodDesc{{
			MethodName: "Echo",
			Handler: func(srv any, ctx context.Context, dec func(any) error, icpt grpc.UnaryServerInterceptor) (any, error) {
				in := new(wrapperspb.StringValue)
				if err := dec(in); err != nil {
					return nil, err
				}
				h := func(ctx context.Context, req any) (any, error) {
					return srv.(*echoServer).echo(ctx, req.(*wrapperspb.StringValue))
				}
				if icpt == nil {
					return h(ctx, in)
				}
				return icpt(ctx, in, &grpc.UnaryServerInfo{Server: srv, FullMethod: "/" + echoService + "/Echo"}, h)
			},
		}},
		Streams: []grpc.StreamDesc{{
			StreamName:    "Watch",
			ServerStreams: true,
			Handler: func(any, grpc.ServerStream) error {
				panic("test stream panic")
			},
		}},
	}
}

func callEcho(ctx context.Context, conn *grpc.ClientConn, msg string) (string, error) {
	out := new(wrapperspb.StringValue)
	err := conn.Invoke(ctx, "/"+echoService+"/Echo", wrapperspb.String(msg), out)
	return out.GetValue(), err
}

// syncBuffer is a bytes.Buffer the server's goroutines can log into while
// the test reads it.
type syncBuffer struct {
	mu  sync.Mutex // protects buf
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

type testServer struct {
	addr   string
	health *health.Server
	echo   *echoServer
	reg    *prometheus.Registry
	logs   *syncBuffer
	cancel context.CancelFunc
	done   chan error // Serve's result
}

// startServer runs NewServer + Serve on 127.0.0.1:0 until the test ends.
func startServer(t *testing.T, tlsCfg *tls.Config, drain time.Duration) *testServer {
	t.Helper()
	ts := &testServer{
		echo: &echoServer{started: make(chan struct{}, 1), release: make(chan struct{})},
		reg:  prometheus.NewRegistry(),
		logs: &syncBuffer{},
		done: make(chan error, 1),
	}
	log := slog.New(slog.NewJSONHandler(ts.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	srv, hs := NewServer(ServerOptions{TLS: tlsCfg, Logger: log, Registry: ts.reg})
	srv.RegisterService(echoDesc(), ts.echo)
	ts.health = hs
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ts.addr = lis.Addr().String()
	ctx, cancel := context.WithCancel(context.Background())
	ts.cancel = cancel
	go func() { ts.done <- Serve(ctx, srv, lis, drain) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-ts.done:
		case <-time.After(10 * time.Second):
			t.Error("Serve did not return after cancel")
		}
	})
	return ts
}

func dial(t *testing.T, addr string, tlsCfg *tls.Config) *grpc.ClientConn {
	t.Helper()
	conn, err := Dial(addr, tlsCfg)
	if err != nil {
		t.Fatalf("Dial(%s) = %v", addr, err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

func testContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func TestCheckHealth(t *testing.T) {
	ts := startServer(t, nil, time.Second)
	ctx := testContext(t)

	// The server starts NOT_SERVING until the service says it is ready.
	if err := CheckHealth(ctx, ts.addr, nil, ""); err == nil || !strings.Contains(err.Error(), "NOT_SERVING") {
		t.Errorf("CheckHealth() before SetServingStatus = %v, want NOT_SERVING", err)
	}

	ts.health.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)
	ts.health.SetServingStatus(echoService, healthpb.HealthCheckResponse_NOT_SERVING)
	tests := []struct {
		service string
		want    string // "" for nil, else a substring of the error
	}{
		{"", ""},
		{echoService, "NOT_SERVING"},
		{"postcove.unknown.v1.X", "NotFound"},
	}
	for _, tt := range tests {
		err := CheckHealth(ctx, ts.addr, nil, tt.service)
		if tt.want == "" && err != nil || tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)) {
			t.Errorf("CheckHealth(%q) = %v, want %q", tt.service, err, tt.want)
		}
	}
}

func TestCheckHealthNoServer(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	err := CheckHealth(ctx, testlib.FreeAddr(t), nil, "")
	if status.Code(errors.Unwrap(err)) != codes.Unavailable {
		t.Errorf("CheckHealth(nothing listening) = %v, want Unavailable", err)
	}
}

func TestPanicRecovery(t *testing.T) {
	ts := startServer(t, nil, time.Second)
	conn := dial(t, ts.addr, nil)
	ctx := testContext(t)

	if got, err := callEcho(ctx, conn, "hello"); err != nil || got != "hello" {
		t.Fatalf("Echo(hello) = %q, %v", got, err)
	}
	_, err := callEcho(ctx, conn, "panic")
	if status.Code(err) != codes.Internal || strings.Contains(err.Error(), "test panic") {
		t.Errorf("Echo(panic) = %v, want Internal without the panic value", err)
	}
	// The server survived and serves the next call on the same connection.
	if got, err := callEcho(ctx, conn, "again"); err != nil || got != "again" {
		t.Errorf("Echo(again) after a panic = %q, %v", got, err)
	}

	stream, err := conn.NewStream(ctx, &echoDesc().Streams[0], "/"+echoService+"/Watch")
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.CloseSend(); err != nil {
		t.Fatal(err)
	}
	if err := stream.RecvMsg(new(wrapperspb.StringValue)); status.Code(err) != codes.Internal {
		t.Errorf("Watch() = %v, want Internal", err)
	}
	if got, err := callEcho(ctx, conn, "still"); err != nil || got != "still" {
		t.Errorf("Echo(still) after a stream panic = %q, %v", got, err)
	}

	logs := ts.logs.String()
	for _, want := range []string{`"msg":"grpc handler panic"`, `"panic":"test panic"`, `"stack":"goroutine`, `"panic":"test stream panic"`} {
		if !strings.Contains(logs, want) {
			t.Errorf("logs lack %s:\n%s", want, logs)
		}
	}
}

func TestCallLogs(t *testing.T) {
	ts := startServer(t, nil, time.Second)
	conn := dial(t, ts.addr, nil)
	ctx := testContext(t)
	callEcho(ctx, conn, "hello")
	callEcho(ctx, conn, "notfound")
	callEcho(ctx, conn, "panic")

	tests := []struct{ code, level string }{
		{"OK", "DEBUG"},
		{"NotFound", "DEBUG"},
		{"Internal", "WARN"},
	}
	logs := ts.logs.String()
	for _, tt := range tests {
		found := false
		for line := range strings.Lines(logs) {
			if strings.Contains(line, `"msg":"grpc call"`) && strings.Contains(line, `"code":"`+tt.code+`"`) {
				found = true
				if !strings.Contains(line, `"level":"`+tt.level+`"`) || !strings.Contains(line, `"method":"/postcove.test.Echo/Echo"`) || !strings.Contains(line, `"duration":`) {
					t.Errorf("call log for %s = %s, want level %s, method and duration", tt.code, line, tt.level)
				}
			}
		}
		if !found {
			t.Errorf("no call log with code %s in:\n%s", tt.code, logs)
		}
	}
}

func TestMetrics(t *testing.T) {
	ts := startServer(t, nil, time.Second)
	conn := dial(t, ts.addr, nil)
	ctx := testContext(t)
	for _, msg := range []string{"a", "b", "notfound", "panic"} {
		callEcho(ctx, conn, msg)
	}

	counts, observed := echoMetrics(t, ts.reg)
	want := map[string]float64{"OK": 2, "NotFound": 1, "Internal": 1}
	for code, n := range want {
		if counts[code] != n {
			t.Errorf("grpc_server_handled_total{grpc_code=%q} = %v, want %v", code, counts[code], n)
		}
	}
	if observed != 4 {
		t.Errorf("grpc_server_handling_seconds count = %d, want 4", observed)
	}
}

// echoMetrics returns the Echo calls reg counted by code, and how many
// latencies it observed.
func echoMetrics(t *testing.T, reg *prometheus.Registry) (map[string]float64, uint64) {
	t.Helper()
	counts := map[string]float64{}
	var observed uint64
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range families {
		for _, m := range mf.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			if labels["grpc_service"] != echoService || labels["grpc_method"] != "Echo" || labels["grpc_type"] != "unary" {
				continue
			}
			switch mf.GetName() {
			case "grpc_server_handled_total":
				counts[labels["grpc_code"]] = m.GetCounter().GetValue()
			case "grpc_server_handling_seconds":
				observed = m.GetHistogram().GetSampleCount()
			}
		}
	}
	return counts, observed
}

func TestMetricsSharedRegistry(t *testing.T) {
	reg := prometheus.NewRegistry()
	// Two servers in one process must not panic on duplicate registration.
	NewServer(ServerOptions{Registry: reg})
	NewServer(ServerOptions{Registry: reg})
}

func TestMTLS(t *testing.T) {
	certs := testlib.NewCerts(t)
	srvCfg, err := tlsconf.ServerConfig(tlsconf.Files{Cert: certs.ServerCert, Key: certs.ServerKey, CA: certs.CA})
	if err != nil {
		t.Fatal(err)
	}
	ts := startServer(t, srvCfg, time.Second)
	ts.health.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)

	client := func(f tlsconf.Files) *tls.Config {
		cfg, err := tlsconf.ClientConfig(f, "")
		if err != nil {
			t.Fatal(err)
		}
		return cfg
	}
	other := testlib.NewCerts(t)
	tests := []struct {
		name string
		tls  *tls.Config
		ok   bool
	}{
		{"client certificate", client(tlsconf.Files{Cert: certs.ClientCert, Key: certs.ClientKey, CA: certs.CA}), true},
		{"no client certificate", client(tlsconf.Files{CA: certs.CA}), false},
		{"client certificate from another CA", client(tlsconf.Files{Cert: other.ClientCert, Key: other.ClientKey, CA: certs.CA}), false},
		{"plaintext", nil, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
			defer cancel()
			err := CheckHealth(ctx, ts.addr, tt.tls, "")
			if (err == nil) != tt.ok {
				t.Errorf("CheckHealth() = %v, want ok %v", err, tt.ok)
			}
			conn := dial(t, ts.addr, tt.tls)
			got, err := callEcho(ctx, conn, "over tls")
			if (err == nil && got == "over tls") != tt.ok {
				t.Errorf("Echo() = %q, %v, want ok %v", got, err, tt.ok)
			}
		})
	}
}

func TestServeGracefulShutdown(t *testing.T) {
	ts := startServer(t, nil, 5*time.Second)
	conn := dial(t, ts.addr, nil)
	ctx := testContext(t)

	// A call in flight when the shutdown starts completes.
	result := make(chan error, 1)
	go func() {
		_, err := callEcho(ctx, conn, "block")
		result <- err
	}()
	<-ts.echo.started
	ts.cancel()
	time.Sleep(50 * time.Millisecond) // let GracefulStop begin
	select {
	case err := <-ts.done:
		t.Fatalf("Serve returned %v while a call was in flight", err)
	default:
	}
	close(ts.echo.release)
	if err := <-result; err != nil {
		t.Errorf("in-flight call = %v, want it to complete", err)
	}
	select {
	case err := <-ts.done:
		if err != nil {
			t.Errorf("Serve() = %v, want nil after cancel", err)
		}
		ts.done <- err // for the cleanup
	case <-time.After(5 * time.Second):
		t.Fatal("Serve did not return after the last call ended")
	}
}

func TestServeDrainTimeout(t *testing.T) {
	ts := startServer(t, nil, 100*time.Millisecond)
	conn := dial(t, ts.addr, nil)
	ctx := testContext(t)

	result := make(chan error, 1)
	go func() {
		_, err := callEcho(ctx, conn, "block")
		result <- err
	}()
	<-ts.echo.started
	start := time.Now()
	ts.cancel()
	select {
	case err := <-ts.done:
		if err != nil {
			t.Errorf("Serve() = %v, want nil", err)
		}
		if d := time.Since(start); d > 3*time.Second {
			t.Errorf("Serve took %v to return with a 100ms drain", d)
		}
		ts.done <- err
	case <-time.After(5 * time.Second):
		t.Fatal("Serve did not return after the drain timeout")
	}
	if err := <-result; status.Code(err) != codes.Unavailable && status.Code(err) != codes.Canceled {
		t.Errorf("call cut by Stop = %v, want Unavailable", err)
	}
}

func TestServeListenerError(t *testing.T) {
	srv, _ := NewServer(ServerOptions{})
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	lis.Close()
	if err := Serve(t.Context(), srv, lis, time.Second); err == nil {
		t.Error("Serve(closed listener) = nil, want an error")
	}
}

func TestDialRoundRobin(t *testing.T) {
	a, b := startServer(t, nil, time.Second), startServer(t, nil, time.Second)
	// A resolver that answers with both servers, as DNS does for a name
	// with two A records.
	r := manual.NewBuilderWithScheme("twohosts")
	r.InitialState(resolver.State{Addresses: []resolver.Address{{Addr: a.addr}, {Addr: b.addr}}})
	conn, err := Dial("twohosts:///auth", nil, grpc.WithResolvers(r))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx := testContext(t)
	// round_robin sends only to connected backends, so the first calls may
	// all go to one; with pick_first (grpc's default) the other would never
	// get any.
	for range 200 {
		if _, err := callEcho(ctx, conn, "x"); err != nil {
			t.Fatal(err)
		}
		na, _ := echoMetrics(t, a.reg)
		nb, _ := echoMetrics(t, b.reg)
		if na["OK"] > 0 && nb["OK"] > 0 {
			return
		}
	}
	t.Error("200 calls all went to one of two servers, want them spread over both")
}

func TestTarget(t *testing.T) {
	tests := []struct{ addr, want string }{
		{"127.0.0.1:9100", "dns:///127.0.0.1:9100"},
		{"auth:9100", "dns:///auth:9100"},
		{"[::1]:9100", "dns:///[::1]:9100"},
		{"dns:///auth:9100", "dns:///auth:9100"},
		{"unix:///run/auth.sock", "unix:///run/auth.sock"},
		{"unix:auth.sock", "unix:auth.sock"},
		{"passthrough:///x:1", "passthrough:///x:1"},
	}
	for _, tt := range tests {
		if got := target(tt.addr); got != tt.want {
			t.Errorf("target(%q) = %q, want %q", tt.addr, got, tt.want)
		}
	}
}

func TestSplitMethod(t *testing.T) {
	s, m := splitMethod("/postcove.auth.v1.Auth/Authenticate")
	if s != "postcove.auth.v1.Auth" || m != "Authenticate" {
		t.Errorf("splitMethod() = %q, %q", s, m)
	}
}
