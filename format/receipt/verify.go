package receipt

import (
	"encoding/base64"
	"fmt"

	"github.com/cairnlog/cairn/format/policy"
	"github.com/transparency-dev/merkle/proof"
	"github.com/transparency-dev/merkle/rfc6962"
)

// Failure is a receipt that does not verify for a reason of its own (it
// does not parse, its index is outside its tree, the record or the proof was
// changed), as opposed to a checkpoint that fails the policy. Its message is
// the reason alone; errors.Is(err, policy.ErrVerification) holds for it.
type Failure struct {
	Reason string
}

func (f *Failure) Error() string { return f.Reason }

// Is makes a Failure match policy.ErrVerification.
func (f *Failure) Is(target error) bool { return target == policy.ErrVerification }

func failure(format string, a ...any) error {
	return &Failure{Reason: fmt.Sprintf(format, a...)}
}

// Verify checks a tlog-proof offline, with nothing but the policy and the
// exact leaf bytes: the checkpoint satisfies the policy (log signature,
// witness quorum) and the leaf SHA-256(0x00‖leaf) is at the receipt's index
// in its tree (RFC 6962 §2.1.1). It is the one implementation behind
// client.VerifyReceipt and the explorer's WebAssembly verifier, so the CLI
// and the browser cannot disagree. Errors are a *Failure or the policy's own
// (both wrap policy.ErrVerification).
func Verify(p *policy.Policy, leaf, tlogProof []byte) (Receipt, *policy.Verified, error) {
	r, err := Parse(tlogProof)
	if err != nil {
		return Receipt{}, nil, failure("%v", err)
	}
	v, err := p.Verify(r.Checkpoint)
	if err != nil {
		return r, nil, err
	}
	if r.Index >= v.Checkpoint.Size {
		// The receipt itself is wrong: it claims an index its own checkpoint does not cover.
		return r, nil, failure("the receipt's index %d is beyond its checkpoint's tree size %d", r.Index, v.Checkpoint.Size)
	}
	hash := rfc6962.DefaultHasher.HashLeaf(leaf)
	if err := proof.VerifyInclusion(rfc6962.DefaultHasher, r.Index, v.Checkpoint.Size, hash, r.Proof, v.Checkpoint.Root[:]); err != nil {
		// Offline, a changed record and a bad proof look the same: the
		// record's hash and the proof do not lead to the signed root.
		return r, nil, failure("the record does not match leaf %d of the receipt's tree of size %d (root %s): the record (hash %s) or the proof was changed: %v",
			r.Index, v.Checkpoint.Size, b64(v.Checkpoint.Root[:]), b64(hash), err)
	}
	return r, v, nil
}

func b64(h []byte) string { return base64.StdEncoding.EncodeToString(h) }
