package witness

import (
	"bytes"
	"encoding/base64"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"

	"github.com/cairnlog/cairn/format/cosignature"
	fnote "github.com/transparency-dev/formats/note"
	"golang.org/x/mod/sumdb/note"
)

// TestCosignsWithEveryKeyAndDropsOneOnRestart: a witness with an Ed25519
// and an ML-DSA-44 key answers with one cosignature line per key, each
// verifying with x/mod's note.Open and formats' verifier made from the vkey
// alone; restarted with the Ed25519 key only it keeps its state and answers
// with that key only; restarted with a key it never signed with, it refuses
// its state.
func TestCosignsWithEveryKeyAndDropsOneOnRestart(t *testing.T) {
	m := newMemLog(t, "example.test/log")
	edSkey, edVkey, err := cosignature.GenerateKey("witness.test/w1", cosignature.Ed25519)
	if err != nil {
		t.Fatal(err)
	}
	pqSkey, pqVkey, err := cosignature.GenerateKey("witness.test/w1", cosignature.MLDSA44)
	if err != nil {
		t.Fatal(err)
	}
	verifier := func(vkey string) note.Verifier {
		v, err := fnote.NewVerifierForCosignatureV1(vkey)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	logV, _ := note.NewVerifier(m.vkey)
	db := t.TempDir()
	w := startWitnessKeys(t, []string{edSkey, pqSkey}, edVkey, db, m)
	m.add(t, "a", "b", "c")
	cp := m.checkpoint(t)
	code, _, answer := w.post(t, AddCheckpointRequest{Old: 0, Checkpoint: cp}.Marshal())
	if code != 200 {
		t.Fatalf("add-checkpoint: %d %s", code, answer)
	}
	lines := strings.Split(strings.TrimSuffix(string(answer), "\n"), "\n")
	if len(lines) != 2 {
		t.Fatalf("answer has %d lines, want one per key:\n%s", len(lines), answer)
	}
	for i, want := range []struct {
		vkey string
		typ  cosignature.KeyType
	}{{edVkey, cosignature.Ed25519}, {pqVkey, cosignature.MLDSA44}} {
		n, err := note.Open(append(bytes.Clone(cp), lines[i]+"\n"...), note.VerifierList(logV, verifier(want.vkey)))
		if err != nil || len(n.Sigs) != 2 {
			t.Fatalf("line %d (%s) does not verify independently: %v", i+1, want.typ, err)
		}
		sig, _ := base64.StdEncoding.DecodeString(n.Sigs[1].Base64)
		if typ, _ := cosignature.SignatureType(sig); typ != want.typ {
			t.Errorf("line %d: a %s signature, want %s", i+1, typ, want.typ)
		}
	}
	// The monitoring checkpoint carries the log signature and both cosignatures.
	latest, _, err := w.Latest(m.origin)
	if err != nil {
		t.Fatal(err)
	}
	if n, err := note.Open(latest, note.VerifierList(logV, verifier(edVkey), verifier(pqVkey))); err != nil || len(n.Sigs) != 3 {
		t.Fatalf("stored checkpoint: %v", err)
	}
	resp, err := http.Get(w.srv.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	metrics, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{`cairn_witness_cosignatures_total{key_type="ed25519"} 1`, `cairn_witness_cosignatures_total{key_type="ml-dsa-44"} 1`} {
		if !strings.Contains(string(metrics), want) {
			t.Errorf("metrics lack %s", want)
		}
	}
	w.Close()
	w.srv.Close()

	// The ML-DSA key is withdrawn: state kept, one Ed25519 line per answer.
	w = startWitnessKeys(t, []string{edSkey}, edVkey, db, m)
	m.add(t, "d")
	code, _, answer = w.post(t, m.request(t, 3))
	if code != 200 || bytes.Count(answer, []byte("\n")) != 1 {
		t.Fatalf("after dropping the ML-DSA key: %d %q", code, answer)
	}
	if _, err := note.Open(append(m.checkpoint(t), answer...), note.VerifierList(verifier(edVkey))); err != nil {
		t.Fatal(err)
	}
	w.Close()
	w.srv.Close()

	// Only a key the state was never cosigned with: fail closed.
	other, _, _ := cosignature.GenerateKey("witness.test/w1", cosignature.MLDSA44)
	_, err = New(Config{PrivateKeys: []string{other}, Logs: []Log{{Origin: m.origin, VKey: m.vkey, Verifier: logV}}, DB: db, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if !errors.Is(err, ErrCorruptState) {
		t.Fatalf("state under a new key only: %v, want ErrCorruptState", err)
	}
}

func TestRefusesTheSameKeyTwice(t *testing.T) {
	pq, _, _ := cosignature.GenerateKey("witness.test/w1", cosignature.MLDSA44)
	err := Config{PrivateKeys: []string{pq, pq}, DB: t.TempDir()}.Validate()
	if err == nil || !strings.Contains(err.Error(), "Config.PrivateKeys") || !strings.Contains(err.Error(), "ml-dsa-44") {
		t.Fatalf("the same key twice: %v", err)
	}
}
