package index

import (
	"context"
	"fmt"
	"testing"

	"github.com/transparency-dev/merkle/rfc6962"
	tclient "github.com/transparency-dev/tessera/client"
	"golang.org/x/mod/sumdb/tlog"
)

// The tiles the index computes from the leaves it verified give inclusion
// proofs (through Tessera's proof builder) that golang.org/x/mod's
// sumdb/tlog accepts, for full and partial tiles on every level, whether
// bundles arrive whole or leaf by leaf, across commits and a reload.
func TestIndexTilesProveWhatSumdbTlogVerifies(t *testing.T) {
	ctx := context.Background()
	s, err := openStore(ctx, "sqlite:"+t.TempDir()+"/tiles.db")
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	leaf := func(i uint64) []byte { return []byte(fmt.Sprintf("leaf %d", i)) }
	tb := &tileBuilder{dirty: map[[2]uint64][]byte{}}
	rng := rangeFactory.NewEmptyRange(0)
	var hashes [][]byte
	size := uint64(0)
	grow := func(to uint64) {
		for size < to {
			first := size
			if first%256 == 0 && to-first >= 256 {
				var flat []byte
				for i := first; i < first+256; i++ {
					h := rfc6962.DefaultHasher.HashLeaf(leaf(i))
					flat = append(flat, h...)
					hashes = append(hashes, h)
				}
				root := subtreeRoot(flat)
				sub, err := rangeFactory.NewRange(first, first+256, [][]byte{root})
				if err != nil {
					t.Fatal(err)
				}
				if err := rng.AppendRange(sub, nil); err != nil {
					t.Fatal(err)
				}
				tb.addFull(flat, root)
				size += 256
				continue
			}
			h := rfc6962.DefaultHasher.HashLeaf(leaf(size))
			hashes = append(hashes, h)
			if err := rng.Append(h, nil); err != nil {
				t.Fatal(err)
			}
			tb.add(0, h)
			size++
		}
		root, err := rng.GetRootHash(nil)
		if err != nil {
			t.Fatal(err)
		}
		if err := s.commit(ctx, nil, tb.take(), &savedState{Size: size, Root: root, Range: rng.Hashes(), Checkpoint: []byte{}, Fields: ""}, true); err != nil {
			t.Fatal(err)
		}
	}
	check := func() {
		root, _ := rng.GetRootHash(nil)
		pb, err := tclient.NewProofBuilder(ctx, size, s.readTile)
		if err != nil {
			t.Fatal(err)
		}
		pv := newProver(s, size)
		for _, i := range []uint64{0, 1, 255, 256, size / 3, size / 2, size - 257, size - 2, size - 1} {
			if i >= size {
				continue
			}
			p, err := pb.InclusionProof(ctx, i)
			if err != nil {
				t.Fatalf("size %d: proof of %d: %v", size, i, err)
			}
			// The index's prover answers what Tessera's proof builder does.
			mine, err := pv.inclusion(ctx, i)
			if err != nil || fmt.Sprint(mine) != fmt.Sprint(p) {
				t.Fatalf("size %d: the prover's proof of %d differs from Tessera's: %v", size, i, err)
			}
			var rp tlog.RecordProof
			for _, h := range p {
				rp = append(rp, tlog.Hash(h))
			}
			if err := tlog.CheckRecord(rp, int64(size), tlog.Hash(root), int64(i), tlog.RecordHash(leaf(i))); err != nil {
				t.Fatalf("size %d: sumdb/tlog rejects the proof of %d: %v", size, i, err)
			}
		}
	}
	for _, to := range []uint64{100, 256*256 + 300, 256*256 + 700, 2*256*256 + 5} {
		grow(to)
		check()
		// A restart rebuilds the builder from the stored tiles.
		if tb, err = loadTiles(ctx, s, size); err != nil {
			t.Fatal(err)
		}
	}
	grow(2*256*256 + 256*3 + 17)
	check()
}
