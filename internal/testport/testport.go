// Package testport hands tests loopback ports that no other test process
// and no outgoing connection can take between the pick and the bind.
//
// Asking the kernel for port 0 and closing the probe listener is not
// enough when the port goes to another process (a server started later
// with --http ADDR): the kernel's ephemeral range also serves every
// outgoing connection's local port, and the test binaries of `go test
// ./...` run side by side, each with its own memory of what it handed out.
// So ports come from below the ephemeral range, and each one is claimed
// with an exclusive lock on a file shared by every process on the machine,
// held until the process that took it exits.
package testport

import (
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
)

// The range ports come from: above the well-known and registered servers
// tests might find running (MariaDB 3306, MinIO 9000, 2024), below Linux's
// default ephemeral range (32768–60999), which Pick checks at run time.
const (
	low  = 20000
	high = 32768
)

var claimed struct {
	sync.Mutex
	files []*os.File // held open: the lock lasts while this process runs
}

// Addr returns a free 127.0.0.1:PORT address that no other caller of this
// package, in this process or another, receives while this process runs.
func Addr(t testing.TB) string {
	t.Helper()
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(Port(t)))
}

// Port is Addr's port number.
func Port(t testing.TB) int {
	t.Helper()
	p, err := Pick()
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// Pick claims a free loopback port outside the ephemeral range.
func Pick() (int, error) {
	hi := high
	if lo, ok := ephemeralLow(); ok && lo < hi {
		hi = lo
	}
	if hi-low < 100 {
		return 0, fmt.Errorf("testport: the ephemeral port range starts at %d, leaving no room below it above %d", hi, low)
	}
	dir := filepath.Join(os.TempDir(), "cairn-test-ports")
	if err := os.MkdirAll(dir, 0o777); err != nil {
		return 0, fmt.Errorf("testport: %w", err)
	}
	claimed.Lock()
	defer claimed.Unlock()
	start := rand.IntN(hi - low)
	for i := range hi - low {
		port := low + (start+i)%(hi-low)
		f, ok := lock(filepath.Join(dir, strconv.Itoa(port)))
		if !ok {
			continue
		}
		ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
		if err != nil { // something outside the tests holds it
			f.Close()
			continue
		}
		ln.Close()
		claimed.files = append(claimed.files, f)
		return port, nil
	}
	return 0, fmt.Errorf("testport: no free port in %d–%d", low, hi-1)
}

// lock takes the exclusive lock on path without waiting.
func lock(path string) (*os.File, bool) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o666)
	if err != nil {
		return nil, false
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		return nil, false
	}
	return f, true
}

// ephemeralLow is the first port of the kernel's ephemeral range.
func ephemeralLow() (int, bool) {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return 0, false
	}
	var lo, hi int
	if _, err := fmt.Sscan(string(b), &lo, &hi); err != nil {
		return 0, false
	}
	return lo, true
}
