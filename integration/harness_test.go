// Package integration runs the real cairn binary as separate processes — a
// log, three witnesses with a 2-of-3 policy, clients — and breaks things:
// kill -9, frozen processes, tampered files, forks, garbage on every port.
// Each process is a region: its own network namespace where the machine
// allows, with 30–120 ms of latency on the links (netem, or a delaying
// userspace proxy in front of each witness where the kernel has no netem).
package integration

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	cairnlog "github.com/cairnlog/cairn/log"

	"github.com/cairnlog/cairn/format/checkpoint"
	"github.com/cairnlog/cairn/internal/supervisor"
	"golang.org/x/mod/sumdb/note"
)

var cairnBin string

func TestMain(m *testing.M) {
	cairnBin = os.Getenv("CAIRN_BIN")
	if cairnBin == "" {
		dir, err := os.MkdirTemp("", "cairn-it")
		if err != nil {
			panic(err)
		}
		cairnBin = filepath.Join(dir, "cairn")
		// Built as make build builds it: without cgo.
		build := exec.Command("go", "build", "-o", cairnBin, "../cmd/cairn")
		build.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := build.CombinedOutput(); err != nil {
			fmt.Fprintf(os.Stderr, "building cairn: %v\n%s", err, out)
			os.Exit(2)
		}
		defer os.RemoveAll(dir)
	}
	code := m.Run()
	if code == 0 {
		if err := leftovers(10 * time.Second); err != nil {
			fmt.Fprintln(os.Stderr, "integration:", err)
			code = 1
		}
	}
	os.Exit(code)
}

// leftovers reports the child processes and this package's goroutines still
// alive once every test has cleaned up (after waiting up to within for them
// to finish exiting): every process a test starts, and every goroutine the
// harness owns, must be stopped and awaited by its test.
func leftovers(within time.Duration) error {
	deadline := time.Now().Add(within)
	for {
		procs, goroutines := liveChildren(), harnessGoroutines()
		if len(procs) == 0 && goroutines == "" {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("left running after the tests: child processes %v; goroutines:\n%s", procs, goroutines)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// liveChildren lists this process's children that have not exited (zombies,
// already exited and merely not yet reaped, do not count).
func liveChildren() []string {
	var out []string
	entries, _ := os.ReadDir("/proc")
	me := strconv.Itoa(os.Getpid())
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		// pid (comm) state ppid …; comm may hold spaces, so split after ')'.
		stat := string(b)
		i := strings.LastIndexByte(stat, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(stat[i+1:])
		if len(f) >= 2 && f[1] == me && f[0] != "Z" {
			out = append(out, e.Name()+" "+stat[:i+1])
		}
	}
	return out
}

// harnessGoroutines returns the stacks of goroutines running code of this
// package other than the one asking.
func harnessGoroutines() string {
	buf := make([]byte, 1<<20)
	buf = buf[:runtime.Stack(buf, true)]
	var out []string
	for _, g := range strings.Split(string(buf), "\n\n") {
		if strings.Contains(g, "cairn/integration.") && !strings.Contains(g, "integration.harnessGoroutines") && !strings.Contains(g, "integration.TestMain") {
			out = append(out, g)
		}
	}
	return strings.Join(out, "\n\n")
}

// proc is a cairn process of a test, started (and restarted) by start.
type proc struct {
	name   string
	args   []string
	nw     *network
	region int
	p      *supervisor.Process // the latest start; nil before the first
}

// procStopTimeout is how long stop waits after SIGTERM: the log's whole drain
// (log.DrainTimeout), plus a margin for a loaded machine.
const procStopTimeout = cairnlog.DrainTimeout + 30*time.Second

func (p *proc) start(t *testing.T) {
	t.Helper()
	bin, args := cairnBin, p.args
	if p.nw != nil {
		bin, args = p.nw.command(p.region, p.args)
	}
	sp, err := supervisor.Start(supervisor.Command{Name: p.name, Path: bin, Args: args})
	if err != nil {
		t.Fatal(err)
	}
	p.p = sp
}

// running reports whether the latest start is still running.
func (p *proc) running() bool { return p.p != nil && !p.p.Exited() }

// signal sends sig to the running process (SIGSTOP, SIGCONT).
func (p *proc) signal(t *testing.T, sig syscall.Signal) {
	t.Helper()
	if err := p.p.Signal(sig); err != nil {
		t.Fatalf("%s: %v", p.name, err)
	}
}

// waitServing waits until url answers 200, failing at once if the process
// exits first (a port taken, a bad flag) rather than after the whole minute.
func (p *proc) waitServing(t *testing.T, url string) {
	t.Helper()
	eventually(t, 60*time.Second, func() error {
		if !p.running() {
			t.Fatalf("%s exited (%v) before %s answered:\n%s", p.name, p.p.Wait(), url, tail(p.output()))
		}
		return answers(url, http.StatusOK)
	})
}

// output returns the tail of the latest start's output.
func (p *proc) output() string {
	if p.p == nil {
		return ""
	}
	return p.p.Output()
}

// kill9 kills the process (its whole group) with SIGKILL.
func (p *proc) kill9() {
	if p.p != nil {
		_ = p.p.Kill()
	}
}

// stop sends SIGTERM and waits; the process must exit 0 within procStopTimeout.
func (p *proc) stop(t *testing.T) {
	t.Helper()
	if !p.running() {
		return
	}
	if err := p.p.Stop(procStopTimeout); err != nil {
		t.Errorf("%s: %v:\n%s", p.name, err, p.output())
	}
}

// run runs a cairn command and returns stdout, stderr and the exit code.
func run(t testing.TB, stdin []byte, args ...string) (string, string, int) {
	t.Helper()
	cmd := exec.Command(cairnBin, args...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	err := cmd.Run()
	if ee, ok := err.(*exec.ExitError); ok {
		return out.String(), errb.String(), ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return out.String(), errb.String(), 0
}

// cluster is one log (or several frontends of one log) and three witnesses
// with a 2-of-3 policy, each in its own region (network namespace) where the
// machine allows.
type cluster struct {
	nw         *network
	dir        string
	origin     string
	logVKey    string
	httpAddr   string // of the first frontend
	grpcAddr   string
	policy     string
	log        *proc // the first frontend
	logs       []*proc
	httpAddrs  []string
	grpcAddrs  []string
	witnesses  []*proc
	witnessDBs []string
}

const origin = "integration.test/log"

// clusterOpts shape a cluster; the zero value is one POSIX log in netns mode.
type clusterOpts struct {
	// frontends is the number of log processes (default 1).
	frontends int
	// storage returns the storage flags of the log (default posix under the
	// cluster's directory). Frontends of one log share it.
	storage func(dir string) []string
	// loopback keeps every process on 127.0.0.1 (engines the log depends on
	// listen there).
	loopback bool
	// hybrid gives every witness an ML-DSA-44 key besides its Ed25519 one
	// (c.dir/wN-pq.key) and makes the policy hybrid: witness wN counts only
	// with both cosignatures (lines wN-ed and wN-pq, group wN all).
	hybrid bool
	// beforeLogs, if set, runs once the keys, log list and policy exist and
	// before the log starts; it returns extra log serve flags (mirrors).
	beforeLogs func(c *cluster) []string
	// prepare, if set, runs once the log's key exists (c.dir/log.key) and
	// before any process starts: to fill the log's storage beforehand.
	prepare func(t *testing.T, c *cluster)
}

func newCluster(t *testing.T) *cluster { return newClusterWith(t, clusterOpts{}) }

func newClusterWith(t *testing.T, o clusterOpts) *cluster {
	t.Helper()
	o.frontends = max(o.frontends, 1)
	if o.storage == nil {
		o.storage = func(dir string) []string { return []string{"--storage", "posix:" + dir + "/log"} }
	}
	var nw *network
	if o.loopback {
		nw = loopbackNetwork(t, 5, "the log's database and object store listen on loopback")
	} else {
		nw = newNetwork(t, 5) // region 0: the log; 1-3: witnesses; 4: a second log (forks)
	}
	c := &cluster{nw: nw, dir: t.TempDir(), origin: origin}
	for range o.frontends {
		c.httpAddrs = append(c.httpAddrs, nw.addr(t, 0, 8080+len(c.httpAddrs)))
		c.grpcAddrs = append(c.grpcAddrs, nw.addr(t, 0, 9090+len(c.grpcAddrs)))
	}
	c.httpAddr, c.grpcAddr = c.httpAddrs[0], c.grpcAddrs[0]
	if _, stderr, code := run(t, nil, "keygen", "--name", origin, "--out", c.dir+"/log"); code != 0 {
		t.Fatal(stderr)
	}
	c.logVKey = strings.TrimSpace(string(mustRead(t, c.dir+"/log.vkey")))
	mustWrite(t, c.dir+"/logs.txt", []byte("logs/v0\nvkey "+c.logVKey+"\n"))
	var pol strings.Builder
	fmt.Fprintf(&pol, "log %s http://%s/\n", c.logVKey, c.httpAddr)
	for i := range 3 {
		name := fmt.Sprintf("w%d", i)
		if _, stderr, code := run(t, nil, "keygen", "--witness", "--name", "integration.test/"+name, "--out", c.dir+"/"+name); code != 0 {
			t.Fatal(stderr)
		}
		wk := mustRead(t, c.dir+"/"+name+".vkey")
		addr := nw.addr(t, i+1, 8181)
		// The log reaches the witness across regions (with region latency).
		keys := []string{"--key", c.dir + "/" + name + ".key"}
		if o.hybrid {
			if _, stderr, code := run(t, nil, "keygen", "--witness", "--alg", "ml-dsa-44", "--name", "integration.test/"+name, "--out", c.dir+"/"+name+"-pq"); code != 0 {
				t.Fatal(stderr)
			}
			pq := mustRead(t, c.dir+"/"+name+"-pq.vkey")
			url := nw.reach(t, i+1, addr)
			fmt.Fprintf(&pol, "witness %s-ed %s http://%s\nwitness %s-pq %s http://%s\ngroup %s all %s-ed %s-pq\n",
				name, strings.TrimSpace(string(wk)), url, name, strings.TrimSpace(string(pq)), url, name, name, name)
			keys = append(keys, "--key", c.dir+"/"+name+"-pq.key")
		} else {
			fmt.Fprintf(&pol, "witness %s %s http://%s\n", name, strings.TrimSpace(string(wk)), nw.reach(t, i+1, addr))
		}
		db := c.dir + "/" + name + "-db"
		c.witnessDBs = append(c.witnessDBs, db)
		w := &proc{name: name, nw: nw, region: i + 1, args: append(append([]string{"witness", "serve"}, keys...), "--logs", c.dir+"/logs.txt",
			"--db", db, "--http", addr, "--insecure-plaintext")}
		c.witnesses = append(c.witnesses, w)
	}
	pol.WriteString("group regions 2 w0 w1 w2\nquorum regions\n")
	c.policy = c.dir + "/policy.txt"
	mustWrite(t, c.policy, []byte(pol.String()))
	for i := range o.frontends {
		args := []string{"log", "serve", "--origin", origin, "--key", c.dir + "/log.key",
			"--http", c.httpAddrs[i], "--grpc", c.grpcAddrs[i], "--insecure-plaintext",
			"--witness-policy", c.policy, "--checkpoint-interval", "200ms", "--batch-max-age", "20ms", "--witness-timeout", "2s"}
		args = append(args, o.storage(c.dir)...) // last: may override the flags above
		c.logs = append(c.logs, &proc{name: fmt.Sprintf("log%d", i), nw: nw, region: 0, args: args})
	}
	c.log = c.logs[0]
	if o.beforeLogs != nil {
		extra := o.beforeLogs(c)
		for _, l := range c.logs {
			l.args = append(l.args, extra...)
		}
	}
	t.Cleanup(func() {
		for _, l := range c.logs {
			l.kill9()
		}
		for _, w := range c.witnesses {
			w.kill9()
		}
		if t.Failed() {
			for _, l := range c.logs {
				t.Logf("%s output:\n%s", l.name, tail(l.output()))
			}
		}
	})
	if o.prepare != nil {
		o.prepare(t, c)
	}
	for _, w := range c.witnesses {
		w.start(t)
		w.waitServing(t, "http://"+witnessAddr(w)+"/healthz")
	}
	for i, l := range c.logs {
		l.start(t)
		l.waitServing(t, "http://"+c.httpAddrs[i]+"/readyz")
	}
	return c
}

func mustRead(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func mustWrite(t *testing.T, path string, b []byte) {
	t.Helper()
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// tail returns the last 4000 bytes of s.
func tail(s string) string {
	if len(s) > 4000 {
		s = s[len(s)-4000:]
	}
	return s
}

func witnessAddr(w *proc) string {
	for i, a := range w.args {
		if a == "--http" {
			return w.args[i+1]
		}
	}
	return ""
}

// pollInterval is how often eventually checks its condition.
const pollInterval = 20 * time.Millisecond

// eventually polls cond until it returns nil, and fails the test with cond's
// last error if that has not happened within the given time. It is the
// tests' one way to wait for something.
func eventually(t testing.TB, within time.Duration, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(within)
	tick := time.NewTicker(pollInterval)
	defer tick.Stop()
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("not within %v: %v", within, err)
		}
		<-tick.C
	}
}

// waitOK polls url until it answers 200 (60s).
func waitOK(t *testing.T, url string) {
	t.Helper()
	eventually(t, 60*time.Second, func() error { return answers(url, http.StatusOK) })
}

// answers returns nil if a GET of url answers code.
func answers(url string, code int) error {
	resp, err := http.Get(url)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != code {
		return fmt.Errorf("%s answers %s, want %d", url, resp.Status, code)
	}
	return nil
}

// add appends a record over HTTP and returns its index.
func (c *cluster) add(t *testing.T, payload string) (uint64, error) {
	t.Helper()
	resp, err := http.Post("http://"+c.httpAddr+"/add", "text/plain", strings.NewReader(payload))
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		return 0, fmt.Errorf("/add: %s: %s", resp.Status, b)
	}
	return strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64)
}

// checkpoint returns the published checkpoint note, its size and the
// names of the witnesses whose cosignatures it carries. A note that does not
// verify or parse fails the test.
func (c *cluster) checkpoint(t *testing.T) ([]byte, uint64, []string) {
	t.Helper()
	resp, err := http.Get("http://" + c.httpAddr + "/checkpoint")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("reading the checkpoint: %v", err)
	}
	v, err := note.NewVerifier(c.logVKey)
	if err != nil {
		t.Fatal(err)
	}
	n, err := note.Open(b, note.VerifierList(v))
	if err != nil {
		t.Fatalf("checkpoint does not verify: %v\n%s", err, b)
	}
	cp, err := checkpoint.Parse([]byte(n.Text))
	if err != nil {
		t.Fatalf("published checkpoint: %v\n%s", err, b)
	}
	if cp.Origin != origin {
		t.Fatalf("published checkpoint has origin %q, want %q", cp.Origin, origin)
	}
	var ws []string
	for _, s := range n.UnverifiedSigs {
		if strings.HasPrefix(s.Name, "integration.test/w") {
			ws = append(ws, s.Name)
		}
	}
	return b, cp.Size, ws
}

// waitSize polls until the published checkpoint reaches size.
func (c *cluster) waitSize(t *testing.T, size uint64, within time.Duration) ([]byte, []string) {
	t.Helper()
	var cp []byte
	var ws []string
	eventually(t, within, func() error {
		var s uint64
		cp, s, ws = c.checkpoint(t)
		if s < size {
			return fmt.Errorf("checkpoint at %d, want ≥ %d", s, size)
		}
		return nil
	})
	return cp, ws
}
