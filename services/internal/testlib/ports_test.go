package testlib

import (
	"net"
	"strings"
	"testing"
)

func TestFreeAddr(t *testing.T) {
	addr := FreeAddr(t)
	if !strings.HasPrefix(addr, "127.0.0.1:") || strings.HasSuffix(addr, ":0") {
		t.Fatalf("FreeAddr() = %q, want 127.0.0.1:PORT", addr)
	}
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("listen on FreeAddr() = %q: %v", addr, err)
	}
	lis.Close()
}
