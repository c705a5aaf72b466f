package lmtpbench

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"

	authv1 "github.com/postcove/postcove/proto/postcove/auth/v1"
	"github.com/postcove/postcove/services/bench/internal/dovecot"
	"github.com/postcove/postcove/services/bench/internal/lmtpclient"
	"github.com/postcove/postcove/services/bench/internal/load"
	"github.com/postcove/postcove/services/bench/internal/proc"
	"github.com/postcove/postcove/services/internal/grpcx"
)

// authServer is a running postcove auth service on SQLite.
type authServer struct {
	proc *proc.Process
	addr string
	conn *grpc.ClientConn
}

func startAuth(ctx context.Context, bin, dir string) (*authServer, error) {
	addr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	logPath := filepath.Join(dir, "auth.log")
	p, err := startLogged("postcove auth", bin, logPath, "POSTCOVE_AUTH_",
		"LISTEN_GRPC="+addr,
		"LISTEN_METRICS=",
		"DATABASE_DRIVER=sqlite",
		"DATABASE_DSN="+filepath.Join(dir, "auth.db"),
	)
	if err != nil {
		return nil, err
	}
	a := &authServer{proc: p, addr: addr}
	if err := waitHealthy(ctx, p, addr); err != nil {
		return nil, errors.Join(fmt.Errorf("postcove auth did not start: %w; log: %s", err, logPath), a.stop())
	}
	if a.conn, err = grpcx.Dial(addr, nil); err != nil {
		return nil, errors.Join(err, a.stop())
	}
	return a, nil
}

func (a *authServer) stop() error {
	var errs []error
	if a.conn != nil {
		errs = append(errs, a.conn.Close())
	}
	return errors.Join(append(errs, a.proc.Stop(15*time.Second))...)
}

// createUsers adds the domain and the users (random passwords: nobody
// logs in) through the AdminService, 8 calls at a time.
func (a *authServer) createUsers(ctx context.Context, domain string, users []string) error {
	admin := authv1.NewAdminServiceClient(a.conn)
	if _, err := admin.CreateDomain(ctx, &authv1.CreateDomainRequest{Name: domain}); err != nil {
		return fmt.Errorf("create domain %s: %w", domain, err)
	}
	var next atomic.Int64
	res, err := load.Run(ctx, load.Options{Concurrency: 8, Calls: len(users)}, func(ctx context.Context, _ int) error {
		u := users[next.Add(1)-1]
		pw := make([]byte, 12)
		rand.Read(pw) //nolint:errcheck // never fails
		if _, err := admin.CreateUser(ctx, &authv1.CreateUserRequest{Address: u, Password: hex.EncodeToString(pw)}); err != nil {
			return fmt.Errorf("create user %s: %w", u, err)
		}
		return nil
	})
	if err != nil {
		return err
	}
	if res.Errors > 0 {
		return fmt.Errorf("%d of %d users not created: %w", res.Errors, len(users), res.FirstError)
	}
	return nil
}

// mailboxServer is a running postcove mailbox service.
type mailboxServer struct {
	proc     *proc.Process
	lmtpAddr string
}

func startMailbox(ctx context.Context, bin, dir, mailRoot, authAddr string) (*mailboxServer, error) {
	if err := os.MkdirAll(mailRoot, 0o755); err != nil {
		return nil, err
	}
	lmtpAddr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	grpcAddr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	logPath := filepath.Join(dir, "mailbox.log")
	p, err := startLogged("postcove mailbox", bin, logPath, "POSTCOVE_MAILBOX_",
		"LISTEN_LMTP="+lmtpAddr,
		"LISTEN_GRPC="+grpcAddr,
		"LISTEN_METRICS=",
		"LISTEN_POP3=",
		"LISTEN_POP3S=",
		"STORE_ROOT="+mailRoot,
		"AUTH_ADDR="+authAddr,
		"LMTP_HOSTNAME=postcove.localhost",
	)
	if err != nil {
		return nil, err
	}
	m := &mailboxServer{proc: p, lmtpAddr: lmtpAddr}
	if err := waitHealthy(ctx, p, grpcAddr); err != nil {
		return nil, errors.Join(fmt.Errorf("postcove mailbox did not start: %w; log: %s", err, logPath), m.stop())
	}
	if err := waitLMTP(ctx, p.Done(), lmtpAddr); err != nil {
		return nil, errors.Join(fmt.Errorf("postcove mailbox LMTP: %w; log: %s", err, logPath), m.stop())
	}
	return m, nil
}

func (m *mailboxServer) stop() error { return m.proc.Stop(15 * time.Second) }

// startDovecot starts a private dovecot with LMTP on a loopback port and a
// passwd-file userdb of the benchmark's users, delivering into mailRoot.
func (b *bench) startDovecot(ctx context.Context, mailRoot string) (*dovecot.Server, string, error) {
	if err := os.MkdirAll(mailRoot, 0o755); err != nil {
		return nil, "", err
	}
	uid, gid := fmt.Sprint(dovecotUID), fmt.Sprint(dovecotUID)
	if os.Geteuid() == 0 {
		if err := os.Chown(mailRoot, dovecotUID, dovecotUID); err != nil {
			return nil, "", err
		}
	} else {
		// Rootless dovecot cannot switch users: the mail is the caller's.
		uid, gid = fmt.Sprint(os.Getuid()), fmt.Sprint(os.Getgid())
	}
	var lines []string
	for _, u := range b.users {
		local, dom, _ := strings.Cut(u, "@")
		l, err := dovecot.PasswdEntry{User: u, Password: "{PLAIN}unused", UID: uid, GID: gid, Home: filepath.Join(mailRoot, dom, local)}.Line()
		if err != nil {
			return nil, "", err
		}
		lines = append(lines, l)
	}
	passwd := filepath.Join(b.root, "users.passwd")
	if err := os.WriteFile(passwd, []byte(strings.Join(lines, "\n")+"\n"), 0o644); err != nil {
		return nil, "", err
	}
	addr, err := freeAddr()
	if err != nil {
		return nil, "", err
	}
	_, port, _ := net.SplitHostPort(addr)
	firstUID := ""
	if os.Geteuid() != 0 {
		firstUID = "first_valid_uid = " + uid + "\n"
	}
	srv, err := dovecot.Start(ctx, dovecot.Options{
		Bin: b.opts.DovecotBin,
		Dir: filepath.Join(b.root, "dovecot"),
		Config: `protocols = lmtp
mail_location = maildir:` + mailRoot + `/%d/%n/Maildir
mail_fsync = always
` + firstUID + `passdb {
  driver = passwd-file
  args = ` + passwd + `
}
userdb {
  driver = passwd-file
  args = ` + passwd + `
}
service lmtp {
  inet_listener lmtp {
    address = 127.0.0.1
    port = ` + port + `
  }
}
`,
		Sockets: []string{"auth-userdb"},
	})
	if err != nil {
		return nil, "", err
	}
	if err := waitLMTP(ctx, nil, addr); err != nil {
		return nil, "", errors.Join(fmt.Errorf("dovecot LMTP on %s: %w\n%s", addr, err, srv.LogTail()), srv.Stop())
	}
	return srv, addr, nil
}

// startLogged starts bin with its output in logPath and the configuration
// vars (without prefix) in its environment; the caller's own variables with
// the prefix are dropped so they cannot change what is measured.
func startLogged(name, bin, logPath, prefix string, vars ...string) (*proc.Process, error) {
	out, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	defer out.Close() // the child has its own copy
	cmd := exec.Command(bin)
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, prefix) {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	for _, v := range vars {
		cmd.Env = append(cmd.Env, prefix+v)
	}
	cmd.Stdout, cmd.Stderr = out, out
	return proc.Start(name, cmd)
}

// waitHealthy polls the gRPC health service at addr until SERVING.
func waitHealthy(ctx context.Context, p *proc.Process, addr string) error {
	const timeout = 60 * time.Second
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	for {
		cctx, ccancel := context.WithTimeout(ctx, time.Second)
		err := grpcx.CheckHealth(cctx, addr, nil, "")
		ccancel()
		if err == nil {
			return nil
		}
		select {
		case <-p.Done():
			return fmt.Errorf("exited: %v", p.ExitErr())
		case <-ctx.Done():
			return fmt.Errorf("not healthy after %v: %w", timeout, err)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// waitLMTP polls until an LMTP server at addr greets and answers LHLO.
func waitLMTP(ctx context.Context, done <-chan struct{}, addr string) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	for {
		cctx, ccancel := context.WithTimeout(ctx, 2*time.Second)
		c, err := dialLMTP(cctx, addr)
		ccancel()
		if err == nil {
			return c.Close()
		}
		select {
		case <-done:
			return errors.New("exited")
		case <-ctx.Done():
			return err
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// freeAddr returns a loopback address with a port that was free a moment
// ago, for a server in another process.
func freeAddr() (string, error) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("find a free port: %w", err)
	}
	addr := lis.Addr().String()
	return addr, lis.Close()
}

func dialLMTP(ctx context.Context, addr string) (*lmtpclient.Client, error) {
	return lmtpclient.Dial(ctx, addr, "bench.localhost")
}
