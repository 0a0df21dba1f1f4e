package witness

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"strings"
	"testing"

	"golang.org/x/mod/sumdb/note"
)

// TestTlogWitnessChecklist walks the witness side of the tlog-witness
// checklist (SPECS.md §12) beyond TestAddCheckpointStatusCodes: each case
// starts from a fresh witness, sends its requests in order and checks every
// answer. Where tlog-witness v1.0.0 and HEAD differ, Cairn answers as HEAD
// (same size, different root: 422, not 409).
func TestTlogWitnessChecklist(t *testing.T) {
	m := newMemLog(t, "example.test/log")
	m.add(t, "a", "b", "c")
	cp3 := m.checkpoint(t)
	empty, _ := note.Sign(&note.Note{Text: "example.test/log\n0\n" + base64.StdEncoding.EncodeToString(sha256Empty()) + "\n"}, m.signer)
	wrongEmpty, _ := note.Sign(&note.Note{Text: "example.test/log\n0\n" + base64.StdEncoding.EncodeToString(make([]byte, 32)) + "\n"}, m.signer)
	withExtension, _ := note.Sign(&note.Note{Text: strings.TrimSuffix(string(noteText(t, cp3)), "") + "extension line\n"}, m.signer)
	// The log signature twice, the second one corrupted: a trusted key's
	// signature that fails is refused even next to a good one.
	lastSig := cp3[bytes.LastIndex(cp3[:len(cp3)-1], []byte("\n"))+1:]
	goodAndBad := append(append([]byte(nil), cp3...), corruptSignature(t, append([]byte("x\n"), lastSig...))[2:]...)
	// A signature line with the log's name but another key ID: unknown, so
	// the checkpoint carries no signature the witness trusts.
	otherKey := newMemLog(t, "example.test/log")
	otherKey.hashes, otherKey.n = m.hashes, m.n
	// Twenty cosignatures by witnesses this one does not know are ignored.
	manyCosigned := append([]byte(nil), cp3...)
	for i := range 20 {
		skey, _, err := note.GenerateKey(rand.Reader, fmt.Sprintf("witness.test/other%d", i))
		if err != nil {
			t.Fatal(err)
		}
		s, _ := note.NewSigner(skey)
		signed, _ := note.Sign(&note.Note{Text: string(noteText(t, cp3))}, s)
		manyCosigned = append(manyCosigned, signed[bytes.LastIndex(signed, []byte("\n\n"))+2:]...)
	}

	type step struct {
		req  AddCheckpointRequest
		code int
		body string // a substring of the answer; for 409 the exact body
	}
	for _, c := range []struct {
		name  string
		steps []step
	}{
		{"409 before the first cosignature says 0", []step{
			{AddCheckpointRequest{Old: 2, Checkpoint: cp3}, 409, "0\n"},
		}},
		{"the empty tree, cosigned and resubmitted", []step{
			{AddCheckpointRequest{Old: 0, Checkpoint: empty}, 200, "— witness.test/w1 "},
			{AddCheckpointRequest{Old: 0, Checkpoint: empty}, 200, "— witness.test/w1 "},
			{AddCheckpointRequest{Old: 0, Checkpoint: wrongEmpty}, 422, "empty-tree root"},
			{AddCheckpointRequest{Old: 0, Checkpoint: cp3}, 200, "— witness.test/w1 "},
		}},
		{"size 0 with another root", []step{
			{AddCheckpointRequest{Old: 0, Checkpoint: wrongEmpty}, 422, "empty-tree root"},
		}},
		{"non-empty proof from 0", []step{
			{AddCheckpointRequest{Old: 0, Proof: [][]byte{make([]byte, 32)}, Checkpoint: cp3}, 422, "from size 0 must be empty"},
		}},
		{"same size and root: a fresh cosignature; with a proof: 422", []step{
			{AddCheckpointRequest{Old: 0, Checkpoint: cp3}, 200, "— witness.test/w1 "},
			{AddCheckpointRequest{Old: 3, Checkpoint: cp3}, 200, "— witness.test/w1 "},
			{AddCheckpointRequest{Old: 3, Proof: [][]byte{make([]byte, 32)}, Checkpoint: cp3}, 422, "between equal sizes must be empty"},
			{AddCheckpointRequest{Old: 3, Checkpoint: cp3}, 200, "— witness.test/w1 "},
		}},
		{"a good and a bad signature by the log's key", []step{
			{AddCheckpointRequest{Old: 0, Checkpoint: goodAndBad}, 403, "does not verify"},
		}},
		{"the log's name with another key", []step{
			{AddCheckpointRequest{Old: 0, Checkpoint: otherKey.checkpoint(t)}, 403, "no signature by"},
		}},
		{"unknown cosignatures are ignored", []step{
			{AddCheckpointRequest{Old: 0, Checkpoint: manyCosigned}, 200, "— witness.test/w1 "},
		}},
		{"extension lines are cosigned", []step{
			{AddCheckpointRequest{Old: 0, Checkpoint: withExtension}, 200, "— witness.test/w1 "},
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			w := newTestWitness(t, m)
			for i, s := range c.steps {
				code, hdr, body := w.post(t, s.req.Marshal())
				switch {
				case code != s.code || !strings.Contains(string(body), s.body):
					t.Fatalf("step %d: %d %q, want %d containing %q", i+1, code, body, s.code, s.body)
				case code == 409 && (string(body) != s.body || hdr.Get("Content-Type") != "text/x.tlog.size"):
					t.Fatalf("step %d: 409 %q %q, want exactly %q text/x.tlog.size", i+1, body, hdr.Get("Content-Type"), s.body)
				case code == 200:
					// Body: cosignature lines only; appended to the
					// submitted note they verify.
					if bytes.Count(body, []byte("\n")) != 1 || !bytes.HasSuffix(body, []byte("\n")) {
						t.Fatalf("step %d: answer is not one signature line: %q", i+1, body)
					}
					w.cosignedBy(t, m, s.req.Checkpoint, body)
				case bytes.Contains(body, []byte("— ")):
					t.Fatalf("step %d: a signature line in a refusal: %q", i+1, body)
				}
			}
		})
	}
}

// cosignedBy checks that answer, appended to cp, verifies with the log's
// key and this witness's cosignature key.
func (w *testWitness) cosignedBy(t testing.TB, m *memLog, cp, answer []byte) {
	t.Helper()
	w.cosigned(t, m, stripUnknown(t, m, cp), answer)
}

// stripUnknown keeps only the log's own signature lines of cp, so cosigned
// can insist on exactly two verified signatures.
func stripUnknown(t testing.TB, m *memLog, cp []byte) []byte {
	t.Helper()
	v, _ := note.NewVerifier(m.vkey)
	n, err := note.Open(cp, note.VerifierList(v))
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	b.WriteString(n.Text + "\n")
	for _, s := range n.Sigs {
		fmt.Fprintf(&b, "— %s %s\n", s.Name, s.Base64)
	}
	return b.Bytes()
}

// noteText is the text of a signed note, up to its blank line.
func noteText(t testing.TB, n []byte) []byte {
	t.Helper()
	i := bytes.Index(n, []byte("\n\n"))
	if i < 0 {
		t.Fatalf("not a note: %q", n)
	}
	return n[:i+1]
}

func sha256Empty() []byte {
	// SHA-256(""), the root of the empty tree.
	b, _ := base64.StdEncoding.DecodeString("47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=")
	return b
}
