package harness

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sync"
	"syscall"
	"time"
)

// Proc is one child process that can be killed and started again with the
// same command line. Every child gets SIGKILL if the test binary dies, so a
// crashed run leaves nothing behind (Postgres included: it runs as a direct
// child, not daemonized by pg_ctl).
type Proc struct {
	Name string
	Log  string           // output file, appended to on every start
	Mk   func() *exec.Cmd // a fresh command for every start

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{}
}

// Start starts the process unless it runs already.
func (p *Proc) Start() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.done != nil && !Closed(p.done) {
		return fmt.Errorf("%s is already running", p.Name)
	}
	f, err := os.OpenFile(p.Log, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		return fmt.Errorf("log of %s: %w", p.Name, err)
	}
	fmt.Fprintf(f, "=== harness: start %s at %s\n", p.Name, time.Now().UTC().Format(time.RFC3339Nano))
	cmd := p.Mk()
	cmd.Stdout, cmd.Stderr = f, f
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Pdeathsig = syscall.SIGKILL
	cmd.SysProcAttr.Setpgid = true // a ^C on the terminal reaches the test only
	if err := cmd.Start(); err != nil {
		f.Close()
		return fmt.Errorf("start %s: %w", p.Name, err)
	}
	done := make(chan struct{})
	p.cmd, p.done = cmd, done
	go func() {
		err := cmd.Wait()
		fmt.Fprintf(f, "=== harness: %s exited at %s: %v\n", p.Name, time.Now().UTC().Format(time.RFC3339Nano), err)
		f.Close()
		close(done)
	}()
	return nil
}

// Running reports whether the process was started and has not exited.
func (p *Proc) Running() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.done != nil && !Closed(p.done)
}

// Pid is the process id of the last start (0 before the first).
func (p *Proc) Pid() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil || p.cmd.Process == nil {
		return 0
	}
	return p.cmd.Process.Pid
}

// Signal sends sig without waiting (SIGSTOP, SIGCONT).
func (p *Proc) Signal(sig syscall.Signal) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil || p.cmd.Process == nil {
		return fmt.Errorf("%s not started", p.Name)
	}
	return p.cmd.Process.Signal(sig)
}

// Stop sends sig and waits up to grace for the exit, then SIGKILLs.
func (p *Proc) Stop(sig syscall.Signal, grace time.Duration) {
	p.mu.Lock()
	cmd, done := p.cmd, p.done
	p.mu.Unlock()
	if cmd == nil || done == nil || Closed(done) {
		return
	}
	_ = cmd.Process.Signal(sig)
	select {
	case <-done:
		return
	case <-time.After(grace):
	}
	_ = cmd.Process.Signal(syscall.SIGKILL)
	select {
	case <-done:
	case <-time.After(10 * time.Second):
	}
}

// Kill ends the process at once (a crash: no graceful hand-over).
func (p *Proc) Kill() { p.Stop(syscall.SIGKILL, time.Second) }

// Closed reports whether c is closed, without waiting.
func Closed(c chan struct{}) bool {
	select {
	case <-c:
		return true
	default:
		return false
	}
}

// RepoRoot is the module root (this file lives in <root>/internal/harness).
func RepoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Dir(filepath.Dir(filepath.Dir(file)))
}
