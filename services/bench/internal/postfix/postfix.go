// Package postfix runs a private postfix instance, the Debian package
// postcove's mta is measured against: its own configuration directory,
// queue, data directory and log in a directory of the caller's, its master
// in the foreground (master -d) as a child process that is stopped by its
// pid.
//
// The configuration is written by scripts/postfix-bench.sh (so that a
// person can reproduce the instance without Go): smtpd on one 127.0.0.1
// port, one virtual mailbox domain whose users are listed in a texthash
// table, delivered over LMTP to a loopback port (a dovecot), nothing else.
// Postfix's master must start as root; its daemons then run as the postfix
// user. Settings: postconf(5), https://www.postfix.org/postconf.5.html
// (Debian 12 ships 3.7).
package postfix

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/postcove/postcove/services/bench/internal/proc"
)

// DefaultBin is where Debian's postfix installs the postfix command;
// postconf is beside it.
const DefaultBin = "/usr/sbin/postfix"

// ScriptName is the configuration script, in the repository's scripts/.
const ScriptName = "postfix-bench.sh"

// CheckInstalled fails, saying what to do, when the postfix command bin
// or postconf beside it is missing, or when this process cannot start
// postfix's master (it must be root).
func CheckInstalled(bin string) error {
	if _, err := exec.LookPath(bin); err != nil {
		return fmt.Errorf("postfix not installed (%s): apt-get install postfix (scripts/install-deps.sh does it without configuring a system MTA)", bin)
	}
	if _, err := exec.LookPath(postconf(bin)); err != nil {
		return fmt.Errorf("postfix's postconf is not beside %s: %w", bin, err)
	}
	if os.Geteuid() != 0 {
		return errors.New("postfix's master must be started as root: run the benchmark as root")
	}
	return nil
}

func postconf(bin string) string { return filepath.Join(filepath.Dir(bin), "postconf") }

// Options configure Start.
type Options struct {
	// Bin is the postfix command. Default DefaultBin.
	Bin string
	// ScriptsDir holds ScriptName. Required (the benchmark's
	// --scripts-dir).
	ScriptsDir string
	// Dir holds the configuration (etc/), the queue (spool/), data/ and
	// the log (maillog). Required.
	Dir string
	// Domain is the one virtual mailbox domain; Recipients its users.
	Domain     string
	Recipients []string
	// LMTPAddr is where the domain's mail is delivered: 127.0.0.1:PORT.
	LMTPAddr string
	// StartTimeout bounds the wait for the SMTP listener. Default 10 s.
	StartTimeout time.Duration
}

// Server is a running postfix.
type Server struct {
	proc    *proc.Process
	dir     string
	addr    string
	logPath string
}

// Start writes the configuration with the script, starts postfix's master
// in the foreground with it and waits until its SMTP port accepts
// connections. The caller must Stop it.
func Start(ctx context.Context, opts Options) (*Server, error) {
	if opts.Bin == "" {
		opts.Bin = DefaultBin
	}
	if opts.StartTimeout == 0 {
		opts.StartTimeout = 10 * time.Second
	}
	if opts.Dir == "" || opts.Domain == "" || len(opts.Recipients) == 0 {
		return nil, errors.New("postfix: need a directory, a domain and recipients")
	}
	if err := CheckInstalled(opts.Bin); err != nil {
		return nil, err
	}
	host, lmtpPort, err := net.SplitHostPort(opts.LMTPAddr)
	if err != nil || host != "127.0.0.1" {
		return nil, fmt.Errorf("postfix: LMTP address %q: want 127.0.0.1:PORT", opts.LMTPAddr)
	}
	dir, err := filepath.Abs(opts.Dir)
	if err != nil {
		return nil, fmt.Errorf("postfix: %w", err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("postfix: %w", err)
	}
	port, err := freePort()
	if err != nil {
		return nil, fmt.Errorf("postfix: %w", err)
	}
	s := &Server{dir: dir, addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), logPath: filepath.Join(dir, "maillog")}
	rcpts := filepath.Join(dir, "recipients")
	if err := os.WriteFile(rcpts, []byte(strings.Join(opts.Recipients, "\n")+"\n"), 0o644); err != nil {
		return nil, fmt.Errorf("postfix: %w", err)
	}
	if err := runScript(ctx, opts.ScriptsDir, dir, strconv.Itoa(port), lmtpPort, opts.Domain, rcpts); err != nil {
		return nil, fmt.Errorf("postfix: config: %w", err)
	}
	master, err := daemonDir(ctx, opts.Bin, s.ConfigDir())
	if err != nil {
		return nil, err
	}
	out, err := os.OpenFile(filepath.Join(dir, "master.out"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("postfix: %w", err)
	}
	defer out.Close() // the child has its own copy
	// -d: stay in the foreground, so the process we started is the master
	// and its pid is the root of the tree we measure and stop. In its own
	// process group: on SIGTERM the master signals the group whose id is
	// its pid (its daemons), which must exist and must not be ours.
	cmd := exec.Command(filepath.Join(master, "master"), "-c", s.ConfigDir(), "-d")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Stdout, cmd.Stderr = out, out
	if s.proc, err = proc.Start("postfix master", cmd); err != nil {
		return nil, err
	}
	if err := s.waitReady(ctx, opts.StartTimeout); err != nil {
		return nil, errors.Join(fmt.Errorf("postfix did not start: %w\n%s", err, s.LogTail()), s.Stop())
	}
	return s, nil
}

// runScript runs ScriptName, which writes the configuration into dir.
func runScript(ctx context.Context, scriptsDir string, args ...string) error {
	script, err := filepath.Abs(filepath.Join(scriptsDir, ScriptName))
	if err != nil {
		return err
	}
	if _, err := os.Stat(script); err != nil {
		return fmt.Errorf("%w (run from the repository's root, or point --scripts-dir at its scripts/)", err)
	}
	// bash, not the script itself: a checkout without the execute bit
	// still works.
	if out, err := exec.CommandContext(ctx, "bash", append([]string{script}, args...)...).CombinedOutput(); err != nil {
		return fmt.Errorf("%s: %w: %s", ScriptName, err, bytes.TrimSpace(out))
	}
	return nil
}

// daemonDir asks postconf where postfix's daemons (master) are.
func daemonDir(ctx context.Context, bin, configDir string) (string, error) {
	out, err := exec.CommandContext(ctx, postconf(bin), "-c", configDir, "-h", "daemon_directory").Output()
	if err != nil {
		return "", fmt.Errorf("postfix: postconf daemon_directory: %w", err)
	}
	return strings.TrimSpace(string(out)), nil
}

// waitReady polls until the SMTP listener accepts a connection. The master
// binds it before it spawns smtpd, so an accepted connection will be
// answered.
func (s *Server) waitReady(ctx context.Context, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var d net.Dialer
	for {
		c, err := d.DialContext(ctx, "tcp", s.addr)
		if err == nil {
			// Closed without a word: smtpd sees a lost connection, as with
			// any port scanner.
			return c.Close()
		}
		select {
		case <-s.proc.Done():
			return fmt.Errorf("postfix's master exited: %v", s.proc.ExitErr())
		case <-ctx.Done():
			return fmt.Errorf("%s: %w", s.addr, err)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func freePort() (int, error) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("find a free port: %w", err)
	}
	port := lis.Addr().(*net.TCPAddr).Port
	return port, lis.Close()
}

// Version is the version of postfix's mail_version, or "unknown (why)".
func Version(ctx context.Context, bin string) string {
	out, err := exec.CommandContext(ctx, postconf(bin), "-d", "-h", "mail_version").Output()
	if err != nil {
		return "unknown (" + err.Error() + ")"
	}
	return strings.TrimSpace(string(out))
}

// Addr is the SMTP listener's address.
func (s *Server) Addr() string { return s.addr }

// ConfigDir holds main.cf and master.cf.
func (s *Server) ConfigDir() string { return filepath.Join(s.dir, "etc") }

// QueueDir is the queue_directory.
func (s *Server) QueueDir() string { return filepath.Join(s.dir, "spool") }

// Pid is the master's pid, the root of the instance's process tree.
func (s *Server) Pid() int { return s.proc.Pid() }

// LogPath is the instance's log (maillog_file).
func (s *Server) LogPath() string { return s.logPath }

// LogTail returns the end of the log, for error messages.
func (s *Server) LogTail() string { return proc.LogTail(s.logPath) }

// Stop sends SIGTERM to the master, which stops its daemons and exits,
// and waits for it (SIGKILL after 10 s).
func (s *Server) Stop() error {
	return s.proc.Stop(10 * time.Second)
}
