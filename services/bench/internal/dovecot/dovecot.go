// Package dovecot runs a private dovecot instance, the Debian package
// postcove is measured against: its own configuration, base_dir, state_dir
// and log in a directory of the caller's, in the foreground (dovecot -F) as
// a child process that is stopped by its pid.
//
// The base configuration listens on nothing but unix sockets in that
// directory (protocols = none; no inet listeners), and when not started
// as root runs every process as the current user (dovecot's rootless
// setup); the caller adds the
// settings of what it measures (passdb, userdb, caches, later protocols on
// 127.0.0.1). Settings are described in dovecot's documentation,
// https://doc.dovecot.org/2.3/settings/core/ (Debian 12 ships 2.3.19).
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
	"os/user"
	"path/filepath"
	"strings"
	"text/template"
	"time"

	"github.com/postcove/postcove/services/bench/internal/proc"
)

// DefaultBin is where Debian's dovecot-core installs the master binary.
const DefaultBin = "/usr/sbin/dovecot"

// maxSocketPath is the longest unix socket path Linux accepts (sun_path is
// 108 bytes with the terminating NUL).
const maxSocketPath = 107

// Options configure Start.
type Options struct {
	// Bin is the dovecot master binary. Default DefaultBin.
	Bin string
	// Dir holds the configuration, base_dir (run/), state_dir (state/) and
	// the log. Required. Start makes it traversable (0755) because dovecot's
	// unprivileged processes (auth runs as default_internal_user) must reach
	// the files in it; its parent must be traversable too.
	Dir string
	// Config is appended to the base configuration: passdb, userdb and
	// whatever else is measured.
	Config string
	// Sockets are names of unix sockets in base_dir that must accept
	// connections before Start returns, e.g. "auth-client".
	Sockets []string
	// StartTimeout bounds the wait for the sockets. Default 10 s.
	StartTimeout time.Duration
}

// Server is a running dovecot.
type Server struct {
	proc    *proc.Process
	baseDir string
	logPath string
	conf    string
}

// baseConfig is the part of every configuration that keeps the instance
// private: all paths in Dir, no network listeners, no TLS.
const baseConfig = `# Written by postcove's benchmark: a private dovecot, see package dovecot.
base_dir = {{.Dir}}/run
state_dir = {{.Dir}}/state
log_path = {{.Dir}}/dovecot.log
protocols = none
ssl = no
listen = 127.0.0.1
{{- if .Rootless}}

# Not started as root: every process runs as the user who started it
# (https://doc.dovecot.org/2.3/installation_guide/rootless/).
default_internal_user = {{.User}}
default_internal_group = {{.Group}}
default_login_user = {{.User}}
service anvil {
  chroot =
}
{{- end}}

{{.Config}}
`

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
	s := &Server{
		baseDir: filepath.Join(dir, "run"),
		logPath: filepath.Join(dir, "dovecot.log"),
		conf:    filepath.Join(dir, "dovecot.conf"),
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
	tmpl, err := template.New("dovecot.conf").Parse(baseConfig)
	if err != nil {
		return nil, fmt.Errorf("dovecot: config: %w", err)
	}
	vars := struct {
		Dir, Config, User, Group string
		Rootless                 bool
	}{Dir: dir, Config: opts.Config, Rootless: os.Geteuid() != 0}
	if vars.Rootless {
		if vars.User, vars.Group, err = currentUser(); err != nil {
			return nil, fmt.Errorf("dovecot: %w", err)
		}
	}
	var conf bytes.Buffer
	if err := tmpl.Execute(&conf, vars); err != nil {
		return nil, fmt.Errorf("dovecot: config: %w", err)
	}
	if err := os.WriteFile(s.conf, conf.Bytes(), 0o644); err != nil {
		return nil, fmt.Errorf("dovecot: %w", err)
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
	if err := s.waitSockets(ctx, opts.Sockets, opts.StartTimeout); err != nil {
		stopErr := s.Stop()
		return nil, errors.Join(fmt.Errorf("dovecot did not start: %w\n%s", err, s.LogTail()), stopErr)
	}
	return s, nil
}

// waitSockets polls until every socket accepts a connection. The master
// creates the listeners before it spawns the services behind them, so an
// accepted connection means the service will answer.
func (s *Server) waitSockets(ctx context.Context, names []string, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	for _, name := range names {
		var d net.Dialer
		for {
			c, err := d.DialContext(ctx, "unix", s.Socket(name))
			if err == nil {
				c.Close()
				break
			}
			select {
			case <-s.proc.Done():
				return fmt.Errorf("dovecot exited: %v", s.proc.ExitErr())
			case <-ctx.Done():
				return fmt.Errorf("socket %s: %w", name, err)
			case <-time.After(20 * time.Millisecond):
			}
		}
	}
	return nil
}

// currentUser returns the names of the process's user and primary group,
// for a dovecot that cannot switch users.
func currentUser() (name, group string, err error) {
	u, err := user.Current()
	if err != nil {
		return "", "", err
	}
	g, err := user.LookupGroupId(u.Gid)
	if err != nil {
		return "", "", err
	}
	return u.Username, g.Name, nil
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
func (s *Server) LogTail() string {
	b, _ := os.ReadFile(s.logPath)
	if i := len(b) - 3000; i > 0 {
		b = b[i:]
	}
	return strings.TrimSpace(string(b))
}

// Stop sends SIGTERM to the master, which stops its children and exits,
// and waits for it (SIGKILL after 10 s).
func (s *Server) Stop() error {
	return s.proc.Stop(10 * time.Second)
}
