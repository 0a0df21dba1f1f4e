package client

import (
	"context"
	"encoding/base64"
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/cairnlog/cairn/format/cosignature"
	"github.com/cairnlog/cairn/format/policy"
)

// mldsaPolicy is the interop policy with a quorum that needs omniwitness's
// ML-DSA-44 key: alone, and as the hybrid pair (Ed25519 and ML-DSA-44 of the
// same witness).
func mldsaPolicy(t testing.TB, quorum string) *policy.Policy {
	t.Helper()
	src := mustRead(t, "../testdata/interop.policy")
	src = strings.Replace(src, "quorum ed25519", "group omni-hybrid all omni mldsa\nquorum "+quorum, 1)
	p, err := policy.Parse([]byte(src))
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// interopReceipt builds a tlog-proof for index of the Tessera fixture log,
// with the checkpoint omniwitness cosigned with both its keys.
func interopReceipt(t testing.TB, index uint64) (leaf, rc []byte) {
	t.Helper()
	l := openFixture(t, fixture)
	ctx := context.Background()
	v, err := mldsaPolicy(t, "mldsa").Verify([]byte(mustRead(t, "../testdata/interop/checkpoint-cosigned.txt")))
	if err != nil {
		t.Fatal(err)
	}
	if leaf, err = l.Entry(ctx, v, index); err != nil {
		t.Fatal(err)
	}
	p, err := l.InclusionProof(ctx, index, v.Checkpoint.Size)
	if err != nil {
		t.Fatal(err)
	}
	return leaf, l.BuildReceipt(v, index, p)
}

// flipMLDSACosignature changes one byte of the ML-DSA-44 signature (not the
// key ID or timestamp) on the mldsawitness line of a receipt.
func flipMLDSACosignature(t *testing.T, rc []byte, at int) []byte {
	t.Helper()
	lines := strings.Split(string(rc), "\n")
	for i, line := range lines {
		b64, ok := strings.CutPrefix(line, "— example.test/mldsawitness ")
		if !ok {
			continue
		}
		sig, err := base64.StdEncoding.DecodeString(b64)
		if err != nil {
			t.Fatal(err)
		}
		sig[4+8+at] ^= 0x01
		lines[i] = "— example.test/mldsawitness " + base64.StdEncoding.EncodeToString(sig)
		return []byte(strings.Join(lines, "\n"))
	}
	t.Fatal("no ML-DSA cosignature in the receipt")
	return nil
}

// TestInteropReceiptVerifiesUnderMLDSAQuorum: a receipt for an entry of
// the Tessera fixture, with omniwitness's ML-DSA-44 cosignature, verifies
// under policies that require that key (alone and hybrid), and fails, naming
// the witness and the key type, when one byte of that cosignature changes.
func TestInteropReceiptVerifiesUnderMLDSAQuorum(t *testing.T) {
	leaf, rc := interopReceipt(t, 123)
	for _, q := range []string{"mldsa", "omni-hybrid"} {
		p := mldsaPolicy(t, q)
		vr, err := VerifyReceipt(p, leaf, rc)
		if err != nil {
			t.Fatalf("quorum %s: %v", q, err)
		}
		if got := vr.Checkpoint.KeyTypes["mldsa"]; got != cosignature.MLDSA44 {
			t.Errorf("quorum %s: mldsa key type %s, want ml-dsa-44", q, got)
		}
		if got := vr.Checkpoint.KeyTypes["omni"]; got != cosignature.Ed25519 {
			t.Errorf("quorum %s: omni key type %s, want ed25519", q, got)
		}
		if vr.Checkpoint.Cosigned["mldsa"].Unix() != 1795480292 {
			t.Errorf("ML-DSA cosignature timestamp %v", vr.Checkpoint.Cosigned["mldsa"])
		}
		for _, at := range []int{0, 1000, 2419} {
			_, err := VerifyReceipt(p, leaf, flipMLDSACosignature(t, rc, at))
			if !errors.Is(err, ErrVerification) {
				t.Fatalf("quorum %s, byte %d flipped: %v, want a verification failure", q, at, err)
			}
			if msg := err.Error(); !strings.Contains(msg, "witness mldsa") || !strings.Contains(msg, "ml-dsa-44") {
				t.Errorf("error %q does not name the witness and its key type", msg)
			}
		}
	}
	// Without the ML-DSA line the policy that requires it fails; the Ed25519
	// quorum still holds.
	var stripped []string
	for _, line := range strings.Split(string(rc), "\n") {
		if !strings.HasPrefix(line, "— example.test/mldsawitness ") {
			stripped = append(stripped, line)
		}
	}
	noPQ := []byte(strings.Join(stripped, "\n"))
	if _, err := VerifyReceipt(mldsaPolicy(t, "omni-hybrid"), leaf, noPQ); !errors.Is(err, ErrVerification) || !strings.Contains(err.Error(), "quorum") {
		t.Errorf("hybrid quorum without the ML-DSA cosignature: %v", err)
	}
	if _, err := VerifyReceipt(mldsaPolicy(t, "ed25519"), leaf, noPQ); err != nil {
		t.Errorf("Ed25519 quorum without the ML-DSA cosignature: %v", err)
	}
}

// TestMLDSACosignatureOverAnotherCheckpointIsRejected moves omniwitness's
// ML-DSA-44 cosignature of the size-360 checkpoint onto the log's
// checkpoint at 350: the signature is genuine but over the wrong message.
func TestMLDSACosignatureOverAnotherCheckpointIsRejected(t *testing.T) {
	var line string
	for _, l := range strings.Split(mustRead(t, "../testdata/interop/checkpoint-cosigned.txt"), "\n") {
		if strings.HasPrefix(l, "— example.test/mldsawitness ") {
			line = l
		}
	}
	cp := mustRead(t, "../testdata/interop/tessera-log-360.checkpoint-350.txt") + line + "\n"
	_, err := mldsaPolicy(t, "mldsa").Verify([]byte(cp))
	if !errors.Is(err, policy.ErrVerification) || !strings.Contains(err.Error(), "ml-dsa-44 cosignature of witness mldsa") {
		t.Fatalf("ML-DSA cosignature moved to another checkpoint: %v", err)
	}
}

// BenchmarkVerifyReceiptMLDSA measures offline receipt verification of the
// interop receipt with policies that know only the keys they need: the log
// alone, one Ed25519 witness, the ML-DSA-44 witness, and the hybrid pair.
// The differences are what each cosignature costs per receipt.
func BenchmarkVerifyReceiptMLDSA(b *testing.B) {
	leaf, rc := interopReceipt(b, 123)
	keep := func(names ...string) *policy.Policy {
		var lines []string
		for _, line := range strings.Split(mustRead(b, "../testdata/interop.policy"), "\n") {
			f := strings.Fields(line)
			if len(f) > 1 && (f[0] == "log" || f[0] == "witness" && slices.Contains(names, f[1])) {
				lines = append(lines, line)
			}
		}
		q := "none"
		if len(names) > 0 {
			lines = append(lines, "group q all "+strings.Join(names, " "))
			q = "q"
		}
		p, err := policy.Parse([]byte(strings.Join(append(lines, "quorum "+q), "\n")))
		if err != nil {
			b.Fatal(err)
		}
		return p
	}
	for name, p := range map[string]*policy.Policy{
		"log-only": keep(), "ed25519": keep("omni"), "ml-dsa-44": keep("mldsa"), "hybrid": keep("omni", "mldsa"),
	} {
		b.Run(name, func(b *testing.B) {
			for b.Loop() {
				if _, err := VerifyReceipt(p, leaf, rc); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
