package mirror

import (
	"errors"
	"fmt"

	"github.com/cairnlog/cairn/format/cosignature"
	"golang.org/x/mod/sumdb/note"
)

// newCosigners parses the mirror's private keys into cosigners and their
// verifiers, through format/cosignature, the one place that knows the key
// types (tlog-cosignature: Ed25519 cosignature/v1, type 0x04, and ML-DSA-44,
// type 0x06), exactly as the witness does. Every key signs every checkpoint
// the mirror cosigns, one line each.
func newCosigners(keys []string) ([]note.Signer, []note.Verifier, error) {
	if len(keys) == 0 {
		return nil, nil, errors.New("a mirror private key is required")
	}
	var signers []note.Signer
	var verifiers []note.Verifier
	seen := map[string]bool{}
	for i, k := range keys {
		s, err := cosignature.ParseSigner(k)
		if err != nil {
			return nil, nil, fmt.Errorf("key %d: %w", i+1, err)
		}
		id := fmt.Sprintf("%s+%08x", s.Name(), s.KeyHash())
		if seen[id] {
			return nil, nil, fmt.Errorf("key %d (%s) is given twice", i+1, s.Name())
		}
		seen[id] = true
		signers = append(signers, s)
		verifiers = append(verifiers, s.Verifier())
	}
	return signers, verifiers, nil
}
