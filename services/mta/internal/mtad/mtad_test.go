package mtad

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/postcove/postcove/services/internal/grpcx"
	"github.com/postcove/postcove/services/internal/logging"
	"github.com/postcove/postcove/services/internal/testlib"
)

// TestRun: the service reports SERVING only while auth answers and the
// queue directory takes files, counts SMTP refusals in its metrics, and
// returns nil when its context ends.
func TestRun(t *testing.T) {
	auth := testlib.StartAuth(t)
	auth.Domain(t, "example.org")
	cfg := validConfig(t)
	cfg.Hostname = "mx.example.org"
	cfg.Listen = Listen{SMTP: testlib.FreeAddr(t), Submission: testlib.FreeAddr(t), Submissions: testlib.FreeAddr(t),
		GRPC: testlib.FreeAddr(t), Metrics: testlib.FreeAddr(t)}
	cfg.Auth.Addr = auth.Addr
	cfg.Auth.HealthInterval = 100 * time.Millisecond
	cfg.Queue.Dir = filepath.Join(testlib.TempDir(t), "queue")
	cfg.LMTP.Addrs = []string{testlib.FreeAddr(t)} // nobody there: mail would stay queued
	cfg.DNS.Resolver = testlib.StartDNS(t, "").Addr
	cfg.ShutdownTimeout = 5 * time.Second
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	log, err := logging.New(io.Discard, "debug")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- Run(ctx, cfg, log) }()

	serving := func(want bool) {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		for {
			cctx, ccancel := context.WithTimeout(context.Background(), time.Second)
			err := grpcx.CheckHealth(cctx, cfg.Listen.GRPC, nil, "")
			ccancel()
			if (err == nil) == want {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("health: %v, want SERVING=%v", err, want)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	serving(true)
	auth.Stop()
	serving(false)
	auth.Start()
	serving(true)
	moved := cfg.Queue.Dir + ".away"
	if err := os.Rename(cfg.Queue.Dir, moved); err != nil {
		t.Fatal(err)
	}
	serving(false)
	if err := os.Rename(moved, cfg.Queue.Dir); err != nil {
		t.Fatal(err)
	}
	serving(true)

	// A relay attempt on port 25, counted by reason.
	c, err := net.DialTimeout("tcp", cfg.Listen.SMTP, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(20 * time.Second))
	r := bufio.NewReader(c)
	io.WriteString(c, "HELO client.test\r\nMAIL FROM:<a@remote.example>\r\nRCPT TO:<b@remote.example>\r\nQUIT\r\n")
	var replies []string
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			break
		}
		replies = append(replies, strings.TrimSpace(line))
	}
	if len(replies) < 4 || !strings.HasPrefix(replies[3], "554 5.7.1") {
		t.Errorf("relay attempt replies: %q", replies)
	}
	resp, err := http.Get("http://" + cfg.Listen.Metrics + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{
		`postcove_mta_smtp_rejected_total{listener="inbound",reason="relay_denied"} 1`,
		`postcove_mta_smtp_connections_total{listener="inbound"} 1`,
		`postcove_mta_auth_up 1`,
	} {
		if !strings.Contains(string(body), want) {
			t.Errorf("metrics lack %s", want)
		}
	}

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Run = %v, want nil", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Run did not return after cancel")
	}
}
