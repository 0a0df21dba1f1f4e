package integration

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/cairnlog/cairn/format/checkpoint"
	"golang.org/x/mod/sumdb/note"
)

// Scenario 1: submit records, get receipts, verify them offline; audit.
func TestEndToEndReceiptsVerifyOfflineAndTheLogAudits(t *testing.T) {
	c := newCluster(t)
	for i := range 5 {
		dir := t.TempDir()
		out, stderr, code := run(t, []byte(fmt.Sprintf(`{"n":%d}`, i)), "submit", "--grpc", c.grpcAddr, "--insecure-plaintext",
			"--content-type", "application/json", "--policy", c.policy, "--receipt", dir+"/r", "--record-out", dir+"/leaf", "-")
		if code != 0 {
			t.Fatalf("submit: %d %s %s", code, out, stderr)
		}
		if out, stderr, code := run(t, nil, "verify", "receipt", "--policy", c.policy, "--record", dir+"/leaf", dir+"/r"); code != 0 || !strings.Contains(out, fmt.Sprintf(`{"n":%d}`, i)) {
			t.Fatalf("verify receipt: %d %s %s", code, out, stderr)
		}
	}
	for i := range 300 {
		if _, err := c.add(t, fmt.Sprintf("bulk %d", i)); err != nil {
			t.Fatal(err)
		}
	}
	_, ws := c.waitSize(t, 305, 60*time.Second)
	if len(ws) < 2 {
		t.Fatalf("published checkpoint carries %d cosignatures, the policy needs 2", len(ws))
	}
	if out, stderr, code := run(t, nil, "audit", "--quiet", "--log", "http://"+c.httpAddr, "--policy", c.policy); code != 0 {
		t.Fatalf("audit: %d %s %s", code, out, stderr)
	}
}

// Scenario 2 and 3: witnesses down, frozen and back.
func TestWitnessOutagesAndRecoveryThrough409(t *testing.T) {
	c := newCluster(t)
	if _, err := c.add(t, "first"); err != nil {
		t.Fatal(err)
	}
	c.waitSize(t, 1, 60*time.Second)

	// One witness down (kill -9): checkpoints keep coming with 2 cosignatures.
	c.witnesses[0].kill9()
	for i := range 10 {
		if _, err := c.add(t, fmt.Sprintf("one down %d", i)); err != nil {
			t.Fatal(err)
		}
	}
	_, ws := c.waitSize(t, 11, 60*time.Second)
	if len(ws) != 2 {
		t.Fatalf("with one witness down the checkpoint carries %v", ws)
	}

	// A second witness frozen (SIGSTOP: its port accepts, nothing answers):
	// appends are still sequenced, the published checkpoint stops advancing.
	frozen := c.witnesses[1]
	frozen.signal(t, syscall.SIGSTOP)
	defer func() { _ = frozen.p.Signal(syscall.SIGCONT) }()
	_, stuckAt, _ := c.checkpoint(t)
	var last uint64
	for i := range 10 {
		idx, err := c.add(t, fmt.Sprintf("two down %d", i))
		if err != nil {
			t.Fatalf("appends must still be sequenced without a quorum: %v", err)
		}
		last = idx
	}
	if last < 20 {
		t.Fatalf("index %d: records were not sequenced", last)
	}
	// Watched over several checkpoint intervals (200ms) and witness
	// timeouts (2s), the published checkpoint never moves.
	watch := time.NewTicker(100 * time.Millisecond)
	defer watch.Stop()
	for end := time.Now().Add(3 * time.Second); time.Now().Before(end); <-watch.C {
		if _, s, _ := c.checkpoint(t); s != stuckAt {
			t.Fatalf("checkpoint advanced from %d to %d without a witness quorum", stuckAt, s)
		}
	}

	// Heal: the frozen witness resumes and the killed one restarts; it is
	// behind and catches up through the 409 path; full quorum returns.
	frozen.signal(t, syscall.SIGCONT)
	c.witnesses[0].start(t)
	_, ws = c.waitSize(t, last+1, 60*time.Second)
	if len(ws) < 2 {
		t.Fatalf("after healing the checkpoint carries %v", ws)
	}
	// The quorum stays: new checkpoints keep carrying two cosignatures.
	tick := 0
	eventually(t, 60*time.Second, func() error {
		// A new record each round (an identical one would be deduplicated
		// and the tree, and so the checkpoint, would not move).
		tick++
		if _, err := c.add(t, fmt.Sprintf("tick %d", tick)); err != nil {
			t.Fatal(err)
		}
		if _, size, ws := c.checkpoint(t); len(ws) < 2 {
			return fmt.Errorf("quorum did not return: the checkpoint of size %d carries %v", size, ws)
		}
		return nil
	})
}

// Scenario 4: kill -9 the log under load; nothing acknowledged is lost.
func TestLogCrashLosesNoAcknowledgedRecord(t *testing.T) {
	c := newCluster(t)
	type ack struct {
		idx     uint64
		payload string
	}
	var mu sync.Mutex
	var acks []ack
	var cps [][]byte
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Go(func() {
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				p := fmt.Sprintf("w%d-r%d", w, i)
				idx, err := c.add(t, p)
				if err != nil {
					return // the log died; only acknowledged records count
				}
				mu.Lock()
				acks = append(acks, ack{idx, p})
				mu.Unlock()
			}
		})
	}
	eventually(t, 60*time.Second, func() error {
		cp, _, _ := c.checkpoint(t)
		if len(cps) == 0 || !bytes.Equal(cp, cps[len(cps)-1]) {
			cps = append(cps, cp)
		}
		if len(cps) < 5 {
			return fmt.Errorf("%d distinct checkpoints published under load, want 5", len(cps))
		}
		return nil
	})
	c.log.kill9()
	close(stop)
	wg.Wait()
	if len(acks) < 50 {
		t.Fatalf("only %d records acknowledged before the crash", len(acks))
	}
	c.log.start(t)
	c.log.waitServing(t, "http://"+c.httpAddr+"/readyz")
	var maxIdx uint64
	for _, a := range acks {
		maxIdx = max(maxIdx, a.idx)
	}
	c.waitSize(t, maxIdx+1, 90*time.Second)
	// Every acknowledged index holds the acknowledged bytes (a spread of
	// them, and all of the last ones acknowledged before the crash).
	step := max(1, len(acks)/100)
	for i, a := range acks {
		if i%step != 0 && i < len(acks)-30 {
			continue
		}
		out, stderr, code := run(t, nil, "get", "--log", "http://"+c.httpAddr, "--policy", c.policy, "--output", "json", fmt.Sprint(a.idx))
		if code != 0 || !strings.Contains(out, `"payload_text": "`+a.payload+`"`) {
			t.Fatalf("index %d after the crash: exit %d, want payload %q\n%s%s", a.idx, code, a.payload, out, stderr)
		}
	}
	// The tree after the crash extends every checkpoint published before it.
	for i, cp := range cps {
		f := fmt.Sprintf("%s/cp%d", t.TempDir(), i)
		mustWrite(t, f, cp)
		if out, stderr, code := run(t, nil, "verify", "consistency", "--log", "http://"+c.httpAddr, "--policy", c.policy, "--from", f); code != 0 {
			t.Fatalf("checkpoint %d before the crash: %d %s %s", i, code, out, stderr)
		}
	}
	if out, stderr, code := run(t, nil, "audit", "--quiet", "--log", "http://"+c.httpAddr, "--policy", c.policy); code != 0 {
		t.Fatalf("audit after the crash: %d %s %s", code, out, stderr)
	}
}

// Scenario 6: tampering on disk is found and named by audit and monitor.
func TestTamperOnDiskIsDetectedAndNamed(t *testing.T) {
	c := newCluster(t)
	for i := range 300 {
		if _, err := c.add(t, fmt.Sprintf("record %d", i)); err != nil {
			t.Fatal(err)
		}
	}
	c.waitSize(t, 300, 60*time.Second)
	state := t.TempDir() + "/monitor.state"
	if _, stderr, code := run(t, nil, "monitor", "--once", "--log", "http://"+c.httpAddr, "--policy", c.policy, "--state", state); code != 0 {
		t.Fatal(stderr)
	}
	c.log.stop(t)
	flip := func(path string, at int) {
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		b[at] ^= 1
		mustWrite(t, path, b)
	}
	flip(c.dir+"/log/tile/entries/000", 50)
	c.log.start(t)
	c.log.waitServing(t, "http://"+c.httpAddr+"/healthz")
	if _, stderr, code := run(t, nil, "audit", "--quiet", "--log", "http://"+c.httpAddr, "--policy", c.policy); code != 1 || !strings.Contains(stderr, "tile/entries/000") {
		t.Fatalf("audit of a tampered bundle: %d %s", code, stderr)
	}
	flip(c.dir+"/log/tile/entries/000", 50) // restore; now the tile
	flip(c.dir+"/log/tile/0/000", 64)
	if _, stderr, code := run(t, nil, "audit", "--quiet", "--log", "http://"+c.httpAddr, "--policy", c.policy); code != 1 || !strings.Contains(stderr, "tile/0/000") {
		t.Fatalf("audit of a tampered tile: %d %s", code, stderr)
	}
	// A rewritten checkpoint (same key, another root) is a split view.
	c.log.stop(t)
	s, err := note.NewSigner(strings.TrimSpace(string(mustRead(t, c.dir+"/log.key"))))
	if err != nil {
		t.Fatal(err)
	}
	forged, err := note.Sign(&note.Note{Text: fmt.Sprintf("%s\n300\n%s\n", origin, "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=")}, s)
	if err != nil {
		t.Fatal(err)
	}
	mustWrite(t, c.dir+"/log/checkpoint", forged)
	srv := &http.Server{Handler: http.FileServer(http.Dir(c.dir + "/log"))}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan struct{})
	go func() { _ = srv.Serve(ln); close(served) }()
	defer func() { srv.Close(); <-served }()
	out, _, code := run(t, nil, "monitor", "--once", "--log", "http://"+ln.Addr().String(), "--policy", c.policy, "--state", state)
	if code != 1 || !strings.Contains(out, "ALARM") {
		t.Fatalf("monitor of a forged checkpoint: %d %s", code, out)
	}
}

// Scenario 7: a fork with the same key is refused by the witnesses, which
// keep the evidence, and no client accepts it.
func TestForkIsRefusedByWitnessesAndClients(t *testing.T) {
	c := newCluster(t)
	for i := range 20 {
		if _, err := c.add(t, fmt.Sprintf("honest %d", i)); err != nil {
			t.Fatal(err)
		}
	}
	c.waitSize(t, 20, 60*time.Second)
	c.log.stop(t)

	// The fork: same key, another history of 30 records, built without witnesses.
	forkHTTP, forkGRPC := c.nw.addr(t, 4, 8080), c.nw.addr(t, 4, 9090)
	base := []string{"log", "serve", "--origin", origin, "--key", c.dir + "/log.key", "--storage", "posix:" + c.dir + "/fork",
		"--http", forkHTTP, "--grpc", forkGRPC, "--insecure-plaintext", "--checkpoint-interval", "200ms", "--batch-max-age", "20ms"}
	fork := &proc{name: "fork", nw: c.nw, region: 4, args: base}
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
	fork.stop(t)
	// Now it asks the same witnesses to cosign.
	fork = &proc{name: "fork", nw: c.nw, region: 4, args: append(base, "--witness-policy", c.policy, "--witness-timeout", "2s")}
	fork.start(t)
	t.Cleanup(fork.kill9)
	fork.waitServing(t, "http://"+forkHTTP+"/healthz")
	if _, err := fc.add(t, "forged 30"); err != nil {
		t.Fatal(err)
	}
	eventually(t, 60*time.Second, func() error {
		n := 0
		for _, db := range c.witnessDBs {
			out, stderr, code := run(t, nil, "witness", "evidence", "--db", db, "--output", "json")
			if code != 0 {
				t.Fatalf("witness evidence --db %s: exit %d %s", db, code, stderr)
			}
			if strings.Contains(out, "forged") || strings.Contains(out, "consistency proof does not verify") {
				n++
			}
		}
		if n < 2 {
			return fmt.Errorf("witnesses kept evidence of the fork: %d of 3", n)
		}
		return nil
	})
	// The fork never gets a quorum: clients refuse its checkpoint.
	if out, stderr, code := run(t, nil, "checkpoint", "--log", "http://"+forkHTTP, "--policy", c.policy); code != 1 {
		t.Fatalf("a client accepted the fork's checkpoint: %d %s %s", code, out, stderr)
	}
	_, _, ws := fc.checkpoint(t)
	if len(ws) >= 2 {
		t.Fatalf("the fork's checkpoint carries cosignatures %v", ws)
	}
}

// Scenario 8: garbage on every port; answers are 4xx, processes stay up,
// the log's content is unchanged.
func TestBadInputOnEveryPortChangesNothing(t *testing.T) {
	c := newCluster(t)
	for i := range 3 {
		c.add(t, fmt.Sprintf("r%d", i))
	}
	before, _ := c.waitSize(t, 3, 60*time.Second)
	w := "http://" + witnessAddr(c.witnesses[0])
	huge := bytes.Repeat([]byte("x"), 1<<20)
	junk := make([]byte, 4096)
	rand.Read(junk)
	for _, r := range []struct {
		url, ctype string
		body       []byte
	}{
		{"http://" + c.httpAddr + "/add", "", nil},
		{"http://" + c.httpAddr + "/add", "", huge},
		{"http://" + c.httpAddr + "/add", "multipart/form-data; boundary=x", []byte("--x--")},
		{"http://" + c.httpAddr + "/tile/99/zzz", "", nil},
		{w + "/add-checkpoint", "", junk},
		{w + "/add-checkpoint", "", huge},
		{w + "/add-checkpoint", "", []byte("old 0\n\n" + string(before))[:40]},
	} {
		method := http.MethodPost
		if strings.Contains(r.url, "/tile/") {
			method = http.MethodGet
		}
		req, _ := http.NewRequest(method, r.url, bytes.NewReader(r.body))
		if r.ctype != "" {
			req.Header.Set("Content-Type", r.ctype)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatalf("%s: %v", r.url, err)
		}
		resp.Body.Close()
		if resp.StatusCode < 400 || resp.StatusCode >= 500 {
			t.Errorf("%s (%d bytes): %d, want a 4xx", r.url, len(r.body), resp.StatusCode)
		}
	}
	// Garbage bytes straight onto the gRPC port and the HTTP port, and a
	// slow client that never finishes its headers.
	for _, addr := range []string{c.grpcAddr, c.httpAddr, witnessAddr(c.witnesses[0])} {
		conn, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		conn.Write(junk)
		conn.Close()
		slow, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		slow.Write([]byte("POST /add HTTP/1.1\r\nHost: x\r\n"))
		defer slow.Close()
	}
	// A checkpoint of the log's origin signed by another key is refused by
	// the witness (tlog-witness: 403 when no log signature verifies).
	otherKey, _, err := note.GenerateKey(rand.Reader, origin)
	if err != nil {
		t.Fatal(err)
	}
	signer, err := note.NewSigner(otherKey)
	if err != nil {
		t.Fatal(err)
	}
	forged, err := note.Sign(&note.Note{Text: fmt.Sprintf("%s\n4\n%s\n", origin, "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=")}, signer)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.Post(w+"/add-checkpoint", "", bytes.NewReader(append([]byte("old 0\n\n"), forged...)))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden {
		t.Errorf("a checkpoint signed by another key: %s, want 403", resp.Status)
	}
	// Everything is still up and the content unchanged.
	waitOK(t, "http://"+c.httpAddr+"/healthz")
	waitOK(t, w+"/healthz")
	after, size, _ := c.checkpoint(t)
	if size != 3 {
		t.Fatalf("bad input changed the log: size %d\n%s\n%s", size, before, after)
	}
	if out, stderr, code := run(t, nil, "submit", "--grpc", c.grpcAddr, "--insecure-plaintext", "-"); code != 2 || !strings.Contains(stderr, "payload is empty") {
		t.Fatalf("empty gRPC submit: %d %s %s", code, out, stderr)
	}
}

// Scenario 5: a witness killed at random moments under load and restarted
// never cosigns a rollback or a fork.
func TestWitnessCrashesNeverCosignARollbackOrFork(t *testing.T) {
	c := newCluster(t)
	// The farthest witness (the longest delay): the quorum never waits for
	// it, so it stays current only through the log's witness refresher.
	w := c.witnesses[2]
	mon := "http://" + witnessAddr(w) + "/" + originID(origin) + "/checkpoint"
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var acked atomic.Int64
	wg.Go(func() {
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			if _, err := c.add(t, fmt.Sprintf("load %d", i)); err == nil {
				acked.Add(1)
			}
		}
	})
	type seen struct {
		size uint64
		root [32]byte
	}
	var history []seen
	var malformed error
	var hmu sync.Mutex // guards history and malformed
	wg.Go(func() {
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
			}
			cp, err := cosigned(mon)
			hmu.Lock()
			switch {
			case errors.Is(err, checkpoint.ErrMalformed):
				malformed = err
			case err == nil && (len(history) == 0 || history[len(history)-1] != (seen{cp.Size, cp.Root})):
				history = append(history, seen{cp.Size, cp.Root})
			}
			hmu.Unlock()
		}
	})
	historyLen := func() int {
		hmu.Lock()
		defer hmu.Unlock()
		return len(history)
	}
	// Kill it at moments set by the load, not the clock: after 20 to 79
	// more acknowledged records each time.
	for i := range 6 {
		target := acked.Load() + int64(20+37*i%60)
		eventually(t, time.Minute, func() error {
			if n := acked.Load(); n < target {
				return fmt.Errorf("%d records acknowledged, want %d before crash %d", n, target, i+1)
			}
			return nil
		})
		w.kill9()
		w.start(t)
		w.waitServing(t, "http://"+witnessAddr(w)+"/healthz")
	}
	// The last restart cosigns again before the load stops.
	seenBefore := historyLen()
	eventually(t, time.Minute, func() error {
		if historyLen() <= seenBefore {
			return fmt.Errorf("the witness cosigned nothing new since its last restart (%d checkpoints seen)", seenBefore)
		}
		return nil
	})
	close(stop)
	wg.Wait()
	hmu.Lock()
	defer hmu.Unlock()
	if malformed != nil {
		t.Fatalf("the witness served a malformed checkpoint: %v", malformed)
	}
	if len(history) < 3 {
		t.Fatalf("the witness cosigned only %d distinct checkpoints under load", len(history))
	}
	roots := map[uint64][32]byte{}
	for i, h := range history {
		if r, ok := roots[h.size]; ok && r != h.root {
			t.Fatalf("the witness cosigned two roots for size %d", h.size)
		}
		roots[h.size] = h.root
		if i > 0 && h.size < history[i-1].size {
			t.Fatalf("the witness rolled back from %d to %d after a crash", history[i-1].size, h.size)
		}
	}
	if out, stderr, code := run(t, nil, "audit", "--quiet", "--log", "http://"+c.httpAddr, "--policy", c.policy); code != 0 {
		t.Fatalf("audit: %d %s %s", code, out, stderr)
	}
}

func originID(o string) string {
	h := sha256.Sum256([]byte(o))
	return hex.EncodeToString(h[:])
}

// cosigned reads a witness's monitoring endpoint: the checkpoint it last
// cosigned. A malformed checkpoint is an error wrapping
// checkpoint.ErrMalformed; a witness that is down or has cosigned nothing
// yet, another error.
func cosigned(url string) (checkpoint.Checkpoint, error) {
	resp, err := http.Get(url)
	if err != nil {
		return checkpoint.Checkpoint{}, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return checkpoint.Checkpoint{}, err
	}
	if resp.StatusCode != http.StatusOK {
		return checkpoint.Checkpoint{}, fmt.Errorf("%s: %s", url, resp.Status)
	}
	// A signed note: the text, a blank line, the signatures.
	text, _, ok := bytes.Cut(b, []byte("\n\n"))
	if !ok {
		return checkpoint.Checkpoint{}, fmt.Errorf("%s: %w: not a signed note: %q", url, checkpoint.ErrMalformed, b)
	}
	cp, err := checkpoint.Parse(append(text, '\n'))
	if err != nil {
		return checkpoint.Checkpoint{}, fmt.Errorf("%s: %w", url, err)
	}
	return cp, nil
}

// cosignedSize is the size of the checkpoint a witness last cosigned; a
// malformed one fails the test, a witness that answers nothing is at 0.
func cosignedSize(t *testing.T, url string) uint64 {
	t.Helper()
	cp, err := cosigned(url)
	if errors.Is(err, checkpoint.ErrMalformed) {
		t.Fatal(err)
	}
	return cp.Size
}

// Scenario 3: a witness partitioned from the log (its link down) and healed
// catches up through the 409 path without operator action.
func TestPartitionedWitnessCatchesUpAfterHealing(t *testing.T) {
	c := newCluster(t)
	if c.nw.mode != "netns" {
		t.Skipf("needs network namespaces (%s); TestWitnessOutagesAndRecoveryThrough409 covers a frozen witness on loopback", c.nw.why)
	}
	if _, err := c.add(t, "before"); err != nil {
		t.Fatal(err)
	}
	c.waitSize(t, 1, 60*time.Second)
	const cut = 1 // region 1 = witness w0
	if err := c.nw.partition(cut); err != nil {
		t.Fatal(err)
	}
	mon := "http://" + witnessAddr(c.witnesses[0]) + "/" + originID(origin) + "/checkpoint"
	for i := range 50 {
		if _, err := c.add(t, fmt.Sprintf("during %d", i)); err != nil {
			t.Fatal(err)
		}
	}
	_, ws := c.waitSize(t, 51, 60*time.Second)
	for _, w := range ws {
		if w == "integration.test/w0" {
			t.Fatal("a partitioned witness cosigned")
		}
	}
	if err := c.nw.heal(cut); err != nil {
		t.Fatal(err)
	}
	round := 0
	eventually(t, 90*time.Second, func() error {
		// A new record each round, published before the witness is looked
		// at: the tree must grow for new checkpoints (an identical record
		// would be deduplicated).
		idx, err := c.add(t, fmt.Sprintf("after %d", round))
		if err != nil {
			t.Fatal(err)
		}
		round++
		c.waitSize(t, idx+1, 60*time.Second)
		_, logSize, _ := c.checkpoint(t)
		if size := cosignedSize(t, mon); size < 51 || size+5 < logSize {
			return fmt.Errorf("the healed witness is stuck at size %d (log at %d)", size, logSize)
		}
		return nil
	})
}

// A witness that was down while the log grew catches up once the log goes
// idle: the unchanged checkpoint is republished (and rewitnessed) every
// --checkpoint-republish-interval, taking the 409 path.
func TestIdleLogRepublishesSoALaggingWitnessCatchesUp(t *testing.T) {
	c := newClusterWith(t, clusterOpts{storage: func(dir string) []string {
		return []string{"--storage", "posix:" + dir + "/log", "--checkpoint-republish-interval", "1s"}
	}})
	c.witnesses[0].kill9()
	var last uint64
	for i := range 20 {
		idx, err := c.add(t, fmt.Sprintf("while w0 is down %d", i))
		if err != nil {
			t.Fatal(err)
		}
		last = idx
	}
	c.waitSize(t, last+1, 60*time.Second)
	c.witnesses[0].start(t)
	c.witnesses[0].waitServing(t, "http://"+witnessAddr(c.witnesses[0])+"/healthz")
	// No more appends: only republishing can bring w0 to the log's size.
	mon := "http://" + witnessAddr(c.witnesses[0]) + "/" + originID(origin) + "/checkpoint"
	eventually(t, 60*time.Second, func() error {
		if size := cosignedSize(t, mon); size != last+1 {
			return fmt.Errorf("the returning witness is at %d on an idle log of %d", size, last+1)
		}
		return nil
	})
}

// Under load, and across its restarts, every witness keeps up, the farthest
// too: the quorum never waits for it, so its answers (and the sizes in its
// 409s) come back too late for the log, which without its witness refresher
// would keep sending it stale sizes (docs/witness.md).
func TestEveryWitnessKeepsUpUnderLoad(t *testing.T) {
	c := newCluster(t)
	far := c.witnesses[2]
	for round := range 3 {
		for i := range 100 {
			if _, err := c.add(t, fmt.Sprintf("load %d-%d", round, i)); err != nil {
				t.Fatal(err)
			}
		}
		if round < 2 {
			far.kill9()
			far.start(t)
			far.waitServing(t, "http://"+witnessAddr(far)+"/healthz")
		}
	}
	// Once the load stops, all three reach the log's size (well before the
	// idle republish, 10 minutes away).
	eventually(t, 30*time.Second, func() error {
		_, logSize, _ := c.checkpoint(t)
		var behind []string
		for _, w := range c.witnesses {
			if size := cosignedSize(t, "http://"+witnessAddr(w)+"/"+originID(origin)+"/checkpoint"); size != logSize {
				behind = append(behind, fmt.Sprintf("%s at %d", w.name, size))
			}
		}
		if len(behind) > 0 {
			return fmt.Errorf("log at %d; witnesses behind: %v", logSize, behind)
		}
		return nil
	})
}
