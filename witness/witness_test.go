package witness

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"

	fnote "github.com/transparency-dev/formats/note"
	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

// memLog is a log built with golang.org/x/mod/sumdb/tlog and signed with
// x/mod's note: an implementation independent of Tessera and of Cairn.
type memLog struct {
	origin string
	signer note.Signer
	vkey   string
	hashes []tlog.Hash
	n      int64
}

func newMemLog(t testing.TB, origin string) *memLog {
	t.Helper()
	skey, vkey, err := note.GenerateKey(rand.Reader, origin)
	if err != nil {
		t.Fatal(err)
	}
	s, err := note.NewSigner(skey)
	if err != nil {
		t.Fatal(err)
	}
	return &memLog{origin: origin, signer: s, vkey: vkey}
}

func (m *memLog) ReadHashes(idx []int64) ([]tlog.Hash, error) {
	out := make([]tlog.Hash, len(idx))
	for i, x := range idx {
		out[i] = m.hashes[x]
	}
	return out, nil
}

func (m *memLog) add(t testing.TB, records ...string) {
	for _, r := range records {
		hs, err := tlog.StoredHashes(m.n, []byte(r), m)
		if err != nil {
			t.Fatal(err)
		}
		m.hashes = append(m.hashes, hs...)
		m.n++
	}
}

func (m *memLog) fork() *memLog {
	c := *m
	c.hashes = append([]tlog.Hash(nil), m.hashes...)
	return &c
}

func (m *memLog) checkpoint(t testing.TB) []byte {
	t.Helper()
	root, err := tlog.TreeHash(m.n, m)
	if err != nil {
		t.Fatal(err)
	}
	text := fmt.Sprintf("%s\n%d\n%s\n", m.origin, m.n, base64.StdEncoding.EncodeToString(root[:]))
	b, err := note.Sign(&note.Note{Text: text}, m.signer)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func (m *memLog) proof(t testing.TB, old int64) [][]byte {
	t.Helper()
	if old == 0 || old == m.n {
		return nil
	}
	p, err := tlog.ProveTree(m.n, old, m)
	if err != nil {
		t.Fatal(err)
	}
	out := make([][]byte, len(p))
	for i, h := range p {
		out[i] = append([]byte(nil), h[:]...)
	}
	return out
}

// request builds an add-checkpoint body from the log's current state.
func (m *memLog) request(t testing.TB, old int64) []byte {
	return AddCheckpointRequest{Old: uint64(old), Proof: m.proof(t, old), Checkpoint: m.checkpoint(t)}.Marshal()
}

type testWitness struct {
	*Witness
	vkey string
	skey string
	db   string
	srv  *httptest.Server
}

func newWitnessKey(t testing.TB) (skey, vkey string) {
	t.Helper()
	skey, vkey, err := note.GenerateKey(rand.Reader, "witness.test/w1")
	if err != nil {
		t.Fatal(err)
	}
	if vkey, err = fnote.VKeyToCosignatureV1(vkey); err != nil {
		t.Fatal(err)
	}
	return skey, vkey
}

func startWitness(t testing.TB, skey, vkey, db string, logs ...*memLog) *testWitness {
	t.Helper()
	return startWitnessKeys(t, []string{skey}, vkey, db, logs...)
}

// startWitnessKeys starts a witness cosigning with every key in skeys; vkey
// is the first key's.
func startWitnessKeys(t testing.TB, skeys []string, vkey, db string, logs ...*memLog) *testWitness {
	t.Helper()
	skey := skeys[0]
	var list []Log
	for _, l := range logs {
		v, _ := note.NewVerifier(l.vkey)
		list = append(list, Log{Origin: l.origin, VKey: l.vkey, Verifier: v})
	}
	w, err := New(Config{PrivateKeys: skeys, Logs: list, DB: db, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	tw := &testWitness{Witness: w, vkey: vkey, skey: skey, db: db, srv: httptest.NewServer(w.Handler())}
	t.Cleanup(tw.srv.Close)
	return tw
}

func newTestWitness(t testing.TB, logs ...*memLog) *testWitness {
	skey, vkey := newWitnessKey(t)
	return startWitness(t, skey, vkey, t.TempDir(), logs...)
}

func (w *testWitness) post(t testing.TB, body []byte) (int, http.Header, []byte) {
	t.Helper()
	resp, err := http.Post(w.srv.URL+"/add-checkpoint", "", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, b
}

// cosigned appends the answer to the submitted checkpoint and verifies both
// the log signature and the cosignature with x/mod note and formats' verifier.
func (w *testWitness) cosigned(t testing.TB, m *memLog, cp, answer []byte) *note.Note {
	t.Helper()
	wv, err := fnote.NewVerifierForCosignatureV1(w.vkey)
	if err != nil {
		t.Fatal(err)
	}
	lv, _ := note.NewVerifier(m.vkey)
	n, err := note.Open(append(append([]byte(nil), cp...), answer...), note.VerifierList(wv, lv))
	if err != nil {
		t.Fatalf("cosigned checkpoint does not verify: %v\n%s%s", err, cp, answer)
	}
	if len(n.Sigs) != 2 {
		t.Fatalf("want the log signature and one cosignature, got %d", len(n.Sigs))
	}
	return n
}

func TestAddCheckpointStatusCodes(t *testing.T) {
	m := newMemLog(t, "example.test/log")
	w := newTestWitness(t, m)
	m.add(t, "a", "b", "c")
	if code, _, b := w.post(t, m.request(t, 0)); code != 200 {
		t.Fatalf("first cosign: %d %s", code, b)
	}
	m.add(t, "d", "e")

	other := newMemLog(t, "example.test/other")
	other.add(t, "x")
	impostor := newMemLog(t, "example.test/log") // same origin, another key
	impostor.add(t, "a", "b", "c", "d", "e")
	badSig := corruptSignature(t, m.checkpoint(t))
	emptyWrongRoot, _ := note.Sign(&note.Note{Text: "example.test/log\n0\n" + base64.StdEncoding.EncodeToString(make([]byte, 32)) + "\n"}, m.signer)
	wrongProof := m.proof(t, 3)
	wrongProof[0][0] ^= 1
	fork := m.fork()
	fork.hashes, fork.n = fork.hashes[:0], 0
	fork.add(t, "a", "b", "X")

	for _, c := range []struct {
		name  string
		body  []byte
		code  int
		ctype string
		want  string
	}{
		{"garbage", []byte("hello"), 400, "", "empty line"},
		{"bad old line", []byte("old 03\n\n" + string(m.checkpoint(t))), 400, "", "leading zeros"},
		{"bad proof line", []byte("old 3\nnot-base64\n\n" + string(m.checkpoint(t))), 400, "", "proof line 1"},
		{"too many proof lines", []byte("old 3\n" + strings.Repeat(base64.StdEncoding.EncodeToString(make([]byte, 32))+"\n", 64) + "\n" + string(m.checkpoint(t))), 400, "", "at most 63"},
		{"unparsable note", []byte("old 3\n\nexample.test/log\n5\n"), 400, "", "malformed"},
		{"unknown origin", other.request(t, 0), 404, "", "not in this witness's log list"},
		{"wrong key", impostor.request(t, 3), 403, "", "no signature by"},
		{"bad signature", AddCheckpointRequest{Old: 3, Proof: m.proof(t, 3), Checkpoint: badSig}.Marshal(), 403, "", "does not verify"},
		{"old larger than size", AddCheckpointRequest{Old: 9, Checkpoint: m.checkpoint(t)}.Marshal(), 400, "", "old 9 > size 5"},
		{"old does not match", m.request(t, 2), 409, "text/x.tlog.size", "3\n"},
		{"old 0 after a cosign", m.request(t, 0), 409, "text/x.tlog.size", "3\n"},
		{"bad consistency proof", AddCheckpointRequest{Old: 3, Proof: wrongProof, Checkpoint: m.checkpoint(t)}.Marshal(), 422, "", "does not verify"},
		{"same size other root", fork.request(t, 3), 422, "", "another root"},
	} {
		code, hdr, body := w.post(t, c.body)
		if code != c.code || !strings.Contains(string(body), c.want) {
			t.Errorf("%s: %d %q, want %d containing %q", c.name, code, body, c.code, c.want)
		}
		if c.ctype != "" && hdr.Get("Content-Type") != c.ctype {
			t.Errorf("%s: Content-Type %q, want exactly %q", c.name, hdr.Get("Content-Type"), c.ctype)
		}
		if c.code == 409 && string(body) != c.want {
			t.Errorf("%s: 409 body %q, want exactly %q", c.name, body, c.want)
		}
	}

	// A fresh witness: size-0 rules.
	w2 := newTestWitness(t, m)
	if code, _, b := w2.post(t, AddCheckpointRequest{Old: 0, Checkpoint: emptyWrongRoot}.Marshal()); code != 422 {
		t.Errorf("size 0 with a non-empty root: %d %s, want 422", code, b)
	}
	if code, _, b := w2.post(t, AddCheckpointRequest{Old: 0, Proof: [][]byte{make([]byte, 32)}, Checkpoint: m.checkpoint(t)}.Marshal()); code != 422 {
		t.Errorf("non-empty proof from 0: %d %s, want 422", code, b)
	}

	// GET is not allowed; bodies are bounded.
	resp, _ := http.Get(w.srv.URL + "/add-checkpoint")
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("GET /add-checkpoint: %d, want 405", resp.StatusCode)
	}
	if code, _, _ := w.post(t, make([]byte, MaxBodyBytes+1)); code != http.StatusRequestEntityTooLarge {
		t.Errorf("oversized body: %d, want 413", code)
	}

	// After all that, the state is still size 3 and the next good update works.
	cp := m.checkpoint(t)
	code, _, answer := w.post(t, AddCheckpointRequest{Old: 3, Proof: m.proof(t, 3), Checkpoint: cp}.Marshal())
	if code != 200 {
		t.Fatalf("good update: %d %s", code, answer)
	}
	w.cosigned(t, m, cp, answer)
}

func TestCosignatureIsTimestampedCosignatureV1(t *testing.T) {
	m := newMemLog(t, "example.test/log")
	m.add(t, "r")
	w := newTestWitness(t, m)
	cp := m.checkpoint(t)
	code, _, answer := w.post(t, AddCheckpointRequest{Checkpoint: cp}.Marshal())
	if code != 200 {
		t.Fatalf("%d %s", code, answer)
	}
	n := w.cosigned(t, m, cp, answer)
	if !bytes.HasPrefix(answer, []byte("— witness.test/w1 ")) || !bytes.HasSuffix(answer, []byte("\n")) || bytes.Count(answer, []byte("\n")) != 1 {
		t.Fatalf("answer is not one signature line: %q", answer)
	}
	// Check the signed message independently: cosignature/v1\ntime T\n<text>.
	sig, _ := base64.StdEncoding.DecodeString(strings.Fields(string(answer))[2])
	if len(sig) != 4+8+64 {
		t.Fatalf("cosignature is %d bytes, want 76", len(sig))
	}
	ts := binary.BigEndian.Uint64(sig[4:12])
	if ts == 0 {
		t.Fatal("timestamp is zero")
	}
	pk, _ := base64.StdEncoding.DecodeString(strings.SplitN(w.vkey, "+", 3)[2])
	msg := fmt.Sprintf("cosignature/v1\ntime %d\n%s", ts, n.Text)
	if pk[0] != 0x04 || !ed25519.Verify(pk[1:], []byte(msg), sig[12:]) {
		t.Fatal("the cosignature does not verify over cosignature/v1\\ntime T\\n<checkpoint text>")
	}
}

func TestWitnessFollowsAnIndependentLogThrough409AndRefusesItsFork(t *testing.T) {
	m := newMemLog(t, "example.test/xmod-log")
	w := newTestWitness(t, m)
	// A client that knows nothing of the witness: old 0, learn the size from 409.
	submit := func(log *memLog) (int, []byte) {
		hint := int64(0)
		for range 3 {
			cp := log.checkpoint(t)
			code, hdr, body := w.post(t, AddCheckpointRequest{Old: uint64(hint), Proof: log.proof(t, hint), Checkpoint: cp}.Marshal())
			if code != http.StatusConflict {
				if code == 200 {
					w.cosigned(t, log, cp, body)
				}
				return code, body
			}
			if hdr.Get("Content-Type") != "text/x.tlog.size" {
				t.Fatalf("409 without text/x.tlog.size")
			}
			n, err := strconv.ParseInt(strings.TrimSpace(string(body)), 10, 64)
			if err != nil {
				t.Fatalf("409 body %q", body)
			}
			hint = n
		}
		t.Fatal("no progress after three 409s")
		return 0, nil
	}
	for i := range 5 {
		for j := range 37 {
			m.add(t, fmt.Sprintf("r%d-%d", i, j))
		}
		if code, b := submit(m); code != 200 {
			t.Fatalf("round %d: %d %s", i, code, b)
		}
	}
	// The log forks: same key, a different history of a larger size.
	fork := newMemLog(t, m.origin)
	fork.signer, fork.vkey = m.signer, m.vkey
	for i := range 200 {
		fork.add(t, fmt.Sprintf("other-%d", i))
	}
	if code, b := submit(fork); code != http.StatusUnprocessableEntity {
		t.Fatalf("fork: %d %s, want 422", code, b)
	}
	evs, err := ReadEvidence(w.db)
	if err != nil || len(evs) != 1 {
		t.Fatalf("evidence: %d records, %v", len(evs), err)
	}
	if evs[0].Origin != m.origin || !strings.Contains(evs[0].Submitted, "\n200\n") || !strings.Contains(evs[0].Cosigned, "\n185\n") || len(evs[0].Proof) == 0 {
		t.Fatalf("evidence does not hold both checkpoints and the proof: %+v", evs[0])
	}
	// The honest log continues.
	m.add(t, "after")
	if code, b := submit(m); code != 200 {
		t.Fatalf("honest log after the fork attempt: %d %s", code, b)
	}
}

func TestStateSurvivesRestartAndRollbacksAreRefused(t *testing.T) {
	m := newMemLog(t, "example.test/log")
	skey, vkey := newWitnessKey(t)
	db := t.TempDir()
	w := startWitness(t, skey, vkey, db, m)
	m.add(t, "a", "b", "c", "d")
	old := m.fork()
	if code, _, b := w.post(t, m.request(t, 0)); code != 200 {
		t.Fatal(code, string(b))
	}
	m.add(t, "e")
	if code, _, b := w.post(t, m.request(t, 4)); code != 200 {
		t.Fatal(code, string(b))
	}
	w.srv.Close()

	w = startWitness(t, skey, vkey, db, m)
	// A rollback to size 4 (old 4 → 409 with 5; old 5 → 400 old > size).
	if code, _, b := w.post(t, old.request(t, 4)); code != 409 || string(b) != "5\n" {
		t.Errorf("rollback with old 4: %d %q, want 409 5", code, b)
	}
	if code, _, _ := w.post(t, AddCheckpointRequest{Old: 5, Checkpoint: old.checkpoint(t)}.Marshal()); code != 400 {
		t.Errorf("rollback with old 5: %d, want 400", code)
	}
	// Another root at size 5.
	other := old.fork()
	other.add(t, "E")
	if code, _, _ := w.post(t, other.request(t, 5)); code != 422 {
		t.Errorf("another root at size 5 after restart: %d, want 422", code)
	}
	// The monitoring endpoint serves the log signature and our cosignature.
	resp, err := http.Get(w.srv.URL + "/" + OriginID(m.origin) + "/checkpoint")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("monitoring endpoint: %d", resp.StatusCode)
	}
	wv, _ := fnote.NewVerifierForCosignatureV1(vkey)
	lv, _ := note.NewVerifier(m.vkey)
	n, err := note.Open(body, note.VerifierList(wv, lv))
	if err != nil || len(n.Sigs) != 2 || !strings.Contains(n.Text, "\n5\n") {
		t.Fatalf("monitoring checkpoint: %v\n%s", err, body)
	}
	resp, _ = http.Get(w.srv.URL + "/" + OriginID("example.test/unknown") + "/checkpoint")
	resp.Body.Close()
	if resp.StatusCode != 404 {
		t.Errorf("monitoring endpoint for an unknown origin: %d, want 404", resp.StatusCode)
	}
}

func TestDamagedStateFailsClosedAndATornTailRecovers(t *testing.T) {
	m := newMemLog(t, "example.test/log")
	skey, vkey := newWitnessKey(t)
	v, _ := note.NewVerifier(m.vkey)
	reopen := func(db string) error {
		w, err := New(Config{PrivateKeys: []string{skey}, Logs: []Log{{Origin: m.origin, VKey: m.vkey, Verifier: v}}, DB: db, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
		if err == nil {
			w.Close()
		}
		return err
	}
	setup := func(t *testing.T) (string, []byte) {
		db := t.TempDir()
		w := startWitness(t, skey, vkey, db, m)
		m.hashes, m.n = nil, 0
		m.add(t, "x")
		if code, _, b := w.post(t, m.request(t, 0)); code != 200 {
			t.Fatal(code, string(b))
		}
		m.add(t, "y")
		if code, _, b := w.post(t, m.request(t, 1)); code != 200 {
			t.Fatal(code, string(b))
		}
		w.Close()
		b, _ := os.ReadFile(filepath.Join(db, "state.journal"))
		return db, b
	}
	t.Run("flipped byte in an acknowledged record", func(t *testing.T) {
		db, b := setup(t)
		b[20] ^= 1
		os.WriteFile(filepath.Join(db, "state.journal"), b, 0o600)
		if err := reopen(db); !errors.Is(err, ErrCorruptState) {
			t.Fatalf("got %v, want ErrCorruptState", err)
		}
	})
	t.Run("record re-signed by another key", func(t *testing.T) {
		db, _ := setup(t)
		other, _ := newWitnessKey(t)
		if err := func() error {
			v, _ := note.NewVerifier(m.vkey)
			w, err := New(Config{PrivateKeys: []string{other}, Logs: []Log{{Origin: m.origin, VKey: m.vkey, Verifier: v}}, DB: db})
			if err == nil {
				w.Close()
			}
			return err
		}(); !errors.Is(err, ErrCorruptState) {
			t.Fatalf("opening state cosigned by another key: %v, want ErrCorruptState", err)
		}
	})
	t.Run("torn tail from a crash mid-write", func(t *testing.T) {
		db, b := setup(t)
		os.WriteFile(filepath.Join(db, "state.journal"), b[:len(b)-7], 0o600)
		w := startWitness(t, skey, vkey, db, m)
		// The unacknowledged second record is gone; the first (size 1) stands.
		if code, _, body := w.post(t, m.request(t, 0)); code != 409 || string(body) != "1\n" {
			t.Fatalf("after a torn tail: %d %q, want 409 1", code, body)
		}
	})
}

func TestRacingRequestsNeverRollBack(t *testing.T) {
	m := newMemLog(t, "example.test/log")
	w := newTestWitness(t, m)
	// Pre-compute checkpoints of growing sizes with proofs from every smaller one.
	type snap struct {
		size int64
		cp   []byte
	}
	var snaps []snap
	for i := range 20 {
		m.add(t, fmt.Sprintf("r%d", i))
		snaps = append(snaps, snap{m.n, m.checkpoint(t)})
	}
	full := m
	proofFor := func(old, size int64) [][]byte {
		if old == 0 || old == size {
			return nil
		}
		p, err := tlog.ProveTree(size, old, full)
		if err != nil {
			t.Fatal(err)
		}
		out := make([][]byte, len(p))
		for i := range p {
			out[i] = append([]byte(nil), p[i][:]...)
		}
		return out
	}
	var mu sync.Mutex
	var cosigned []int64
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for k := range 40 {
				s := snaps[(g*7+k*3)%len(snaps)]
				// Ask the witness what it has, then race to advance it.
				resp, err := http.Post(w.srv.URL+"/add-checkpoint", "", bytes.NewReader(AddCheckpointRequest{Old: 0, Checkpoint: snaps[0].cp}.Marshal()))
				if err != nil {
					t.Error(err)
					return
				}
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				cur := int64(1)
				if resp.StatusCode == 409 {
					cur, _ = strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
				}
				if cur > s.size {
					continue
				}
				code, _, _ := w.post(t, AddCheckpointRequest{Old: uint64(cur), Proof: proofFor(cur, s.size), Checkpoint: s.cp}.Marshal())
				if code == 200 {
					mu.Lock()
					cosigned = append(cosigned, s.size)
					mu.Unlock()
				}
			}
		})
	}
	wg.Wait()
	if len(cosigned) < 5 {
		t.Fatalf("only %d racing updates succeeded: the test did not race", len(cosigned))
	}
	st, _, err := w.Latest(m.origin)
	if err != nil {
		t.Fatal(err)
	}
	max := int64(0)
	for _, s := range cosigned {
		max = maxI(max, s)
	}
	if !bytes.Contains(st, []byte(fmt.Sprintf("\n%d\n", max))) {
		t.Fatalf("stored state is not the largest cosigned size %d:\n%s", max, st)
	}
}

func maxI(a, b int64) int64 {
	if a > b {
		return a
	}
	return b
}

func TestInteropFixtureFromLitewitnessAndOmniwitness(t *testing.T) {
	cp, err := os.ReadFile("../testdata/interop/checkpoint-cosigned.txt")
	if err != nil {
		t.Fatal(err)
	}
	logVKey, _ := os.ReadFile("../testdata/interop/log.vkey")
	v, err := note.NewVerifier(strings.TrimSpace(string(logVKey)))
	if err != nil {
		t.Fatal(err)
	}
	skey, vkey := newWitnessKey(t)
	w, err := New(Config{PrivateKeys: []string{skey}, Logs: []Log{{Origin: v.Name(), VKey: string(logVKey), Verifier: v}}, DB: t.TempDir(), Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	answer, err := w.AddCheckpoint(context.Background(), AddCheckpointRequest{Checkpoint: cp})
	if err != nil {
		t.Fatalf("the fixture (with litewitness, omniwitness and ML-DSA cosignatures) was refused: %v", err)
	}
	// Every signature still verifies after ours is added.
	verifiers := []note.Verifier{v}
	for _, f := range []string{"litewitness.vkey", "omniwitness-ed25519.vkey", "omniwitness-mldsa44.vkey"} {
		b, _ := os.ReadFile("../testdata/interop/" + f)
		cv, err := fnote.NewVerifierForCosignatureV1(strings.TrimSpace(string(b)))
		if err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		verifiers = append(verifiers, cv)
	}
	wv, _ := fnote.NewVerifierForCosignatureV1(vkey)
	verifiers = append(verifiers, wv)
	n, err := note.Open(append(cp, answer...), note.VerifierList(verifiers...))
	if err != nil {
		t.Fatalf("fixture + our cosignature: %v", err)
	}
	if len(n.Sigs) != 5 {
		t.Fatalf("fixture + our cosignature: %d verified signatures, want 5", len(n.Sigs))
	}
}

// corruptSignature flips a bit in the signature bytes (not the key ID) of
// the last signature line, keeping the base64 valid.
func corruptSignature(t testing.TB, n []byte) []byte {
	t.Helper()
	i := bytes.LastIndex(n[:len(n)-1], []byte("\n")) + 1
	f := strings.Fields(string(n[i:]))
	sig, err := base64.StdEncoding.DecodeString(f[2])
	if err != nil {
		t.Fatal(err)
	}
	sig[10] ^= 1
	return append(append([]byte(nil), n[:i]...), []byte(fmt.Sprintf("— %s %s\n", f[1], base64.StdEncoding.EncodeToString(sig)))...)
}
