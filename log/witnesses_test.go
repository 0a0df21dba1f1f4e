package log

import (
	"bytes"
	"encoding/base64"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cairnlog/cairn/format/cosignature"
	fnote "github.com/transparency-dev/formats/note"
	"golang.org/x/mod/sumdb/note"
)

// TestHybridPolicyCallsTheWitnessOncePerKey: a hybrid policy names each
// witness's Ed25519 and ML-DSA-44 keys with the same URL; Tessera must get
// one endpoint per key (else it keeps one key per URL and the hybrid quorum
// is never met), each posting to the witness's add-checkpoint.
func TestHybridPolicyCallsTheWitnessOncePerKey(t *testing.T) {
	var policy strings.Builder
	policy.WriteString("log example.test/log+f1bd5c65+AfWxAPRYEuwL0N11FKlCp0vGQr+Pvx9x6xdtY3wQepmM\n")
	var groups []string
	pqKeys := map[string]cosignature.Key{} // line name → key
	for _, w := range []string{"w1", "w2", "w3"} {
		_, ed, err := cosignature.GenerateKey(w+".example", cosignature.Ed25519)
		if err != nil {
			t.Fatal(err)
		}
		_, pq, err := cosignature.GenerateKey(w+".example", cosignature.MLDSA44)
		if err != nil {
			t.Fatal(err)
		}
		if pqKeys[w+"-pq"], err = cosignature.ParseVKey(pq); err != nil {
			t.Fatal(err)
		}
		url := "https://127.0.0.1:7001/" + w
		policy.WriteString("witness " + w + "-ed " + ed + " " + url + "   # Ed25519\n")
		policy.WriteString("witness " + w + "-pq " + pq + " " + url + "\n")
		policy.WriteString("group " + w + " all " + w + "-ed " + w + "-pq\n")
		groups = append(groups, w)
	}
	policy.WriteString("group hybrid 2 " + strings.Join(groups, " ") + "\nquorum hybrid\n")
	g, err := witnessGroup([]byte(policy.String()))
	if err != nil {
		t.Fatal(err)
	}
	var urls []string
	for u := range g.Endpoints() {
		urls = append(urls, u)
	}
	slices.Sort(urls)
	want := []string{
		"https://127.0.0.1:7001/w1/add-checkpoint", "https://127.0.0.1:7001/w1/add-checkpoint?cosigner=w1-pq",
		"https://127.0.0.1:7001/w2/add-checkpoint", "https://127.0.0.1:7001/w2/add-checkpoint?cosigner=w2-pq",
		"https://127.0.0.1:7001/w3/add-checkpoint", "https://127.0.0.1:7001/w3/add-checkpoint?cosigner=w3-pq",
	}
	if !slices.Equal(urls, want) {
		t.Fatalf("endpoints:\n%s\nwant:\n%s", strings.Join(urls, "\n"), strings.Join(want, "\n"))
	}
	// Each ?cosigner= endpoint checks answers with that line's ML-DSA-44 key.
	for u, v := range g.Endpoints() {
		_, name, ok := strings.Cut(u, "cosigner=")
		if ok && v.KeyHash() != pqKeys[name].Verifier.KeyHash() {
			t.Errorf("%s verifies with key %s+%08x, not %s's", u, v.Name(), v.KeyHash(), name)
		}
	}
}

// fakeHybridWitness answers add-checkpoint with an Ed25519 and an ML-DSA-44
// cosignature of whatever checkpoint it is sent, without keeping state; with
// corrupt set, one byte of the ML-DSA-44 signature is changed. It stands in
// for a misbehaving witness, which Cairn's witness cannot be made into.
type fakeHybridWitness struct {
	ed, pq  *cosignature.Signer
	corrupt atomic.Bool
	calls   atomic.Int64
}

func (f *fakeHybridWitness) ServeHTTP(rw http.ResponseWriter, r *http.Request) {
	f.calls.Add(1)
	body, _ := io.ReadAll(r.Body)
	_, cp, ok := strings.Cut(string(body), "\n\n")
	text, _, ok2 := strings.Cut(cp, "\n\n")
	if r.URL.Path != "/add-checkpoint" || !ok || !ok2 {
		http.Error(rw, "bad request", http.StatusBadRequest)
		return
	}
	signed, err := note.Sign(&note.Note{Text: text + "\n"}, f.ed, f.pq)
	if err != nil {
		http.Error(rw, err.Error(), http.StatusInternalServerError)
		return
	}
	lines := strings.Split(string(signed[bytes.LastIndex(signed, []byte("\n\n"))+2:]), "\n")
	if f.corrupt.Load() {
		name, b64, _ := strings.Cut(strings.TrimPrefix(lines[1], "— "), " ")
		sig, _ := base64.StdEncoding.DecodeString(b64)
		sig[4+8+500] ^= 1
		lines[1] = "— " + name + " " + base64.StdEncoding.EncodeToString(sig)
	}
	io.WriteString(rw, strings.Join(lines, "\n"))
}

// TestLogCountsAWitnessOnlyWithAValidMLDSACosignature: under a hybrid
// policy the log publishes a checkpoint only when the witness's ML-DSA-44
// cosignature verifies too, and what it publishes verifies with x/mod's note
// and formats' verifiers built from the policy's vkeys.
func TestLogCountsAWitnessOnlyWithAValidMLDSACosignature(t *testing.T) {
	edSkey, edVkey, _ := cosignature.GenerateKey("w.example", cosignature.Ed25519)
	pqSkey, pqVkey, _ := cosignature.GenerateKey("w.example", cosignature.MLDSA44)
	f := &fakeHybridWitness{}
	f.ed, _ = cosignature.ParseSigner(edSkey)
	f.pq, _ = cosignature.ParseSigner(pqSkey)
	srv := httptest.NewServer(f)
	t.Cleanup(srv.Close)

	skey, vkey := newKey(t, testOrigin)
	cfg := testConfig(t.TempDir(), skey)
	cfg.WitnessTimeout = 2 * time.Second
	cfg.WitnessPolicy = []byte("witness w-ed " + edVkey + " " + srv.URL + "\nwitness w-pq " + pqVkey + " " + srv.URL +
		"\ngroup w all w-ed w-pq\nquorum w\n")
	tl := startLog(t, cfg)
	appendGRPC(t, tl.api, "one")
	cp, _ := tl.waitForSize(t, vkey, 1)
	logV, _ := note.NewVerifier(vkey)
	edV, _ := fnote.NewVerifierForCosignatureV1(edVkey)
	pqV, _ := fnote.NewVerifierForCosignatureV1(pqVkey)
	if n, err := note.Open(cp, note.VerifierList(logV, edV, pqV)); err != nil || len(n.Sigs) != 3 {
		t.Fatalf("published checkpoint does not carry the log signature and both cosignatures: %v\n%s", err, cp)
	}

	f.corrupt.Store(true)
	appendGRPC(t, tl.api, "two")
	before := f.calls.Load()
	// Several checkpoint intervals of witness requests, none counted.
	deadline := time.Now().Add(20 * time.Second)
	for f.calls.Load() < before+6 {
		if time.Now().After(deadline) {
			t.Fatalf("the log asked the witness %d times", f.calls.Load()-before)
		}
		time.Sleep(20 * time.Millisecond)
	}
	n, err := note.Open(tl.get(t, "/checkpoint"), note.VerifierList(logV))
	if err != nil {
		t.Fatal(err)
	}
	if tree := parseTree(t, n.Text); tree.N != 1 {
		t.Fatalf("the log published size %d with a bad ML-DSA-44 cosignature", tree.N)
	}

	f.corrupt.Store(false)
	cp, _ = tl.waitForSize(t, vkey, 2)
	if n, err := note.Open(cp, note.VerifierList(logV, edV, pqV)); err != nil || len(n.Sigs) != 3 {
		t.Fatalf("after the witness recovered: %v\n%s", err, cp)
	}
}
