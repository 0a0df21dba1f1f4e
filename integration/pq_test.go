package integration

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"
)

// submitWithReceipt submits payload with cairn submit, which waits for a
// checkpoint that satisfies policy, and returns the receipt and record files.
func (c *cluster) submitWithReceipt(t *testing.T, payload, policy string) (receipt, leaf string) {
	t.Helper()
	dir := t.TempDir()
	out, stderr, code := run(t, []byte(payload), "submit", "--grpc", c.grpcAddr, "--insecure-plaintext",
		"--policy", policy, "--receipt", dir+"/r", "--record-out", dir+"/leaf", "-")
	if code != 0 {
		t.Fatalf("submit: exit %d %s %s", code, out, stderr)
	}
	return dir + "/r", dir + "/leaf"
}

// verifiedCosigners runs cairn verify receipt --output json offline and
// returns "witness:key_type" for every cosignature that verified.
func verifiedCosigners(t *testing.T, policy, receipt, leaf string) []string {
	t.Helper()
	out, stderr, code := run(t, nil, "verify", "receipt", "--policy", policy, "--record", leaf, "--output", "json", receipt)
	if code != 0 {
		t.Fatalf("verify receipt: exit %d %s %s", code, out, stderr)
	}
	var v struct {
		Checkpoint struct {
			Cosignatures []struct {
				Witness string `json:"witness"`
				KeyType string `json:"key_type"`
			} `json:"cosignatures"`
		} `json:"checkpoint"`
	}
	if err := json.Unmarshal([]byte(out), &v); err != nil {
		t.Fatalf("verify receipt output: %v\n%s", err, out)
	}
	var got []string
	for _, c := range v.Checkpoint.Cosignatures {
		got = append(got, c.Witness+":"+c.KeyType)
	}
	return got
}

// TestHybridPolicyCountsAWitnessOnlyWithBothKeys: three witnesses cosign
// with an Ed25519 and an ML-DSA-44 key each; the log publishes under a
// hybrid 2-of-3 policy (a witness counts only when both its cosignatures
// verify), and receipts verify offline with both key types named. A witness
// restarted with its Ed25519 key only stops counting: with a second witness
// down, two witnesses still cosign but the log publishes nothing, until the
// ML-DSA key is back.
func TestHybridPolicyCountsAWitnessOnlyWithBothKeys(t *testing.T) {
	c := newClusterWith(t, clusterOpts{hybrid: true})
	rc, leaf := c.submitWithReceipt(t, `{"pq":1}`, c.policy)
	got := verifiedCosigners(t, c.policy, rc, leaf)
	pairs := 0
	for _, w := range []string{"w0", "w1", "w2"} {
		if slices.Contains(got, w+"-ed:ed25519") && slices.Contains(got, w+"-pq:ml-dsa-44") {
			pairs++
		}
	}
	if pairs < 2 {
		t.Fatalf("the receipt's checkpoint carries %v: fewer than 2 witnesses with both key types", got)
	}

	// The receipt fails offline when one byte of an ML-DSA-44 cosignature
	// changes: exit 1, naming the witness and the key type.
	b := mustRead(t, rc)
	i := strings.Index(string(b), "— integration.test/w")
	lines := strings.Split(string(b[i:]), "\n")
	for k, line := range lines {
		if len(line) > 3000 { // an ML-DSA-44 line (2432 bytes in base64)
			mid := len(line) / 2
			flip := byte('A')
			if line[mid] == 'A' {
				flip = 'B'
			}
			lines[k] = line[:mid] + string(flip) + line[mid+1:]
			break
		}
	}
	bad := t.TempDir() + "/bad"
	mustWrite(t, bad, append(b[:i:i], strings.Join(lines, "\n")...))
	if out, stderr, code := run(t, nil, "verify", "receipt", "--policy", c.policy, "--record", leaf, bad); code != 1 || !strings.Contains(stderr, "ml-dsa-44 cosignature of witness w") {
		t.Fatalf("receipt with a flipped ML-DSA byte: exit %d %s %s", code, out, stderr)
	}

	// w2 loses its ML-DSA key: restarted with Ed25519 only.
	w2 := c.witnesses[2]
	w2.stop(t)
	w2.args = withoutKey(w2.args, c.dir+"/w2-pq.key")
	w2.start(t)
	w2.waitServing(t, "http://"+witnessAddr(w2)+"/healthz")
	// And w1 goes down: w0 (both keys) and w2 (Ed25519 only) still cosign,
	// but under the hybrid policy that is one witness, not two.
	c.witnesses[1].kill9()
	_, stuckAt, _ := c.checkpoint(t)
	idx, err := c.add(t, "after w2 lost its ML-DSA key")
	if err != nil {
		t.Fatal(err)
	}
	// w2 does keep cosigning (Ed25519): its monitoring checkpoint reaches the
	// new record although the log may not publish it.
	eventually(t, 60*time.Second, func() error {
		if s := cosignedSize(t, "http://"+witnessAddr(w2)+"/"+originID(origin)+"/checkpoint"); s <= idx {
			return fmt.Errorf("w2 has cosigned size %d, not yet > %d", s, idx)
		}
		return nil
	})
	watch := time.NewTicker(100 * time.Millisecond)
	defer watch.Stop()
	for end := time.Now().Add(3 * time.Second); time.Now().Before(end); <-watch.C {
		if _, s, _ := c.checkpoint(t); s != stuckAt {
			t.Fatalf("checkpoint advanced from %d to %d with one hybrid witness (w0) and one Ed25519-only (w2)", stuckAt, s)
		}
	}

	// The ML-DSA key back: w2 counts again and publishing resumes.
	w2.stop(t)
	w2.args = append(w2.args, "--key", c.dir+"/w2-pq.key")
	w2.start(t)
	c.waitSize(t, idx+1, 90*time.Second)
	rc, leaf = c.submitWithReceipt(t, `{"pq":2}`, c.policy)
	got = verifiedCosigners(t, c.policy, rc, leaf)
	for _, want := range []string{"w0-ed:ed25519", "w0-pq:ml-dsa-44", "w2-ed:ed25519", "w2-pq:ml-dsa-44"} {
		if !slices.Contains(got, want) {
			t.Errorf("after w2's ML-DSA key is back the receipt's cosignatures are %v, want %s", got, want)
		}
	}
}

// withoutKey returns args without the "--key path" pair.
func withoutKey(args []string, path string) []string {
	var out []string
	for i := 0; i < len(args); i++ {
		if args[i] == "--key" && i+1 < len(args) && args[i+1] == path {
			i++
			continue
		}
		out = append(out, args[i])
	}
	return out
}
