package integration

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cairnlog/cairn/internal/testport"
)

// network places each process ("region") of a cluster on its own host:
// with root and iproute2, a network namespace per region joined by veth
// links to a bridge (and, where the kernel has netem, 30–120 ms of added
// latency per link); otherwise loopback ports. The mode is logged.
type network struct {
	mode   string // "netns" or "loopback"
	why    string // why loopback, or what netns lacks
	bridge string
	subnet string // 10.250.K
	hosts  []string
	links  []string // host-side veth of each region
	netem  bool     // the kernel delays each region's link
}

var netSeq atomic.Uint32

// regionDelays are the added one-way latencies per region (netem).
var regionDelays = []string{"30ms", "60ms", "90ms", "120ms", "45ms"}

func sh(args ...string) error {
	out, err := exec.Command(args[0], args[1:]...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

// loopbackNetwork makes n regions on loopback ports, saying why.
func loopbackNetwork(t *testing.T, n int, why string) *network {
	nw := &network{mode: "loopback", why: why + "; witness links delayed by a userspace proxy", hosts: make([]string, n)}
	t.Logf("network mode: loopback (%s)", nw.why)
	return nw
}

// newNetwork makes n regions. It never fails: without namespaces it falls
// back to loopback and says why.
func newNetwork(t *testing.T, n int) *network {
	t.Helper()
	k := (uint32(os.Getpid())*7 + netSeq.Add(1)) % 200
	nw := &network{mode: "netns", subnet: fmt.Sprintf("10.250.%d", k+10), bridge: fmt.Sprintf("cbr%d", k)}
	if os.Getenv("CAIRN_IT_LOOPBACK") != "" {
		nw.mode, nw.why = "loopback", "CAIRN_IT_LOOPBACK is set"
	} else if err := nw.setup(t, n, k); err != nil {
		nw.teardown()
		nw.mode, nw.why, nw.hosts = "loopback", err.Error(), nil
	}
	if nw.mode == "loopback" {
		for range n {
			nw.hosts = append(nw.hosts, "")
		}
		t.Logf("network mode: loopback (%s)", nw.why)
	} else {
		t.Logf("network mode: netns (%d regions on bridge %s, %s.0/24%s)", n, nw.bridge, nw.subnet, nw.why)
	}
	t.Cleanup(nw.teardown)
	return nw
}

func (nw *network) setup(t *testing.T, n int, k uint32) error {
	if os.Geteuid() != 0 {
		return fmt.Errorf("not root")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		return fmt.Errorf("no ip command")
	}
	if err := sh("ip", "link", "add", nw.bridge, "type", "bridge"); err != nil {
		return err
	}
	if err := sh("ip", "addr", "add", nw.subnet+".1/24", "dev", nw.bridge); err != nil {
		return err
	}
	if err := sh("ip", "link", "set", nw.bridge, "up"); err != nil {
		return err
	}
	netem := true
	for i := range n {
		ns := fmt.Sprintf("cairn-%d-%d", k, i)
		host, peer := fmt.Sprintf("cv%d-%d", k, i), fmt.Sprintf("cp%d-%d", k, i)
		steps := [][]string{
			{"ip", "netns", "add", ns},
			{"ip", "netns", "exec", ns, "ip", "link", "set", "lo", "up"},
			{"ip", "link", "add", host, "type", "veth", "peer", "name", peer},
			{"ip", "link", "set", peer, "netns", ns},
			{"ip", "link", "set", host, "master", nw.bridge},
			{"ip", "link", "set", host, "up"},
			{"ip", "netns", "exec", ns, "ip", "addr", "add", fmt.Sprintf("%s.%d/24", nw.subnet, i+2), "dev", peer},
			{"ip", "netns", "exec", ns, "ip", "link", "set", peer, "up"},
		}
		for _, s := range steps {
			if err := sh(s...); err != nil {
				return err
			}
		}
		nw.hosts = append(nw.hosts, ns)
		nw.links = append(nw.links, host)
		if netem {
			if err := sh("ip", "netns", "exec", ns, "tc", "qdisc", "add", "dev", peer, "root", "netem", "delay", regionDelays[i%len(regionDelays)]); err != nil {
				netem = false
				nw.why = "; netem is not available in this kernel: witness links are delayed by a userspace proxy instead"
			}
		}
	}
	if netem {
		nw.why = "; netem latency " + strings.Join(regionDelays[:n], "/")
	}
	nw.netem = netem
	return nil
}

func (nw *network) teardown() {
	for _, ns := range nw.hosts {
		if ns != "" {
			_ = sh("ip", "netns", "del", ns)
		}
	}
	for _, l := range nw.links {
		_ = sh("ip", "link", "del", l)
	}
	if nw.mode == "netns" {
		_ = sh("ip", "link", "del", nw.bridge)
	}
	nw.hosts, nw.links = nil, nil
}

// reach returns the address through which other regions reach target, a
// server in region i. Where netem delays the region's link, that is target
// itself; otherwise a userspace proxy on the host (the bridge address, or
// loopback) forwards to it, delaying each direction by the region's latency,
// so that cross-region calls take region-like time either way.
func (nw *network) reach(t *testing.T, i int, target string) string {
	if nw.netem {
		return target
	}
	host := "127.0.0.1"
	if nw.mode == "netns" {
		host = nw.subnet + ".1"
	}
	d, err := time.ParseDuration(regionDelays[i%len(regionDelays)])
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", host+":0")
	if err != nil {
		t.Fatal(err)
	}
	// Every goroutine of the proxy is in wg; the cleanup closes the listener
	// and every connection (and any opened after it), then waits for them.
	var wg sync.WaitGroup
	var mu sync.Mutex // guards conns and closed
	var conns []net.Conn
	closed := false
	track := func(c net.Conn) bool {
		mu.Lock()
		defer mu.Unlock()
		if closed {
			c.Close()
			return false
		}
		conns = append(conns, c)
		return true
	}
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		closed = true
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	wg.Go(func() {
		for {
			in, err := ln.Accept()
			if err != nil {
				return
			}
			if !track(in) {
				return
			}
			wg.Go(func() {
				out, err := net.DialTimeout("tcp", target, 5*time.Second)
				if err != nil {
					in.Close() // the region is down or cut off: the caller sees it
					return
				}
				if !track(out) {
					return
				}
				wg.Go(func() { delayedCopy(out, in, d) })
				delayedCopy(in, out, d)
			})
		}
	})
	return ln.Addr().String()
}

// delayedCopy copies src to dst, each chunk written d after it was read
// (order kept), then half-closes dst. It returns once its reading goroutine
// has returned.
func delayedCopy(dst, src net.Conn, d time.Duration) {
	type chunk struct {
		b  []byte
		at time.Time
	}
	chunks := make(chan chunk, 256)
	go func() {
		defer close(chunks)
		for {
			b := make([]byte, 32<<10)
			n, err := src.Read(b)
			if n > 0 {
				chunks <- chunk{b[:n], time.Now().Add(d)}
			}
			if err != nil {
				return
			}
		}
	}()
	for c := range chunks {
		time.Sleep(time.Until(c.at)) // the link's latency, not a wait for a condition
		if _, err := dst.Write(c.b); err != nil {
			src.Close()
			for range chunks { // until the reader, its Read failing, returns
			}
			break
		}
	}
	if tc, ok := dst.(*net.TCPConn); ok {
		_ = tc.CloseWrite()
	}
}

// addr is a listen address for region i: its own IP in netns mode, a free
// loopback port otherwise.
func (nw *network) addr(t *testing.T, i, port int) string {
	if nw.mode == "netns" {
		return fmt.Sprintf("%s.%d:%d", nw.subnet, i+2, port)
	}
	return testport.Addr(t)
}

// command runs cairn in region i.
func (nw *network) command(i int, args []string) (string, []string) {
	if nw.mode == "netns" {
		return "ip", append([]string{"netns", "exec", nw.hosts[i], cairnBin}, args...)
	}
	return cairnBin, args
}

// partition cuts region i off the network (its link goes down); heal restores it.
func (nw *network) partition(i int) error {
	if nw.mode != "netns" {
		return fmt.Errorf("no namespaces")
	}
	return sh("ip", "link", "set", nw.links[i], "down")
}

func (nw *network) heal(i int) error {
	return sh("ip", "link", "set", nw.links[i], "up")
}
