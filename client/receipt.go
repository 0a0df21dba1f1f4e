package client

import (
	"errors"

	"github.com/cairnlog/cairn/format/policy"
	"github.com/cairnlog/cairn/format/receipt"
)

// VerifiedReceipt is a receipt that verified offline.
type VerifiedReceipt struct {
	Receipt    receipt.Receipt
	Checkpoint *policy.Verified
}

// VerifyReceipt checks a tlog-proof offline, with nothing but the policy and
// the exact leaf bytes: the checkpoint satisfies the policy (log signature,
// witness quorum) and the leaf SHA-256(0x00‖leaf) is at the receipt's index
// in its tree (receipt.Verify, which the explorer's WebAssembly verifier runs too).
func VerifyReceipt(p *policy.Policy, leaf, tlogProof []byte) (*VerifiedReceipt, error) {
	r, v, err := receipt.Verify(p, leaf, tlogProof)
	var f *receipt.Failure
	if errors.As(err, &f) {
		return nil, verifyErr("%s", f.Reason)
	}
	if err != nil {
		return nil, err
	}
	return &VerifiedReceipt{Receipt: r, Checkpoint: v}, nil
}

// BuildReceipt makes a tlog-proof for index against a verified checkpoint,
// from the log's tiles.
func (l *Log) BuildReceipt(v *policy.Verified, index uint64, proofHashes [][]byte) []byte {
	return receipt.Receipt{Index: index, Proof: proofHashes, Checkpoint: v.Raw}.Marshal()
}
