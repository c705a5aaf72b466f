package testlib

import (
	"fmt"
	"math/rand/v2"
	"net"
	"testing"
)

// Ports for FreeAddr come from below Linux's default ephemeral range
// (32768-60999, net.ipv4.ip_local_port_range). A port from the ephemeral
// range can be handed to any outgoing connection or ":0" listener on the
// machine the moment our server lets go of it, so a server that is killed
// and restarted on "its" port could find it taken. Below the range only
// another explicit choice like this one can collide, and we check that the
// port binds.
const (
	portMin = 20000
	portMax = 32767
)

// FreeAddr returns "127.0.0.1:PORT" for a port that was free at the time of
// the call, for servers that run in a subprocess and must be told their
// address, and that may be restarted on it. In-process servers should listen
// on 127.0.0.1:0 instead.
func FreeAddr(t testing.TB) string {
	t.Helper()
	var lastErr error
	for range 100 {
		addr := fmt.Sprintf("127.0.0.1:%d", portMin+rand.IntN(portMax-portMin+1))
		lis, err := net.Listen("tcp", addr)
		if err != nil {
			lastErr = err
			continue
		}
		if err := lis.Close(); err != nil {
			t.Fatalf("find a free port: %v", err)
		}
		return addr
	}
	t.Fatalf("find a free port: %v", lastErr)
	return ""
}
