package supervisor

import "syscall"

// dieWithParent has the kernel kill the child (SIGKILL) when the parent
// dies. Strictly, when the OS thread that started it exits: Go keeps its
// threads for the life of the process, except one whose goroutine locked it
// (runtime.LockOSThread) and returned without unlocking, which no caller of
// this package does.
func dieWithParent(a *syscall.SysProcAttr) { a.Pdeathsig = syscall.SIGKILL }
