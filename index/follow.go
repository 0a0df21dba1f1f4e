package index

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"time"

	"github.com/cairnlog/cairn/client"
	"github.com/cairnlog/cairn/format/policy"
	"github.com/cairnlog/cairn/format/record"
	"github.com/cairnlog/cairn/format/search"
	"github.com/transparency-dev/merkle/compact"
	"github.com/transparency-dev/merkle/rfc6962"
	"github.com/transparency-dev/tessera/api"
	"github.com/transparency-dev/tessera/api/layout"
	"golang.org/x/sync/errgroup"
)

// ErrFork is the alarm: the log served a checkpoint that is not consistent
// with one the index had verified. Ingestion stops; queries keep answering
// from the verified prefix.
var ErrFork = errors.New("fork: the log's checkpoint is inconsistent with the one the index verified")

// erasureContentType is the content type of the log's erasure records
// (docs/erasure.md).
const erasureContentType = "application/vnd.cairn.erasure+json"

// follower ingests the log. Only its run goroutine touches its fields.
type follower struct {
	cfg   Config
	log   *client.Log
	store *store
	m     *metrics
	st    *status
	// state is the last commit: the ingested size, its root and compact
	// range, and the newest checkpoint whose whole tree is ingested.
	state *savedState
	rng   *compact.Range
	tiles *tileBuilder
	// decrypt: a token was given, so sealed records are read from the log.
	decrypt bool
	fields  string
}

func (f *follower) load(ctx context.Context) error {
	st, err := f.store.loadState(ctx)
	if err != nil {
		return err
	}
	if st != nil && st.Fields != f.fields {
		return fmt.Errorf("the index was built with fields %q, now %q: drop it (delete the database) and rebuild from the log", st.Fields, f.fields)
	}
	if st == nil {
		st = &savedState{Root: rfc6962.DefaultHasher.EmptyRoot(), Fields: f.fields}
	}
	f.state = st
	if err := f.loadPending(ctx); err != nil {
		return err
	}
	if f.rng, err = rangeFactory.NewRange(0, st.Size, st.Range); err != nil {
		return fmt.Errorf("the index state's compact range: %w", err)
	}
	if f.tiles, err = loadTiles(ctx, f.store, st.Size); err != nil {
		return err
	}
	f.st.setIndexed(st.Size, st.Checkpoint)
	f.st.setError(nil)
	f.m.indexed.Set(float64(st.Size))
	return nil
}

// loadPending rebuilds the pending field rows (store.commit) of the
// committed entries from the store's upto on, from their records.
func (f *follower) loadPending(ctx context.Context) error {
	if f.store.upto >= f.state.Size {
		return nil
	}
	rows, err := f.store.db.QueryContext(ctx, `SELECT r.idx, r.leaf, r.rec, `+stateName+` FROM records r WHERE r.idx >= ? AND r.idx < ? ORDER BY r.idx`, f.store.upto, f.state.Size)
	if err != nil {
		return fmt.Errorf("reading the records whose fields are not merged yet: %w", err)
	}
	defer rows.Close()
	var pending []fieldRow
	for rows.Next() {
		var i uint64
		var leaf, rec []byte
		var state string
		if err := rows.Scan(&i, &leaf, &rec, &state); err != nil {
			return err
		}
		h, err := search.Describe(i, leaf, rec, state, f.cfg.Fields)
		if err != nil {
			return fmt.Errorf("entry %d in the index: %w", i, err)
		}
		pending = fieldRows(pending, h)
	}
	if err := rows.Err(); err != nil {
		return err
	}
	pending = sortFieldRows(pending)
	f.store.pending, f.store.runs = pending, []int{len(pending)}
	return nil
}

// run polls the log until ctx ends or a fork stops it.
func (f *follower) run(ctx context.Context) error {
	t := time.NewTicker(f.cfg.PollInterval)
	defer t.Stop()
	for {
		err := f.step(ctx)
		switch {
		case ctx.Err() != nil:
			return nil
		case errors.Is(err, ErrFork) || errors.Is(err, client.ErrVerification):
			f.m.fork.Set(1)
			f.st.setFork(err)
			f.cfg.Logger.Error("ALARM: ingestion stopped, the log is not the log the index verified", slog.String("error", err.Error()),
				slog.Uint64("indexed_size", f.state.Size))
			return nil
		case err != nil:
			f.m.errors.Inc()
			f.st.setError(err)
			f.cfg.Logger.Warn("indexing failed; retrying", slog.String("error", err.Error()))
			// What the failed step appended in memory is dropped: resume
			// from the last commit.
			if lerr := f.load(ctx); lerr != nil {
				f.cfg.Logger.Error("reloading the index state", slog.String("error", lerr.Error()))
			}
		default:
			f.st.setError(nil)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// step verifies the log's latest checkpoint against what the index holds
// and ingests up to it.
func (f *follower) step(ctx context.Context) error {
	v, err := f.log.Checkpoint(ctx)
	if err != nil {
		// A checkpoint that fails the policy is not served to queries, and
		// is no fork: the index retries (a log publishes only what
		// satisfies its witness policy, so this is an outage or a
		// misconfigured policy, which the error says).
		return fmt.Errorf("fetching the log's checkpoint: %v", err)
	}
	size := v.Checkpoint.Size
	f.m.logSize.Set(float64(size))
	f.st.setLogSize(size)
	have := f.state.Size
	switch {
	case size < have:
		return fmt.Errorf("the log serves size %d, smaller than the %d the index verified (a lagging copy?)", size, have)
	case size == have:
		if !bytes.Equal(v.Checkpoint.Root[:], f.state.Root) {
			return fmt.Errorf("%w: size %d has root %s now, the index verified %s", ErrFork, size, b64(v.Checkpoint.Root[:]), b64(f.state.Root))
		}
		if !bytes.Equal(v.Raw, f.state.Checkpoint) {
			// Same tree, a newer note (more cosignatures): serve it.
			f.state.Checkpoint = v.Raw
			if err := f.store.commit(ctx, nil, nil, f.state, true); err != nil {
				return err
			}
			f.st.setIndexed(size, v.Raw)
		}
		f.m.lag.Set(0)
		return nil
	}
	if have > 0 {
		if err := f.log.VerifyConsistency(ctx, have, f.state.Root, v); err != nil {
			if errors.Is(err, client.ErrVerification) {
				return fmt.Errorf("%w: %v", ErrFork, err)
			}
			return err
		}
	}
	// A pipeline: one goroutine fetches, verifies and describes the next
	// chunks while this one commits the previous, in order. A chunk that
	// could not be fetched stops the producer, not the commits of the
	// chunks it prepared before: with a slow database (MySQL) these would
	// otherwise be dropped on every retry, and an index behind an
	// unreadable bundle would never index what it can read before it.
	pctx, stopProducer := context.WithCancel(ctx)
	defer stopProducer()
	ready := make(chan *prepared, 2)
	var fetchErr error
	produced := make(chan struct{})
	go func() {
		defer close(produced)
		defer close(ready)
		for begin := f.state.Size; begin < size; {
			c, err := f.prepare(pctx, v, begin)
			if err != nil {
				fetchErr = err
				return
			}
			select {
			case ready <- c:
			case <-pctx.Done():
				fetchErr = pctx.Err()
				return
			}
			begin = c.state.Size
		}
	}()
	var commitErr error
	for c := range ready {
		if commitErr != nil {
			continue // drain: the producer stops at its next chunk
		}
		if commitErr = f.commit(ctx, c, size); commitErr != nil {
			stopProducer()
		}
	}
	<-produced
	if commitErr != nil {
		return commitErr
	}
	return fetchErr
}

// prepared is a verified chunk, ready to commit.
type prepared struct {
	rows     *batch
	tiles    []tileRow
	state    *savedState
	erasures []string
	begin    uint64
}

// prepare fetches, verifies and describes the ChunkBundles entry bundles
// from begin (or up to v's size). Only the producer goroutine of step
// calls it: it alone touches rng and tiles until step returns.
func (f *follower) prepare(ctx context.Context, v *policy.Verified, begin uint64) (*prepared, error) {
	size := v.Checkpoint.Size
	firstK := begin / layout.EntryBundleWidth
	end := min(size, (firstK+uint64(f.cfg.ChunkBundles))*layout.EntryBundleWidth)
	endK := (end + layout.EntryBundleWidth - 1) / layout.EntryBundleWidth
	bundles := make([]api.EntryBundle, endK-firstK)
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(8)
	for k := firstK; k < endK; k++ {
		g.Go(func() error {
			p := layout.PartialTileSize(0, k, end)
			raw, err := f.log.ReadEntryBundle(gctx, k, p)
			if err != nil {
				return fmt.Errorf("fetching %s: %w", layout.EntriesPath(k, p), err)
			}
			if err := bundles[k-firstK].UnmarshalText(raw); err != nil {
				return fmt.Errorf("%w: entry bundle %s is malformed: %v", client.ErrVerification, layout.EntriesPath(k, p), err)
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	rows := make([]*search.Hit, 0, end-begin)
	var erasures []string
	// Leaf hashes into the compact range and the tiles: a whole bundle
	// (256 leaves from its start) as one perfect subtree, its tile's root,
	// computed once; other leaves one by one.
	for k := firstK; k < endK; k++ {
		b := bundles[k-firstK]
		first := k * layout.EntryBundleWidth
		from, to := max(begin, first), min(end, first+layout.EntryBundleWidth)
		if uint64(len(b.Entries)) < to-first {
			return nil, fmt.Errorf("%w: entry bundle %d holds %d entries, want %d", client.ErrVerification, k, len(b.Entries), to-first)
		}
		hashes := make([]byte, 0, (to-from)*32)
		for i := from; i < to; i++ {
			hashes = append(hashes, rfc6962.DefaultHasher.HashLeaf(b.Entries[i-first])...)
		}
		if from == first && to-first == layout.EntryBundleWidth {
			root := subtreeRoot(hashes)
			sub, err := rangeFactory.NewRange(first, to, [][]byte{root})
			if err == nil {
				err = f.rng.AppendRange(sub, nil)
			}
			if err != nil {
				return nil, fmt.Errorf("internal: appending bundle %d: %w", k, err)
			}
			f.tiles.addFull(hashes, root)
			continue
		}
		for o := 0; o < len(hashes); o += 32 {
			if err := f.rng.Append(hashes[o:o+32], nil); err != nil {
				return nil, fmt.Errorf("internal: appending leaf %d: %w", from+uint64(o/32), err)
			}
			f.tiles.add(0, hashes[o:o+32])
		}
	}
	for i := begin; i < end; i++ {
		leaf := bundles[i/layout.EntryBundleWidth-firstK].Entries[i%layout.EntryBundleWidth]
		h, err := f.describe(ctx, i, leaf)
		if err != nil {
			return nil, err
		}
		if h.ContentType == erasureContentType && h.State == record.StatePlain {
			var e struct {
				SubjectHash string `json:"subject_hash"`
			}
			if json.Unmarshal(h.Payload(), &e) == nil && e.SubjectHash != "" {
				erasures = append(erasures, e.SubjectHash)
			}
		}
		rows = append(rows, h)
	}
	// Everything read must be the log's tree: the recomputed root of
	// [0, end) is v's root or provably a prefix of it.
	root, err := f.rng.GetRootHash(nil)
	if err != nil {
		return nil, fmt.Errorf("internal: %w", err)
	}
	if end == size {
		if !bytes.Equal(root, v.Checkpoint.Root[:]) {
			return nil, fmt.Errorf("%w: the entries up to %d hash to root %s, the checkpoint says %s", client.ErrVerification, size, b64(root), b64(v.Checkpoint.Root[:]))
		}
	} else if err := f.log.VerifyConsistency(ctx, end, root, v); err != nil {
		return nil, fmt.Errorf("entries [%d, %d): %w", begin, end, err)
	}
	// The range's hashes are copied: Hashes returns the range's own slice,
	// which the next chunk's appends change while the writer commits this
	// one.
	rangeHashes := f.rng.Hashes()
	saved := make([][]byte, len(rangeHashes))
	for i, h := range rangeHashes {
		saved[i] = slices.Clone(h)
	}
	next := &savedState{Size: end, Root: root, Range: saved, Checkpoint: nil, Fields: f.fields}
	if end == size {
		next.Checkpoint = v.Raw
	}
	return &prepared{rows: newBatch(rows), tiles: f.tiles.take(), state: next, erasures: erasures, begin: begin}, nil
}

// commit writes a prepared chunk; size is the log's checkpoint size (for the lag).
func (f *follower) commit(ctx context.Context, c *prepared, size uint64) error {
	complete := c.state.Checkpoint != nil // prepare set it: the chunk ends at its size
	if !complete {
		c.state.Checkpoint = f.state.Checkpoint // the newest checkpoint whose tree is all indexed
	}
	if err := f.store.commit(ctx, c.rows, c.tiles, c.state, complete); err != nil {
		return fmt.Errorf("committing entries [%d, %d): %w", c.begin, c.state.Size, err)
	}
	f.state = c.state
	end := c.state.Size
	f.m.indexed.Set(float64(end))
	f.m.ingested.Add(float64(end - c.begin))
	f.m.lag.Set(float64(size - end))
	f.st.setIndexed(end, c.state.Checkpoint)
	for _, sh := range c.erasures {
		if err := f.erase(ctx, sh, end); err != nil {
			return err
		}
	}
	return nil
}

// describe builds the row of leaf i; a sealed record is decrypted by the
// log when the index has a token, and the log's answer is tied to the leaf.
func (f *follower) describe(ctx context.Context, i uint64, leaf []byte) (*search.Hit, error) {
	if record.LeafVersion(leaf) != 2 {
		return search.Describe(i, leaf, nil, "", f.cfg.Fields)
	}
	if _, err := record.DecodeSealed(leaf); err != nil {
		return search.Describe(i, leaf, nil, "", f.cfg.Fields)
	}
	if !f.decrypt {
		return search.Describe(i, leaf, nil, search.StateSealed, f.cfg.Fields)
	}
	d, err := f.log.Record(ctx, i)
	if err != nil {
		return nil, fmt.Errorf("decrypting entry %d: %w", i, err)
	}
	if err := client.CheckDecoded(leaf, d); err != nil {
		return nil, err
	}
	var rec []byte
	if d.State == record.StateDecrypted {
		rec = d.Record
	}
	h, err := search.Describe(i, leaf, rec, d.State, f.cfg.Fields)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", client.ErrVerification, err)
	}
	return h, nil
}

// erase applies an erasure record: every record of the subject that the
// index holds in plaintext is asked of the log again, and those the log
// now reads as erased lose their plaintext and fields here too. The
// erasure record itself is only a hint: the log's answer decides.
func (f *follower) erase(ctx context.Context, subjectHash string, below uint64) error {
	if !f.decrypt {
		return nil
	}
	rows, err := f.store.db.QueryContext(ctx, `SELECT s.idx, r.leaf, r.rec FROM subjects s JOIN records r ON r.idx = s.idx
		WHERE s.hash = ? AND s.idx < ? AND `+stateName+` = ?`, subjectHash, below, record.StateDecrypted)
	if err != nil {
		return err
	}
	var idxs []uint64
	var keys []fieldRow // the decrypted records' field rows, to delete
	for rows.Next() {
		var i uint64
		var leaf, rec []byte
		if err := rows.Scan(&i, &leaf, &rec); err != nil {
			rows.Close()
			return err
		}
		idxs = append(idxs, i)
		if h, err := search.Describe(i, leaf, rec, record.StateDecrypted, f.cfg.Fields); err == nil {
			keys = fieldRows(keys, h)
		}
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return err
	}
	erased := false
	for _, i := range idxs {
		d, err := f.log.Record(ctx, i)
		if err != nil {
			return fmt.Errorf("re-reading entry %d after an erasure: %w", i, err)
		}
		if d.State == record.StateErased {
			erased = true
		}
	}
	if !erased {
		return nil
	}
	f.cfg.Logger.Info("subject erased: its records are indexed as erased", slog.String("subject_hash", subjectHash), slog.Int("records", len(idxs)))
	return f.store.markErased(ctx, subjectHash, below, keys)
}
