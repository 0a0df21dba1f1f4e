package supervisor

import (
	"errors"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

func sh(t *testing.T, script string, exited chan<- *Process) *Process {
	t.Helper()
	p, err := Start(Command{Name: "sh", Path: "/bin/sh", Args: []string{"-c", script}, Exited: exited})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Kill() })
	return p
}

// waitOutput polls the child's output until it contains want.
func waitOutput(t *testing.T, p *Process, want string) string {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for !strings.Contains(p.Output(), want) {
		if time.Now().After(deadline) {
			t.Fatalf("%s never printed %q; output %q", p.Name, want, p.Output())
		}
		<-tick.C
	}
	return p.Output()
}

func TestChildRunsInItsOwnProcessGroup(t *testing.T) {
	p := sh(t, "echo up; exec sleep 60", nil)
	waitOutput(t, p, "up")
	pgid, err := syscall.Getpgid(p.PID())
	if err != nil {
		t.Fatal(err)
	}
	if pgid != p.PID() || pgid == syscall.Getpgrp() {
		t.Fatalf("child %d is in group %d (ours %d): a terminal's Ctrl-C would reach it", p.PID(), pgid, syscall.Getpgrp())
	}
}

func TestStopReturnsTheExitOfAChildThatHonoursSIGTERM(t *testing.T) {
	exited := make(chan *Process, 1)
	p := sh(t, `trap 'echo bye; exit 0' TERM; echo up; while :; do sleep 0.05; done`, exited)
	waitOutput(t, p, "up")
	if err := p.Stop(DefaultStopTimeout); err != nil {
		t.Fatalf("Stop: %v (output %q)", err, p.Output())
	}
	if got := <-exited; got != p || !strings.Contains(p.Output(), "bye") {
		t.Fatalf("exit not reported, or output not recorded: %q", p.Output())
	}
}

func TestStopKillsAChildThatIgnoresSIGTERMAfterTheDeadline(t *testing.T) {
	p := sh(t, `trap '' TERM; echo up; while :; do sleep 0.05; done`, nil)
	waitOutput(t, p, "up")
	start := time.Now()
	err := p.Stop(300 * time.Millisecond)
	if !errors.Is(err, ErrKilled) {
		t.Fatalf("Stop of a child ignoring SIGTERM: %v, want ErrKilled", err)
	}
	if !p.Exited() || time.Since(start) < 300*time.Millisecond {
		t.Fatalf("killed before the deadline (%v) or not at all", time.Since(start))
	}
}

func TestKillKillsTheWholeGroup(t *testing.T) {
	p := sh(t, `sleep 60 & echo "grandchild $!"; wait`, nil)
	out := waitOutput(t, p, "\n")
	gc, err := strconv.Atoi(strings.TrimSpace(strings.TrimPrefix(out, "grandchild ")))
	if err != nil {
		t.Fatalf("output %q: %v", out, err)
	}
	if err := p.Kill(); err == nil {
		t.Fatal("a killed child reported exit 0")
	}
	// The grandchild, reparented and reaped once dead, disappears.
	deadline := time.Now().Add(30 * time.Second)
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for syscall.Kill(gc, 0) == nil {
		if time.Now().After(deadline) {
			t.Fatalf("grandchild %d survived the kill of its group", gc)
		}
		<-tick.C
	}
}

func TestWaitReportsTheExitStatus(t *testing.T) {
	p := sh(t, "exit 3", nil)
	var ee interface{ ExitCode() int }
	if err := p.Wait(); !errors.As(err, &ee) || ee.ExitCode() != 3 {
		t.Fatalf("Wait: %v, want exit status 3", err)
	}
	if ExitText(nil) != "exit 0" {
		t.Fatal(ExitText(nil))
	}
}

// TestChildDiesWithItsParent runs this test binary as a parent that starts
// a child through Start, kills the parent with SIGKILL, and requires the
// child to be gone although it is outside the parent's process group.
func TestChildDiesWithItsParent(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("the parent-death signal is Linux's")
	}
	if os.Getenv("SUPERVISOR_TEST_PARENT") != "" {
		p, err := Start(Command{Name: "child", Path: "/bin/sh", Args: []string{"-c", "exec sleep 60"}})
		if err != nil {
			t.Fatal(err)
		}
		fmt.Printf("child %d\n", p.PID())
		_ = p.Wait() // killed with the parent
		return
	}
	parent, err := Start(Command{Name: "parent", Path: os.Args[0], Args: []string{"-test.run=^TestChildDiesWithItsParent$"},
		Env: []string{"SUPERVISOR_TEST_PARENT=1"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = parent.Kill() })
	out := waitOutput(t, parent, "child ")
	var child int
	if _, err := fmt.Sscanf(out[strings.Index(out, "child "):], "child %d", &child); err != nil {
		t.Fatalf("parent output %q: %v", out, err)
	}
	if err := syscall.Kill(parent.PID(), syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for syscall.Kill(child, 0) == nil {
		if time.Now().After(deadline) {
			_ = syscall.Kill(child, syscall.SIGKILL)
			t.Fatalf("child %d outlived its parent killed with SIGKILL", child)
		}
		<-tick.C
	}
}
