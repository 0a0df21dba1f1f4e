package receipt

import (
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/cairnlog/cairn/format/policy"
	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

// signedReceipt builds, with x/mod's sumdb/tlog and sumdb/note only, a tree
// of five leaves, a signed checkpoint and the tlog-proof of leaf index.
func signedReceipt(t testing.TB, index int64) (pol *policy.Policy, leaves [][]byte, proof []byte) {
	t.Helper()
	skey, vkey, err := note.GenerateKey(rand.Reader, "verify.test/log")
	if err != nil {
		t.Fatal(err)
	}
	signer, err := note.NewSigner(skey)
	if err != nil {
		t.Fatal(err)
	}
	var stored []tlog.Hash
	hr := tlog.HashReaderFunc(func(idx []int64) ([]tlog.Hash, error) {
		out := make([]tlog.Hash, len(idx))
		for i, x := range idx {
			out[i] = stored[x]
		}
		return out, nil
	})
	for i := range 5 {
		leaves = append(leaves, fmt.Appendf(nil, "leaf %d", i))
		hs, err := tlog.StoredHashes(int64(i), leaves[i], hr)
		if err != nil {
			t.Fatal(err)
		}
		stored = append(stored, hs...)
	}
	root, err := tlog.TreeHash(5, hr)
	if err != nil {
		t.Fatal(err)
	}
	rp, err := tlog.ProveRecord(5, index, hr)
	if err != nil {
		t.Fatal(err)
	}
	cp, err := note.Sign(&note.Note{Text: "verify.test/log\n5\n" + base64.StdEncoding.EncodeToString(root[:]) + "\n"}, signer)
	if err != nil {
		t.Fatal(err)
	}
	r := Receipt{Index: uint64(index), Checkpoint: cp}
	for _, h := range rp {
		r.Proof = append(r.Proof, h[:])
	}
	pol, err = policy.Parse([]byte("log " + vkey + "\nquorum none\n"))
	if err != nil {
		t.Fatal(err)
	}
	return pol, leaves, r.Marshal()
}

func TestVerifyAcceptsAReceiptMadeWithXMod(t *testing.T) {
	p, leaves, rc := signedReceipt(t, 3)
	r, v, err := Verify(p, leaves[3], rc)
	if err != nil {
		t.Fatal(err)
	}
	if r.Index != 3 || v.Checkpoint.Size != 5 || v.Checkpoint.Origin != "verify.test/log" {
		t.Errorf("verified %+v in %+v", r, v.Checkpoint)
	}
}

func TestVerifyNamesWhatFailed(t *testing.T) {
	p, leaves, rc := signedReceipt(t, 3)
	lines := strings.Split(string(rc), "\n")
	b, _ := base64.StdEncoding.DecodeString(lines[2])
	b[0] ^= 1
	lines[2] = base64.StdEncoding.EncodeToString(b)
	flipped := strings.Join(lines, "\n")
	other, _, _ := signedReceipt(t, 3)

	for _, tc := range []struct {
		name      string
		pol       *policy.Policy
		leaf, rc  []byte
		want      string
		ownReason bool // a *Failure, not the policy's error
	}{
		{"another record", p, leaves[2], rc, "the record does not match leaf 3 of the receipt's tree of size 5", true},
		{"a flipped proof hash", p, leaves[3], []byte(flipped), "the record does not match leaf 3", true},
		{"an index beyond the tree", p, leaves[3], []byte(strings.Replace(string(rc), "\nindex 3\n", "\nindex 7\n", 1)), "index 7 is beyond its checkpoint's tree size 5", true},
		{"not a receipt", p, leaves[3], []byte("hello"), "malformed tlog-proof", true},
		{"an untrusted log key", other, leaves[3], rc, "checkpoint fails the policy", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := Verify(tc.pol, tc.leaf, tc.rc)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Verify: %v, want an error containing %q", err, tc.want)
			}
			if !errors.Is(err, policy.ErrVerification) {
				t.Errorf("%v does not wrap policy.ErrVerification", err)
			}
			var f *Failure
			if errors.As(err, &f) != tc.ownReason {
				t.Errorf("%v: a *Failure is %v, want %v", err, !tc.ownReason, tc.ownReason)
			}
		})
	}
}

// FuzzVerify: any receipt and leaf bytes give an answer, never a panic, and
// an accepted one is for the leaf at an index inside its tree.
func FuzzVerify(f *testing.F) {
	p, leaves, rc := signedReceipt(f, 3)
	f.Add(rc, leaves[3])
	f.Add(rc, leaves[2])
	f.Add([]byte(Header+"\nindex 0\n\nx\n"), []byte{})
	f.Fuzz(func(t *testing.T, rc, leaf []byte) {
		r, v, err := Verify(p, leaf, rc)
		if err != nil {
			return
		}
		if r.Index >= v.Checkpoint.Size {
			t.Fatalf("accepted index %d in a tree of size %d", r.Index, v.Checkpoint.Size)
		}
	})
}

// BenchmarkVerify is one receipt verification: what `cairn verify receipt`
// and the explorer's WebAssembly verifier do per receipt or search hit.
func BenchmarkVerify(b *testing.B) {
	p, leaves, rc := signedReceipt(b, 3)
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := Verify(p, leaves[3], rc); err != nil {
			b.Fatal(err)
		}
	}
}
