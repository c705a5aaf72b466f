// Package dovecot runs a private dovecot instance, the Debian package
// postcove is measured against: its own configuration, base_dir, state_dir,
// mail and log in a directory of the caller's, in the foreground
// (dovecot -F) as a child process that is stopped by its pid.
//
// The configuration is written by scripts/dovecot-bench.sh (so that a
// person can reproduce the instance without Go): listeners only on
// 127.0.0.1, the ones asked for (LMTP, IMAP) or none, a passwd-file passdb
// and userdb, Maildir under Dir/mail/<domain>/<user>/Maildir with
// mail_fsync = always, and, when not started as root, every process as the
// current user (dovecot's rootless setup). The caller appends the settings
// of what it measures (caches and the like). Settings are described in
// dovecot's documentation, https://doc.dovecot.org/2.3/settings/core/
// (Debian 12 ships 2.3.19).
package dovecot

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/postcove/postcove/services/bench/internal/proc"
)

// DefaultBin is where Debian's dovecot-core installs the master binary.
const DefaultBin = "/usr/sbin/dovecot"

// maxSocketPath is the longest unix socket path Linux accepts (sun_path is
// 108 bytes with the terminating NUL).
const maxSocketPath = 107

// ScriptName is the configuration script, in the repository's scripts/.
const ScriptName = "dovecot-bench.sh"

// DefaultScriptsDir is where the script is, relative to the repository's
// root, where make and the documented commands run.
const DefaultScriptsDir = "scripts"

// CheckInstalled fails, saying which Debian package to install, when the
// master bin or the server of one of protocols ("lmtp", "imap") is
// missing. The servers are in ../lib/dovecot/ relative to the master's
// directory (/usr/sbin -> /usr/lib/dovecot).
func CheckInstalled(bin string, protocols ...string) error {
	if _, err := exec.LookPath(bin); err != nil {
		return fmt.Errorf("dovecot not installed (%s): apt-get install dovecot-core", bin)
	}
	for _, p := range protocols {
		server := filepath.Join(filepath.Dir(filepath.Dir(bin)), "lib", "dovecot", p)
		if _, err := os.Stat(server); err != nil {
			return fmt.Errorf("dovecot's %s server is not installed (%s): apt-get install dovecot-%sd", strings.ToUpper(p), server, p)
		}
	}
	return nil
}

// Options configure Start.
type Options struct {
	// Bin is the dovecot master binary. Default DefaultBin.
	Bin string
	// ScriptsDir holds ScriptName. Default DefaultScriptsDir.
	ScriptsDir string
	// Dir holds the configuration, base_dir (run/), state_dir (state/),
	// the mail (mail/) and the log. Required. It is made traversable
	// (0755) because dovecot's unprivileged processes (auth runs as
	// default_internal_user) must reach the files in it; its parent must
	// be traversable too.
	Dir string
	// Passwd is the passwd-file (see PasswdEntry) of the passdb and the
	// userdb. Required.
	Passwd string
	// Listeners are the protocols served on 127.0.0.1, none by default.
	// Port 0 is a free port, chosen by Start (see Server.Addr).
	Listeners []Listener
	// Config is appended to the script's configuration: caches and
	// whatever else is measured.
	Config string
	// Sockets are names of unix sockets in base_dir that must accept
	// connections before Start returns, e.g. "auth-client".
	Sockets []string
	// StartTimeout bounds the wait for the sockets and listeners. Default
	// 10 s.
	StartTimeout time.Duration
}

// Listener is a protocol served on a loopback port.
type Listener struct {
	Protocol string // "lmtp" (needs dovecot-lmtpd) or "imap" (dovecot-imapd)
	Port     int
}

// Server is a running dovecot.
type Server struct {
	proc      *proc.Process
	dir       string
	listeners []Listener
	baseDir   string
	logPath   string
	conf      string
}

// Start writes Dir/dovecot.conf, starts dovecot in the foreground with it
// and waits until every socket in opts.Sockets accepts connections. The
// caller must Stop it.
func Start(ctx context.Context, opts Options) (*Server, error) {
	if opts.Dir == "" {
		return nil, errors.New("dovecot: no directory")
	}
	if opts.Bin == "" {
		opts.Bin = DefaultBin
	}
	if opts.StartTimeout == 0 {
		opts.StartTimeout = 10 * time.Second
	}
	if _, err := exec.LookPath(opts.Bin); err != nil {
		return nil, fmt.Errorf("dovecot not installed (apt-get install dovecot-core): %w", err)
	}
	dir, err := filepath.Abs(opts.Dir)
	if err != nil {
		return nil, fmt.Errorf("dovecot: %w", err)
	}
	if opts.Passwd == "" {
		return nil, errors.New("dovecot: no passwd-file")
	}
	listeners, err := pickPorts(opts.Listeners)
	if err != nil {
		return nil, fmt.Errorf("dovecot: %w", err)
	}
	opts.Listeners = listeners
	s := &Server{
		dir:       dir,
		listeners: listeners,
		baseDir:   filepath.Join(dir, "run"),
		logPath:   filepath.Join(dir, "dovecot.log"),
		conf:      filepath.Join(dir, "dovecot.conf"),
	}
	for _, name := range opts.Sockets {
		if p := s.Socket(name); len(p) > maxSocketPath {
			return nil, fmt.Errorf("dovecot: socket path %s is longer than %d bytes: use a shorter directory", p, maxSocketPath)
		}
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("dovecot: %w", err)
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		return nil, fmt.Errorf("dovecot: %w", err)
	}
	if err := CheckTraversable(filepath.Dir(dir)); err != nil {
		return nil, fmt.Errorf("dovecot: %w", err)
	}
	if err := writeConfig(ctx, opts, dir); err != nil {
		return nil, fmt.Errorf("dovecot: config: %w", err)
	}
	if uid, gid := MailOwner(); os.Geteuid() == 0 {
		// Its mail processes create the users' Maildirs in there.
		if err := os.Chown(s.MailRoot(), uid, gid); err != nil {
			return nil, fmt.Errorf("dovecot: %w", err)
		}
	}
	out, err := os.OpenFile(filepath.Join(dir, "dovecot.out"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("dovecot: %w", err)
	}
	defer out.Close() // the child has its own copy
	// -F: stay in the foreground, so the process we started is the master
	// and its pid is the root of the tree we measure and stop.
	cmd := exec.Command(opts.Bin, "-F", "-c", s.conf)
	cmd.Stdout, cmd.Stderr = out, out
	if s.proc, err = proc.Start("dovecot", cmd); err != nil {
		return nil, err
	}
	if err := s.waitReady(ctx, opts.Sockets, opts.Listeners, opts.StartTimeout); err != nil {
		stopErr := s.Stop()
		return nil, errors.Join(fmt.Errorf("dovecot did not start: %w\n%s", err, s.LogTail()), stopErr)
	}
	return s, nil
}

// waitReady polls until every socket and listener accepts a connection.
// The master creates the listeners before it spawns the services behind
// them, so an accepted connection means the service will answer.
func (s *Server) waitReady(ctx context.Context, sockets []string, listeners []Listener, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	type endpoint struct{ network, addr string }
	var eps []endpoint
	for _, name := range sockets {
		eps = append(eps, endpoint{"unix", s.Socket(name)})
	}
	for _, l := range listeners {
		eps = append(eps, endpoint{"tcp", s.Addr(l.Protocol)})
	}
	for _, ep := range eps {
		var d net.Dialer
		for {
			c, err := d.DialContext(ctx, ep.network, ep.addr)
			if err == nil {
				c.Close()
				break
			}
			select {
			case <-s.proc.Done():
				return fmt.Errorf("dovecot exited: %v", s.proc.ExitErr())
			case <-ctx.Done():
				return fmt.Errorf("%s %s: %w", ep.network, ep.addr, err)
			case <-time.After(20 * time.Millisecond):
			}
		}
	}
	return nil
}

// pickPorts returns listeners with port 0 replaced by a port that was
// free a moment ago.
func pickPorts(listeners []Listener) ([]Listener, error) {
	out := slices.Clone(listeners)
	for i, l := range out {
		if l.Port != 0 {
			continue
		}
		lis, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("find a free port: %w", err)
		}
		out[i].Port = lis.Addr().(*net.TCPAddr).Port
		if err := lis.Close(); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// writeConfig runs the script, which writes dir/dovecot.conf, and appends
// opts.Config to it.
func writeConfig(ctx context.Context, opts Options, dir string) error {
	scriptsDir := opts.ScriptsDir
	if scriptsDir == "" {
		scriptsDir = DefaultScriptsDir
	}
	script, err := filepath.Abs(filepath.Join(scriptsDir, ScriptName))
	if err != nil {
		return err
	}
	if _, err := os.Stat(script); err != nil {
		return fmt.Errorf("%w (run from the repository's root, or point --scripts-dir at its scripts/)", err)
	}
	passwd, err := filepath.Abs(opts.Passwd)
	if err != nil {
		return err
	}
	args := []string{script, dir, passwd}
	for _, l := range opts.Listeners {
		args = append(args, fmt.Sprintf("%s=%d", l.Protocol, l.Port))
	}
	// bash, not the script itself: a checkout without the execute bit
	// still works.
	if out, err := exec.CommandContext(ctx, "bash", args...).CombinedOutput(); err != nil {
		return fmt.Errorf("%s: %w: %s", ScriptName, err, bytes.TrimSpace(out))
	}
	if opts.Config == "" {
		return nil
	}
	f, err := os.OpenFile(filepath.Join(dir, "dovecot.conf"), os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		return err
	}
	_, err = f.WriteString("\n# Added by the benchmark.\n" + opts.Config)
	return errors.Join(err, f.Close())
}

// NewWorkDir creates a directory under parent ("" for the system's) for one
// benchmark run: a private dovecot's configs, logs and data, readable by its
// unprivileged processes.
func NewWorkDir(parent, prefix string) (string, error) {
	root, err := os.MkdirTemp(parent, prefix)
	if err != nil {
		return "", err
	}
	if err := os.Chmod(root, 0o755); err != nil {
		return "", err
	}
	markTopDir(root)
	if err := CheckTraversable(root); err != nil {
		return "", fmt.Errorf("%w (choose the directory with TMPDIR)", err)
	}
	return root, nil
}

// FinishWorkDir removes a run's directory, or keeps it (saying where, with
// what it holds) when keep is set: the run failed or the user asked.
func FinishWorkDir(root string, keep bool, log io.Writer, holds string) error {
	if keep {
		fmt.Fprintf(log, "kept %s (%s)\n", root, holds)
		return nil
	}
	return os.RemoveAll(root)
}

// CheckTraversable fails when dir or one of its ancestors lacks the
// execute bit for others: dovecot's unprivileged processes could then not
// reach the instance's files, and would only say so in the log.
func CheckTraversable(dir string) error {
	for {
		fi, err := os.Stat(dir)
		if err != nil {
			return err
		}
		if fi.Mode().Perm()&0o001 == 0 {
			return fmt.Errorf("%s is not traversable by dovecot's unprivileged processes (mode %v): chmod o+x it or use another directory", dir, fi.Mode().Perm())
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return nil
		}
		dir = parent
	}
}

// Addr is the address of the instance's listener of protocol, "" when
// it has none.
func (s *Server) Addr(protocol string) string {
	for _, l := range s.listeners {
		if l.Protocol == protocol {
			return net.JoinHostPort("127.0.0.1", strconv.Itoa(l.Port))
		}
	}
	return ""
}

// MailRoot holds the mail, <domain>/<user>/Maildir.
func (s *Server) MailRoot() string { return filepath.Join(s.dir, "mail") }

// Socket is the path of a unix socket in the instance's base_dir.
func (s *Server) Socket(name string) string { return filepath.Join(s.baseDir, name) }

// Pid is the master process's pid, the root of the instance's process
// tree.
func (s *Server) Pid() int { return s.proc.Pid() }

// ConfigPath is the configuration file the instance runs with.
func (s *Server) ConfigPath() string { return s.conf }

// LogPath is the instance's log file.
func (s *Server) LogPath() string { return s.logPath }

// LogTail returns the end of the log, for error messages.
func (s *Server) LogTail() string { return proc.LogTail(s.logPath) }

// Stop sends SIGTERM to the master, which stops its children and exits,
// and waits for it (SIGKILL after 10 s).
func (s *Server) Stop() error {
	return s.proc.Stop(10 * time.Second)
}
