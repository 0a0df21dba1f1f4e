package index

import (
	"context"
	"fmt"

	"github.com/transparency-dev/merkle/compact"
	"github.com/transparency-dev/merkle/proof"
	"github.com/transparency-dev/merkle/rfc6962"
	"github.com/transparency-dev/tessera/api/layout"
	"golang.org/x/mod/sumdb/tlog"
)

// prover builds inclusion proofs in the tree of one size from the stored
// tiles. The merkle package says which nodes a proof needs and combines
// them (proof.Inclusion, Nodes.Rehash), exactly as Tessera's ProofBuilder
// does; unlike it, a tile's inner nodes are hashed once per query (by
// x/mod's tlog.NodeHash, the same RFC 6962 node hash), not once
// per node asked for (which re-appended up to 128 leaf hashes into a
// compact range per node, 80% of a query's time at 10 M records).
type prover struct {
	s    *store
	size uint64
	// tiles holds each tile read, as its node levels: [0] the tile's
	// hashes, [h] the roots of its perfect subtrees of 2^h of them.
	tiles map[[2]uint64][][][]byte
}

func newProver(s *store, size uint64) *prover {
	return &prover{s: s, size: size, tiles: map[[2]uint64][][][]byte{}}
}

func (p *prover) node(ctx context.Context, id compact.NodeID) ([]byte, error) {
	tileLevel, tileIndex, nodeLevel, nodeIndex := layout.NodeCoordsToTileAddress(uint64(id.Level), id.Index)
	key := [2]uint64{tileLevel, tileIndex}
	levels, ok := p.tiles[key]
	if !ok {
		raw, err := p.s.readTile(ctx, tileLevel, tileIndex, layout.PartialTileSize(tileLevel, tileIndex, p.size))
		if err != nil {
			return nil, err
		}
		var row [][]byte
		for i := 0; i+32 <= len(raw); i += 32 {
			row = append(row, raw[i:i+32])
		}
		levels = [][][]byte{row}
		for len(row) > 1 {
			// RFC 6962 node hashes by x/mod's tlog.NodeHash, which hashes
			// on the stack, into one array a level: merkle's HashChildren
			// allocated a hasher and its sum for each of a tile's 255
			// nodes, 60% of a field query's CPU in the index.
			next := make([][]byte, 0, len(row)/2)
			hashes := make([]byte, 32*(len(row)/2))
			for i := 0; i+1 < len(row); i += 2 {
				h := tlog.NodeHash(tlog.Hash(row[i]), tlog.Hash(row[i+1]))
				n := hashes[16*i : 16*i+32]
				copy(n, h[:])
				next = append(next, n)
			}
			levels = append(levels, next)
			row = next
		}
		p.tiles[key] = levels
	}
	if nodeLevel >= uint(len(levels)) || nodeIndex >= uint64(len(levels[nodeLevel])) {
		return nil, fmt.Errorf("tile %s has no node %d at height %d", layout.TilePath(tileLevel, tileIndex, layout.PartialTileSize(tileLevel, tileIndex, p.size)), nodeIndex, nodeLevel)
	}
	return levels[nodeLevel][nodeIndex], nil
}

// inclusion returns the inclusion proof of index.
func (p *prover) inclusion(ctx context.Context, index uint64) ([][]byte, error) {
	nodes, err := proof.Inclusion(index, p.size)
	if err != nil {
		return nil, err
	}
	hashes := make([][]byte, len(nodes.IDs))
	for i, id := range nodes.IDs {
		if hashes[i], err = p.node(ctx, id); err != nil {
			return nil, err
		}
	}
	return nodes.Rehash(hashes, rfc6962.DefaultHasher.HashChildren)
}
