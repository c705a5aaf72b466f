// Package postcove runs postcove's own services for a benchmark: the auth
// service on SQLite, with the benchmark's users, and the mailbox service
// pointed at it, each a child process configured by environment variables
// (the services' documented overrides) with its log in a file, on free
// loopback ports, stopped by its pid.
package postcove

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"

	authv1 "github.com/postcove/postcove/proto/postcove/auth/v1"
	"github.com/postcove/postcove/services/bench/internal/dovecot"
	"github.com/postcove/postcove/services/bench/internal/fleet"
	"github.com/postcove/postcove/services/bench/internal/load"
	"github.com/postcove/postcove/services/bench/internal/loopfs"
	"github.com/postcove/postcove/services/bench/internal/proc"
	"github.com/postcove/postcove/services/bench/internal/report"
	"github.com/postcove/postcove/services/internal/grpcx"
)

// stopGrace is how long a service may drain after SIGTERM.
const stopGrace = 15 * time.Second

// Servers are the programs a benchmark of the mailbox service against a
// dovecot server runs, and where.
type Servers struct {
	AuthBin    string // postcove's auth binary; required
	MailboxBin string // postcove's mailbox binary; required
	DovecotBin string // dovecot's master; default dovecot.DefaultBin
	// ScriptsDir holds scripts/dovecot-bench.sh, which configures dovecot.
	// Default dovecot.DefaultScriptsDir.
	ScriptsDir string
	TempDir    string    // parent of the run's directory; default os.TempDir()
	Keep       bool      // keep the run's directory even on success
	Log        io.Writer // progress; default discarded
}

// Defaults fills in the defaults and fails without the binaries.
func (s *Servers) Defaults() error {
	if s.AuthBin == "" || s.MailboxBin == "" {
		return errors.New("need --auth-bin and --mailbox-bin (make build writes bin/auth and bin/mailbox)")
	}
	if s.DovecotBin == "" {
		s.DovecotBin = dovecot.DefaultBin
	}
	if s.Log == nil {
		s.Log = io.Discard
	}
	return nil
}

// Paths are where a run's programs and files are.
type Paths struct {
	AuthBin, MailboxBin string // absolute
	Root                string // the run's directory
	// OwnFS are the directories of Root, one per server, that are each a
	// fresh filesystem of their own (loopfs); empty when that could not
	// be done (not root, no loop devices), and the servers share Root's.
	OwnFS []string
}

// ownFSSize is the size of each server's filesystem: room for the largest
// run's mail (a sparse image: only what is written takes disk space).
const ownFSSize = 8 << 30

// InFrame checks the binaries and dovecot's server of protocol ("lmtp",
// "imap"), makes the run's directory, calls run with the paths, and
// removes the directory, unless it is kept: asked, or run failed. The
// paths are set in *p before run is called.
func (s Servers) InFrame(protocol string, p *Paths, run func() error) (err error) {
	return s.Frame(protocol, protocol, nil, p, run)
}

// Frame is InFrame for benchmark name ("smtp"), where dovecot serves
// protocol ("lmtp"), and where each of the directories own of the run's
// directory (one per server: where it writes its mail and queue) gets a
// filesystem of its own if it can (loopfs explains why).
func (s Servers) Frame(name, protocol string, own []string, p *Paths, run func() error) (err error) {
	if p.AuthBin, p.MailboxBin, err = binaries(s.AuthBin, s.MailboxBin); err != nil {
		return err
	}
	if err := dovecot.CheckInstalled(s.DovecotBin, protocol); err != nil {
		return err
	}
	if p.Root, err = dovecot.NewWorkDir(s.TempDir, "postcove-bench-"+name+"-"); err != nil {
		return err
	}
	defer func() {
		if ferr := dovecot.FinishWorkDir(p.Root, err != nil || s.Keep, s.Log, "configs, logs, mail"); err == nil {
			err = ferr
		}
	}()
	mounted := s.mountOwn(p.Root, own)
	defer func() {
		for _, fs := range mounted {
			if uerr := fs.Unmount(err != nil || s.Keep); err == nil {
				err = uerr
			}
		}
	}()
	for _, fs := range mounted {
		p.OwnFS = append(p.OwnFS, filepath.Base(fs.Dir))
	}
	return run()
}

// mountOwn gives each directory own of root a filesystem of its own
// (loopfs), or none of them one: if a mount fails, it says why, undoes
// the others and returns nil, and the servers share root's filesystem.
func (s Servers) mountOwn(root string, own []string) []*loopfs.FS {
	var mounted []*loopfs.FS
	for _, dir := range own {
		fs, err := loopfs.Mount(filepath.Join(root, dir), ownFSSize)
		if err != nil {
			fmt.Fprintf(s.Log, "no filesystem of its own for each server, they share the work directory's: %v\n", err)
			for _, fs := range mounted {
				if err := fs.Unmount(false); err != nil {
					fmt.Fprintf(s.Log, "%v\n", err)
				}
			}
			return nil
		}
		mounted = append(mounted, fs)
	}
	return mounted
}

// StartDovecot starts a private dovecot in dir (mail under dir/mail)
// serving protocol on a free loopback port, with users in its
// passwd-file (see dovecot.MailUser).
func (s Servers) StartDovecot(ctx context.Context, dir, protocol string, users []dovecot.PasswdEntry) (*dovecot.Server, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	passwd := filepath.Join(dir, "users.passwd")
	if err := dovecot.WritePasswd(passwd, users); err != nil {
		return nil, err
	}
	return dovecot.Start(ctx, dovecot.Options{
		Bin:        s.DovecotBin,
		ScriptsDir: s.ScriptsDir,
		Dir:        dir,
		Passwd:     passwd,
		Listeners:  []dovecot.Listener{{Protocol: protocol}},
		Sockets:    []string{"auth-userdb"},
	})
}

// Environment describes the machine and the programs of a run, for
// report.Report's Environment.
func (p Paths) Environment(ctx context.Context, dovecotBin string) []report.KV {
	return []report.KV{
		{Name: "machine", Value: report.Machine()},
		{Name: "dovecot", Value: report.CommandOutput(ctx, dovecotBin, "--version")},
		{Name: "postcove mailbox", Value: p.MailboxBin + " (version " + report.CommandOutput(ctx, p.MailboxBin, "version") + ")"},
		{Name: "postcove auth", Value: p.AuthBin + " (version " + report.CommandOutput(ctx, p.AuthBin, "version") + ")"},
		{Name: "bench", Value: runtime.Version()},
		{Name: "work directory", Value: p.Root + " (filesystem " + report.FSType(p.Root) + p.spread() + ")"},
	}
}

// binaries returns the auth and mailbox binaries as absolute paths,
// failing with a hint when one is not an executable.
func binaries(auth, mailbox string) (authAbs, mailboxAbs string, err error) {
	if authAbs, err = AbsBin("postcove auth", auth); err != nil {
		return "", "", err
	}
	mailboxAbs, err = AbsBin("postcove mailbox", mailbox)
	return authAbs, mailboxAbs, err
}

// AbsBin returns bin, the binary of what ("postcove mta"), as an absolute
// path, failing with a hint when it is not an executable.
func AbsBin(what, bin string) (string, error) {
	abs, err := filepath.Abs(bin)
	if err != nil {
		return "", err
	}
	if _, err := exec.LookPath(abs); err != nil {
		return "", fmt.Errorf("%s binary %s: %w (run make build)", what, bin, err)
	}
	return abs, nil
}

// Auth is a running auth service on SQLite and an admin client of it.
type Auth struct {
	proc *proc.Process
	addr string
	conn *grpc.ClientConn
}

// StartAuth starts bin with its database and log (auth.log) in dir. The
// lockout is off (thresholds 0): a benchmark logs in many times a second
// from one IP with correct passwords only, so it would not trigger, but
// its counters would cost work that dovecot's equivalent (the anvil
// penalty) spends on failures only.
func StartAuth(ctx context.Context, bin, dir string) (*Auth, error) {
	addr, err := FreeAddr()
	if err != nil {
		return nil, err
	}
	logPath := filepath.Join(dir, "auth.log")
	p, err := startLogged("postcove auth", bin, logPath, "POSTCOVE_AUTH_",
		"LISTEN_GRPC="+addr,
		"LISTEN_METRICS=",
		"DATABASE_DRIVER=sqlite",
		"DATABASE_DSN="+filepath.Join(dir, "auth.db"),
		"LOCKOUT_IP_THRESHOLD=0",
		"LOCKOUT_ACCOUNT_THRESHOLD=0",
	)
	if err != nil {
		return nil, err
	}
	a := &Auth{proc: p, addr: addr}
	if err := waitHealthy(ctx, p, addr); err != nil {
		return nil, errors.Join(fmt.Errorf("postcove auth did not start: %w; log: %s", err, logPath), a.Stop())
	}
	if a.conn, err = grpcx.Dial(addr, nil); err != nil {
		return nil, errors.Join(err, a.Stop())
	}
	return a, nil
}

// Addr is the auth service's gRPC address.
func (a *Auth) Addr() string { return a.addr }

// Pid is the auth process's pid.
func (a *Auth) Pid() int { return a.proc.Pid() }

// Stop stops the service.
func (a *Auth) Stop() error {
	var errs []error
	if a.conn != nil {
		errs = append(errs, a.conn.Close())
	}
	return errors.Join(append(errs, a.proc.Stop(stopGrace))...)
}

// User is a user to create.
type User struct {
	Address  string
	Password string
}

// CreateUsers adds the domain and the users through the AdminService, 8
// calls at a time (each hashes a password).
func (a *Auth) CreateUsers(ctx context.Context, domain string, users []User) error {
	admin := authv1.NewAdminServiceClient(a.conn)
	if _, err := admin.CreateDomain(ctx, &authv1.CreateDomainRequest{Name: domain}); err != nil {
		return fmt.Errorf("create domain %s: %w", domain, err)
	}
	var next atomic.Int64
	res, err := load.Run(ctx, load.Options{Concurrency: 8, Calls: len(users)}, func(ctx context.Context, _ int) error {
		u := users[next.Add(1)-1]
		if _, err := admin.CreateUser(ctx, &authv1.CreateUserRequest{Address: u.Address, Password: u.Password}); err != nil {
			return fmt.Errorf("create user %s: %w", u.Address, err)
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

// MailboxOptions configure StartMailbox.
type MailboxOptions struct {
	Bin      string // the mailbox binary
	Dir      string // for its log, mailbox.log
	MailRoot string // store.root: <domain>/<user>/Maildir; created if missing
	AuthAddr string // the auth service's gRPC address
	// IMAP turns the IMAP listener on (listen.imap, plaintext LOGIN
	// allowed: there is no TLS on loopback); otherwise only LMTP serves
	// mail.
	IMAP bool
}

// Mailbox is a running mailbox service.
type Mailbox struct {
	proc     *proc.Process
	lmtpAddr string
	imapAddr string
}

// StartMailbox starts the mailbox service with LMTP (and IMAP if asked)
// on free loopback ports, POP3 off, and waits until it is healthy and its
// listeners accept connections.
func StartMailbox(ctx context.Context, opts MailboxOptions) (*Mailbox, error) {
	if err := os.MkdirAll(opts.MailRoot, 0o755); err != nil {
		return nil, err
	}
	var addrs [3]string // LMTP, gRPC, IMAP
	for i := range addrs {
		var err error
		if addrs[i], err = FreeAddr(); err != nil {
			return nil, err
		}
	}
	m := &Mailbox{lmtpAddr: addrs[0]}
	vars := []string{
		"LISTEN_LMTP=" + addrs[0],
		"LISTEN_GRPC=" + addrs[1],
		"LISTEN_METRICS=",
		"LISTEN_POP3=",
		"LISTEN_POP3S=",
		"LISTEN_IMAPS=",
		"STORE_ROOT=" + opts.MailRoot,
		"AUTH_ADDR=" + opts.AuthAddr,
		"LMTP_HOSTNAME=postcove.localhost",
	}
	if opts.IMAP {
		m.imapAddr = addrs[2]
		vars = append(vars, "LISTEN_IMAP="+m.imapAddr, "IMAP_ALLOW_PLAINTEXT_AUTH=true")
	} else {
		vars = append(vars, "LISTEN_IMAP=")
	}
	logPath := filepath.Join(opts.Dir, "mailbox.log")
	p, err := startLogged("postcove mailbox", opts.Bin, logPath, "POSTCOVE_MAILBOX_", vars...)
	if err != nil {
		return nil, err
	}
	m.proc = p
	if err := waitHealthy(ctx, p, addrs[1]); err != nil {
		return nil, errors.Join(fmt.Errorf("postcove mailbox did not start: %w; log: %s", err, logPath), m.Stop())
	}
	if err := waitListening(ctx, p, m.lmtpAddr); err != nil {
		return nil, errors.Join(fmt.Errorf("postcove mailbox LMTP: %w; log: %s", err, logPath), m.Stop())
	}
	if opts.IMAP {
		// Healthy means every listener is bound, so a refused connection
		// is a binary without listen.imap (unknown environment variables
		// are ignored, not refused).
		if err := waitListening(ctx, p, m.imapAddr); err != nil {
			return nil, errors.Join(fmt.Errorf("postcove mailbox does not serve IMAP on listen.imap (POSTCOVE_MAILBOX_LISTEN_IMAP=%s): %w: is %s built from a tree with the IMAP server? (make build); log: %s",
				m.imapAddr, err, opts.Bin, logPath), m.Stop())
		}
	}
	return m, nil
}

// LMTPAddr is the LMTP listener's address.
func (m *Mailbox) LMTPAddr() string { return m.lmtpAddr }

// IMAPAddr is the IMAP listener's address, "" without IMAP.
func (m *Mailbox) IMAPAddr() string { return m.imapAddr }

// Pid is the mailbox process's pid.
func (m *Mailbox) Pid() int { return m.proc.Pid() }

// Stop stops the service.
func (m *Mailbox) Stop() error { return m.proc.Stop(stopGrace) }

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
	return poll(ctx, p, timeout, func(ctx context.Context) error {
		ctx, cancel := context.WithTimeout(ctx, time.Second)
		defer cancel()
		return grpcx.CheckHealth(ctx, addr, nil, "")
	})
}

// waitListening polls until addr accepts a TCP connection.
func waitListening(ctx context.Context, p *proc.Process, addr string) error {
	return poll(ctx, p, 5*time.Second, func(ctx context.Context) error {
		var d net.Dialer
		c, err := d.DialContext(ctx, "tcp", addr)
		if err != nil {
			return err
		}
		return c.Close()
	})
}

// poll calls check every 50 ms until it succeeds, p exits or timeout
// passes.
func poll(ctx context.Context, p *proc.Process, timeout time.Duration, check func(context.Context) error) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	for {
		err := check(ctx)
		if err == nil {
			return nil
		}
		select {
		case <-p.Done():
			return fmt.Errorf("exited: %v", p.ExitErr())
		case <-ctx.Done():
			return fmt.Errorf("not ready after %v: %w", timeout, err)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// FreeAddr returns a loopback address with a port that was free a moment
// ago, for a server in another process.
func FreeAddr() (string, error) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("find a free port: %w", err)
	}
	addr := lis.Addr().String()
	return addr, lis.Close()
}

// BuildServices builds auth and mailbox from the workspace at repoRoot
// into dir and returns the binaries, for tests that run the benchmarks on
// the code they test.
func BuildServices(repoRoot, dir string) (authBin, mailboxBin string, err error) {
	if authBin, err = BuildService(repoRoot, dir, "auth"); err != nil {
		return "", "", err
	}
	mailboxBin, err = BuildService(repoRoot, dir, "mailbox")
	return authBin, mailboxBin, err
}

// BuildService builds service ("mta": ./services/mta/cmd/mta) from the
// workspace at repoRoot into dir and returns the binary.
func BuildService(repoRoot, dir, service string) (string, error) {
	bin := filepath.Join(dir, service)
	cmd := exec.Command("go", "build", "-o", bin, "./services/"+service+"/cmd/"+service)
	cmd.Dir = repoRoot
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build %s: %w\n%s", service, err, out)
	}
	return bin, nil
}

// WithRandomPasswords makes users of addrs with random passwords, for
// benchmarks where nobody logs in.
func WithRandomPasswords(addrs []string) []User {
	users := make([]User, len(addrs))
	for i, a := range addrs {
		pw := make([]byte, 12)
		rand.Read(pw) //nolint:errcheck // never fails
		users[i] = User{Address: a, Password: hex.EncodeToString(pw)}
	}
	return users
}

// StartDovecotMail starts a private dovecot in dir serving protocol for
// the mailboxes addrs, mail under dir/mail. Nobody logs in: the passwords
// are unusable.
func (s Servers) StartDovecotMail(ctx context.Context, dir, protocol string, addrs []string) (*dovecot.Server, error) {
	users := make([]dovecot.PasswdEntry, len(addrs))
	for i, a := range addrs {
		users[i] = dovecot.MailUser(a, "{PLAIN}unused", filepath.Join(dir, "mail"))
	}
	return s.StartDovecot(ctx, dir, protocol, users)
}

// Mailboxes are the addresses of n users of domain: user00000@domain...
func Mailboxes(n int, domain string) []string {
	addrs := make([]string, n)
	for i := range addrs {
		addrs[i] = fmt.Sprintf("user%05d@%s", i, domain)
	}
	return addrs
}

// StartMail starts the auth service with the users of domain (random
// passwords: nobody logs in) and the mailbox service pointed at it,
// delivering under mailRoot, each as a step (report.Report.Step); servers
// stops them.
func (p Paths) StartMail(ctx context.Context, step func(string, func() error) error, servers *fleet.Fleet, domain string, users []string, mailRoot string) (*Auth, *Mailbox, error) {
	var auth *Auth
	if err := step(fmt.Sprintf("start postcove auth, create %d users", len(users)), func() error {
		var err error
		if auth, err = StartAuth(ctx, p.AuthBin, p.Root); err != nil {
			return err
		}
		servers.OnStop(auth.Stop)
		return auth.CreateUsers(ctx, domain, WithRandomPasswords(users))
	}); err != nil {
		return nil, nil, err
	}
	var mbox *Mailbox
	err := step("start postcove mailbox", func() error {
		var err error
		if mbox, err = StartMailbox(ctx, MailboxOptions{Bin: p.MailboxBin, Dir: p.Root, MailRoot: mailRoot, AuthAddr: auth.Addr()}); err != nil {
			return err
		}
		servers.OnStop(mbox.Stop)
		return nil
	})
	return auth, mbox, err
}

// spread says, for the report, how the servers' files are kept apart on
// disk: filesystems of their own (loopfs), or block groups of their own
// (dovecot.NewWorkDir).
func (p Paths) spread() string {
	if len(p.OwnFS) > 0 {
		return "; " + strings.Join(p.OwnFS, ", ") + ": each a fresh ext4 of its own (mkfs.ext4 " + strings.Join(loopfs.MkfsOptions, " ") + ", on a loop device with direct I/O), so that no server's file creations pay for the inodes another one frees"
	}
	if dovecot.TopDir(p.Root) {
		return "; chattr +T: each server's directories in block groups of their own, so that the files one side removes do not slow the other's file creations"
	}
	return ""
}

// Argon2 returns the argon2 implementation a postcove auth process says,
// in its log at logPath, that it hashes with ("libsodium" or
// "golang.org/x/crypto/argon2"), or "unknown".
func Argon2(logPath string) string {
	f, err := os.Open(logPath)
	if err != nil {
		return "unknown"
	}
	defer f.Close()
	// The line comes at start, before a run's thousands of login lines.
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var rec struct {
			Msg    string `json:"msg"`
			Argon2 string `json:"argon2"`
		}
		if json.Unmarshal(sc.Bytes(), &rec) == nil && rec.Msg == "auth serving" && rec.Argon2 != "" {
			return rec.Argon2
		}
	}
	return "unknown"
}
