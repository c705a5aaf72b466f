package dovecotauth_test

import (
	"bufio"
	"context"
	"errors"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/postcove/postcove/services/bench/internal/dovecotauth"
	"github.com/postcove/postcove/services/internal/testlib"
)

// fakeServer listens on a unix socket and plays script for the first
// connection: lines starting with "S: " are sent, lines starting with
// "C: " must be what the client sends next. It reports the first mismatch
// on the returned channel (nil when the script ran to its end).
func fakeServer(t *testing.T, script ...string) (path string, result <-chan error) {
	t.Helper()
	path = filepath.Join(testlib.TempDir(t), "auth")
	lis, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { lis.Close() })
	done := make(chan error, 1)
	go func() {
		c, err := lis.Accept()
		if err != nil {
			done <- err
			return
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(10 * time.Second))
		r := bufio.NewReader(c)
		for _, step := range script {
			dir, line, _ := strings.Cut(step, ": ")
			switch dir {
			case "S":
				if _, err := c.Write([]byte(line + "\n")); err != nil {
					done <- err
					return
				}
			case "C":
				got, err := r.ReadString('\n')
				if err != nil {
					done <- err
					return
				}
				if got = strings.TrimSuffix(got, "\n"); got != line {
					done <- errors.New("client sent " + got + ", want " + line)
					return
				}
			}
		}
		done <- nil
	}()
	return path, done
}

var clientHandshake = []string{
	"C: VERSION\t1\t2",
	"C: CPID\t42",
	"S: VERSION\t1\t2",
	"S: MECH\tPLAIN\tplaintext",
	"S: MECH\tLOGIN\tplaintext",
	"S: SPID\t777",
	"S: CUID\t1",
	"S: COOKIE\t0123456789abcdef0123456789abcdef",
	"S: DONE",
}

func TestClientProtocol(t *testing.T) {
	// base64("\x00alice@example.org\x00s3cret")
	const resp = "AGFsaWNlQGV4YW1wbGUub3JnAHMzY3JldA=="
	auth := "C: AUTH\t1\tPLAIN\tservice=imap\trip=127.0.0.1\tresp=" + resp
	tests := []struct {
		name    string
		script  []string
		wantOK  bool
		wantErr error // nil: no error; ErrProtocol: a protocol error
		params  []string
	}{
		{"ok", []string{auth, "S: OK\t1\tuser=alice@example.org"}, true, nil, []string{"user=alice@example.org"}},
		{"fail", []string{auth, "S: FAIL\t1\tuser=alice@example.org\tcode=temp_fail"}, false, nil, []string{"user=alice@example.org", "code=temp_fail"}},
		{"escaped param", []string{auth, "S: FAIL\t1\treason=bad\x01tthing"}, false, nil, []string{"reason=bad\tthing"}},
		{"wrong id", []string{auth, "S: OK\t2"}, false, dovecotauth.ErrProtocol, nil},
		{"cont", []string{auth, "S: CONT\t1\t"}, false, dovecotauth.ErrProtocol, nil},
		{"unknown reply", []string{auth, "S: HELLO\t1"}, false, dovecotauth.ErrProtocol, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path, done := fakeServer(t, append(clientHandshake, tt.script...)...)
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			cl, err := dovecotauth.DialClient(ctx, path, 42)
			if err != nil {
				t.Fatal(err)
			}
			defer cl.Close()
			if got := cl.Mechanisms(); strings.Join(got, ",") != "PLAIN,LOGIN" {
				t.Errorf("Mechanisms() = %q, want PLAIN, LOGIN", got)
			}
			if got := cl.ServerPID(); got != "777" {
				t.Errorf("ServerPID() = %q, want 777", got)
			}
			res, err := cl.AuthPlain(ctx, dovecotauth.PlainRequest{Service: "imap", User: "alice@example.org", Password: "s3cret", RemoteIP: "127.0.0.1"})
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("AuthPlain() = %+v, %v, want %v", res, err, tt.wantErr)
				}
				// The connection is not trusted after a protocol error.
				if _, err := cl.AuthPlain(ctx, dovecotauth.PlainRequest{Service: "imap"}); err == nil {
					t.Error("AuthPlain after a protocol error = nil error, want one")
				}
				return
			}
			if err != nil {
				t.Fatalf("AuthPlain() = %v", err)
			}
			if res.OK != tt.wantOK || strings.Join(res.Params, "|") != strings.Join(tt.params, "|") {
				t.Errorf("AuthPlain() = %+v, want OK=%v params %q", res, tt.wantOK, tt.params)
			}
			if err := <-done; err != nil {
				t.Errorf("server: %v", err)
			}
		})
	}
}

func TestClientHandshakeErrors(t *testing.T) {
	tests := []struct {
		name   string
		script []string
	}{
		{"major version 2", []string{"C: VERSION\t1\t2", "C: CPID\t42", "S: VERSION\t2\t0", "S: DONE"}},
		{"no version", []string{"C: VERSION\t1\t2", "C: CPID\t42", "S: SPID\t1", "S: DONE"}},
		{"closed before DONE", []string{"C: VERSION\t1\t2", "C: CPID\t42", "S: VERSION\t1\t2"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path, _ := fakeServer(t, tt.script...)
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if cl, err := dovecotauth.DialClient(ctx, path, 42); err == nil {
				cl.Close()
				t.Fatal("DialClient() = nil error, want one")
			}
		})
	}
}

func TestClientTimeout(t *testing.T) {
	// The server never answers the AUTH.
	path, _ := fakeServer(t, append(clientHandshake, "C: AUTH\t1\tPLAIN\tservice=smtp\tresp=AGEAYg==", "C: never")...)
	cl, err := dovecotauth.DialClient(context.Background(), path, 42)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if _, err := cl.AuthPlain(ctx, dovecotauth.PlainRequest{Service: "smtp", User: "a", Password: "b"}); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("AuthPlain() against a silent server = %v, want DeadlineExceeded", err)
	}
}

func TestUserdbProtocol(t *testing.T) {
	handshake := []string{"C: VERSION\t1\t0", "S: VERSION\t1\t1", "S: SPID\t99"}
	tests := []struct {
		name    string
		reply   string
		found   bool
		fields  []string
		wantErr bool
	}{
		{"found", "USER\t1\tal\x01tice\thome=/srv/a\tuid=5000\t", true, []string{"home=/srv/a", "uid=5000"}, false},
		{"not found", "NOTFOUND\t1", false, nil, false},
		{"internal failure", "FAIL\t1\tdatabase down", false, nil, true},
		{"wrong id", "NOTFOUND\t7", false, nil, true},
		{"unknown", "WHAT\t1", false, nil, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path, _ := fakeServer(t, append(handshake, "C: USER\t1\tal\x01tice\tservice=lmtp", "S: "+tt.reply)...)
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			u, err := dovecotauth.DialUserdb(ctx, path)
			if err != nil {
				t.Fatal(err)
			}
			defer u.Close()
			if got := u.ServerPID(); got != "99" {
				t.Errorf("ServerPID() = %q, want 99", got)
			}
			res, err := u.User(ctx, "al\tice", "lmtp")
			if (err != nil) != tt.wantErr {
				t.Fatalf("User() = %+v, %v, want error %v", res, err, tt.wantErr)
			}
			if err != nil {
				return
			}
			if res.Found != tt.found || strings.Join(res.Fields, "|") != strings.Join(tt.fields, "|") {
				t.Errorf("User() = %+v, want found %v fields %q", res, tt.found, tt.fields)
			}
			if tt.found && res.User != "al\tice" {
				t.Errorf("User().User = %q, want %q", res.User, "al\tice")
			}
		})
	}
}

func TestEscape(t *testing.T) {
	tests := []struct{ plain, escaped string }{
		{"plain", "plain"},
		{"a\tb", "a\x01tb"},
		{"a\nb\rc", "a\x01nb\x01rc"},
		{"\x00\x01", "\x010\x011"},
		{"", ""},
	}
	for _, tt := range tests {
		if got := dovecotauth.Escape(tt.plain); got != tt.escaped {
			t.Errorf("Escape(%q) = %q, want %q", tt.plain, got, tt.escaped)
		}
		if got := dovecotauth.Unescape(tt.escaped); got != tt.plain {
			t.Errorf("Unescape(%q) = %q, want %q", tt.escaped, got, tt.plain)
		}
	}
	// "anything else writes the character itself (skipping the \001)"
	for in, want := range map[string]string{"a\x01xb": "axb", "end\x01": "end\x01"} {
		if got := dovecotauth.Unescape(in); got != want {
			t.Errorf("Unescape(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestParam(t *testing.T) {
	params := []string{"user=alice", "secured", "code=temp_fail", "user2=x"}
	tests := []struct {
		name      string
		wantValue string
		wantOK    bool
	}{
		{"user", "alice", true},
		{"secured", "", true},
		{"code", "temp_fail", true},
		{"missing", "", false},
		{"use", "", false},
	}
	for _, tt := range tests {
		if v, ok := dovecotauth.Param(params, tt.name); v != tt.wantValue || ok != tt.wantOK {
			t.Errorf("Param(%q) = %q, %v, want %q, %v", tt.name, v, ok, tt.wantValue, tt.wantOK)
		}
	}
}

// FuzzSplitLine checks that parsing a reply line never panics and that
// every field survives an Escape/Unescape round trip.
func FuzzSplitLine(f *testing.F) {
	for _, seed := range []string{
		"OK\t1\tuser=alice@example.org",
		"USER\t1\talice@example.org\thome=/srv/a\t",
		"FAIL\t2\treason=a\x01tb",
		"MECH\tPLAIN\tplaintext",
		"\x01",
		"",
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, line string) {
		for _, field := range dovecotauth.SplitLine(line) {
			if got := dovecotauth.Unescape(dovecotauth.Escape(field)); got != field {
				t.Errorf("Unescape(Escape(%q)) = %q", field, got)
			}
			if strings.ContainsAny(dovecotauth.Escape(field), "\t\n") {
				t.Errorf("Escape(%q) holds a TAB or LF", field)
			}
		}
	})
}
