package imapd

import (
	"errors"
	"net"
	"os"
	"testing"
	"time"

	"github.com/postcove/postcove/services/internal/testlib"
)

// TestWriteDeadline: the write deadline imapserver sets is recorded and
// applied only when output reaches the socket, but it still ends a write
// to a client that reads nothing.
func TestWriteDeadline(t *testing.T) {
	l, err := net.Listen("tcp", testlib.FreeAddr(t))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := l.Accept()
		if err == nil {
			accepted <- c
		}
		close(accepted)
	}()
	client, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close() // never read: the server's writes fill the socket
	conn, ok := <-accepted
	if !ok {
		t.Fatal("accept failed")
	}
	defer conn.Close()
	tc := &trackedConn{Conn: conn}

	done := make(chan error, 1)
	go func() {
		tc.SetWriteDeadline(time.Now().Add(200 * time.Millisecond))
		chunk := make([]byte, 64<<10)
		for {
			if _, err := tc.Write(chunk); err != nil {
				done <- err
				return
			}
		}
	}()
	select {
	case err := <-done:
		if !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Errorf("Write to a client that reads nothing = %v, want a deadline error", err)
		}
	case <-time.After(time.Minute):
		t.Fatal("Write to a client that reads nothing still blocked after a minute: the deadline was not applied")
	}
}
