package testlib

import (
	"net"
	"testing"
)

// FreeAddr returns "127.0.0.1:PORT" for a port that was free at the time of
// the call, for servers that run in a subprocess and must be told their
// address. In-process servers should listen on 127.0.0.1:0 instead: another
// process can take the port between this call and the server's listen.
func FreeAddr(t testing.TB) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("find a free port: %v", err)
	}
	addr := lis.Addr().String()
	if err := lis.Close(); err != nil {
		t.Fatalf("find a free port: %v", err)
	}
	return addr
}
