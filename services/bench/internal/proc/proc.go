// Package proc runs the servers a benchmark measures as child processes of
// the benchmark and stops them by the pid it started: never by name, so a
// benchmark cannot touch a production server of the same name running on
// the same machine.
package proc

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync/atomic"
	"syscall"
	"time"
)

// Process is a started child.
type Process struct {
	name string
	cmd  *exec.Cmd
	done chan struct{} // closed when cmd has exited; err is set then
	err  error         // cmd.Wait's result
	// stopped is set once Stop has signalled the process: its exit is
	// then ours, whatever its status.
	stopped atomic.Bool
}

// Start starts cmd, which the caller has fully set up (path, args,
// environment, output), and names it name in messages.
func Start(name string, cmd *exec.Cmd) (*Process, error) {
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &Process{name: name, cmd: cmd, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

// Pid is the child's process id.
func (p *Process) Pid() int { return p.cmd.Process.Pid }

// Name is the name given to Start.
func (p *Process) Name() string { return p.name }

// Done is closed when the process has exited.
func (p *Process) Done() <-chan struct{} { return p.done }

// ExitErr is the process's exit status once Done is closed (nil for exit
// code 0), and nil before.
func (p *Process) ExitErr() error {
	select {
	case <-p.done:
		return p.err
	default:
		return nil
	}
}

// Stop sends SIGTERM to the process (only to it: a well-behaved server
// such as dovecot's master stops its own children) and waits up to grace
// for it to exit, then sends SIGKILL. It returns an error when the process
// had to be killed or had already died on its own with a failure; a
// process that exits on SIGTERM is a clean stop, whatever its status.
// Stopping a stopped process does nothing.
func (p *Process) Stop(grace time.Duration) error {
	select {
	case <-p.done:
		if p.err != nil && !p.stopped.Load() {
			return fmt.Errorf("%s (pid %d) had exited: %w", p.name, p.Pid(), p.err)
		}
		return nil
	default:
	}
	p.stopped.Store(true)
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("stop %s (pid %d): %w", p.name, p.Pid(), err)
	}
	t := time.NewTimer(grace)
	defer t.Stop()
	select {
	case <-p.done:
		return nil
	case <-t.C:
	}
	if err := p.cmd.Process.Kill(); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("kill %s (pid %d): %w", p.name, p.Pid(), err)
	}
	<-p.done
	return fmt.Errorf("%s (pid %d) ignored SIGTERM for %v: killed", p.name, p.Pid(), grace)
}

// LogTail returns the last 3000 bytes or so of a server's log file,
// trimmed, for error messages; "" when it cannot be read.
func LogTail(path string) string {
	b, _ := os.ReadFile(path)
	if i := len(b) - 3000; i > 0 {
		b = b[i:]
	}
	return strings.TrimSpace(string(b))
}
