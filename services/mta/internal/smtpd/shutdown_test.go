package smtpd

import (
	"context"
	"net"
	"strings"
	"testing"
	"time"
)

// TestShutdown: idle sessions are closed at once, a message in the middle
// of DATA is finished and queued, then its session is closed too.
func TestShutdown(t *testing.T) {
	a := startAuth(t)
	e := startServer(t, a, Inbound, nil)
	idle := dial(t, e)
	idle.cmd("EHLO client.test", "250")
	busy := dial(t, e)
	busy.cmd("EHLO client.test", "250")
	busy.cmd("MAIL FROM:<s@remote.example>", "250 ")
	busy.cmd("RCPT TO:<alice@example.org>", "250 ")
	busy.cmd("DATA", "354 ")
	busy.send("Subject: in flight\r\n\r\nfirst half\r\n")

	done := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		done <- e.srv.Shutdown(ctx)
	}()
	if !idle.closed() {
		t.Fatal("idle session still open after Shutdown began")
	}
	if c, err := net.DialTimeout("tcp", e.addr, time.Second); err == nil {
		c.Close()
		t.Error("new connection accepted after Shutdown began")
	}
	busy.send("second half\r\n.\r\n")
	busy.expect("250 ")
	if !busy.closed() {
		t.Error("session still open after its transaction ended")
	}
	if err := <-done; err != nil {
		t.Errorf("Shutdown = %v, want nil", err)
	}
	if m := e.spool.one(t); !strings.HasSuffix(m.body, "first half\r\nsecond half\r\n") {
		t.Errorf("queued body = %q", m.body)
	}
}

// TestShutdownTimeout: a session that does not finish in time is cut.
func TestShutdownTimeout(t *testing.T) {
	a := startAuth(t)
	e := startServer(t, a, Inbound, nil)
	busy := dial(t, e)
	busy.cmd("EHLO client.test", "250")
	busy.cmd("MAIL FROM:<s@remote.example>", "250 ")
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	if err := e.srv.Shutdown(ctx); err == nil {
		t.Error("Shutdown = nil, want the deadline error")
	}
	if !busy.closed() {
		t.Error("session still open after the shutdown deadline")
	}
}
