package witness

import (
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/note"
)

// clock is a settable test clock for Config.Now.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// startBudgetWitness starts a witness for m with the given qpd on a frozen
// clock, so no budget refills unless the test advances it.
func startBudgetWitness(t *testing.T, m *memLog, qpd uint64) (*testWitness, *clock, []Log) {
	t.Helper()
	skey, vkey := newWitnessKey(t)
	v, _ := note.NewVerifier(m.vkey)
	logs := []Log{{Origin: m.origin, VKey: m.vkey, Verifier: v, QPD: qpd}}
	clk := &clock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	db := t.TempDir()
	w, err := New(Config{PrivateKeys: []string{skey}, Logs: logs, DB: db, Now: clk.now, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { w.Close() })
	tw := &testWitness{Witness: w, vkey: vkey, skey: skey, db: db, srv: httptest.NewServer(w.Handler())}
	t.Cleanup(tw.srv.Close)
	return tw, clk, logs
}

// TestStaleRequestsDoNotSpendTheLogsBudget is issue #20: anyone can replay
// the log's public, signed checkpoints with a wrong old size or proof. None
// of those can advance the witness, so none may spend the qpd budget, and a
// log-list reload must not refill a budget the log did spend.
func TestStaleRequestsDoNotSpendTheLogsBudget(t *testing.T) {
	m := newMemLog(t, "example.test/log")
	// qpd 20: a burst of 2, then one request every 72 minutes.
	w, clk, logs := startBudgetWitness(t, m, 20)

	m.add(t, "a", "b", "c")
	cp3 := m.checkpoint(t)
	if code, _, b := w.post(t, m.request(t, 0)); code != 200 {
		t.Fatalf("first cosignature: %d %s", code, b)
	}
	m.add(t, "d", "e")
	cp5 := m.checkpoint(t)
	badProof := m.proof(t, 3)
	badProof[0][0] ^= 1

	// Hundreds of requests an attacker without the log's key can send.
	stale := []struct {
		name string
		body []byte
		code int
	}{
		{"current checkpoint, old 0", AddCheckpointRequest{Old: 0, Checkpoint: cp3}.Marshal(), 409},
		{"current checkpoint, old 2", AddCheckpointRequest{Old: 2, Checkpoint: cp3}.Marshal(), 409},
		{"current checkpoint replayed", AddCheckpointRequest{Old: 3, Checkpoint: cp3}.Marshal(), 200},
		{"current checkpoint, old too large", AddCheckpointRequest{Old: 4, Checkpoint: cp3}.Marshal(), 400},
		{"next checkpoint, old 0", AddCheckpointRequest{Old: 0, Checkpoint: cp5}.Marshal(), 409},
		{"next checkpoint, old 4", AddCheckpointRequest{Old: 4, Checkpoint: cp5}.Marshal(), 409},
		{"next checkpoint, old 5", AddCheckpointRequest{Old: 5, Checkpoint: cp5}.Marshal(), 409},
	}
	for i := range 300 {
		c := stale[i%len(stale)]
		if code, _, b := w.post(t, c.body); code != c.code {
			t.Fatalf("%s: %d %s, want %d", c.name, code, b, c.code)
		}
	}
	// Bad proofs for the next checkpoint: refused, and kept as evidence once.
	for i := range 50 {
		badProof[1][0] = byte(i)
		if code, _, b := w.post(t, AddCheckpointRequest{Old: 3, Proof: badProof, Checkpoint: cp5}.Marshal()); code != 422 {
			t.Fatalf("bad proof: %d %s, want 422", code, b)
		}
	}
	if n := metric(t, w, "cairn_witness_evidence_total"); n != "1" {
		t.Fatalf("%s evidence records for 50 bad proofs of one checkpoint, want 1", n)
	}
	// A second root at the cosigned size (this needs the log's key): another
	// record, at the same instant of the frozen clock, in a file of its own.
	fork := newMemLog(t, m.origin)
	fork.signer, fork.vkey = m.signer, m.vkey
	fork.add(t, "a", "b", "X")
	if code, _, b := w.post(t, fork.request(t, 3)); code != 422 {
		t.Fatalf("a second root at size 3: %d %s, want 422", code, b)
	}
	if evs, err := ReadEvidence(w.db); err != nil || len(evs) != 2 {
		t.Fatalf("%d evidence files (%v), want 2", len(evs), err)
	}

	// The log's next checkpoint is still cosigned, and its replays are free.
	if code, _, b := w.post(t, AddCheckpointRequest{Old: 3, Proof: m.proof(t, 3), Checkpoint: cp5}.Marshal()); code != 200 {
		t.Fatalf("the log's next checkpoint after 300 stale requests: %d %s, want 200", code, b)
	}
	for range 50 {
		if code, _, b := w.post(t, AddCheckpointRequest{Old: 5, Checkpoint: cp5}.Marshal()); code != 200 {
			t.Fatalf("replaying the cosigned checkpoint: %d %s, want 200", code, b)
		}
	}

	// The budget is real: two advances spent the burst of 2.
	m.add(t, "f")
	next := m.request(t, 5)
	if code, hdr, b := w.post(t, next); code != 429 || hdr.Get("Retry-After") == "" {
		t.Fatalf("a third advance within the burst: %d %s, want 429 with Retry-After", code, b)
	}
	// A reload (SIGHUP) keeps what was spent, also when the qpd changes.
	w.SetLogs(logs)
	if code, _, b := w.post(t, next); code != 429 {
		t.Fatalf("after a reload with the same qpd: %d %s, want 429 (the budget was refilled)", code, b)
	}
	raised := append([]Log(nil), logs...)
	raised[0].QPD = 40
	w.SetLogs(raised)
	if code, _, b := w.post(t, next); code != 429 {
		t.Fatalf("after a reload raising the qpd: %d %s, want 429 (the budget was refilled)", code, b)
	}
	// At qpd 40 one request refills every 36 minutes.
	clk.advance(36*time.Minute + time.Second)
	if code, _, b := w.post(t, next); code != 200 {
		t.Fatalf("after the budget refilled: %d %s, want 200", code, b)
	}

	if n := metric(t, w, `cairn_witness_rate_limited_requests_total{origin="example.test/log"}`); n != "3" {
		t.Fatalf("%s requests counted as over budget, want 3", n)
	}
}

// metric returns the value of the series named exactly name on /metrics, or
// "" when there is none.
func metric(t *testing.T, w *testWitness, name string) string {
	t.Helper()
	resp, err := http.Get(w.srv.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, name+" "); ok {
			return v
		}
	}
	return ""
}
