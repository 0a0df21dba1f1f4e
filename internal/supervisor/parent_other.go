//go:build !linux

package supervisor

import "syscall"

// dieWithParent does nothing where the kernel has no parent-death signal:
// a child outlives a parent killed with SIGKILL.
func dieWithParent(*syscall.SysProcAttr) {}
