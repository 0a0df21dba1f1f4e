// Package migrate imports existing transparency logs into Cairn's storage
// with every leaf and every hash unchanged. Trillian v1 is the first source:
// its leaves are read with Trillian's own API (GetLatestSignedLogRoot,
// GetLeavesByRange), written through Tessera's migration lifecycle, and the
// root Tessera computes must equal Trillian's (docs/migrate-trillian.md).
package migrate

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/cairnlog/cairn/client"
	"github.com/cairnlog/cairn/format/migration"
	"github.com/cairnlog/cairn/internal/fielderr"
	cairnlog "github.com/cairnlog/cairn/log"
	"github.com/google/trillian"
	"github.com/google/trillian/types"
	"github.com/transparency-dev/merkle/proof"
	"github.com/transparency-dev/merkle/rfc6962"
	"github.com/transparency-dev/tessera/api/layout"
	"golang.org/x/mod/sumdb/tlog"
	"google.golang.org/grpc"
)

// Config is one Trillian migration.
type Config struct {
	// Trillian is a connection to the Trillian log server's gRPC API.
	Trillian grpc.ClientConnInterface
	// TreeID is the Trillian tree to copy.
	TreeID int64
	// Target is the Cairn storage the leaves are copied into.
	Target cairnlog.MigrationConfig
	// Workers is how many entry bundles (256 leaves each) are read from
	// Trillian and written to the target at once (0: DefaultWorkers).
	Workers uint
	// Logger receives progress. Nil means slog.Default().
	Logger *slog.Logger
}

// DefaultWorkers is the default Config.Workers.
const DefaultWorkers = 16

// MaxLeafBytes is the largest leaf a tlog-tiles entry bundle can hold (a
// two-byte length prefix). A Trillian leaf above it cannot be migrated.
const MaxLeafBytes = 1<<16 - 1

// Result is what a migration pass reached.
type Result struct {
	// Size and Root are Trillian's log root the target now equals.
	Size uint64
	Root []byte
	// Elapsed is the pass's duration.
	Elapsed time.Duration
}

// ErrDiverged reports that the migrated tree's root is not Trillian's. It is
// a client.ErrVerification (the CLI exits 1): the source's data is wrong (a
// leaf's value no longer matches the tree Trillian committed to), not the copy.
var ErrDiverged error = &client.VerificationError{Reason: "the migrated tree diverges from Trillian's"}

// Trillian copies every leaf of Trillian's latest log root that the target
// lacks, and returns once the target's root at that size equals Trillian's.
// Run it again to catch up with a log that keeps growing; a pass that was
// killed resumes where the target's integrated tree ends. A leaf whose value
// does not hash to the leaf hash Trillian holds, or a root that differs, is
// an error wrapping ErrDiverged naming the first index that differs; the
// target is then not fit to serve.
func Trillian(ctx context.Context, cfg Config) (*Result, error) {
	if cfg.Trillian == nil {
		return nil, fielderr.Errorf("Config.Trillian", "no connection to a Trillian log server")
	}
	if cfg.TreeID == 0 {
		return nil, fielderr.Errorf("Config.TreeID", "required (the Trillian tree ID, as createtree printed it)")
	}
	if cfg.Workers == 0 {
		cfg.Workers = DefaultWorkers
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	cfg.Target.Logger = cfg.Logger
	tl := trillian.NewTrillianLogClient(cfg.Trillian)
	root, err := latestRoot(ctx, tl, cfg.TreeID)
	if err != nil {
		return nil, err
	}
	target, err := cairnlog.OpenMigrationTarget(ctx, cfg.Target)
	if err != nil {
		return nil, err
	}
	defer target.Close()
	if err := checkTarget(ctx, target, cfg.TreeID, root.TreeSize); err != nil {
		return nil, err
	}
	start := time.Now()
	cfg.Logger.Info("migrating Trillian tree", slog.Int64("tree_id", cfg.TreeID), slog.Uint64("size", root.TreeSize), slog.String("root", fmt.Sprintf("%x", root.RootHash)))

	// A leaf that fails its hash check stops the pass at once; Tessera's
	// copier would otherwise retry it with backoff.
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	cr := &chunkReader{tl: tl, tree: cfg.TreeID, size: root.TreeSize, chunks: map[uint64]*chunk{}}
	// Tessera's copier gives up on a bundle after copierTries failures but
	// keeps waiting for its integration; this ends the pass then instead.
	var mu sync.Mutex
	failures := map[uint64]int{} // guarded by mu
	fetch := func(ctx context.Context, idx uint64, p uint8) ([]byte, error) {
		b, err := cr.bundle(ctx, idx, p)
		if errors.Is(err, ErrDiverged) || errors.Is(err, errTooLarge) {
			cancel(err)
		} else if err != nil && ctx.Err() == nil {
			mu.Lock()
			failures[idx]++
			if failures[idx] >= copierTries {
				cancel(fmt.Errorf("reading entry bundle %d from Trillian failed %d times: %w", idx, copierTries, err))
			}
			mu.Unlock()
		}
		return b, err
	}
	err = target.Migrate(ctx, cfg.Workers, root.TreeSize, root.RootHash, fetch)
	if cause := context.Cause(ctx); cause != nil && !errors.Is(cause, context.Canceled) {
		return nil, cause
	}
	if err != nil {
		if ctx.Err() != nil {
			return nil, err
		}
		// If the target's tree is complete and its root differs, every
		// leaf hashed as Trillian says, yet the trees part somewhere: find
		// the first leaf. Otherwise the pass failed (storage, network).
		i, diverged, ferr := firstDivergence(ctx, tl, cfg.TreeID, target, root)
		if ferr != nil || !diverged {
			return nil, fmt.Errorf("migrating tree %d to size %d: %w", cfg.TreeID, root.TreeSize, err)
		}
		return nil, fmt.Errorf("%w: at leaf index %d (Trillian root %x at size %d): %v", ErrDiverged, i, root.RootHash, root.TreeSize, err)
	}
	if root.TreeSize > 0 {
		if err := target.WriteBoundary(ctx, migration.Boundary{Source: migration.SourceTrillian, TreeID: cfg.TreeID, Size: root.TreeSize, Root: root.RootHash}); err != nil {
			return nil, err
		}
	}
	res := &Result{Size: root.TreeSize, Root: root.RootHash, Elapsed: time.Since(start)}
	cfg.Logger.Info("migrated: the target's root equals Trillian's", slog.Uint64("size", res.Size), slog.String("root", fmt.Sprintf("%x", res.Root)), slog.Duration("elapsed", res.Elapsed))
	return res, nil
}

// checkTarget refuses a target that is not an earlier pass of this
// migration: one holding another tree, or more leaves than Trillian's tree.
// (OpenMigrationTarget refused one a log was served from.)
func checkTarget(ctx context.Context, target *cairnlog.MigrationTarget, tree int64, size uint64) error {
	b, err := target.Boundary(ctx)
	if err != nil || b == nil {
		return err
	}
	if b.TreeID != tree {
		return fielderr.Errorf("Config.Storage", "holds Trillian tree %d, not tree %d", b.TreeID, tree)
	}
	if b.Size > size {
		return fmt.Errorf("%w: the target holds %d leaves of tree %d, but Trillian's latest root has only %d", ErrDiverged, b.Size, tree, size)
	}
	return nil
}

// latestRoot is Trillian's latest log root for tree.
func latestRoot(ctx context.Context, tl trillian.TrillianLogClient, tree int64) (*types.LogRootV1, error) {
	ctx, cancel := context.WithTimeout(ctx, rpcTimeout)
	defer cancel()
	resp, err := tl.GetLatestSignedLogRoot(ctx, &trillian.GetLatestSignedLogRootRequest{LogId: tree})
	if err != nil {
		return nil, fmt.Errorf("GetLatestSignedLogRoot(tree %d): %w", tree, err)
	}
	var r types.LogRootV1
	if err := r.UnmarshalBinary(resp.GetSignedLogRoot().GetLogRoot()); err != nil {
		return nil, fmt.Errorf("tree %d: parsing Trillian's log root: %w", tree, err)
	}
	return &r, nil
}

// rpcTimeout bounds one call to Trillian.
const rpcTimeout = 30 * time.Second

// copierTries is how often Tessera's migration copier tries one bundle.
const copierTries = 10

// errTooLarge reports a leaf that no entry bundle can hold.
var errTooLarge = errors.New("leaf too large for a tlog-tiles entry bundle")

// chunkBundles is how many entry bundles one GetLeavesByRange call reads:
// fewer, larger calls cost Trillian (a transaction and a root read each)
// and its database less than one per bundle.
const chunkBundles = 4

// chunkReader reads Trillian's leaves chunkBundles entry bundles at a time
// and hands each bundle to the copier worker that asks for it.
type chunkReader struct {
	tl   trillian.TrillianLogClient
	tree int64
	size uint64 // Trillian's tree size being migrated

	mu     sync.Mutex
	chunks map[uint64]*chunk // guarded by mu: chunks being read or not yet fully handed out
}

// chunk is one GetLeavesByRange read: done is closed once bundles or err is set.
type chunk struct {
	done    chan struct{}
	bundles [][]byte
	err     error
	left    int // bundles not yet handed out; guarded by chunkReader.mu
}

// bundle returns entry bundle idx (p leaves if partial, else 256) in
// tlog-tiles form, reading its chunk from Trillian if no worker did yet.
func (r *chunkReader) bundle(ctx context.Context, idx uint64, p uint8) ([]byte, error) {
	n := uint64(layout.EntryBundleWidth)
	if p > 0 {
		n = uint64(p)
	}
	if end := idx*layout.EntryBundleWidth + n; end > r.size {
		return nil, fmt.Errorf("bundle %d (width %d) ends at %d, beyond Trillian's size %d", idx, n, end, r.size)
	}
	c := idx / chunkBundles
	r.mu.Lock()
	ch, ok := r.chunks[c]
	if !ok {
		first := c * chunkBundles * layout.EntryBundleWidth
		last := min(first+chunkBundles*layout.EntryBundleWidth, r.size)
		ch = &chunk{done: make(chan struct{}), left: int((last - first + layout.EntryBundleWidth - 1) / layout.EntryBundleWidth)}
		r.chunks[c] = ch
		r.mu.Unlock()
		// This worker reads the chunk; the others asking for its
		// bundles wait for it.
		ch.bundles, ch.err = readBundles(ctx, r.tl, r.tree, first, last-first)
		close(ch.done)
	} else {
		r.mu.Unlock()
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-ch.done:
		}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if ch.err != nil {
		// The copier retries the bundle: read the chunk again then.
		if r.chunks[c] == ch {
			delete(r.chunks, c)
		}
		return nil, ch.err
	}
	if ch.left--; ch.left == 0 {
		delete(r.chunks, c)
	}
	return ch.bundles[idx-c*chunkBundles], nil
}

// readBundles reads leaves [first, first+n) from Trillian (first a
// multiple of 256) and serialises them as tlog-tiles entry bundles (a
// two-byte big-endian length, then the leaf value), 256 leaves each. Each
// leaf value must hash to the Merkle leaf hash Trillian stored for it: the
// copy is of what Trillian committed to.
func readBundles(ctx context.Context, tl trillian.TrillianLogClient, tree int64, first, n uint64) ([][]byte, error) {
	var bundles [][]byte
	var cur []byte
	for got := uint64(0); got < n; {
		rctx, cancel := context.WithTimeout(ctx, rpcTimeout)
		resp, err := tl.GetLeavesByRange(rctx, &trillian.GetLeavesByRangeRequest{LogId: tree, StartIndex: int64(first + got), Count: int64(n - got)})
		cancel()
		if err != nil {
			return nil, fmt.Errorf("GetLeavesByRange(tree %d, %d+%d): %w", tree, first+got, n-got, err)
		}
		if len(resp.Leaves) == 0 {
			return nil, fmt.Errorf("GetLeavesByRange(tree %d, %d+%d): no leaves", tree, first+got, n-got)
		}
		for _, l := range resp.Leaves {
			if got == n {
				break
			}
			i := first + got
			if l.LeafIndex != int64(i) {
				return nil, fmt.Errorf("GetLeavesByRange(tree %d): leaf index %d where %d was due", tree, l.LeafIndex, i)
			}
			if h := rfc6962.DefaultHasher.HashLeaf(l.LeafValue); !bytes.Equal(h, l.MerkleLeafHash) {
				return nil, fmt.Errorf("%w: at leaf index %d: its value hashes to %x, but Trillian's tree holds leaf hash %x", ErrDiverged, i, h, l.MerkleLeafHash)
			}
			if len(l.LeafValue) > MaxLeafBytes {
				return nil, fmt.Errorf("leaf index %d: %d bytes: %w (at most %d)", i, len(l.LeafValue), errTooLarge, MaxLeafBytes)
			}
			cur = binary.BigEndian.AppendUint16(cur, uint16(len(l.LeafValue)))
			cur = append(cur, l.LeafValue...)
			got++
			if got%layout.EntryBundleWidth == 0 || got == n {
				bundles, cur = append(bundles, cur), nil
			}
		}
	}
	return bundles, nil
}

// firstDivergence finds the smallest index i such that the target's tree of
// size i+1 is not a prefix of Trillian's tree at root: a binary search over
// sizes, each step checking Trillian's consistency proof from the target's
// root at that size (read from the target's tiles) to Trillian's root.
// diverged is false when the target's whole tree has Trillian's root; an
// error when the target's tree cannot be read (an incomplete pass).
func firstDivergence(ctx context.Context, tl trillian.TrillianLogClient, tree int64, target *cairnlog.MigrationTarget, root *types.LogRootV1) (index uint64, diverged bool, err error) {
	hr := tileHashReader(ctx, target, root.TreeSize)
	prefixMatches := func(size uint64) (bool, error) {
		if size == 0 {
			return true, nil
		}
		mine, err := tlog.TreeHash(int64(size), hr)
		if err != nil {
			return false, fmt.Errorf("computing the target's root at %d: %w", size, err)
		}
		if size == root.TreeSize {
			return bytes.Equal(mine[:], root.RootHash), nil
		}
		rctx, cancel := context.WithTimeout(ctx, rpcTimeout)
		defer cancel()
		resp, err := tl.GetConsistencyProof(rctx, &trillian.GetConsistencyProofRequest{LogId: tree, FirstTreeSize: int64(size), SecondTreeSize: int64(root.TreeSize)})
		if err != nil {
			return false, fmt.Errorf("GetConsistencyProof(%d, %d): %w", size, root.TreeSize, err)
		}
		err = proof.VerifyConsistency(rfc6962.DefaultHasher, size, root.TreeSize, resp.GetProof().GetHashes(), mine[:], root.RootHash)
		return err == nil, nil
	}
	// Invariant: prefix lo matches, prefix hi does not.
	lo, hi := uint64(0), root.TreeSize
	if ok, err := prefixMatches(hi); err != nil || ok {
		return 0, false, err
	}
	for hi-lo > 1 {
		mid := lo + (hi-lo)/2
		ok, err := prefixMatches(mid)
		if err != nil {
			return 0, false, err
		}
		if ok {
			lo = mid
		} else {
			hi = mid
		}
	}
	return hi - 1, true, nil
}

// tileHashReader reads the target's stored hashes from its tiles (tree of
// size treeSize), for tlog.TreeHash. The hashes are not checked here: the
// roots they make are compared with Trillian's.
func tileHashReader(ctx context.Context, target *cairnlog.MigrationTarget, treeSize uint64) tlog.HashReaderFunc {
	return func(indexes []int64) ([]tlog.Hash, error) {
		out := make([]tlog.Hash, len(indexes))
		for k, x := range indexes {
			t := tlog.TileForIndex(8, x)
			// The tile as stored: full, or the partial of this tree size.
			width := treeSize >> (8 * uint(t.L))
			p := uint8(0)
			if uint64(t.N) == width/layout.TileWidth {
				p = uint8(width % layout.TileWidth)
			}
			data, err := target.ReadTile(ctx, uint64(t.L), uint64(t.N), p)
			if err != nil {
				return nil, err
			}
			t.W = len(data) / tlog.HashSize
			h, err := tlog.HashFromTile(t, data, x)
			if err != nil {
				return nil, fmt.Errorf("tile %d/%d: %w", t.L, t.N, err)
			}
			out[k] = h
		}
		return out, nil
	}
}
