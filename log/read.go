package log

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"

	"github.com/cairnlog/cairn/format/receipt"
	"github.com/transparency-dev/formats/log"
	"github.com/transparency-dev/tessera/api"
	"github.com/transparency-dev/tessera/api/layout"
	tclient "github.com/transparency-dev/tessera/client"
	"golang.org/x/mod/sumdb/note"
	"google.golang.org/protobuf/encoding/protowire"
)

// Limits of one GetEntries answer (#20: 1024 records of 64 KiB made one
// call build ~61 MB). A capped answer returns a prefix, at least one entry,
// and says so (GetEntriesResponse.truncated).
const (
	// MaxEntriesPerCall caps the entries of one GetEntries answer.
	MaxEntriesPerCall = 1024
	// MaxEntriesResponseBytes caps the encoded size of one GetEntries
	// answer at 4 MiB, gRPC's default receive limit, so that any client
	// can read it. One entry alone (at most a 64 KiB leaf) is always sent.
	MaxEntriesResponseBytes = 4 << 20
)

// entriesResponseOverhead is the room GetEntriesResponse needs besides its
// entries (the truncated field).
const entriesResponseOverhead = 2

// entrySize is the encoded size of one leaf in GetEntriesResponse.entries.
func entrySize(leaf []byte) int {
	return protowire.SizeTag(1) + protowire.SizeBytes(len(leaf))
}

// checkpoint returns the latest published checkpoint note.
func (l *Log) checkpoint(ctx context.Context) ([]byte, error) {
	cp, err := l.reader.ReadCheckpoint(ctx)
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("%w: no checkpoint has been published yet", ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("%w: reading checkpoint: %v", ErrUnavailable, err)
	}
	return cp, nil
}

// publishedSize parses the size out of a checkpoint this log signed.
func (l *Log) publishedSize(cp []byte) (uint64, error) {
	n, err := note.Open(cp, note.VerifierList(l.verifier()))
	if err != nil {
		return 0, fmt.Errorf("%w: the stored checkpoint does not verify with the log key: %v", ErrUnavailable, err)
	}
	c := &log.Checkpoint{}
	if _, err := c.Unmarshal([]byte(n.Text)); err != nil {
		return 0, fmt.Errorf("%w: parsing the stored checkpoint: %v", ErrUnavailable, err)
	}
	return c.Size, nil
}

// latest returns the published checkpoint and its size.
func (l *Log) latest(ctx context.Context) ([]byte, uint64, error) {
	cp, err := l.checkpoint(ctx)
	if err != nil {
		return nil, 0, err
	}
	size, err := l.publishedSize(cp)
	return cp, size, err
}

// readTile reads a hash tile; a partial tile that garbage collection already
// replaced by its full tile is served as the full tile's prefix (tlog-tiles
// allows clients the same fallback).
func (l *Log) readTile(ctx context.Context, level, index uint64, p uint8) ([]byte, error) {
	t, err := l.reader.ReadTile(ctx, level, index, p)
	if p > 0 && errors.Is(err, os.ErrNotExist) {
		full, ferr := l.reader.ReadTile(ctx, level, index, 0)
		if ferr == nil && len(full) >= int(p)*32 {
			return full[:int(p)*32], nil
		}
	}
	return t, err
}

// readBundle reads an entry bundle with the same fallback as readTile.
func (l *Log) readBundle(ctx context.Context, index uint64, p uint8) ([]byte, error) {
	b, err := l.reader.ReadEntryBundle(ctx, index, p)
	if p > 0 && errors.Is(err, os.ErrNotExist) {
		full, ferr := l.reader.ReadEntryBundle(ctx, index, 0)
		if ferr == nil {
			eb := api.EntryBundle{}
			if err := eb.UnmarshalText(full); err == nil && len(eb.Entries) >= int(p) {
				var out []byte
				for _, e := range eb.Entries[:p] {
					out = binary.BigEndian.AppendUint16(out, uint16(len(e)))
					out = append(out, e...)
				}
				return out, nil
			}
		}
	}
	return b, err
}

// entries returns leaves [start, start+count) of the published tree, or a
// prefix of at least one leaf with truncated set when MaxEntriesPerCall or
// MaxEntriesResponseBytes is reached first.
func (l *Log) entries(ctx context.Context, start, count uint64) (leaves [][]byte, truncated bool, err error) {
	return l.entriesWithin(ctx, start, count, MaxEntriesResponseBytes-entriesResponseOverhead)
}

// entriesWithin is entries with a byte budget for the leaves' encoding.
func (l *Log) entriesWithin(ctx context.Context, start, count uint64, budget int) (leaves [][]byte, truncated bool, err error) {
	if count == 0 {
		return nil, false, fmt.Errorf("%w: count must be at least 1", ErrInvalidRequest)
	}
	_, size, err := l.latest(ctx)
	if err != nil {
		return nil, false, err
	}
	if start >= size {
		return nil, false, fmt.Errorf("%w: entry %d is beyond the published tree of size %d", ErrNotFound, start, size)
	}
	if err := l.retainer.checkServed(bundleOf(start)); err != nil {
		return nil, false, err
	}
	count = min(count, size-start)
	if count > MaxEntriesPerCall {
		count, truncated = MaxEntriesPerCall, true
	}
	for ri := range layout.Range(start, count, size) {
		b, err := l.readBundle(ctx, ri.Index, ri.Partial)
		if err != nil {
			return nil, false, fmt.Errorf("%w: reading entry bundle %d: %v", ErrUnavailable, ri.Index, err)
		}
		eb := api.EntryBundle{}
		if err := eb.UnmarshalText(b); err != nil {
			return nil, false, fmt.Errorf("%w: parsing entry bundle %d: %v", ErrUnavailable, ri.Index, err)
		}
		if uint(len(eb.Entries)) < uint(ri.First+ri.N) {
			return nil, false, fmt.Errorf("%w: entry bundle %d holds %d entries, want %d", ErrUnavailable, ri.Index, len(eb.Entries), ri.First+ri.N)
		}
		for _, e := range eb.Entries[ri.First : ri.First+ri.N] {
			n := entrySize(e)
			if n > budget && len(leaves) > 0 {
				return leaves, true, nil
			}
			budget -= n
			leaves = append(leaves, e)
		}
	}
	return leaves, truncated, nil
}

// proofBuilder builds proofs for a tree of the given size from the tiles.
func (l *Log) proofBuilder(ctx context.Context, size uint64) (*tclient.ProofBuilder, error) {
	pb, err := tclient.NewProofBuilder(ctx, size, l.readTile)
	if err != nil {
		return nil, fmt.Errorf("%w: reading tiles for size %d: %v", ErrUnavailable, size, err)
	}
	return pb, nil
}

// resolveSize turns a requested tree size (0 = latest) into one the log has published.
func (l *Log) resolveSize(ctx context.Context, want uint64) (uint64, error) {
	_, size, err := l.latest(ctx)
	if err != nil {
		return 0, err
	}
	if want == 0 {
		return size, nil
	}
	if want > size {
		return 0, fmt.Errorf("%w: tree size %d is beyond the published size %d", ErrNotFound, want, size)
	}
	return want, nil
}

// inclusionProof returns the proof of index in a published tree (0 = latest).
func (l *Log) inclusionProof(ctx context.Context, index, treeSize uint64) (uint64, [][]byte, error) {
	size, err := l.resolveSize(ctx, treeSize)
	if err != nil {
		return 0, nil, err
	}
	if index >= size {
		return 0, nil, fmt.Errorf("%w: index %d is not in a tree of size %d", ErrNotFound, index, size)
	}
	pb, err := l.proofBuilder(ctx, size)
	if err != nil {
		return 0, nil, err
	}
	p, err := pb.InclusionProof(ctx, index)
	if err != nil {
		return 0, nil, fmt.Errorf("%w: inclusion proof for %d in %d: %v", ErrUnavailable, index, size, err)
	}
	return size, p, nil
}

// consistencyProof returns the proof from one published size to a later one (0 = latest).
func (l *Log) consistencyProof(ctx context.Context, from, to uint64) (uint64, [][]byte, error) {
	size, err := l.resolveSize(ctx, to)
	if err != nil {
		return 0, nil, err
	}
	if from > size {
		return 0, nil, fmt.Errorf("%w: from_size %d is larger than to_size %d", ErrInvalidRequest, from, size)
	}
	if from == 0 || from == size {
		return size, [][]byte{}, nil
	}
	pb, err := l.proofBuilder(ctx, size)
	if err != nil {
		return 0, nil, err
	}
	p, err := pb.ConsistencyProof(ctx, from, size)
	if err != nil {
		return 0, nil, fmt.Errorf("%w: consistency proof %d→%d: %v", ErrUnavailable, from, size, err)
	}
	return size, p, nil
}

// Receipt returns a tlog-proof for index against the latest published
// checkpoint, and the leaf bytes it proves.
func (l *Log) Receipt(ctx context.Context, index uint64) (rc, leaf []byte, err error) {
	cp, err := l.checkpoint(ctx)
	if err != nil {
		return nil, nil, err
	}
	rc, err = l.receiptAt(ctx, index, cp)
	if err != nil {
		return nil, nil, err
	}
	leaves, _, err := l.entries(ctx, index, 1)
	if err != nil {
		return nil, nil, err
	}
	return rc, leaves[0], nil
}

// receiptAt builds the tlog-proof of index against checkpoint cp.
func (l *Log) receiptAt(ctx context.Context, index uint64, cp []byte) ([]byte, error) {
	size, err := l.publishedSize(cp)
	if err != nil {
		return nil, err
	}
	if index >= size {
		return nil, fmt.Errorf("%w: index %d is not yet in the published tree of size %d", ErrNotFound, index, size)
	}
	pb, err := l.proofBuilder(ctx, size)
	if err != nil {
		return nil, err
	}
	p, err := pb.InclusionProof(ctx, index)
	if err != nil {
		return nil, fmt.Errorf("%w: inclusion proof for %d in %d: %v", ErrUnavailable, index, size, err)
	}
	return receipt.Receipt{Index: index, Proof: p, Checkpoint: cp}.Marshal(), nil
}
