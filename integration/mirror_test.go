package integration

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// mirrorRegion is a tlog-mirror process in a region of its own.
type mirrorRegion struct {
	name, vkey string
	addr       string // where it listens (in its region)
	reach      string // how the log reaches it (across regions)
	storage    string
	p          *proc
}

func (m *mirrorRegion) readURL() string {
	h := sha256.Sum256([]byte(origin))
	return "http://" + m.addr + "/" + hex.EncodeToString(h[:])
}

// mirroredCluster is a cluster whose log publishes a checkpoint only once
// 2 of 3 witnesses cosigned it and 1 of 2 mirrors (regions B and C) stored
// it. readPolicy accepts a checkpoint with the log's signature and one
// mirror's cosignature: what a mirror serves once the log's region is gone.
type mirroredCluster struct {
	*cluster
	mirrors    []*mirrorRegion
	durable    string // client policy: log, 2 of 3 witnesses, 1 of 2 mirrors
	readPolicy string
}

func newMirroredCluster(t *testing.T) *mirroredCluster {
	mc := &mirroredCluster{}
	mc.cluster = newClusterWith(t, clusterOpts{beforeLogs: func(c *cluster) []string {
		pol := string(mustRead(t, c.policy))
		pol = strings.Replace(pol, "quorum regions\n", "", 1)
		read := fmt.Sprintf("log %s\n", c.logVKey)
		var extra []string
		for i, region := range []int{2, 3} { // regions B and C
			name := fmt.Sprintf("m%d", i)
			if _, stderr, code := run(t, nil, "keygen", "--witness", "--name", "integration.test/"+name, "--out", c.dir+"/"+name); code != 0 {
				t.Fatal(stderr)
			}
			m := &mirrorRegion{name: name, vkey: strings.TrimSpace(string(mustRead(t, c.dir+"/"+name+".vkey"))),
				addr: c.nw.addr(t, region, 8281), storage: c.dir + "/" + name}
			m.reach = c.nw.reach(t, region, m.addr)
			m.p = &proc{name: name, nw: c.nw, region: region, args: []string{"mirror", "serve", "--key", c.dir + "/" + name + ".key",
				"--logs", c.dir + "/logs.txt", "--storage", "posix:" + m.storage, "--http", m.addr, "--insecure-plaintext"}}
			m.p.start(t)
			t.Cleanup(m.p.kill9)
			m.p.waitServing(t, "http://"+m.addr+"/healthz")
			mc.mirrors = append(mc.mirrors, m)
			pol += fmt.Sprintf("witness %s %s http://%s\n", name, m.vkey, m.reach)
			read += fmt.Sprintf("witness %s %s http://%s\n", name, m.vkey, m.reach)
			extra = append(extra, "--mirror", "http://"+m.reach)
		}
		pol += "group mirrors 1 m0 m1\ngroup durable all regions mirrors\nquorum durable\n"
		mc.durable = c.dir + "/durable.txt"
		mustWrite(t, mc.durable, []byte(pol))
		mc.readPolicy = c.dir + "/read.txt"
		mustWrite(t, mc.readPolicy, []byte(read+"group mirrors 1 m0 m1\nquorum mirrors\n"))
		// Publishing waits for a mirror to store each checkpoint: more
		// than a witness's round trip (docs/mirror.md: the latency cost).
		return append(extra, "--witness-policy", mc.durable, "--witness-timeout", "30s")
	}})
	return mc
}

func (mc *mirroredCluster) readURLs() string {
	var us []string
	for _, m := range mc.mirrors {
		us = append(us, m.readURL())
	}
	return strings.Join(us, ",")
}

// The log's region is cut off, then its process is kill -9'd and its
// storage deleted: every record acknowledged under the mirror-quorum policy
// is still read, verified and audited from the mirrors' regions.
func TestRegionLossLosesNoRecordAcknowledgedUnderAMirrorQuorum(t *testing.T) {
	mc := newMirroredCluster(t)
	c := mc.cluster

	// Receipts under the durable policy: log, 2 of 3 witnesses, 1 of 2 mirrors.
	type receipt struct{ dir, payload string }
	var receipts []receipt
	for i := range 3 {
		dir := t.TempDir()
		payload := fmt.Sprintf(`{"durable":%d}`, i)
		out, stderr, code := run(t, []byte(payload), "submit", "--grpc", c.grpcAddr, "--insecure-plaintext",
			"--policy", mc.durable, "--receipt", dir+"/r", "--record-out", dir+"/leaf", "-")
		if code != 0 {
			t.Fatalf("submit --receipt under the mirror policy: %d %s %s", code, out, stderr)
		}
		receipts = append(receipts, receipt{dir, payload})
	}

	// Load, during which mirror m0 is killed with -9 and restarted, and
	// then region A is cut off.
	var mu sync.Mutex
	var acked []uint64
	var wg sync.WaitGroup
	stop := make(chan struct{})
	hc := &http.Client{Timeout: 10 * time.Second} // a cut-off region never answers
	for w := range 4 {
		wg.Go(func() {
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				resp, err := hc.Post("http://"+c.httpAddr+"/add", "text/plain", strings.NewReader(fmt.Sprintf("load %d/%d %s", w, i, strings.Repeat("x", 1000))))
				if err != nil {
					continue
				}
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				idx, err := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64)
				if resp.StatusCode != http.StatusOK || err != nil {
					continue // pushback under load: not acknowledged
				}
				mu.Lock()
				acked = append(acked, idx)
				mu.Unlock()
			}
		})
	}
	t.Cleanup(func() {
		select {
		case <-stop:
		default:
			close(stop)
		}
		wg.Wait()
	})
	waitAcked := func(n int) {
		eventually(t, 90*time.Second, func() error {
			mu.Lock()
			defer mu.Unlock()
			if len(acked) < n {
				return fmt.Errorf("%d records acknowledged", len(acked))
			}
			return nil
		})
	}
	waitAcked(500)
	mc.mirrors[0].p.kill9()
	mc.mirrors[0].p.start(t)
	mc.mirrors[0].p.waitServing(t, "http://"+mc.mirrors[0].addr+"/healthz")
	waitAcked(1500)
	// Acknowledged under the policy: covered by a published checkpoint
	// (the log publishes only with 2 of 3 witnesses and a mirror).
	cp, published, ws := c.checkpoint(t)
	if !strings.Contains(string(cp), "integration.test/m") || len(ws) < 2 {
		t.Fatalf("the published checkpoint lacks a mirror's or the witnesses' cosignatures:\n%s", cp)
	}
	resp, err := http.Get("http://" + c.httpAddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	metrics, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(metrics), "cairn_log_mirror_behind_entries{mirror=") {
		t.Fatalf("the log exports no per-mirror lag metrics")
	}

	// Region A goes dark under load, then burns.
	if err := c.nw.partition(0); err != nil {
		t.Logf("no partition (%v); killing the log only", err)
	}
	c.log.kill9()
	close(stop)
	wg.Wait()
	if err := os.RemoveAll(c.dir + "/log"); err != nil {
		t.Fatal(err)
	}
	var covered []uint64
	for _, i := range acked {
		if i < published {
			covered = append(covered, i)
		}
	}
	if len(covered) < 1000 {
		t.Fatalf("only %d acknowledged records were published before the cut", len(covered))
	}

	urls := "http://" + c.httpAddr + "," + mc.readURLs()
	for _, r := range receipts {
		if out, stderr, code := run(t, nil, "verify", "receipt", "--policy", mc.durable, "--record", r.dir+"/leaf", r.dir+"/r"); code != 0 || !strings.Contains(out, r.payload) {
			t.Fatalf("verify receipt: %d %s %s", code, out, stderr)
		}
	}
	for _, idx := range []uint64{covered[0], covered[len(covered)/2], covered[len(covered)-1], published - 1} {
		out, stderr, code := run(t, nil, "get", "--log", urls, "--policy", mc.readPolicy, fmt.Sprint(idx))
		if code != 0 || !strings.Contains(out, "load ") {
			t.Fatalf("get %d from the mirrors: %d %s %s", idx, code, out, stderr)
		}
	}
	out, stderr, code := run(t, nil, "audit", "--quiet", "--log", mc.readURLs(), "--policy", mc.readPolicy)
	if code != 0 {
		t.Fatalf("audit from the mirrors: %d %s %s", code, out, stderr)
	}
	if !strings.Contains(stderr, "is consistent") {
		t.Fatalf("the audit did not cross-check the mirrors' checkpoints: %s", stderr)
	}
}

// A log that forks (same key, another history) is refused by the mirror,
// which keeps the evidence.
func TestMirrorRefusesAForkedLogAndKeepsEvidence(t *testing.T) {
	mc := newMirroredCluster(t)
	c := mc.cluster
	for i := range 20 {
		if _, err := c.add(t, fmt.Sprintf("honest %d", i)); err != nil {
			t.Fatal(err)
		}
	}
	c.waitSize(t, 20, 120*time.Second)
	// cairn mirror push of the honest log: the mirror is already there.
	m := mc.mirrors[0]
	if out, stderr, code := run(t, nil, "mirror", "push", "--log", "http://"+c.httpAddr, "--policy", c.policy,
		"--mirror", "http://"+m.addr, "--mirror-key", m.vkey); code != 0 || !strings.Contains(out, "cosigns size") {
		t.Fatalf("mirror push of the honest log: %d %s %s", code, out, stderr)
	}
	c.log.stop(t)

	forkHTTP, forkGRPC := c.nw.addr(t, 4, 8080), c.nw.addr(t, 4, 9090)
	fork := &proc{name: "fork", nw: c.nw, region: 4, args: []string{"log", "serve", "--origin", origin, "--key", c.dir + "/log.key",
		"--storage", "posix:" + c.dir + "/fork", "--http", forkHTTP, "--grpc", forkGRPC, "--insecure-plaintext",
		"--checkpoint-interval", "200ms", "--batch-max-age", "20ms"}}
	fork.start(t)
	t.Cleanup(fork.kill9)
	fork.waitServing(t, "http://"+forkHTTP+"/readyz")
	fc := &cluster{httpAddr: forkHTTP, logVKey: c.logVKey}
	for i := range 30 {
		if _, err := fc.add(t, fmt.Sprintf("forged %d", i)); err != nil {
			t.Fatal(err)
		}
	}
	fc.waitSize(t, 30, 60*time.Second)
	logOnly := c.dir + "/log-only.txt"
	mustWrite(t, logOnly, []byte("log "+c.logVKey+"\nquorum none\n"))
	out, stderr, code := run(t, nil, "mirror", "push", "--log", "http://"+forkHTTP, "--policy", logOnly, "--mirror", "http://"+m.addr, "--mirror-key", m.vkey)
	if code == 0 {
		t.Fatalf("the mirror accepted the fork: %s", out)
	}
	if !strings.Contains(stderr, "422") {
		t.Fatalf("mirror push of a fork: %d %s %s", code, out, stderr)
	}
	out, stderr, code = run(t, nil, "mirror", "evidence", "--storage", "posix:"+m.storage, "--output", "json")
	if code != 0 || !strings.Contains(out, "consistency proof does not verify") {
		t.Fatalf("mirror evidence: %d %s %s", code, out, stderr)
	}
	// What the mirror serves is still the honest log.
	if out, stderr, code := run(t, nil, "audit", "--quiet", "--log", m.readURL(), "--policy", mc.readPolicy); code != 0 {
		t.Fatalf("audit of the mirror after the fork: %d %s %s", code, out, stderr)
	}
}
