package testport

import (
	"net"
	"os"
	"path/filepath"
	"strconv"
	"testing"
)

// A port once picked is neither picked again nor claimable by another
// process (flock conflicts across open files, as between processes), and
// it lies below the kernel's ephemeral range.
func TestPickedPortsAreDistinctClaimedAndOutsideTheEphemeralRange(t *testing.T) {
	seen := map[int]bool{}
	for range 50 {
		p := Port(t)
		if seen[p] {
			t.Fatalf("port %d picked twice", p)
		}
		seen[p] = true
		if lo, ok := ephemeralLow(); ok && p >= lo {
			t.Fatalf("port %d is in the ephemeral range starting at %d", p, lo)
		}
		if f, ok := lock(filepath.Join(os.TempDir(), "cairn-test-ports", strconv.Itoa(p))); ok {
			f.Close()
			t.Fatalf("port %d's lock could be taken again", p)
		}
		ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p)))
		if err != nil {
			t.Fatalf("port %d is not free: %v", p, err)
		}
		ln.Close()
	}
}
