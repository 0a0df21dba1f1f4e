package index

import (
	"bytes"
	"context"
	"fmt"
	"os"

	"github.com/transparency-dev/merkle/compact"
	"github.com/transparency-dev/merkle/rfc6962"
	"github.com/transparency-dev/tessera/api/layout"
)

var rangeFactory = compact.RangeFactory{Hash: rfc6962.DefaultHasher.HashChildren}

// tileBuilder keeps the hash tiles of the verified tree (tlog-tiles
// layout: level-l tile n holds the roots of the full subtrees of 256^l
// leaves it covers) as the follower appends verified leaf hashes, so that
// queries build inclusion proofs from the index's own database with
// Tessera's proof builder instead of asking the log per query. Only the
// rightmost tile of each level can be partial.
type tileBuilder struct {
	// cur[l] is the partial tile of level l (< 256 hashes), numbered next[l].
	cur  [][]byte
	next []uint64
	// dirty collects the tiles to write at the next commit.
	dirty map[[2]uint64][]byte
}

// loadTiles rebuilds the builder from the stored tiles of a tree of size.
func loadTiles(ctx context.Context, s *store, size uint64) (*tileBuilder, error) {
	last, err := s.lastTiles(ctx)
	if err != nil {
		return nil, fmt.Errorf("reading the stored tiles: %w", err)
	}
	tb := &tileBuilder{dirty: map[[2]uint64][]byte{}}
	for level := uint64(0); ; level++ {
		// Full subtrees of 256^(level+1) leaves; tiles of this level hold
		// the level-level subtree roots.
		width := uint64(1) << (8 * level) // leaves per hash at this level
		hashes := size / width            // hashes at this level
		if hashes == 0 {
			break
		}
		n, w := hashes/layout.TileWidth, hashes%layout.TileWidth
		tb.next = append(tb.next, n)
		var partial []byte
		if w > 0 {
			t, ok := last[level]
			if !ok || t.n != n || uint64(len(t.hashes)) < w*32 {
				return nil, fmt.Errorf("the index has no tile %s for its size %d: rebuild the index", layout.TilePath(level, n, uint8(w)), size)
			}
			partial = bytes.Clone(t.hashes[:w*32])
		}
		tb.cur = append(tb.cur, partial)
	}
	return tb, nil
}

// add appends one verified hash at level.
func (tb *tileBuilder) add(level uint64, h []byte) {
	for uint64(len(tb.cur)) <= level {
		tb.cur = append(tb.cur, nil)
		tb.next = append(tb.next, 0)
	}
	tb.cur[level] = append(tb.cur[level], h...)
	key := [2]uint64{level, tb.next[level]}
	if len(tb.cur[level]) < layout.TileWidth*32 {
		tb.dirty[key] = tb.cur[level]
		return
	}
	full := tb.cur[level]
	tb.dirty[key] = full
	tb.cur[level] = nil
	tb.next[level]++
	tb.add(level+1, subtreeRoot(full))
}

// addFull appends a whole level-0 tile (256 leaf hashes from a tile
// boundary) whose root is already known.
func (tb *tileBuilder) addFull(hashes, root []byte) {
	if len(tb.cur) == 0 {
		tb.cur = append(tb.cur, nil)
		tb.next = append(tb.next, 0)
	}
	tb.dirty[[2]uint64{0, tb.next[0]}] = hashes
	tb.cur[0] = nil
	tb.next[0]++
	tb.add(1, root)
}

// subtreeRoot is the RFC 6962 root of a perfect subtree whose leaf hashes
// (a power of two of them) are concatenated in hashes.
func subtreeRoot(hashes []byte) []byte {
	level := make([][]byte, 0, len(hashes)/32)
	for i := 0; i < len(hashes); i += 32 {
		level = append(level, hashes[i:i+32])
	}
	for len(level) > 1 {
		next := level[:0:0]
		for i := 0; i+1 < len(level); i += 2 {
			next = append(next, rfc6962.DefaultHasher.HashChildren(level[i], level[i+1]))
		}
		level = next
	}
	return level[0]
}

// take returns the tiles changed since the last take.
func (tb *tileBuilder) take() []tileRow {
	out := make([]tileRow, 0, len(tb.dirty))
	for k, v := range tb.dirty {
		out = append(out, tileRow{level: k[0], n: k[1], hashes: bytes.Clone(v)})
	}
	clear(tb.dirty)
	return out
}

// readTile serves tiles to Tessera's proof builder from the database: a
// partial tile of width p is the first p hashes of the stored one (which
// may have grown since, for a later size).
func (s *store) readTile(ctx context.Context, level, index uint64, p uint8) ([]byte, error) {
	b, err := s.tile(ctx, level, index)
	if err != nil {
		return nil, fmt.Errorf("reading tile %s from the index: %w", layout.TilePath(level, index, p), err)
	}
	want := layout.TileWidth * 32
	if p > 0 {
		want = int(p) * 32
	}
	if len(b) < want {
		return nil, fmt.Errorf("tile %s: %w", layout.TilePath(level, index, p), os.ErrNotExist)
	}
	return b[:want], nil
}
