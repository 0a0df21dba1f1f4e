package client

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/cairnlog/cairn/format/addcheckpoint"
	"github.com/cairnlog/cairn/format/addentries"
	"github.com/cairnlog/cairn/format/checkpoint"
	"github.com/cairnlog/cairn/internal/fielderr"
	"github.com/transparency-dev/tessera/api"
	"github.com/transparency-dev/tessera/api/layout"
	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

// TileSource is what pushing to a mirror reads of a log: its tlog-tiles
// resources. *Log serves it over HTTP; a log process passes its own storage.
type TileSource interface {
	ReadCheckpoint(ctx context.Context) ([]byte, error)
	ReadTile(ctx context.Context, level, index uint64, p uint8) ([]byte, error)
	ReadEntryBundle(ctx context.Context, index uint64, p uint8) ([]byte, error)
}

// ReadCheckpoint fetches the log's latest checkpoint note, unverified.
func (l *Log) ReadCheckpoint(ctx context.Context) ([]byte, error) {
	return l.fetcher.ReadCheckpoint(ctx)
}

// ErrMirrorAhead is wrapped when the mirror already holds a newer checkpoint
// than the one pushed: nothing to do for this one.
var ErrMirrorAhead = errors.New("the mirror has a newer checkpoint")

// MaxPackagesPerRequest is how many entry packages one add-entries request
// carries (tlog-mirror: clients SHOULD send at most 32).
const MaxPackagesPerRequest = 32

// Mirror pushes a log to one tlog-mirror (c2sp.org/tlog-mirror).
type Mirror struct {
	// URL is the mirror's submission prefix.
	URL string
	// Verifiers check the mirror's cosignatures; empty means the answer's
	// cosignature lines are returned unchecked.
	Verifiers []note.Verifier

	hc *http.Client
	// oldHint is the size the mirror's pending checkpoint last had.
	oldHint uint64
	// nextHint is the mirror's next entry as last advertised.
	nextHint uint64
}

// NewMirror returns a pusher to the mirror at base.
func NewMirror(base string, verifiers []note.Verifier, tlsConfig *tls.Config, timeout time.Duration) (*Mirror, error) {
	u, err := url.Parse(base)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fielderr.Errorf("Mirror.URL", "%q: want an http:// or https:// URL", base)
	}
	if timeout <= 0 {
		timeout = 5 * time.Minute
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.Proxy = nil
	if tlsConfig != nil {
		// A Transport writes to its TLS config (HTTP/2's NextProtos) on
		// first use: each pusher owns a copy, so callers may share theirs.
		tr.TLSClientConfig = tlsConfig.Clone()
	}
	return &Mirror{URL: strings.TrimSuffix(base, "/"), Verifiers: verifiers, hc: &http.Client{Transport: tr, Timeout: timeout}}, nil
}

// PushResult is what one successful push achieved.
type PushResult struct {
	// Size is the tree size the mirror now cosigns.
	Size uint64
	// Entries is how many entries this push uploaded.
	Entries uint64
	// Cosignatures are the mirror's signature lines on the checkpoint.
	Cosignatures []byte
}

// Push brings the mirror up to the checkpoint cp (a note the log signed,
// whose tree src serves): add-checkpoint, then add-entries from the mirror's
// next entry, resuming after 202 and 409 answers. verifier checks the log's
// signature on cp.
func (m *Mirror) Push(ctx context.Context, src TileSource, logVerifier note.Verifier, cp []byte) (*PushResult, error) {
	n, err := note.Open(cp, note.VerifierList(logVerifier))
	if err != nil {
		return nil, verifyErr("the checkpoint does not verify with the log key %s: %v", logVerifier.Name(), err)
	}
	c, err := checkpoint.Parse([]byte(n.Text))
	if err != nil {
		return nil, verifyErr("the log's checkpoint: %v", err)
	}
	hr := &tileHashes{ctx: ctx, src: src, cache: map[tlog.Tile][]byte{}}
	reader := tlog.TileHashReader(tlog.Tree{N: int64(c.Size), Hash: tlog.Hash(c.Root)}, hr)
	if err := m.addCheckpoint(ctx, reader, c, cp); err != nil {
		return nil, err
	}
	res := &PushResult{}
	if m.nextHint == 0 && c.Size > 0 {
		// A new pusher: learn where the mirror is rather than re-send
		// what it may already hold.
		if _, err := m.probeNext(ctx, c); err != nil {
			return nil, err
		}
	}
	start := min(m.nextHint, c.Size)
	if mi, ok := src.(interface {
		MinimumIndex(context.Context) (uint64, error)
	}); ok && start < c.Size {
		// tlog-tiles pruning: the log may no longer serve old bundles.
		minIndex, err := mi.MinimumIndex(ctx)
		if err != nil {
			return nil, err
		}
		// The bundle holding the minimum index is still served
		// (tlog-tiles: only bundles ending at or below it may go).
		if avail := minIndex / layout.EntryBundleWidth * layout.EntryBundleWidth; minIndex > 0 && start < avail {
			if start, err = m.probeNext(ctx, c); err != nil {
				return nil, err
			}
			if start < avail {
				return nil, fmt.Errorf("mirror %s needs entries from %d, but the log pruned everything below its minimum index %d: seed the mirror from another mirror (cairn mirror push --log OTHER_MIRROR_URL)", m.URL, start, minIndex)
			}
		}
	}
	var ticket []byte
	// While one request is in flight, the next body is built (proofs read
	// from verified tiles) for the next entry a 202 will most likely name;
	// spec is that build, and every return path waits for it.
	type built struct {
		body        []byte
		start, sent uint64
		ticket      []byte
		err         error
	}
	build := func(from uint64, ticket []byte) chan built {
		ch := make(chan built, 1)
		go func() {
			b, sent, err := m.entriesBody(ctx, src, reader, c, from, ticket)
			ch <- built{b, from, sent, ticket, err}
		}()
		return ch
	}
	var spec chan built
	defer func() {
		if spec != nil {
			<-spec
		}
	}()
	cur := <-build(start, ticket)
	for stalls := 0; ; {
		if stalls > 16 {
			return nil, fmt.Errorf("mirror %s: no progress after %d add-entries requests", m.URL, stalls)
		}
		if cur.err != nil {
			return nil, cur.err
		}
		expected := cur.start + cur.sent
		if expected < c.Size {
			spec = build(expected, cur.ticket)
		}
		code, rb, ctype, err := m.post(ctx, "/add-entries", cur.body, true)
		if err != nil {
			return nil, err
		}
		var speculated *built
		if spec != nil {
			b := <-spec
			spec, speculated = nil, &b
		}
		switch code {
		case http.StatusOK:
			res.Size, res.Entries, res.Cosignatures = c.Size, res.Entries+cur.sent, rb
			m.nextHint = c.Size
			if err := m.checkCosignatures(n.Text, rb); err != nil {
				return nil, err
			}
			return res, nil
		case http.StatusAccepted, http.StatusConflict:
			if ctype != addentries.MediaTypeMirrorInfo {
				return nil, fmt.Errorf("mirror %s: add-entries answered %d with Content-Type %q, not %s: %s", m.URL, code, ctype, addentries.MediaTypeMirrorInfo, short(rb))
			}
			info, err := addentries.ParseMirrorInfo(rb)
			if err != nil {
				return nil, fmt.Errorf("mirror %s: %w", m.URL, err)
			}
			if code == http.StatusAccepted && info.Next > cur.start {
				res.Entries += info.Next - cur.start
				stalls = 0
			} else {
				stalls++
			}
			if code == http.StatusConflict && info.Size > c.Size {
				// The mirror moved on to a newer checkpoint than ours.
				return nil, fmt.Errorf("mirror %s: %w: pending %d, pushed %d", m.URL, ErrMirrorAhead, info.Size, c.Size)
			}
			if code == http.StatusConflict && info.Size != c.Size {
				// Our checkpoint is no longer pending there: send it again.
				m.oldHint = info.Size
				if err := m.addCheckpoint(ctx, reader, c, cp); err != nil {
					return nil, err
				}
			}
			start, ticket, m.nextHint = min(info.Next, c.Size), info.Ticket, info.Next
			if speculated != nil && speculated.start == start && bytes.Equal(speculated.ticket, ticket) {
				cur = *speculated
			} else {
				cur = <-build(start, ticket)
			}
		default:
			return nil, fmt.Errorf("mirror %s: add-entries answered %d: %s", m.URL, code, short(rb))
		}
	}
}

// addCheckpoint makes cp the mirror's pending checkpoint.
func (m *Mirror) addCheckpoint(ctx context.Context, reader tlog.HashReader, c checkpoint.Checkpoint, cp []byte) error {
	for range 3 {
		old := min(m.oldHint, c.Size)
		var proof [][]byte
		if old > 0 && old < c.Size {
			p, err := tlog.ProveTree(int64(c.Size), int64(old), reader)
			if err != nil {
				return fmt.Errorf("building the consistency proof %d → %d: %w", old, c.Size, err)
			}
			for _, h := range p {
				proof = append(proof, h[:])
			}
		}
		body := addcheckpoint.Request{Old: old, Proof: proof, Checkpoint: cp}.Marshal()
		code, rb, ctype, err := m.post(ctx, "/add-checkpoint", body, false)
		if err != nil {
			return err
		}
		switch code {
		case http.StatusOK:
			m.oldHint = c.Size
			return nil
		case http.StatusConflict:
			if ctype != "text/x.tlog.size" {
				return fmt.Errorf("mirror %s: add-checkpoint answered 409 without text/x.tlog.size: %s", m.URL, short(rb))
			}
			size, err := strconv.ParseUint(strings.TrimSpace(string(rb)), 10, 64)
			if err != nil {
				return fmt.Errorf("mirror %s: add-checkpoint 409 body %q: %v", m.URL, short(rb), err)
			}
			if size > c.Size {
				return fmt.Errorf("mirror %s: %w: pending %d, pushed %d", m.URL, ErrMirrorAhead, size, c.Size)
			}
			m.oldHint = size
		default:
			return fmt.Errorf("mirror %s: add-checkpoint answered %d: %s", m.URL, code, short(rb))
		}
	}
	return fmt.Errorf("mirror %s: add-checkpoint kept conflicting", m.URL)
}

// entriesBody builds one add-entries request from start to the checkpoint's
// size: at most MaxPackagesPerRequest packages, gzipped.
func (m *Mirror) entriesBody(ctx context.Context, src TileSource, reader tlog.HashReader, c checkpoint.Checkpoint, start uint64, ticket []byte) ([]byte, uint64, error) {
	// Packages are compressed as they are built: no uncompressed copy of
	// the body is kept.
	var gz bytes.Buffer
	w, _ := gzip.NewWriterLevel(&gz, gzip.BestSpeed)
	_, _ = w.Write(addentries.Header{Origin: c.Origin, UploadStart: start, UploadEnd: c.Size, Ticket: ticket}.Marshal())
	// Every perfect-subtree hash the request's proofs need is read in one
	// ReadHashes call: x/mod verifies the tiles it reads against the root
	// once per call, not once per hash.
	var spans []addentries.Span
	for sp := range addentries.Spans(start, c.Size) {
		if len(spans) == MaxPackagesPerRequest {
			break
		}
		spans = append(spans, sp)
	}
	known := map[int64][]byte{}
	var need []int64
	collect := func(level, index uint64) ([]byte, error) {
		x := tlog.StoredHashIndex(int(level), int64(index))
		if _, ok := known[x]; !ok {
			known[x] = nil
			need = append(need, x)
		}
		return make([]byte, 32), nil
	}
	for _, sp := range spans {
		if _, err := addentries.Proof(sp.SubtreeStart, sp.End, c.Size, func(r addentries.Range) ([]byte, error) {
			return addentries.RangeHash(r, collect)
		}); err != nil {
			return nil, 0, fmt.Errorf("building the proof of entries [%d, %d): %w", sp.SubtreeStart, sp.End, err)
		}
	}
	if len(need) > 0 {
		hs, err := reader.ReadHashes(need)
		if err != nil {
			return nil, 0, err
		}
		for i, x := range need {
			known[x] = hs[i][:]
		}
	}
	perfect := func(level, index uint64) ([]byte, error) {
		return known[tlog.StoredHashIndex(int(level), int64(index))], nil
	}
	var sent uint64
	var pkg []byte
	for _, sp := range spans {
		k := sp.SubtreeStart / layout.EntryBundleWidth
		b, err := src.ReadEntryBundle(ctx, k, layout.PartialTileSize(0, k, c.Size))
		if err != nil {
			return nil, 0, fmt.Errorf("reading entry bundle %d: %w", k, err)
		}
		var eb api.EntryBundle
		if err := eb.UnmarshalText(b); err != nil {
			return nil, 0, verifyErr("entry bundle %d is malformed: %v", k, err)
		}
		lo, hi := sp.Start-sp.SubtreeStart, sp.End-sp.SubtreeStart
		if uint64(len(eb.Entries)) < hi {
			return nil, 0, verifyErr("entry bundle %d holds %d entries, want %d", k, len(eb.Entries), hi)
		}
		proof, err := addentries.Proof(sp.SubtreeStart, sp.End, c.Size, func(r addentries.Range) ([]byte, error) {
			return addentries.RangeHash(r, perfect)
		})
		if err != nil {
			return nil, 0, fmt.Errorf("building the proof of entries [%d, %d): %w", sp.SubtreeStart, sp.End, err)
		}
		if pkg, err = addentries.AppendPackage(pkg[:0], eb.Entries[lo:hi], proof); err != nil {
			return nil, 0, err
		}
		_, _ = w.Write(pkg) // into memory: cannot fail
		sent += sp.End - sp.Start
	}
	_ = w.Close()
	return gz.Bytes(), sent, nil
}

func (m *Mirror) post(ctx context.Context, path string, body []byte, gzipped bool) (int, []byte, string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, m.URL+path, bytes.NewReader(body))
	if err != nil {
		return 0, nil, "", err
	}
	if gzipped {
		req.Header.Set("Content-Type", "application/octet-stream")
		req.Header.Set("Content-Encoding", "gzip")
	}
	resp, err := m.hc.Do(req)
	if err != nil {
		return 0, nil, "", fmt.Errorf("mirror %s: %w", m.URL, asTLSError(err))
	}
	defer resp.Body.Close()
	rb, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return 0, nil, "", fmt.Errorf("mirror %s: reading the answer: %w", m.URL, err)
	}
	return resp.StatusCode, rb, resp.Header.Get("Content-Type"), nil
}

// checkCosignatures verifies that the answer holds a valid cosignature by
// each configured mirror key (unknown keys are ignored, as tlog-mirror says).
func (m *Mirror) checkCosignatures(text string, sigs []byte) error {
	for _, v := range m.Verifiers {
		msg := append([]byte(text+"\n"), sigs...)
		if _, err := note.Open(msg, note.VerifierList(v)); err != nil {
			return verifyErr("mirror %s: no valid cosignature by %s in its answer: %v", m.URL, v.Name(), err)
		}
	}
	return nil
}

func short(b []byte) string {
	s := strings.TrimSpace(string(b))
	if len(s) > 200 {
		s = s[:200] + "…"
	}
	return s
}

// tileHashes adapts a TileSource to x/mod's tlog.TileReader, so that every
// hash the push reads is checked against the checkpoint's root by x/mod's
// independent tile verification.
type tileHashes struct {
	ctx   context.Context
	src   TileSource
	cache map[tlog.Tile][]byte
}

func (t *tileHashes) Height() int { return layout.TileHeight }

func (t *tileHashes) ReadTiles(tiles []tlog.Tile) ([][]byte, error) {
	out := make([][]byte, len(tiles))
	for i, tile := range tiles {
		if b, ok := t.cache[tile]; ok {
			out[i] = b
			continue
		}
		b, err := t.src.ReadTile(t.ctx, uint64(tile.L), uint64(tile.N), uint8(tile.W%layout.TileWidth))
		if err != nil {
			return nil, fmt.Errorf("reading tile %s: %w", layout.TilePath(uint64(tile.L), uint64(tile.N), uint8(tile.W%layout.TileWidth)), err)
		}
		if want := tile.W * 32; len(b) > want {
			b = b[:want] // a full tile served for a partial one
		}
		out[i] = b
	}
	return out, nil
}

func (t *tileHashes) SaveTiles(tiles []tlog.Tile, data [][]byte) {
	if len(t.cache) > 4096 {
		clear(t.cache)
	}
	for i, tile := range tiles {
		t.cache[tile] = data[i]
	}
}

var _ TileSource = (*Log)(nil)

// probeNext asks the mirror for its next entry with an empty upload at the
// checkpoint's size (409 or 200 both say where it is).
func (m *Mirror) probeNext(ctx context.Context, c checkpoint.Checkpoint) (uint64, error) {
	body := addentries.Header{Origin: c.Origin, UploadStart: c.Size, UploadEnd: c.Size}.Marshal()
	code, rb, ctype, err := m.post(ctx, "/add-entries", body, false)
	if err != nil {
		return 0, err
	}
	switch {
	case code == http.StatusOK:
		m.nextHint = c.Size
		return c.Size, nil
	case code == http.StatusConflict && ctype == addentries.MediaTypeMirrorInfo:
		info, err := addentries.ParseMirrorInfo(rb)
		if err != nil {
			return 0, fmt.Errorf("mirror %s: %w", m.URL, err)
		}
		m.nextHint = info.Next
		return info.Next, nil
	default:
		return 0, fmt.Errorf("mirror %s: add-entries answered %d: %s", m.URL, code, short(rb))
	}
}
