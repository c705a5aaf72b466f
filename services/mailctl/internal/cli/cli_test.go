package cli

import (
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/postcove/postcove/services/internal/grpcx"
	"github.com/postcove/postcove/services/internal/testlib"
	"github.com/postcove/postcove/services/internal/tlsconf"
)

// authBin and mtaBin are the service binaries, built once for all tests:
// mailctl is tested against the real services over real sockets.
var authBin, mtaBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "mailctl-test")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	authBin, mtaBin = filepath.Join(dir, "auth"), filepath.Join(dir, "mta")
	for bin, pkg := range map[string]string{
		authBin: "github.com/postcove/postcove/services/auth/cmd/auth",
		mtaBin:  "github.com/postcove/postcove/services/mta/cmd/mta",
	} {
		out, err := exec.Command("go", "build", "-o", bin, pkg).CombinedOutput()
		if err != nil {
			fmt.Fprintf(os.Stderr, "build %s: %v\n%s", pkg, err, out)
			os.Exit(1)
		}
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// startAuth runs the auth binary on SQLite and returns its gRPC address.
// extraEnv configures it further (TLS, say).
func startAuth(t *testing.T, extraEnv ...string) string {
	t.Helper()
	dir := testlib.TempDir(t)
	addr := testlib.FreeAddr(t)
	cmd := exec.Command(authBin)
	cmd.Env = append(os.Environ(),
		"POSTCOVE_AUTH_LISTEN_GRPC="+addr,
		"POSTCOVE_AUTH_LISTEN_METRICS=",
		"POSTCOVE_AUTH_DATABASE_DSN="+filepath.Join(dir, "auth.db"),
	)
	cmd.Env = append(cmd.Env, extraEnv...)
	var logs bytes.Buffer
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Signal(os.Interrupt)
		cmd.Wait()
		if t.Failed() {
			t.Logf("auth logs:\n%s", logs.String())
		}
	})
	healthTLS, err := tlsFromEnv(extraEnv)
	if err != nil {
		t.Fatal(err)
	}
	waitHealthy(t, "auth", addr, healthTLS, nil)
	return addr
}

// waitHealthy polls the gRPC health service at addr until it answers
// SERVING, failing the test after 30 seconds or when exited (if not nil)
// is closed first.
func waitHealthy(t *testing.T, name, addr string, tlsCfg *tls.Config, exited <-chan struct{}) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		err := grpcx.CheckHealth(ctx, addr, tlsCfg, "")
		cancel()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s did not become healthy: %v", name, err)
		}
		select {
		case <-exited:
			t.Fatalf("%s exited during startup", name)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

type result struct {
	code           int
	stdout, stderr string
}

// mailctl runs one command in-process with stdin as given (not a terminal)
// and the auth service at addr.
func mailctl(t *testing.T, addr, stdin string, args ...string) result {
	t.Helper()
	return mailctlEnv(t, map[string]string{"MAILCTL_AUTH_ADDR": addr}, stdin, args...)
}

// mailctlEnv runs one command in-process with environ as its environment.
func mailctlEnv(t *testing.T, environ map[string]string, stdin string, args ...string) result {
	t.Helper()
	var out, errOut bytes.Buffer
	env := Env{
		Stdin: strings.NewReader(stdin), Stdout: &out, Stderr: &errOut,
		Getenv:       func(k string) string { return environ[k] },
		IsTerminal:   func() bool { return false },
		ReadPassword: func() (string, error) { t.Fatal("prompted on a non-terminal"); return "", nil },
	}
	code := Main(args, env)
	return result{code, out.String(), errOut.String()}
}

func want(t *testing.T, r result, code int, stdoutHas, stderrHas string) {
	t.Helper()
	if r.code != code || !strings.Contains(r.stdout, stdoutHas) || !strings.Contains(r.stderr, stderrHas) {
		t.Errorf("exit %d, stdout %q, stderr %q; want exit %d, stdout containing %q, stderr containing %q",
			r.code, r.stdout, r.stderr, code, stdoutHas, stderrHas)
	}
}

func TestMailctlAgainstAuth(t *testing.T) {
	addr := startAuth(t)
	run := func(stdin string, args ...string) result { t.Helper(); return mailctl(t, addr, stdin, args...) }

	want(t, run("", "domain", "add", "Example.ORG"), 0, "domain example.org added", "")
	want(t, run("", "domain", "add", "bücher.example"), 0, "xn--bcher-kva.example", "")
	want(t, run("", "domain", "list"), 0, "example.org\nxn--bcher-kva.example", "")
	want(t, run("s3cret\n", "user", "add", "alice@example.org", "--password-stdin", "--quota", "2G"), 0, "user alice@example.org added", "")
	want(t, run("pw\n", "user", "add", "--password-stdin", "bob@example.org"), 0, "added", "")
	want(t, run("", "user", "list"), 0, "alice@example.org  2G", "")
	want(t, run("s3cret\n", "auth", "test", "alice@example.org", "--password-stdin"), 0, "login ok", "")
	want(t, run("wrong\n", "auth", "test", "alice@example.org", "--password-stdin"), 1, "", "authentication failed")
	want(t, run("new\n", "user", "passwd", "alice@example.org", "--password-stdin"), 0, "changed", "")
	want(t, run("new\n", "auth", "test", "ALICE@example.org", "--password-stdin"), 0, "login ok", "")
	want(t, run("", "user", "quota", "alice@example.org", "500M"), 0, "500M", "")
	want(t, run("", "user", "disable", "bob@example.org"), 0, "disabled", "")
	want(t, run("pw\n", "auth", "test", "bob@example.org", "--password-stdin"), 1, "", "authentication failed")
	want(t, run("", "user", "enable", "bob@example.org"), 0, "enabled", "")
	want(t, run("", "alias", "add", "team@example.org", "alice@example.org,bob@example.org, x@remote.example"), 0, "team@example.org -> alice@example.org,bob@example.org,x@remote.example", "")
	want(t, run("", "alias", "add", "@example.org", "alice@example.org"), 0, "@example.org -> alice@example.org", "")
	want(t, run("", "alias", "list", "example.org"), 0, "team@example.org", "")
	want(t, run("", "alias", "del", "@example.org"), 0, "deleted", "")

	// Errors say what to do next.
	want(t, run("pw\n", "user", "add", "carol@nowhere.example", "--password-stdin"), 1, "", "mailctl domain add")
	want(t, run("pw\n", "user", "add", "../etc@example.org", "--password-stdin"), 1, "", "invalid address")
	want(t, run("", "domain", "del", "example.org"), 1, "", "delete its users")
	want(t, run("", "user", "del", "nobody@example.org"), 1, "", "mailctl user list")
	want(t, run("", "user", "add", "carol@example.org"), 2, "", "--password-stdin")
	want(t, run("", "user", "quota", "alice@example.org", "lots"), 2, "", "not a size")
	want(t, run("", "user", "frobnicate"), 2, "", "unknown command")
	want(t, run("", "lockout", "clear"), 2, "", "--user")
	want(t, run("", "lockout", "clear", "--ip", "192.0.2.1"), 0, "cleared", "")
	want(t, run("", "help"), 0, "alias add SOURCE", "")

	want(t, run("", "user", "del", "bob@example.org"), 0, "deleted", "")
}

func TestMailctlAuthDown(t *testing.T) {
	r := mailctl(t, testlib.FreeAddr(t), "", "--timeout", "3s", "domain", "list")
	want(t, r, 1, "", "is it running?")
}

func TestParseSize(t *testing.T) {
	tests := []struct {
		in   string
		want int64
		ok   bool
	}{
		{"0", 0, true}, {"unlimited", 0, true}, {"512", 512, true}, {"1K", 1024, true},
		{"500M", 500 << 20, true}, {"2G", 2 << 30, true}, {"1GiB", 1 << 30, true}, {"1.5G", 3 << 29, true},
		{"1t", 1 << 40, true}, {"-1", 0, false}, {"lots", 0, false}, {"", 0, false}, {"1e30G", 0, false},
	}
	for _, tt := range tests {
		got, err := parseSize(tt.in)
		if (err == nil) != tt.ok || got != tt.want {
			t.Errorf("parseSize(%q) = %d, %v; want %d, ok=%v", tt.in, got, err, tt.want, tt.ok)
		}
	}
	for _, n := range []int64{0, 1024, 500 << 20, 3 << 29, 1000} {
		if got, _ := parseSize(formatSize(n)); got != n {
			t.Errorf("parseSize(formatSize(%d)) = %d", n, got)
		}
	}
}

// tlsFromEnv is the client TLS config matching a startAuth TLS setup: the
// test's own client certificate when the server asks for one.
func tlsFromEnv(env []string) (*tls.Config, error) {
	files := tlsconf.Files{}
	for _, kv := range env {
		k, v, _ := strings.Cut(kv, "=")
		switch k {
		case "POSTCOVE_AUTH_TLS_CA_FILE":
			files.CA = v
		case "TEST_CLIENT_CERT":
			files.Cert = v
		case "TEST_CLIENT_KEY":
			files.Key = v
		}
	}
	return tlsconf.ClientConfig(files, "")
}

// TestMailctlMutualTLS: with the auth API behind mTLS, mailctl gets in with
// the CA and a client certificate, and is refused without one.
func TestMailctlMutualTLS(t *testing.T) {
	certs := testlib.NewCerts(t)
	addr := startAuth(t,
		"POSTCOVE_AUTH_TLS_CERT_FILE="+certs.ServerCert,
		"POSTCOVE_AUTH_TLS_KEY_FILE="+certs.ServerKey,
		"POSTCOVE_AUTH_TLS_CA_FILE="+certs.CA,
		"TEST_CLIENT_CERT="+certs.ClientCert,
		"TEST_CLIENT_KEY="+certs.ClientKey,
	)
	want(t, mailctl(t, addr, "", "--tls-ca", certs.CA, "--tls-cert", certs.ClientCert, "--tls-key", certs.ClientKey, "domain", "add", "example.org"), 0, "added", "")
	r := mailctl(t, addr, "", "--timeout", "5s", "--tls-ca", certs.CA, "domain", "list")
	t.Logf("without a client certificate: %s", r.stderr)
	want(t, r, 1, "", "--tls-cert")
	r = mailctl(t, addr, "", "--timeout", "5s", "domain", "list")
	t.Logf("without TLS: %s", r.stderr)
	want(t, r, 1, "", "--tls-ca")
}
