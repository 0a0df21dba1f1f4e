package client

import (
	"github.com/cairnlog/cairn/format/policy"
	"github.com/cairnlog/cairn/format/receipt"
	"github.com/transparency-dev/merkle/proof"
	"github.com/transparency-dev/merkle/rfc6962"
)

// VerifiedReceipt is a receipt that verified offline.
type VerifiedReceipt struct {
	Receipt    receipt.Receipt
	Checkpoint *policy.Verified
}

// VerifyReceipt checks a tlog-proof offline, with nothing but the policy and
// the exact leaf bytes: the checkpoint satisfies the policy (log signature,
// witness quorum) and the leaf SHA-256(0x00‖leaf) is at the receipt's index
// in its tree.
func VerifyReceipt(p *policy.Policy, leaf, tlogProof []byte) (*VerifiedReceipt, error) {
	r, err := receipt.Parse(tlogProof)
	if err != nil {
		return nil, verifyErr("%v", err)
	}
	v, err := p.Verify(r.Checkpoint)
	if err != nil {
		return nil, err
	}
	if r.Index >= v.Checkpoint.Size {
		// The receipt itself is wrong: it claims an index its own checkpoint does not cover.
		return nil, verifyErr("the receipt's index %d is beyond its checkpoint's tree size %d", r.Index, v.Checkpoint.Size)
	}
	hash := rfc6962.DefaultHasher.HashLeaf(leaf)
	if err := proof.VerifyInclusion(rfc6962.DefaultHasher, r.Index, v.Checkpoint.Size, hash, r.Proof, v.Checkpoint.Root[:]); err != nil {
		// Offline, a changed record and a bad proof look the same: the
		// record's hash and the proof do not lead to the signed root.
		return nil, verifyErr("the record does not match leaf %d of the receipt's tree of size %d (root %s): the record (hash %s) or the proof was changed: %v",
			r.Index, v.Checkpoint.Size, b64(v.Checkpoint.Root[:]), b64(hash), err)
	}
	return &VerifiedReceipt{Receipt: r, Checkpoint: v}, nil
}

// BuildReceipt makes a tlog-proof for index against a verified checkpoint,
// from the log's tiles.
func (l *Log) BuildReceipt(v *policy.Verified, index uint64, proofHashes [][]byte) []byte {
	return receipt.Receipt{Index: index, Proof: proofHashes, Checkpoint: v.Raw}.Marshal()
}
