package mirror

import (
	"errors"
	"fmt"
	"strings"

	fnote "github.com/transparency-dev/formats/note"
	"golang.org/x/mod/sumdb/note"
)

// newCosigners parses the mirror's private keys into cosigners and their
// verifiers: tlog-cosignature cosignature/v1 (Ed25519, type 0x04). This is
// the one place that knows the key types, so other cosignature types are a
// change here only.
func newCosigners(keys []string) ([]note.Signer, []note.Verifier, error) {
	if len(keys) == 0 {
		return nil, nil, errors.New("a mirror private key is required")
	}
	var signers []note.Signer
	var verifiers []note.Verifier
	seen := map[string]bool{}
	for i, k := range keys {
		s, err := fnote.NewSignerForCosignatureV1(strings.TrimSpace(k))
		if err != nil {
			return nil, nil, fmt.Errorf("key %d is not a cosigner private key: %w", i+1, err)
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
