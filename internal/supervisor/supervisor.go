// Package supervisor starts and stops Cairn's child processes: the demo's
// logs and witnesses (cairn dev), the MariaDB and MinIO servers of the
// mysql+s3 mode (internal/hastack) and the processes of the integration
// tests.
//
// Each child runs in its own process group, so that a terminal's Ctrl-C
// (SIGINT to the foreground group) reaches only the parent, which then stops
// its children in the order it chooses. One goroutine per child waits for
// it; it is owned by the Process, which every caller releases with Stop,
// Kill or Wait. Stop asks (SIGTERM), then kills (SIGKILL) after a deadline;
// Kill kills the whole group at once. On Linux a child is also killed
// (SIGKILL) when its parent dies without stopping it, e.g. on kill -9 of
// cairn dev: being outside the parent's process group, it would otherwise
// outlive it holding its ports.
package supervisor

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"sync"
	"syscall"
	"time"
)

// DefaultStopTimeout is how long Stop waits after SIGTERM before it sends
// SIGKILL, for children that do not say otherwise. Databases, object stores
// and witnesses flush and exit well within it; a Cairn log drains for up to
// a minute and is given longer by its callers.
const DefaultStopTimeout = 30 * time.Second

// outputWaitDelay bounds how long Wait keeps reading the output of a child
// that exited while a descendant still holds its stdout or stderr.
const outputWaitDelay = 5 * time.Second

// tailBytes is how much of a child's output a Process keeps.
const tailBytes = 64 << 10

// ErrKilled is wrapped by the error of Stop when the child did not exit
// within its deadline after SIGTERM and was killed.
var ErrKilled = errors.New("killed after the stop deadline")

// Command describes a child process.
type Command struct {
	// Name names the child in errors and reports.
	Name string
	// Path is the program to run; Args its arguments (without argv[0]).
	Path string
	Args []string
	// Env is added to the parent's environment.
	Env []string
	// Output, when set, also receives the child's stdout and stderr (the
	// Process keeps their tail either way).
	Output io.Writer
	// OutputFile, when set, is a file the child's stdout and stderr are
	// appended to (created 0644 if missing), closed once the child exited.
	OutputFile string
	// Exited, when set, receives the Process once it has exited. It must
	// have buffer room for every Process that reports to it: the waiting
	// goroutine never blocks on it.
	Exited chan<- *Process
}

// Process is a running (or exited) child.
type Process struct {
	// Name is Command.Name.
	Name string
	cmd  *exec.Cmd
	out  *tail
	// done is closed by the waiting goroutine after it set err.
	done chan struct{}
	err  error
}

// Start starts c in a new process group and returns once it runs.
func Start(c Command) (*Process, error) {
	p := &Process{Name: c.Name, out: &tail{}, done: make(chan struct{})}
	cmd := exec.Command(c.Path, c.Args...)
	cmd.Env = append(os.Environ(), c.Env...)
	ws := []io.Writer{p.out}
	if c.Output != nil {
		ws = append(ws, c.Output)
	}
	var f *os.File
	if c.OutputFile != "" {
		var err error
		if f, err = os.OpenFile(c.OutputFile, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644); err != nil {
			return nil, fmt.Errorf("starting %s: %w", c.Name, err)
		}
		ws = append(ws, f)
	}
	w := io.MultiWriter(ws...)
	cmd.Stdout, cmd.Stderr = w, w
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	dieWithParent(cmd.SysProcAttr)
	cmd.WaitDelay = outputWaitDelay
	if err := cmd.Start(); err != nil {
		if f != nil {
			f.Close()
		}
		return nil, fmt.Errorf("starting %s: %w", c.Name, err)
	}
	p.cmd = cmd
	go func() {
		p.err = cmd.Wait() // returns once the output is copied
		if f != nil {
			f.Close()
		}
		close(p.done)
		if c.Exited != nil {
			select {
			case c.Exited <- p:
			default: // documented: the channel has room
			}
		}
	}()
	return p, nil
}

// PID is the child's process ID, which is also its process group ID.
func (p *Process) PID() int { return p.cmd.Process.Pid }

// Done is closed once the child has exited.
func (p *Process) Done() <-chan struct{} { return p.done }

// Exited reports whether the child has exited.
func (p *Process) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// Wait waits for the child to exit and returns how it exited (nil for
// exit status 0).
func (p *Process) Wait() error {
	<-p.done
	return p.err
}

// Signal sends sig to the child alone (not its group), e.g. SIGSTOP.
func (p *Process) Signal(sig syscall.Signal) error {
	if p.Exited() {
		return nil
	}
	return syscall.Kill(p.PID(), sig)
}

// Stop sends SIGTERM to the child's group and waits for the child; after
// timeout it kills the group (SIGKILL). It returns how the child exited,
// wrapping ErrKilled if it had to be killed.
func (p *Process) Stop(timeout time.Duration) error {
	if !p.Exited() {
		_ = syscall.Kill(-p.PID(), syscall.SIGTERM)
	}
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-p.done:
		return p.err
	case <-t.C:
		_ = p.Kill()
		return fmt.Errorf("%s: %w (%v): %v", p.Name, ErrKilled, timeout, p.err)
	}
}

// Kill kills the child's whole group with SIGKILL and waits for the child.
// The group outlives its leader only as long as a member does, so a kill
// after the child exited still reaches whatever it left behind.
func (p *Process) Kill() error {
	_ = syscall.Kill(-p.PID(), syscall.SIGKILL)
	return p.Wait()
}

// Output returns the last 64 KiB of the child's stdout and stderr.
func (p *Process) Output() string { return p.out.String() }

// ExitText says how a child exited, for reports: "exit 0", "exit status 2",
// "signal: killed".
func ExitText(err error) string {
	if err == nil {
		return "exit 0"
	}
	return err.Error()
}

// tail keeps the last tailBytes written to it.
type tail struct {
	mu sync.Mutex // guards b
	b  []byte
}

func (t *tail) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.b = append(t.b, p...)
	if over := len(t.b) - tailBytes; over > 0 {
		t.b = append(t.b[:0], t.b[over:]...)
	}
	return len(p), nil
}

func (t *tail) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return string(t.b)
}
