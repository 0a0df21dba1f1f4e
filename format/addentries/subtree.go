package addentries

import (
	"bytes"
	"errors"
	"fmt"
	"math/bits"

	"github.com/transparency-dev/merkle/rfc6962"
)

// ErrProof is wrapped when a subtree consistency proof does not verify.
var ErrProof = errors.New("subtree consistency proof does not verify")

// Range is the half-open leaf interval [Lo, Hi) of a Merkle tree node (or of
// the right edge of a tree, which need not be a perfect subtree).
type Range struct{ Lo, Hi uint64 }

// ValidSubtree reports whether [start, end) is a subtree
// (draft-ietf-plants-merkle-tree-certs §4.1): start < end and start is a
// multiple of the smallest power of two ≥ end-start.
func ValidSubtree(start, end uint64) bool {
	if start >= end {
		return false
	}
	return start%bitCeil(end-start) == 0
}

func bitCeil(n uint64) uint64 {
	if n <= 1 {
		return 1
	}
	return 1 << bits.Len64(n-1)
}

// split is the largest power of two smaller than n (n > 1), RFC 6962 §2.1.
func split(n uint64) uint64 { return 1 << (bits.Len64(n-1) - 1) }

// ProofRanges returns the nodes whose hashes make up the subtree
// consistency proof of [start, end) in a tree of size, in proof order
// (SUBTREE_PROOF of draft-ietf-plants-merkle-tree-certs §4.4; for start 0 it
// is the RFC 6962 consistency proof from end to size).
func ProofRanges(start, end, size uint64) ([]Range, error) {
	if !ValidSubtree(start, end) || end > size {
		return nil, fmt.Errorf("[%d, %d) is not a subtree of a tree of size %d", start, end, size)
	}
	return subproof(start, end, 0, size, true), nil
}

func subproof(start, end, lo, hi uint64, known bool) []Range {
	if start == lo && end == hi {
		if known {
			return nil
		}
		return []Range{{lo, hi}}
	}
	k := split(hi - lo)
	switch {
	case end <= lo+k:
		return append(subproof(start, end, lo, lo+k, known), Range{lo + k, hi})
	case lo+k <= start:
		return append(subproof(start, end, lo+k, hi, known), Range{lo, lo + k})
	default:
		// start == lo: the left child lies inside the subtree.
		return append(subproof(lo+k, end, lo+k, hi, false), Range{lo, lo + k})
	}
}

// Proof builds the subtree consistency proof of [start, end) in a tree of
// size, reading node hashes with nodeHash.
func Proof(start, end, size uint64, nodeHash func(Range) ([]byte, error)) ([][]byte, error) {
	rs, err := ProofRanges(start, end, size)
	if err != nil {
		return nil, err
	}
	out := make([][]byte, len(rs))
	for i, r := range rs {
		if out[i], err = nodeHash(r); err != nil {
			return nil, fmt.Errorf("hash of [%d, %d): %w", r.Lo, r.Hi, err)
		}
	}
	return out, nil
}

// VerifySubtree checks that the leaves with hashes leafHashes are the subtree
// [start, start+len(leafHashes)) of the tree of size with root, given the
// subtree consistency proof. Errors wrap ErrProof.
func VerifySubtree(start uint64, leafHashes [][]byte, size uint64, proof [][]byte, root []byte) error {
	end := start + uint64(len(leafHashes))
	rs, err := ProofRanges(start, end, size)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrProof, err)
	}
	if len(proof) != len(rs) {
		return fmt.Errorf("%w: %d hashes, want %d for [%d, %d) in size %d", ErrProof, len(proof), len(rs), start, end, size)
	}
	given := make(map[Range][]byte, len(rs))
	for i, r := range rs {
		if len(proof[i]) != 32 {
			return fmt.Errorf("%w: hash %d is %d bytes", ErrProof, i, len(proof[i]))
		}
		if r.Lo >= start && r.Hi <= end {
			// A node inside the subtree: it must be the one the leaves make.
			if !bytes.Equal(proof[i], mth(leafHashes[r.Lo-start:r.Hi-start])) {
				return fmt.Errorf("%w: hash %d is not the hash of entries [%d, %d)", ErrProof, i, r.Lo, r.Hi)
			}
		}
		given[r] = proof[i]
	}
	var hash func(lo, hi uint64) []byte
	hash = func(lo, hi uint64) []byte {
		if lo >= start && hi <= end {
			return mth(leafHashes[lo-start : hi-start])
		}
		if h, ok := given[Range{lo, hi}]; ok {
			return h
		}
		k := split(hi - lo)
		return rfc6962.DefaultHasher.HashChildren(hash(lo, lo+k), hash(lo+k, hi))
	}
	if got := hash(0, size); !bytes.Equal(got, root) {
		return fmt.Errorf("%w: entries [%d, %d) with the proof give another root than the checkpoint of size %d", ErrProof, start, end, size)
	}
	return nil
}

// mth is the Merkle tree hash of a list of leaf hashes (RFC 6962 §2.1).
func mth(leaves [][]byte) []byte {
	switch len(leaves) {
	case 0:
		return rfc6962.DefaultHasher.EmptyRoot()
	case 1:
		return leaves[0]
	}
	k := split(uint64(len(leaves)))
	return rfc6962.DefaultHasher.HashChildren(mth(leaves[:k]), mth(leaves[k:]))
}

// RangeHash is the Merkle tree hash of [r.Lo, r.Hi) built from the hashes of
// the perfect subtrees it splits into (RFC 6962 §2.1), read with perfect.
// perfect is called only with aligned power-of-two ranges.
func RangeHash(r Range, perfect func(level, index uint64) ([]byte, error)) ([]byte, error) {
	n := r.Hi - r.Lo
	if n&(n-1) == 0 && r.Lo%n == 0 {
		level := uint64(bits.TrailingZeros64(n))
		return perfect(level, r.Lo>>level)
	}
	k := split(n)
	l, err := RangeHash(Range{r.Lo, r.Lo + k}, perfect)
	if err != nil {
		return nil, err
	}
	rh, err := RangeHash(Range{r.Lo + k, r.Hi}, perfect)
	if err != nil {
		return nil, err
	}
	return rfc6962.DefaultHasher.HashChildren(l, rh), nil
}
