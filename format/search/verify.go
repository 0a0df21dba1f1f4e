package search

import (
	"encoding/base64"
	"fmt"
	"maps"
	"slices"

	"github.com/cairnlog/cairn/format/policy"
	"github.com/transparency-dev/merkle/proof"
	"github.com/transparency-dev/merkle/rfc6962"
)

// CheckHit verifies one hit against v, its checkpoint already verified
// against the policy: the leaf's inclusion proof up to v's root, then the
// index's claims recomputed from the proven leaf (Describe), then the
// record against q (nil: no query to match). It returns the hit as the
// leaf describes it, with the index's proof and checkpoint. The Go client
// (client.Index.VerifyHit) and the explorer's WebAssembly verifier both
// run it, so the page and the CLI cannot disagree about a hit.
func CheckHit(v *policy.Verified, h *Hit, q *Query, fields []Field) (*Hit, error) {
	size := v.Checkpoint.Size
	if h.Index >= size {
		return nil, fmt.Errorf("hit %d: beyond its checkpoint's size %d", h.Index, size)
	}
	hash := rfc6962.DefaultHasher.HashLeaf(h.Leaf)
	if err := proof.VerifyInclusion(rfc6962.DefaultHasher, h.Index, size, hash, h.Proof, v.Checkpoint.Root[:]); err != nil {
		return nil, fmt.Errorf("hit %d: its leaf (hash %s) is not at index %d of the tree of size %d: %v",
			h.Index, base64.StdEncoding.EncodeToString(hash), h.Index, size, err)
	}
	d, err := Describe(h.Index, h.Leaf, h.Record, h.State, fields)
	if err != nil {
		return nil, fmt.Errorf("hit %d: %v", h.Index, err)
	}
	if d.State != h.State {
		return nil, fmt.Errorf("hit %d: the index calls the record %s, the proven leaf is %s", h.Index, h.State, d.State)
	}
	if err := SameClaims(h, d); err != nil {
		return nil, fmt.Errorf("hit %d: the index misattributes the record: %v", h.Index, err)
	}
	if q != nil {
		if err := q.Matches(d); err != nil {
			return nil, fmt.Errorf("hit %d does not match the query: %v", h.Index, err)
		}
	}
	d.Proof, d.Checkpoint = h.Proof, h.Checkpoint
	return d, nil
}

// SameClaims compares what an index said about a record (h) with what its
// leaf says (d, from Describe).
func SameClaims(h, d *Hit) error {
	switch {
	case h.Principal != d.Principal:
		return fmt.Errorf("it says principal %q, the record's is %q", h.Principal, d.Principal)
	case h.TimestampUnixMillis != d.TimestampUnixMillis:
		return fmt.Errorf("it says timestamp %d, the record's is %d", h.TimestampUnixMillis, d.TimestampUnixMillis)
	case h.ContentType != d.ContentType:
		return fmt.Errorf("it says content type %q, the record's is %q", h.ContentType, d.ContentType)
	case !slices.Equal(h.SubjectHashes, d.SubjectHashes):
		return fmt.Errorf("it says subjects %v, the record's are %v", h.SubjectHashes, d.SubjectHashes)
	case !maps.Equal(h.Fields, d.Fields):
		return fmt.Errorf("it says fields %v, the record's are %v", h.Fields, d.Fields)
	}
	return nil
}
