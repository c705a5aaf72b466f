package metrics

import (
	"context"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// start serves reg on 127.0.0.1:0 and returns the base URL, and a function
// that stops the server and returns Serve's result.
func start(t *testing.T, reg *prometheus.Registry) (string, func() error) {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- ServeListener(ctx, lis, reg, nil) }()
	stop := func() error {
		cancel()
		select {
		case err := <-done:
			return err
		case <-time.After(10 * time.Second):
			t.Fatal("ServeListener did not return after cancel")
			return nil
		}
	}
	t.Cleanup(func() { cancel() })
	return "http://" + lis.Addr().String(), stop
}

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	return resp.StatusCode, string(body)
}

func TestServe(t *testing.T) {
	reg := NewRegistry()
	deliveries := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "postcove_test_deliveries_total",
		Help: "Deliveries, for the test.",
	}, []string{"result"})
	reg.MustRegister(deliveries)
	deliveries.WithLabelValues("ok").Add(3)

	base, stop := start(t, reg)
	tests := []struct {
		path string
		code int
		want []string
	}{
		{"/metrics", 200, []string{
			`postcove_test_deliveries_total{result="ok"} 3`,
			"go_goroutines ",
			"process_open_fds ",
		}},
		{"/healthz", 200, []string{"ok"}},
		{"/other", 404, nil},
	}
	for _, tt := range tests {
		code, body := get(t, base+tt.path)
		if code != tt.code {
			t.Errorf("GET %s = %d, want %d", tt.path, code, tt.code)
		}
		for _, w := range tt.want {
			if !strings.Contains(body, w) {
				t.Errorf("GET %s lacks %q:\n%.2000s", tt.path, w, body)
			}
		}
	}
	if _, body := get(t, base+"/healthz"); body != "ok" {
		t.Errorf("GET /healthz = %q, want ok", body)
	}

	if err := stop(); err != nil {
		t.Errorf("ServeListener() = %v, want nil after cancel", err)
	}
	if _, err := http.Get(base + "/healthz"); err == nil {
		t.Error("server still answers after shutdown")
	}
}

func TestServeAddrInUse(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer lis.Close()
	err = Serve(t.Context(), lis.Addr().String(), NewRegistry(), nil)
	if err == nil || !strings.Contains(err.Error(), lis.Addr().String()) {
		t.Errorf("Serve(address in use) = %v, want an error naming it", err)
	}
}

func TestServeAddr(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if err := Serve(ctx, "127.0.0.1:0", NewRegistry(), nil); err != nil {
		t.Errorf("Serve(cancelled) = %v, want nil", err)
	}
}

func TestHandlerTwice(t *testing.T) {
	// Building the handler twice on one registry (a restart in a test)
	// must not panic on its own metrics.
	reg := NewRegistry()
	Handler(reg, nil)
	Handler(reg, nil)
}
