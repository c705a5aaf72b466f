package servicecmd

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

type testConfig struct {
	LogLevel string `toml:"log_level"`
	Name     string `toml:"name"`
}

func testService(health error) Service[testConfig] {
	return Service[testConfig]{
		Name:      "demo",
		EnvPrefix: "POSTCOVE_DEMO",
		Default:   func() testConfig { return testConfig{LogLevel: "info", Name: "default"} },
		LogLevel:  func(c testConfig) string { return c.LogLevel },
		Serve: func(context.Context, testConfig, *slog.Logger) error {
			return errors.New("served")
		},
		Healthcheck: func(context.Context, testConfig) error { return health },
	}
}

func TestRun(t *testing.T) {
	file := filepath.Join(t.TempDir(), "demo.toml")
	if err := os.WriteFile(file, []byte("nmae = \"x\"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		args    []string
		health  error
		wantOut string
		wantErr string
	}{
		{name: "version", args: []string{"version"}, wantOut: "v1\n"},
		{name: "serve by default", args: nil, wantErr: "served"},
		{name: "healthy", args: []string{"healthcheck"}, wantOut: "SERVING\n"},
		{name: "unhealthy", args: []string{"healthcheck"}, health: errors.New("auth down"), wantErr: "not healthy: auth down"},
		{name: "unknown command", args: []string{"frobnicate"}, wantErr: `unknown command "frobnicate"`},
		{name: "extra argument", args: []string{"version", "now"}, wantErr: `unexpected argument "now"`},
		{name: "unknown key names it", args: []string{"-config", file}, wantErr: "nmae"},
		{name: "missing file", args: []string{"-config", "/nonexistent/demo.toml"}, wantErr: "demo.toml"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out bytes.Buffer
			err := testService(tt.health).Run(tt.args, "v1", &out)
			if tt.wantErr == "" && err != nil || tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)) {
				t.Errorf("Run(%q) = %v, want error containing %q", tt.args, err, tt.wantErr)
			}
			if out.String() != tt.wantOut {
				t.Errorf("Run(%q) printed %q, want %q", tt.args, out.String(), tt.wantOut)
			}
		})
	}
}

func TestDialable(t *testing.T) {
	tests := []struct{ in, want string }{
		{"0.0.0.0:9102", "127.0.0.1:9102"},
		{":9102", "127.0.0.1:9102"},
		{"[::]:9102", "127.0.0.1:9102"},
		{"10.1.2.3:9102", "10.1.2.3:9102"},
		{"mailbox:9102", "mailbox:9102"},
		{"[::1]:9102", "[::1]:9102"},
		{"nonsense", "nonsense"},
	}
	for _, tt := range tests {
		if got := Dialable(tt.in); got != tt.want {
			t.Errorf("Dialable(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

// TestGreets: a 220 greeting is healthy, a 421 (full, going away) or a
// closed port is not.
func TestGreets(t *testing.T) {
	for _, tt := range []struct {
		greeting string
		ok       bool
	}{{"220 mx.example ESMTP\r\n", true}, {"421 4.3.2 shutting down\r\n", false}} {
		lis, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		go func() {
			c, err := lis.Accept()
			if err == nil {
				io.WriteString(c, tt.greeting)
				io.Copy(io.Discard, c)
				c.Close()
			}
		}()
		ctx, cancel := context.WithTimeout(context.Background(), HealthTimeout)
		err = Greets(ctx, "smtp", lis.Addr().String())
		cancel()
		lis.Close()
		if (err == nil) != tt.ok {
			t.Errorf("Greets with %q = %v, want ok=%v", tt.greeting, err, tt.ok)
		}
		if err := Greets(context.Background(), "smtp", lis.Addr().String()); err == nil {
			t.Errorf("Greets of a closed port = nil, want an error")
		}
	}
}
