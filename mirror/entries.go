package mirror

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"path/filepath"

	"github.com/cairnlog/cairn/format/addentries"
	"github.com/cairnlog/cairn/internal/atomicfile"
	"github.com/transparency-dev/merkle/rfc6962"
	"github.com/transparency-dev/tessera/api"
	"github.com/transparency-dev/tessera/api/layout"
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
	for sp := range addentries.Spans(h.UploadStart, h.UploadEnd) {
		p, err := addentries.ReadPackage(br, sp)
		if err != nil {
			if stored == 0 {
				if errors.Is(err, io.EOF) {
					err = fmt.Errorf("the body ends before the first entry package [%d, %d)", sp.Start, sp.End)
				}
				return nil, fmt.Errorf("%w: %v", ErrMalformed, err)
			}
			return nil, &InfoError{Accepted: true, Info: addentries.MirrorInfo{Size: h.UploadEnd, Next: lm.nextEntry()},
				Reason: fmt.Sprintf("the body ended after %d packages: %v", stored, err)}
		}
		if err := m.storePackage(ctx, lm, target, p); err != nil {
			return nil, err
		}
		stored++
		if m.stallInPackage != nil {
			m.stallInPackage(h.Origin, sp.End)
		}
	}
	return m.commit(ctx, lm, target)
}

func (lm *logMirror) nextEntry() uint64 {
	lm.mu.Lock()
	defer lm.mu.Unlock()
	return lm.next
}

// storePackage authenticates one package against target and stores its
// entry bundle durably, unless a concurrent upload already stored it.
func (m *Mirror) storePackage(ctx context.Context, lm *logMirror, target pendingCheckpoint, p addentries.Package) error {
	k := p.SubtreeStart / layout.EntryBundleWidth
	entries := p.Entries
	if p.Start > p.SubtreeStart {
		// The package starts mid-bundle: the entries before it are stored.
		prefix, err := lm.storedPrefix(ctx, k, p.Start-p.SubtreeStart)
		if err != nil {
			return err
		}
		entries = append(prefix, entries...)
	}
	hashes := make([][]byte, len(entries))
	for i, e := range entries {
		hashes[i] = rfc6962.DefaultHasher.HashLeaf(e)
	}
	if err := addentries.VerifySubtree(p.SubtreeStart, hashes, target.Size, p.Proof, target.Root[:]); err != nil {
		return fmt.Errorf("%w: package [%d, %d): %v", ErrBadProof, p.Start, p.End, err)
	}

	lm.bundleMu.Lock()
	defer lm.bundleMu.Unlock()
	before := lm.nextEntry()
	if before >= p.End {
		return nil // stored already (the copies are equal: both are proven)
	}
	var b bytes.Buffer
	for _, e := range entries {
		_ = binary.Write(&b, binary.BigEndian, uint16(len(e)))
		b.Write(e)
	}
	if err := lm.writer.SetEntryBundle(ctx, k, uint8((p.End-p.SubtreeStart)%layout.EntryBundleWidth), b.Bytes()); err != nil {
		return fmt.Errorf("storing entry bundle %d of %q: %w", k, lm.log.Origin, err)
	}
	lm.mu.Lock()
	if p.End > lm.next {
		lm.next = p.End
	}
	lm.mu.Unlock()
	m.metrics.entries.WithLabelValues(lm.log.Origin).Add(float64(p.End - max(before, p.Start)))
	return nil
}

// storedPrefix returns the first n entries of bundle k, which are stored.
func (lm *logMirror) storedPrefix(ctx context.Context, k, n uint64) ([][]byte, error) {
	next := lm.nextEntry()
	width := uint8(0)
	if next < (k+1)*layout.EntryBundleWidth {
		width = uint8(next - k*layout.EntryBundleWidth)
	}
	raw, err := lm.reader.ReadEntryBundle(ctx, k, width)
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

// commit integrates every stored entry up to target.Size, cosigns target
// and makes it the mirror checkpoint, unless that would move it backwards.
func (m *Mirror) commit(ctx context.Context, lm *logMirror, target pendingCheckpoint) ([]byte, error) {
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
	integrated, err := lm.writer.IntegratedSize(ctx)
	if err != nil {
		return nil, fmt.Errorf("reading the integrated size of %q: %w", lm.log.Origin, err)
	}
	switch {
	case integrated > target.Size && mirrorSize != target.Size:
		info.Reason = fmt.Sprintf("entries up to %d are integrated, past upload_end %d", integrated, target.Size)
		return nil, info
	case integrated < target.Size && mirrorSize != target.Size:
		root, err := lm.writer.AwaitIntegration(ctx, target.Size)
		if err != nil {
			return nil, fmt.Errorf("integrating %q up to %d: %w", lm.log.Origin, target.Size, err)
		}
		if !bytes.Equal(root, target.Root[:]) {
			return nil, fmt.Errorf("integrating %q up to %d gave root %x, the checkpoint says %x: storage is corrupt", lm.log.Origin, target.Size, root, target.Root)
		}
	}
	cosigs, err := m.cosign(target.Text)
	if err != nil {
		return nil, err
	}
	served := append(append([]byte{}, target.Note...), cosigs...)
	if err := atomicfile.Write(filepath.Join(lm.tiles, layout.CheckpointPath), served, 0o644); err != nil {
		return nil, fmt.Errorf("storing the mirror checkpoint of %q: %w", lm.log.Origin, err)
	}
	lm.mu.Lock()
	lm.mirrorSize, lm.mirrorNote = target.Size, served
	lm.mu.Unlock()
	m.metrics.mirrorSize.WithLabelValues(lm.log.Origin).Set(float64(target.Size))
	return cosigs, nil
}
