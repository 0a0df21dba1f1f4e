package mirror

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"sync"

	"github.com/cairnlog/cairn/format/addentries"
	"github.com/transparency-dev/tessera/api"
	"github.com/transparency-dev/tessera/api/layout"
	"golang.org/x/mod/sumdb/tlog"
)

// InfoError is an add-entries answer that carries a mirror-info body: 409
// (the upload cannot proceed as sent) or, with Accepted, 202 (some packages
// were stored; continue from Info.Next).
type InfoError struct {
	Accepted bool
	Info     addentries.MirrorInfo
	Reason   string
}

func (e *InfoError) Error() string {
	if e.Accepted {
		return fmt.Sprintf("partially stored; continue from %d (%s)", e.Info.Next, e.Reason)
	}
	return fmt.Sprintf("conflict: %s (pending size %d, next entry %d)", e.Reason, e.Info.Size, e.Info.Next)
}

// AddEntries implements tlog-mirror add-entries on a streamed body. Each
// entry package is authenticated by its subtree consistency proof against
// the pending checkpoint at upload_end and stored before the next one is
// read; no lock is held while reading, so a client that stalls mid-body
// delays nobody else. When every entry up to upload_end is stored, the
// mirror integrates them, cosigns that checkpoint, stores it and returns the
// cosignature lines. Partial progress is an *InfoError with Accepted set.
func (m *Mirror) AddEntries(ctx context.Context, body io.Reader) ([]byte, error) {
	br := bufio.NewReaderSize(body, 64<<10)
	h, err := addentries.ReadHeader(br)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	lm, ok := m.lookup(h.Origin)
	if !ok {
		return nil, fmt.Errorf("%w: %q is not in this mirror's log list", ErrUnknownOrigin, truncate(h.Origin))
	}
	lm.mu.Lock()
	pending, next, mirrorSize := lm.pending, lm.next, lm.mirrorSize
	target, known := lm.recent[h.UploadEnd]
	lm.mu.Unlock()
	if pending.Note == nil {
		return nil, fmt.Errorf("%w: send add-checkpoint first", ErrNoPending)
	}
	conflict := func(size uint64, format string, a ...any) error {
		return &InfoError{Info: addentries.MirrorInfo{Size: size, Next: next}, Reason: fmt.Sprintf(format, a...)}
	}
	switch {
	case !known:
		return nil, conflict(pending.Size, "upload_end %d is not a known pending checkpoint size", h.UploadEnd)
	case h.UploadEnd < mirrorSize:
		return nil, conflict(pending.Size, "upload_end %d is below the mirror checkpoint's size %d", h.UploadEnd, mirrorSize)
	case h.UploadStart > next:
		return nil, conflict(h.UploadEnd, "upload_start %d is past the next entry %d", h.UploadStart, next)
	case min(h.UploadEnd, next)-h.UploadStart > m.maxExcess:
		return nil, conflict(h.UploadEnd, "upload_start %d re-sends %d stored entries, at most %d allowed", h.UploadStart, min(h.UploadEnd, next)-h.UploadStart, m.maxExcess)
	}

	stored := 0
	w := &bundleWriter{m: m, lm: lm, sem: make(chan struct{}, lm.obj.Parallel())}
	for sp := range addentries.Spans(h.UploadStart, h.UploadEnd) {
		p, err := addentries.ReadPackage(br, sp)
		if err != nil {
			if stored == 0 {
				if errors.Is(err, io.EOF) {
					err = fmt.Errorf("the body ends before the first entry package [%d, %d)", sp.Start, sp.End)
				}
				return nil, fmt.Errorf("%w: %v", ErrMalformed, err)
			}
			if werr := w.wait(); werr != nil {
				return nil, werr
			}
			return nil, &InfoError{Accepted: true, Info: addentries.MirrorInfo{Size: h.UploadEnd, Next: lm.nextEntry()},
				Reason: fmt.Sprintf("the body ended after %d packages: %v", stored, err)}
		}
		hashes, err := m.verifyPackage(ctx, lm, target, &p)
		if err != nil {
			_ = w.wait() // what was proven before stays stored
			return nil, err
		}
		w.write(ctx, p, hashes)
		stored++
	}
	if err := w.wait(); err != nil {
		return nil, err
	}
	return m.commit(ctx, lm, target)
}

func (lm *logMirror) nextEntry() uint64 {
	lm.mu.Lock()
	defer lm.mu.Unlock()
	return lm.next
}

// A request writes up to objects.Parallel() entry bundles at once: each is
// an fsync (or a round trip to the object store), so writing several in
// parallel is what keeps ingest from being one at a time.

// verifyPackage authenticates one package against target: its entries (with
// the stored ones before it in its bundle) must be the subtree its proof
// places in the checkpoint at upload_end. On success p.Entries holds the
// whole bundle prefix [SubtreeStart, End).
// The leaf hashes of that prefix are returned for integration.
func (m *Mirror) verifyPackage(ctx context.Context, lm *logMirror, target pendingCheckpoint, p *addentries.Package) ([]tlog.Hash, error) {
	k := p.SubtreeStart / layout.EntryBundleWidth
	if p.Start > p.SubtreeStart {
		// The package starts mid-bundle: the entries before it are stored.
		prefix, err := lm.storedPrefix(ctx, k, p.Start-p.SubtreeStart)
		if err != nil {
			return nil, err
		}
		p.Entries = append(prefix, p.Entries...)
	}
	hashes := make([][]byte, len(p.Entries))
	leaves := make([]tlog.Hash, len(p.Entries))
	for i, e := range p.Entries {
		leaves[i] = tlog.RecordHash(e)
		hashes[i] = leaves[i][:]
	}
	if err := addentries.VerifySubtree(p.SubtreeStart, hashes, target.Size, p.Proof, target.Root[:]); err != nil {
		return nil, fmt.Errorf("%w: package [%d, %d): %v", ErrBadProof, p.Start, p.End, err)
	}
	return leaves, nil
}

// bundleWriter stores a request's authenticated packages as entry bundles,
// several at once, and advances the next entry only over the contiguous
// run of packages that are durably written (tlog-mirror: the next entry is
// the first missing one, even if later ones are stored).
type bundleWriter struct {
	m       *Mirror
	lm      *logMirror
	sem     chan struct{}
	wg      sync.WaitGroup
	results []*writeResult
}

type writeResult struct {
	start, end uint64
	path       string // the bundle written, "" when it was stored already
	err        error
}

func (w *bundleWriter) write(ctx context.Context, p addentries.Package, leaves []tlog.Hash) {
	r := &writeResult{start: p.Start, end: p.End}
	w.results = append(w.results, r)
	if w.lm.nextEntry() >= p.End {
		return // stored already (the copies are equal: both are proven)
	}
	k := p.SubtreeStart / layout.EntryBundleWidth
	var b bytes.Buffer
	for _, e := range p.Entries {
		_ = binary.Write(&b, binary.BigEndian, uint16(len(e)))
		b.Write(e)
	}
	width := uint8((p.End - p.SubtreeStart) % layout.EntryBundleWidth)
	w.sem <- struct{}{}
	w.wg.Go(func() {
		defer func() { <-w.sem }()
		r.path = logPath(layout.EntriesPath(k, width))
		if err := w.lm.obj.Put(ctx, r.path, b.Bytes()); err != nil {
			r.err = fmt.Errorf("storing entry bundle %d of %q: %w", k, w.lm.log.Origin, err)
			return
		}
		w.lm.mu.Lock()
		if len(leaves) > len(w.lm.leafCache[k]) {
			w.lm.leafCache[k] = leaves
		}
		w.lm.mu.Unlock()
	})
}

// wait joins every write, then moves the next entry over the contiguous
// run of stored packages; it returns the first write error.
func (w *bundleWriter) wait() error {
	w.wg.Wait()
	// The bundles are durable once their directories are synced.
	var paths []string
	for _, r := range w.results {
		if r.err == nil && r.path != "" {
			paths = append(paths, r.path)
		}
	}
	if err := w.lm.obj.Sync(context.Background(), paths); err != nil {
		return fmt.Errorf("storing the entry bundles of %q: %w", w.lm.log.Origin, err)
	}
	w.lm.mu.Lock()
	defer w.lm.mu.Unlock()
	for _, r := range w.results {
		if r.err != nil {
			return r.err
		}
		if r.start > w.lm.next {
			break // a gap (cannot happen: packages are contiguous)
		}
		if r.end > w.lm.next {
			w.m.metrics.entries.WithLabelValues(w.lm.log.Origin).Add(float64(r.end - max(w.lm.next, r.start)))
			w.lm.next = r.end
			w.lm.notify()
		}
	}
	w.results = nil
	return nil
}

// storedPrefix returns the first n entries of bundle k, which are stored.
func (lm *logMirror) storedPrefix(ctx context.Context, k, n uint64) ([][]byte, error) {
	next := lm.nextEntry()
	width := uint8(0)
	if next < (k+1)*layout.EntryBundleWidth {
		width = uint8(next - k*layout.EntryBundleWidth)
	}
	raw, err := lm.obj.Get(ctx, logPath(layout.EntriesPath(k, width)))
	if err != nil {
		return nil, fmt.Errorf("reading stored entry bundle %d of %q: %w", k, lm.log.Origin, err)
	}
	var eb api.EntryBundle
	if err := eb.UnmarshalText(raw); err != nil {
		return nil, fmt.Errorf("stored entry bundle %d of %q: %w", k, lm.log.Origin, err)
	}
	if uint64(len(eb.Entries)) < n {
		return nil, fmt.Errorf("stored entry bundle %d of %q holds %d entries, want %d", k, lm.log.Origin, len(eb.Entries), n)
	}
	return eb.Entries[:n], nil
}

// commit waits until every stored entry up to target.Size is integrated
// (integrate.go runs it beside the uploads), checks the stored tiles against
// target's root with x/mod's tlog, cosigns target and makes it the mirror
// checkpoint, unless that would move it backwards.
func (m *Mirror) commit(ctx context.Context, lm *logMirror, target pendingCheckpoint) ([]byte, error) {
	if err := lm.awaitIntegrated(ctx, target.Size); err != nil {
		return nil, err
	}
	lm.commitMu.Lock()
	defer lm.commitMu.Unlock()
	lm.mu.Lock()
	mirrorSize, pending, next := lm.mirrorSize, lm.pending.Size, lm.next
	lm.mu.Unlock()
	info := &InfoError{Info: addentries.MirrorInfo{Size: pending, Next: next}}
	if mirrorSize > target.Size {
		info.Reason = fmt.Sprintf("the mirror checkpoint is already at %d, past upload_end %d", mirrorSize, target.Size)
		return nil, info
	}
	if mirrorSize != target.Size {
		err := lm.verifyStored(ctx, target.Size, target.Root)
		if errors.Is(err, errSkipped) {
			info.Reason = fmt.Sprintf("entries were integrated past upload_end %d without stopping there", target.Size)
			return nil, info
		}
		if err != nil {
			return nil, fmt.Errorf("the tiles of %q at %d do not verify against the checkpoint: storage is corrupt: %w", lm.log.Origin, target.Size, err)
		}
	}
	cosigs, err := m.cosign(target.Text)
	if err != nil {
		return nil, err
	}
	served := append(append([]byte{}, target.Note...), cosigs...)
	if err := put(ctx, lm.obj, logPath(layout.CheckpointPath), served); err != nil {
		return nil, fmt.Errorf("storing the mirror checkpoint of %q: %w", lm.log.Origin, err)
	}
	lm.mu.Lock()
	lm.mirrorSize, lm.mirrorNote = target.Size, served
	lm.mu.Unlock()
	m.metrics.mirrorSize.WithLabelValues(lm.log.Origin).Set(float64(target.Size))
	return cosigs, nil
}
