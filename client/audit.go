package client

import (
	"bytes"
	"cmp"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"runtime"
	"sync"
	"time"

	"github.com/cairnlog/cairn/format/policy"
	"github.com/cairnlog/cairn/internal/archive"
	"github.com/cairnlog/cairn/internal/atomicfile"
	"github.com/transparency-dev/merkle/compact"
	"github.com/transparency-dev/merkle/rfc6962"
	"github.com/transparency-dev/tessera/api/layout"
)

var rangeFactory = compact.RangeFactory{Hash: rfc6962.DefaultHasher.HashChildren}

// State is what an auditor or monitor remembers between runs: the last
// verified checkpoint and the compact range of its tree (≤ 64 hashes), from
// which an audit resumes.
type State struct {
	Size       uint64   `json:"size"`
	Root       []byte   `json:"root"`
	Checkpoint string   `json:"checkpoint"`
	Range      [][]byte `json:"range,omitempty"`
	// MinimumIndex is the log's minimum index at that audit: it never moves back.
	MinimumIndex uint64 `json:"minimum_index,omitempty"`
}

// LoadState reads a state file; a missing file is no state (nil, nil).
func LoadState(path string) (*State, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading state %s: %w", path, err)
	}
	var s State
	if err := json.Unmarshal(b, &s); err != nil {
		return nil, fmt.Errorf("state %s is not valid: %w", path, err)
	}
	if len(s.Root) != 32 {
		return nil, fmt.Errorf("state %s has no 32-byte root", path)
	}
	if s.Range != nil {
		r, err := rangeFactory.NewRange(0, s.Size, s.Range)
		if err != nil {
			return nil, fmt.Errorf("state %s has a bad compact range: %w", path, err)
		}
		if root, err := r.GetRootHash(nil); err != nil || (s.Size > 0 && !bytes.Equal(root, s.Root)) {
			return nil, fmt.Errorf("state %s: its compact range does not hash to its root", path)
		}
	}
	return &s, nil
}

// Save writes the state atomically (see internal/atomicfile).
func (s *State) Save(path string) error {
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return err
	}
	return atomicfile.Write(path, b, 0o644)
}

// AuditOptions tune an audit.
type AuditOptions struct {
	// Workers fetch and hash entry bundles in parallel (default: 4 × CPUs)
	// where they are read one request at a time (see NoPipelining).
	Workers int
	// NoPipelining reads each entry bundle and tile with a request of its
	// own, through the HTTP client's connection pool. By default an audit
	// of a log read from one URL writes its requests ahead on a few
	// HTTP/1.1 connections and reads the answers in order (RFC 9112
	// §9.3.2), which costs the auditor and the log less than half the CPU
	// per record; bundles that a pipelined connection does not deliver
	// (an answer other than 200, a connection that fails) are read one at
	// a time anyway, so this is only for servers or proxies that
	// mishandle pipelined requests.
	NoPipelining bool
	// Progress, if set, is called as records are verified.
	Progress func(verified, total uint64)
	// Archive, if set, is where the log archived the entry bundles below its
	// minimum index (its retention policy's "then archive"): those it holds
	// are verified from there. Records below the minimum index that are not
	// in it (none without an archive; those still in their grace period with
	// one) are checked only through their leaf hashes in the tiles.
	Archive archive.Store

	// pipelineChunk, if set, replaces pipelineChunk (tests: small rounds).
	pipelineChunk uint64
}

// AuditResult is a passed audit.
type AuditResult struct {
	Checkpoint *policy.Verified
	// From is where this audit started (the saved state's size, or 0).
	From    uint64
	Records uint64
	Elapsed time.Duration
	State   *State
	// MinimumIndex is the log's minimum index: records below it are
	// pruned; ArchivedBundles of their bundles were verified in the archive.
	MinimumIndex    uint64
	ArchivedBundles uint64
}

// bundleResult is one verified entry bundle.
type bundleResult struct {
	k     uint64
	rng   *compact.Range
	root  []byte // MTH of the bundle's 256 leaves if the L0 tile is full
	err   error
	count uint64
	// archived: the bundle was verified from the archive.
	archived bool
}

// Audit replays the log: it fetches the latest checkpoint (verified against
// the policy), every entry bundle and every hash tile, recomputes each leaf
// hash, each tile and the root, and checks they all agree. From a saved
// state it verifies only the records after it, and that the new tree extends
// the saved one. The first disagreement is reported with the index and the
// tile or bundle path.
func (l *Log) Audit(ctx context.Context, from *State, o AuditOptions) (*AuditResult, error) {
	start := time.Now()
	v, err := l.Checkpoint(ctx)
	if err != nil {
		return nil, err
	}
	size := v.Checkpoint.Size
	minIndex, err := l.MinimumIndex(ctx)
	if err != nil {
		return nil, err
	}
	if minIndex > size {
		return nil, verifyErr("the minimum index %d is beyond the checkpoint's size %d", minIndex, size)
	}
	rng := rangeFactory.NewEmptyRange(0)
	begin := uint64(0)
	if from != nil {
		switch {
		case minIndex < from.MinimumIndex:
			return nil, verifyErr("the minimum index moved backwards: %d now, %d before", minIndex, from.MinimumIndex)
		case from.Size > size:
			return nil, verifyErr("rollback: the log serves size %d, but size %d was verified before", size, from.Size)
		case from.Size == size && !bytes.Equal(from.Root, v.Checkpoint.Root[:]):
			return nil, verifyErr("fork: size %d has root %s now but had root %s before", size, b64(v.Checkpoint.Root[:]), b64(from.Root))
		}
		if from.Range != nil {
			if rng, err = rangeFactory.NewRange(0, from.Size, from.Range); err != nil {
				return nil, err
			}
			begin = from.Size
		}
	}
	if o.Workers <= 0 {
		o.Workers = 4 * runtime.NumCPU()
	}

	// Level-1 hashes recomputed from full level-0 tiles (full audits only).
	var level1 [][]byte
	firstK, endK := begin/layout.EntryBundleWidth, (size+layout.EntryBundleWidth-1)/layout.EntryBundleWidth
	// Every goroutine below is cancelled and joined on every return path.
	ctx, cancel := context.WithCancel(ctx)
	var running sync.WaitGroup
	defer func() { cancel(); running.Wait() }()
	minBundle := minIndex / layout.EntryBundleWidth
	// Bundles from pipeFrom on are read pipelined (client/pipeline.go);
	// those before it (all, without pipelining; pruned ones, which the
	// archive or the tiles alone stand for) one request at a time.
	h, pipelined := l.fetcher.(*httpTiles)
	pipeFrom := endK
	if pipelined && !o.NoPipelining {
		pipeFrom = max(firstK, min(minBundle, endK))
	}
	jobs := make(chan uint64)
	results := make(chan bundleResult, o.Workers)
	running.Go(func() {
		defer close(jobs)
		for k := firstK; k < pipeFrom; k++ {
			select {
			case jobs <- k:
			case <-ctx.Done():
				return
			}
		}
	})
	var workers sync.WaitGroup
	for range o.Workers {
		workers.Go(func() {
			var scratch auditScratch
			for k := range jobs {
				select {
				case results <- l.auditBundle(ctx, &scratch, k, begin, size, minBundle, o.Archive):
				case <-ctx.Done():
					return
				}
			}
		})
	}
	if pipeFrom < endK {
		// Rounds of pipelineConns × pipelineChunk bundles: no connection
		// starts the next round before all have finished this one, so
		// pending below holds at most a round whatever one connection's
		// delays.
		chunk := cmp.Or(o.pipelineChunk, pipelineChunk)
		workers.Go(func() {
			scratch := make([]auditScratch, pipelineConns)
			for start := pipeFrom; start < endK && ctx.Err() == nil; start += pipelineConns * chunk {
				end := min(endK, start+pipelineConns*chunk)
				var round sync.WaitGroup
				for c := range uint64(pipelineConns) {
					if start+c < end {
						round.Go(func() {
							l.auditPipelined(ctx, h, &scratch[c], start+c, end, begin, size, minBundle, o.Archive, results)
						})
					}
				}
				round.Wait()
			}
		})
	}
	running.Go(func() { workers.Wait(); close(results) })

	pending := map[uint64]bundleResult{}
	next := firstK
	done := uint64(0)
	archived := uint64(0)
	for r := range results {
		pending[r.k] = r
		for {
			r, ok := pending[next]
			if !ok {
				break
			}
			delete(pending, next)
			if r.err != nil {
				if err := ctx.Err(); err != nil {
					// Cancelled by the caller: the fetch failed for that.
					return nil, fmt.Errorf("audit stopped at bundle %d of %d: %w", r.k, endK, err)
				}
				return nil, r.err
			}
			if err := rng.AppendRange(r.rng, nil); err != nil {
				return nil, fmt.Errorf("appending bundle %d: %w", r.k, err)
			}
			if begin == 0 && r.root != nil {
				level1 = append(level1, r.root)
			}
			done += r.count
			if r.archived {
				archived++
			}
			if o.Progress != nil {
				o.Progress(done, size-begin)
			}
			next++
		}
	}
	if next != endK {
		return nil, fmt.Errorf("audit stopped at bundle %d of %d: %w", next, endK, ctx.Err())
	}
	root, err := rng.GetRootHash(nil)
	if err != nil {
		return nil, err
	}
	if size == 0 {
		root = rfc6962.DefaultHasher.EmptyRoot()
	}
	if !bytes.Equal(root, v.Checkpoint.Root[:]) {
		if from != nil && begin > 0 {
			return nil, verifyErr("the entries after size %d do not extend the verified tree to the checkpoint's root %s (recomputed %s): the log rewrote history or serves other entries", begin, b64(v.Checkpoint.Root[:]), b64(root))
		}
		return nil, verifyErr("the root recomputed from all %d entries is %s, the checkpoint says %s", size, b64(root), b64(v.Checkpoint.Root[:]))
	}
	if begin == 0 {
		if want := size / layout.EntryBundleWidth; uint64(len(level1)) != want {
			return nil, fmt.Errorf("internal: %d level-1 hashes for %d full tiles", len(level1), want)
		}
		if err := l.auditUpperTiles(ctx, level1); err != nil {
			return nil, err
		}
	}
	st := &State{Size: size, Root: v.Checkpoint.Root[:], Checkpoint: string(v.Raw), Range: rng.Hashes(), MinimumIndex: minIndex}
	return &AuditResult{Checkpoint: v, From: begin, Records: size - begin, Elapsed: time.Since(start), State: st, MinimumIndex: minIndex, ArchivedBundles: archived}, nil
}

// auditPipelined audits bundles from, from+pipelineConns, … below end on
// one pipelined connection (client/pipeline.go) and sends their results;
// those the pipeline does not deliver it audits one request at a time.
// Answers arrive nearly in bundle order, the order Audit consumes them.
func (l *Log) auditPipelined(ctx context.Context, h *httpTiles, s *auditScratch, from, end, begin, size, minBundle uint64, arch archive.Store, results chan<- bundleResult) {
	send := func(r bundleResult) bool {
		select {
		case results <- r:
			return true
		case <-ctx.Done():
			return false
		}
	}
	got := func(k uint64, bundle, tile []byte) {
		files := bundleFiles{k: k, p: layout.PartialTileSize(0, k, size)}
		send(checkBundle(bundleResult{k: k}, s, begin, size, bundle, tile, files))
	}
	var ks []uint64
	for k := from; k < end; k += pipelineConns {
		ks = append(ks, k)
	}
	h.pipelinePairs(ctx, ks, size, got, func(k uint64) bool {
		return ctx.Err() == nil && send(l.auditBundle(ctx, s, k, begin, size, minBundle, arch))
	})
}

// auditScratch is one audit worker's memory, reused from bundle to
// bundle: the bodies of the bundle and tile it reads over HTTP and the
// tile's node hashes. A fresh 34 KB of bodies per bundle (at ~100-byte
// records) was allocated and cleared per 256 records before (#19).
type auditScratch struct {
	bundle, tile []byte
	lh           leafHasher
}

// readBundle reads entry bundle k into the scratch's buffer if the log is
// read over HTTP from one URL.
func (l *Log) readBundle(ctx context.Context, s *auditScratch, k uint64, p uint8) ([]byte, error) {
	h, ok := l.fetcher.(*httpTiles)
	if !ok {
		return l.fetcher.ReadEntryBundle(ctx, k, p)
	}
	b, err := h.readEntryBundleInto(ctx, k, p, s.bundle)
	if err == nil && cap(b) > cap(s.bundle) {
		s.bundle = b
	}
	return b, err
}

// readTile0 reads level-0 tile k like readBundle.
func (l *Log) readTile0(ctx context.Context, s *auditScratch, k uint64, p uint8) ([]byte, error) {
	h, ok := l.fetcher.(*httpTiles)
	if !ok {
		return l.fetcher.ReadTile(ctx, 0, k, p)
	}
	b, err := h.readTileInto(ctx, 0, k, p, s.tile)
	if err == nil && cap(b) > cap(s.tile) {
		s.tile = b
	}
	return b, err
}

// auditBundle verifies entry bundle k against its level-0 tile and returns
// the compact range of its leaves from max(begin, k*256). A bundle below
// minBundle (pruned) is read from the archive, or, without one, only its
// tile is taken into the tree. What it returns holds none of s's memory.
func (l *Log) auditBundle(ctx context.Context, s *auditScratch, k, begin, size, minBundle uint64, arch archive.Store) bundleResult {
	res := bundleResult{k: k}
	p := layout.PartialTileSize(0, k, size)
	w := uint64(p)
	if w == 0 {
		w = layout.EntryBundleWidth
	}
	bundlePath, tilePath := layout.EntriesPath(k, p), layout.TilePath(0, k, p)
	files := bundleFiles{k: k, p: p}
	var raw []byte
	var err error
	switch {
	case k < minBundle && arch == nil:
		// Pruned and no archive given: the leaf hashes stand for the records.
	case k < minBundle:
		raw, err = arch.Get(ctx, bundlePath)
		files.archive = arch.String()
		bundlePath = files.bundle()
		if errors.Is(err, os.ErrNotExist) {
			// Not archived yet (the log archives at the end of the grace
			// period): the leaf hashes stand for the records.
			raw, err = nil, nil
		}
		if err != nil {
			res.err = fmt.Errorf("reading %s: %w", bundlePath, err)
			return res
		}
		res.archived = raw != nil
	default:
		raw, err = l.readBundle(ctx, s, k, p)
		if err != nil {
			if code, _, herr := l.do(ctx, "GET", bundlePath, nil); herr == nil && code == 410 {
				res.err = verifyErr("%s is gone (410), but it is at or above the minimum index %d: records were removed that the log must still serve", bundlePath, minBundle*layout.EntryBundleWidth)
				return res
			}
			res.err = missing(bundlePath, err)
			return res
		}
	}
	tile, err := l.readTile0(ctx, s, k, p)
	if err != nil {
		res.err = missing(tilePath, err)
		return res
	}
	return checkBundle(res, s, begin, size, raw, tile, files)
}

// bundleFiles names an entry bundle and its level-0 tile in checkBundle's
// errors, only when there is one (formatting the paths of every bundle
// of a replay was garbage for nothing, #19).
type bundleFiles struct {
	k uint64
	p uint8
	// archive, if set, is the archive the bundle was read from.
	archive string
}

func (f bundleFiles) bundle() string {
	if f.archive != "" {
		return f.archive + " " + layout.EntriesPath(f.k, f.p)
	}
	return layout.EntriesPath(f.k, f.p)
}

func (f bundleFiles) tile() string { return layout.TilePath(0, f.k, f.p) }

// checkBundle verifies the entry bundle raw (nil: pruned, not read) of
// res.k against its level-0 tile and fills in res: the compact range of its
// leaves from max(begin, k*256), or the first disagreement.
func checkBundle(res bundleResult, s *auditScratch, begin, size uint64, raw []byte, tile []byte, files bundleFiles) bundleResult {
	k := res.k
	w := uint64(layout.PartialTileSize(0, k, size))
	if w == 0 {
		w = layout.EntryBundleWidth
	}
	var err error
	if uint64(len(tile)) < w*32 || len(tile)%32 != 0 {
		res.err = verifyErr("tile %s is %d bytes, want %d", files.tile(), len(tile), w*32)
		return res
	}
	first := k * layout.EntryBundleWidth
	from := max(begin, first)
	res.rng = rangeFactory.NewEmptyRange(from)
	// A full bundle replayed from its start is a perfect subtree: its
	// range is one node, the tile's root, computed in place below rather
	// than by appending 256 leaves to a compact range (which allocates
	// every node hash: half the replay's garbage).
	full := w == layout.EntryBundleWidth && from == first
	if !full {
		// The range below keeps slices of the tile: not s's memory.
		tile = bytes.Clone(tile)
	}
	// Parse the bundle in place (u16 length ‖ entry) and hash each entry
	// with the worker's leaf hasher; once a leaf hash equals the tile's, the
	// tile's bytes stand for it in the range, so hashing allocates nothing
	// per leaf.
	lh := &s.lh
	rest := raw
	for i := uint64(0); i < w; i++ {
		if raw == nil {
			if first+i >= from {
				if err := res.rng.Append(tile[i*32:(i+1)*32], nil); err != nil {
					res.err = err
					return res
				}
			}
			continue
		}
		if len(rest) < 2 || len(rest) < 2+int(binary.BigEndian.Uint16(rest)) {
			res.err = verifyErr("entry bundle %s is malformed: it ends inside entry %d (want %d entries)", files.bundle(), first+i, w)
			return res
		}
		n := int(binary.BigEndian.Uint16(rest))
		sum := lh.hash(rest[2 : 2+n])
		rest = rest[2+n:]
		want := tile[i*32 : (i+1)*32]
		if !bytes.Equal(sum, want) {
			res.err = verifyErr("entry %d in %s hashes to %s, but %s has %s", first+i, files.bundle(), b64(sum), files.tile(), b64(want))
			return res
		}
		if !full && first+i >= from {
			if err := res.rng.Append(want, nil); err != nil {
				res.err = err
				return res
			}
		}
	}
	if full {
		// [k*256, (k+1)*256): the level-1 hash above the tile.
		res.root = lh.subtreeRoot(tile[:w*32])
		if res.rng, err = rangeFactory.NewRange(first, first+w, [][]byte{res.root}); err != nil {
			res.err = fmt.Errorf("internal: bundle %d: %w", k, err)
			return res
		}
	}
	res.count = first + w - from
	return res
}

// auditUpperTiles checks every tile of level ≥ 1 against hashes recomputed
// from the level below: level l holds the roots of full level-(l-1) tiles.
func (l *Log) auditUpperTiles(ctx context.Context, hashes [][]byte) error {
	for level := uint64(1); len(hashes) > 0; level++ {
		var next [][]byte
		for t := uint64(0); t*256 < uint64(len(hashes)); t++ {
			w := min(256, uint64(len(hashes))-t*256)
			p := uint8(0)
			if w < 256 {
				p = uint8(w)
			}
			path := layout.TilePath(level, t, p)
			tile, err := l.fetcher.ReadTile(ctx, level, t, p)
			if err != nil {
				return missing(path, err)
			}
			if uint64(len(tile)) < w*32 {
				return verifyErr("tile %s is %d bytes, want %d", path, len(tile), w*32)
			}
			r := rangeFactory.NewEmptyRange(0)
			for i := uint64(0); i < w; i++ {
				want := hashes[t*256+i]
				if !bytes.Equal(tile[i*32:(i+1)*32], want) {
					return verifyErr("tile %s hash %d is %s, but the tiles below hash to %s", path, i, b64(tile[i*32:(i+1)*32]), b64(want))
				}
				if err := r.Append(want, nil); err != nil {
					return fmt.Errorf("internal: hashing tile %s: %w", path, err)
				}
			}
			if w == 256 {
				root, err := r.GetRootHash(nil)
				if err != nil {
					return fmt.Errorf("internal: the root of tile %s: %w", path, err)
				}
				next = append(next, root)
			}
		}
		hashes = next
	}
	return nil
}

// missing turns a fetch failure into a verification failure when the log
// does not serve a resource its checkpoint requires.
func missing(path string, err error) error {
	if errors.Is(err, os.ErrNotExist) {
		return verifyErr("%s is missing (404), but the checkpoint requires it", path)
	}
	return fmt.Errorf("fetching %s: %w", path, asTLSError(err))
}
