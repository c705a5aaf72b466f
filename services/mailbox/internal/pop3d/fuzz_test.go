package pop3d

import (
	"bytes"
	"errors"
	"io"
	"net"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/postcove/postcove/services/mailbox/internal/store/memstore"
)

// FuzzSession feeds arbitrary client bytes to a server over a loopback
// connection (memstore, the fake authenticator, plaintext logins allowed so
// that the fuzzer can reach the TRANSACTION state) and checks that the
// server neither panics nor hangs and only ever answers in POP3's shape:
// +OK, -ERR or "+ " lines, each multi-line answer closed by ".", every
// line CRLF-terminated, status lines within RFC 2449's 512 octets.
func FuzzSession(f *testing.F) {
	login := "USER " + testUser + "\r\nPASS " + testPass + "\r\n"
	for _, s := range []string{
		"CAPA\r\nQUIT\r\n",
		login + "STAT\r\nLIST\r\nUIDL\r\nRETR 1\r\nTOP 2 1\r\nDELE 1\r\nRSET\r\nQUIT\r\n",
		login + "DELE 1\r\nDELE 2\r\nLIST\r\nQUIT\r\n",
		"AUTH PLAIN\r\n" + b64("\x00"+testUser+"\x00"+testPass) + "\r\nRETR 2\r\n",
		"AUTH PLAIN *\r\nAUTH\r\nAUTH PLAIN\r\n*\r\n",
		"USER x\r\nPASS y\r\nUSER x\r\nPASS y\r\nUSER x\r\nPASS y\r\nSTAT\r\n",
		"STLS\r\nCAPA\r\n",
		login + "TOP 1 0\nLIST 99999999999\nRETR 0\n\xff\xfe\r\n",
		strings.Repeat("A", 2000) + "\r\nNOOP\r\n",
		"\x00\r\n\r\n \r\nQUIT",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, input []byte) {
		st := memstore.New(memstore.Options{})
		defer st.Close()
		deliver(t, st, testUser, msgCRLF, msgLF, msgOdd)
		ts := startServer(t, st, func(o *Options) {
			o.IdleTimeout = 5 * time.Second
			o.MaxLineLength = 512
		})
		conn, err := net.Dial("tcp", ts.addr)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		conn.SetDeadline(time.Now().Add(20 * time.Second))
		go func() {
			// The server may close first (QUIT, too many errors): write
			// errors are expected.
			conn.Write(input)
			conn.(*net.TCPConn).CloseWrite()
		}()
		out, err := io.ReadAll(conn)
		reset := errors.Is(err, syscall.ECONNRESET)
		if err != nil && !reset {
			t.Fatalf("reading the server's answers: %v (after %q)", err, out)
		}
		checkResponses(t, out, reset)
	})
}

// checkResponses checks that out is a sequence of POP3 responses. With
// truncated set (the connection was reset) the end may be cut off.
func checkResponses(t *testing.T, out []byte, truncated bool) {
	t.Helper()
	if !bytes.HasPrefix(out, []byte("+OK ")) {
		t.Fatalf("no greeting: %q", out)
	}
	maybeBlock, inBlock := false, false
	for len(out) > 0 {
		i := bytes.Index(out, []byte("\r\n"))
		if i < 0 {
			if truncated {
				return
			}
			t.Fatalf("unterminated line %q", out)
		}
		line := string(out[:i])
		out = out[i+2:]
		if strings.ContainsAny(line, "\r\n") {
			t.Fatalf("bare CR or LF in line %q", line)
		}
		status := strings.HasPrefix(line, "+OK") || strings.HasPrefix(line, "-ERR") || line == "+ "
		switch {
		case status:
			if inBlock {
				t.Fatalf("response %q inside a multi-line answer", line)
			}
			if len(line)+2 > 512 {
				t.Fatalf("response of %d octets: %.80q", len(line)+2, line)
			}
			maybeBlock = strings.HasPrefix(line, "+OK")
		case line == ".":
			if !maybeBlock && !inBlock {
				t.Fatalf("terminator without a multi-line answer")
			}
			maybeBlock, inBlock = false, false
		default:
			if !maybeBlock && !inBlock {
				t.Fatalf("line %q outside any answer", line)
			}
			inBlock = true
		}
	}
	if inBlock && !truncated {
		t.Fatal("connection closed inside a multi-line answer")
	}
}
