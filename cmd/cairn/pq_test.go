package main

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cairnlog/cairn/client"
	"github.com/cairnlog/cairn/format/policy"
)

// pqFixture is the Tessera interop log serving the checkpoint omniwitness
// cosigned with both its keys (same size and root as the log's own), and a
// policy whose quorum needs omniwitness's Ed25519 and ML-DSA-44 cosignatures
// (the hybrid rule).
func pqFixture(t *testing.T) (dir, url, pol string) {
	t.Helper()
	dir = copyTree(t, testdata+"/interop/tessera-log-360")
	cp, err := os.ReadFile(testdata + "/interop/checkpoint-cosigned.txt")
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(dir+"/checkpoint", cp, 0o644)
	src, _ := os.ReadFile(testdata + "/interop.policy")
	pol = filepath.Join(t.TempDir(), "hybrid.policy")
	os.WriteFile(pol, []byte(strings.Replace(string(src), "quorum ed25519", "group omni-hybrid all omni mldsa\nquorum omni-hybrid", 1)), 0o644)
	return dir, serveDir(t, dir), pol
}

// flipMLDSA changes one byte of the ML-DSA-44 signature in a note.
func flipMLDSA(t *testing.T, note []byte) []byte {
	t.Helper()
	const prefix = "— example.test/mldsawitness "
	lines := strings.Split(string(note), "\n")
	for i, l := range lines {
		if b64, ok := strings.CutPrefix(l, prefix); ok {
			sig, _ := base64.StdEncoding.DecodeString(b64)
			sig[100] ^= 0x80
			lines[i] = prefix + base64.StdEncoding.EncodeToString(sig)
			return []byte(strings.Join(lines, "\n"))
		}
	}
	t.Fatal("no ML-DSA-44 cosignature")
	return nil
}

// TestClientCommandsVerifyAndShowMLDSACosignatures: checkpoint, audit,
// monitor and verify receipt check omniwitness's ML-DSA-44 cosignature under
// a hybrid policy and show each cosignature's key type; with one byte of it
// changed, each exits 1 naming the witness and the key type.
func TestClientCommandsVerifyAndShowMLDSACosignatures(t *testing.T) {
	dir, url, pol := pqFixture(t)

	out, stderr, code := run(t, nil, "checkpoint", "--log", url, "--policy", pol, "--output", "json")
	var j checkpointJSON
	if err := json.Unmarshal([]byte(out), &j); code != 0 || err != nil {
		t.Fatalf("checkpoint: exit %d, %v: %s %s", code, err, out, stderr)
	}
	types := map[string]string{}
	for _, c := range j.Cosignatures {
		types[c.Witness] = c.KeyType
	}
	if types["mldsa"] != "ml-dsa-44" || types["omni"] != "ed25519" || types["lite"] != "ed25519" {
		t.Fatalf("key types %v", types)
	}
	out, _, _ = run(t, nil, "checkpoint", "--log", url, "--policy", pol)
	if !strings.Contains(out, "witness  mldsa (ml-dsa-44, cosigned 2026-") || !strings.Contains(out, "witness  omni (ed25519, cosigned ") {
		t.Errorf("checkpoint text:\n%s", out)
	}
	if out, stderr, code := run(t, nil, "audit", "--log", url, "--policy", pol); code != 0 || !strings.Contains(out, "mldsa (ml-dsa-44") {
		t.Fatalf("audit: exit %d %s %s", code, out, stderr)
	}
	state := filepath.Join(t.TempDir(), "monitor.state")
	if out, stderr, code := run(t, nil, "monitor", "--once", "--log", url, "--policy", pol, "--state", state); code != 0 || !strings.Contains(out, "cosigned by 3 witnesses (2 ed25519, 1 ml-dsa-44)") {
		t.Fatalf("monitor: exit %d %s %s", code, out, stderr)
	}

	// A receipt for entry 200 with the cosigned checkpoint, verified offline.
	p, err := policy.Parse(mustReadFile(t, pol))
	if err != nil {
		t.Fatal(err)
	}
	l, err := client.NewLog(url, p, client.HTTPOptions{})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	v, err := l.Checkpoint(ctx)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := l.Entry(ctx, v, 200)
	if err != nil {
		t.Fatal(err)
	}
	proof, err := l.InclusionProof(ctx, 200, v.Checkpoint.Size)
	if err != nil {
		t.Fatal(err)
	}
	rc := l.BuildReceipt(v, 200, proof)
	tmp := t.TempDir()
	os.WriteFile(tmp+"/leaf", leaf, 0o644)
	os.WriteFile(tmp+"/r", rc, 0o644)
	os.WriteFile(tmp+"/bad", flipMLDSA(t, rc), 0o644)
	if out, stderr, code := run(t, nil, "verify", "receipt", "--policy", pol, "--record", tmp+"/leaf", tmp+"/r"); code != 0 || !strings.Contains(out, "mldsa (ml-dsa-44") {
		t.Fatalf("verify receipt: exit %d %s %s", code, out, stderr)
	}
	const named = "the ml-dsa-44 cosignature of witness mldsa"
	if out, stderr, code := run(t, nil, "verify", "receipt", "--policy", pol, "--record", tmp+"/leaf", tmp+"/bad"); code != 1 || !strings.Contains(stderr, named) {
		t.Fatalf("verify receipt with a flipped ML-DSA byte: exit %d %s %s", code, out, stderr)
	}

	// The log serves the checkpoint with the flipped byte.
	cp, _ := os.ReadFile(dir + "/checkpoint")
	os.WriteFile(dir+"/checkpoint", flipMLDSA(t, cp), 0o644)
	if out, stderr, code := run(t, nil, "audit", "--quiet", "--log", url, "--policy", pol); code != 1 || !strings.Contains(stderr, named) {
		t.Fatalf("audit of a bad ML-DSA cosignature: exit %d %s %s", code, out, stderr)
	}
	if out, stderr, code := run(t, nil, "monitor", "--once", "--log", url, "--policy", pol, "--state", state); code != 1 || !strings.Contains(out, "ALARM") || !strings.Contains(out, named) {
		t.Fatalf("monitor of a bad ML-DSA cosignature: exit %d %s %s", code, out, stderr)
	}
}

func mustReadFile(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
