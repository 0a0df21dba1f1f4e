package mirror

import (
	"testing"

	"github.com/cairnlog/cairn/format/cosignature"
	"golang.org/x/mod/sumdb/note"
)

// TestMirrorCosignsWithEd25519AndMLDSA44Keys: the mirror takes the witness's
// key types, and each of its keys cosigns a checkpoint with a line that
// verifies on its own vkey.
func TestMirrorCosignsWithEd25519AndMLDSA44Keys(t *testing.T) {
	var skeys, vkeys []string
	for _, typ := range []cosignature.KeyType{cosignature.Ed25519, cosignature.MLDSA44} {
		skey, vkey, err := cosignature.GenerateKey("mirror.example/"+typ.String(), typ)
		if err != nil {
			t.Fatal(err)
		}
		skeys, vkeys = append(skeys, skey), append(vkeys, vkey)
	}
	signers, _, err := newCosigners(skeys)
	if err != nil {
		t.Fatal(err)
	}
	msg, err := note.Sign(&note.Note{Text: "example.test/log\n1\nbjQLnP+zepicpUTmu3gKLHiQHT+zNzh2hRGjBhevoB0=\n"}, signers...)
	if err != nil {
		t.Fatal(err)
	}
	for _, vkey := range vkeys {
		k, err := cosignature.ParseVKey(vkey)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := note.Open(msg, note.VerifierList(k.Verifier)); err != nil {
			t.Errorf("%s cosignature does not verify: %v", k.Type, err)
		}
	}
	if _, _, err := newCosigners([]string{skeys[0], skeys[0]}); err == nil {
		t.Error("the same key twice was accepted")
	}
}
