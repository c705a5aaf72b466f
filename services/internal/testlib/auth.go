package testlib

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	authv1 "github.com/postcove/postcove/proto/postcove/auth/v1"
)

// AuthBinEnv names an environment variable with the path of a prebuilt
// auth binary. Without it StartAuth builds one (once per test process),
// which needs the go tool and the go.work workspace.
const AuthBinEnv = "POSTCOVE_TEST_AUTH_BIN"

// authPackage is what StartAuth builds.
const authPackage = "github.com/postcove/postcove/services/auth/cmd/auth"

// How long the auth service may take to report SERVING, and to exit after
// SIGTERM. SQLite opens in milliseconds; the margin is for loaded CI
// machines and the race detector.
const (
	authStartTimeout = 30 * time.Second
	authStopTimeout  = 15 * time.Second
)

// authBuild caches the auth binary for the whole test process. It is the
// one package-level variable in testlib, on purpose: tests of many
// packages call StartAuth without a TestMain of their own, building takes
// seconds (a link of the whole service), and the binary does not change
// while the process runs. Nothing but authBinary touches it.
var authBuild struct {
	once sync.Once
	path string
	err  error
}

// authBinary returns the auth binary: AuthBinEnv when set, else one built
// with `go build` on first use. The build goes to a directory named after
// this process's pid; directories left by test processes that are gone
// are removed then, since a process cannot run cleanup after its last test.
func authBinary() (string, error) {
	if p := os.Getenv(AuthBinEnv); p != "" {
		return p, nil
	}
	authBuild.once.Do(func() {
		removeStaleAuthBuilds()
		dir, err := os.MkdirTemp("", fmt.Sprintf("postcove-auth-bin-%d-", os.Getpid()))
		if err != nil {
			authBuild.err = err
			return
		}
		path := filepath.Join(dir, "auth")
		out, err := exec.Command("go", "build", "-o", path, authPackage).CombinedOutput()
		if err != nil {
			os.RemoveAll(dir)
			authBuild.err = fmt.Errorf("go build %s (run inside the go.work workspace, or set %s): %w\n%s", authPackage, AuthBinEnv, err, out)
			return
		}
		authBuild.path = path
	})
	return authBuild.path, authBuild.err
}

// removeStaleAuthBuilds removes the build directories of test processes
// that no longer run.
func removeStaleAuthBuilds() {
	dirs, _ := filepath.Glob(filepath.Join(os.TempDir(), "postcove-auth-bin-*"))
	for _, d := range dirs {
		pidText, _, _ := strings.Cut(strings.TrimPrefix(filepath.Base(d), "postcove-auth-bin-"), "-")
		pid, err := strconv.Atoi(pidText)
		if err != nil || pid == os.Getpid() {
			continue
		}
		if err := syscall.Kill(pid, 0); errors.Is(err, syscall.ESRCH) {
			os.RemoveAll(d)
		}
	}
}

// Auth is a real auth service for one test: the binary runs in a
// subprocess on a fresh SQLite database, on its own port. Stop and Start
// restart it on the same address and database, for tests of what the mail
// services do while auth is down. Its log is shown when the test fails.
//
// An Auth is used from the test's goroutine; its methods fail the test on
// errors.
type Auth struct {
	// Addr is the gRPC address, "127.0.0.1:PORT".
	Addr string

	t   testing.TB
	bin string
	dir string   // the database and the log
	env []string // the environment of every start

	cmd    *exec.Cmd     // the running service, nil when stopped
	exited chan struct{} // closed when cmd has exited

	connOnce sync.Once
	conn     *grpc.ClientConn
}

// StartAuth starts an auth service and waits until it reports SERVING.
// env adds or overrides its environment ("KEY=VALUE"), e.g.
// "POSTCOVE_AUTH_LOCKOUT_IP_THRESHOLD=3". It is stopped when the test ends.
// Without the go tool or the workspace (and no AuthBinEnv) the test is
// skipped, in CI it fails.
func StartAuth(t testing.TB, env ...string) *Auth {
	t.Helper()
	bin, err := authBinary()
	if err != nil {
		Unavailable(t, "no auth binary: "+err.Error())
	}
	a := &Auth{t: t, bin: bin, dir: TempDir(t), Addr: FreeAddr(t)}
	a.env = append(os.Environ(),
		"POSTCOVE_AUTH_LISTEN_GRPC="+a.Addr,
		"POSTCOVE_AUTH_LISTEN_METRICS=",
		"POSTCOVE_AUTH_DATABASE_DSN="+filepath.Join(a.dir, "auth.db"),
		"POSTCOVE_AUTH_LOG_LEVEL=debug",
	)
	a.env = append(a.env, env...)
	// Registered after TempDir's cleanup, so it runs before it: the log is
	// read, and the process gone, before the directory may be removed.
	t.Cleanup(func() {
		a.Stop()
		if a.conn != nil {
			a.conn.Close()
		}
		if t.Failed() {
			t.Logf("auth log (%s):\n%s", a.logPath(), a.logTail())
		}
	})
	a.Start()
	return a
}

func (a *Auth) logPath() string { return filepath.Join(a.dir, "auth.log") }

// logTail returns the end of the service's log, for failure messages.
func (a *Auth) logTail() []byte {
	log, _ := os.ReadFile(a.logPath())
	if i := len(log) - 16000; i > 0 {
		log = log[i:]
		log = log[bytes.IndexByte(log, '\n')+1:]
	}
	return log
}

// Start starts the service (again) on its address and database and waits
// until it reports SERVING.
func (a *Auth) Start() {
	a.t.Helper()
	if a.cmd != nil {
		a.t.Fatal("auth: Start while running")
	}
	logFile, err := os.OpenFile(a.logPath(), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		a.t.Fatal(err)
	}
	defer logFile.Close() // the child has its own copy
	cmd := exec.Command(a.bin)
	cmd.Env = a.env
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		a.t.Fatalf("start auth: %v", err)
	}
	exited := make(chan struct{})
	go func() {
		cmd.Wait()
		close(exited)
	}()
	a.cmd, a.exited = cmd, exited
	if err := a.waitServing(); err != nil {
		a.kill()
		a.t.Fatalf("auth on %s: %v\n%s", a.Addr, err, a.logTail())
	}
	if a.conn != nil {
		a.reconnect()
	}
}

// reconnect brings Conn back to READY after a restart, so that the
// helpers work at once: on its own, gRPC retries only after a backoff
// that grows while the service was down, failing calls meanwhile.
func (a *Auth) reconnect() {
	a.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), authStartTimeout)
	defer cancel()
	for {
		st := a.conn.GetState()
		if st == connectivity.Ready {
			return
		}
		a.conn.ResetConnectBackoff()
		a.conn.Connect()
		if !a.conn.WaitForStateChange(ctx, st) {
			a.t.Fatalf("auth client: still %v %v after the restart", st, authStartTimeout)
		}
	}
}

// waitServing polls the health service until it says SERVING, the
// process exits or the start timeout passes.
func (a *Auth) waitServing() error {
	deadline := time.Now().Add(authStartTimeout)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		err := checkServing(ctx, a.Addr)
		cancel()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not SERVING after %v: %w", authStartTimeout, err)
		}
		select {
		case <-a.exited:
			return errors.New("auth exited during startup")
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// checkServing asks the health service once, on a connection of its own so
// that no reconnect backoff from earlier attempts delays the answer. (Not
// grpcx.CheckHealth: grpcx's tests import testlib, and the import would
// be a cycle.)
func checkServing(ctx context.Context, addr string) error {
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return err
	}
	defer conn.Close()
	resp, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{})
	if err != nil {
		return err
	}
	if resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		return fmt.Errorf("health: %v", resp.GetStatus())
	}
	return nil
}

// Stop stops the service with SIGTERM, as docker stop does, and waits
// until it is gone (SIGKILL after a timeout). Stopping a stopped service
// does nothing.
func (a *Auth) Stop() {
	a.t.Helper()
	if a.cmd == nil {
		return
	}
	// Only our own child, by its pid: never by name.
	if err := a.cmd.Process.Signal(syscall.SIGTERM); err != nil && !errors.Is(err, os.ErrProcessDone) {
		a.t.Errorf("stop auth %d: %v", a.cmd.Process.Pid, err)
	}
	select {
	case <-a.exited:
		a.cmd, a.exited = nil, nil
	case <-time.After(authStopTimeout):
		a.t.Errorf("auth %d still running %v after SIGTERM: killed", a.cmd.Process.Pid, authStopTimeout)
		a.kill()
	}
}

// kill kills the service with SIGKILL and waits until it is gone.
func (a *Auth) kill() {
	if a.cmd == nil {
		return
	}
	a.cmd.Process.Kill()
	<-a.exited
	a.cmd, a.exited = nil, nil
}

// Conn returns a client connection to the service, made on first use and
// closed when the test ends. It outlives Stop and Start: gRPC reconnects.
func (a *Auth) Conn() *grpc.ClientConn {
	a.t.Helper()
	a.connOnce.Do(func() {
		conn, err := grpc.NewClient(a.Addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			a.t.Fatalf("dial auth: %v", err)
		}
		a.conn = conn
	})
	return a.conn
}

// Admin returns an AdminService client on Conn.
func (a *Auth) Admin() authv1.AdminServiceClient {
	return authv1.NewAdminServiceClient(a.Conn())
}

// adminCall runs one admin call with a timeout and fails t on error.
func (a *Auth) adminCall(t testing.TB, what string, call func(context.Context, authv1.AdminServiceClient) error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := call(ctx, a.Admin()); err != nil {
		t.Fatalf("auth: %s: %v", what, err)
	}
}

// Domain adds a mail domain.
func (a *Auth) Domain(t testing.TB, name string) {
	t.Helper()
	a.adminCall(t, "add domain "+name, func(ctx context.Context, c authv1.AdminServiceClient) error {
		_, err := c.CreateDomain(ctx, &authv1.CreateDomainRequest{Name: name})
		return err
	})
}

// User adds a user in an existing domain; quota is in bytes, 0 unlimited.
func (a *Auth) User(t testing.TB, address, password string, quota int64) {
	t.Helper()
	a.adminCall(t, "add user "+address, func(ctx context.Context, c authv1.AdminServiceClient) error {
		_, err := c.CreateUser(ctx, &authv1.CreateUserRequest{Address: address, Password: password, QuotaBytes: quota})
		return err
	})
}

// Alias adds destinations to the alias src ("@domain" for a catch-all).
func (a *Auth) Alias(t testing.TB, src string, dests ...string) {
	t.Helper()
	a.adminCall(t, "add alias "+src, func(ctx context.Context, c authv1.AdminServiceClient) error {
		_, err := c.AddAlias(ctx, &authv1.AddAliasRequest{Source: src, Destinations: dests})
		return err
	})
}
