package mirror

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/transparency-dev/tessera/api/layout"
	"golang.org/x/mod/sumdb/tlog"
)

// A mirror may start at a minimum index (tlog-mirror, "Pruning and
// Retention Policies": "a retention policy MAY permit mirrors to retain less
// data than the origin log and set a higher minimum index ... log clients
// MUST NOT treat the mirror as contributing to a quorum for entries below
// its minimum index"). Cairn rounds it down to an entry bundle boundary M
// (the log still serves the bundle holding its own minimum index: tlog-tiles
// lets it drop only bundles that end at or below it).
//
// Entries from M on arrive by add-entries as usual. What the mirror cannot
// get that way is the tree to the left of M, which every tile it builds
// from M on depends on: the right-edge tiles of the tree of size M (at each
// level, the partial tile holding position M). It reads those from the log
// (its tlog-tiles URL), once, through x/mod's tlog.TileHashReader against a
// pending checkpoint the log signed, so that every hash it keeps is
// authenticated by that checkpoint's root, and stores them with the tree
// size and root at M as its integrated state. It never holds or serves the
// tiles and bundles wholly below M (404, as tlog-tiles pruning allows).

// Seed is where a mirror starts one log.
type Seed struct {
	// MinimumIndex is the mirror's minimum index for the log (rounded
	// down to a multiple of 256).
	MinimumIndex uint64
	// URL is the log's tlog-tiles URL prefix, read once for the tree
	// left of MinimumIndex.
	URL string
}

// seedRetry is how long a failed seed waits before it is tried again.
const seedRetry = 2 * time.Second

// seed waits for a pending checkpoint at or past the minimum index and
// stores the tree left of it, until it succeeded or ctx ended.
func (lm *logMirror) seed(ctx context.Context, logger *slog.Logger) bool {
	for {
		lm.mu.Lock()
		seeded := lm.integrated >= lm.minIndex
		pending, ch := lm.pending, lm.changed
		lm.mu.Unlock()
		if seeded {
			return true
		}
		if pending.Note == nil || pending.Size < lm.minIndex {
			select {
			case <-ctx.Done():
				return false
			case <-ch:
				continue
			}
		}
		err := lm.seedFrom(ctx, pending)
		if err == nil {
			logger.Info("seeded the tree left of the minimum index from the log", slog.String("origin", cleanOrigin(lm.log.Origin)), slog.Uint64("minimum_index", lm.minIndex))
			continue
		}
		if ctx.Err() != nil {
			return false
		}
		logger.Warn("seeding from the log failed; retrying", slog.String("origin", cleanOrigin(lm.log.Origin)), slog.String("url", lm.seedURL), slog.Any("error", err))
		select {
		case <-ctx.Done():
			return false
		case <-time.After(seedRetry):
		}
	}
}

// seedFrom stores the right-edge tiles of the tree of size minIndex, read
// from the log and verified against the pending checkpoint c.
func (lm *logMirror) seedFrom(ctx context.Context, c pendingCheckpoint) error {
	hr := tlog.TileHashReader(tlog.Tree{N: int64(c.Size), Hash: tlog.Hash(c.Root)}, &logTiles{ctx: ctx, hc: lm.hc, url: lm.seedURL})
	root, err := tlog.TreeHash(int64(lm.minIndex), hr)
	if err != nil {
		return fmt.Errorf("the tree at %d from %s: %w", lm.minIndex, lm.seedURL, err)
	}
	var paths []string
	for level := 0; lm.minIndex>>(8*level) > 0; level++ {
		n := int64(lm.minIndex >> (8 * level))
		t := tlog.Tile{H: 8, L: level, N: n / 256, W: int(n % 256)}
		if t.W == 0 {
			continue // no partial tile at this level: nothing left of M is needed here
		}
		data, err := tlog.ReadTileData(t, hr)
		if err != nil {
			return fmt.Errorf("tile %s from %s: %w", t.Path(), lm.seedURL, err)
		}
		p := logPath(layout.TilePath(uint64(t.L), uint64(t.N), uint8(t.W)))
		if err := lm.obj.Put(ctx, p, data); err != nil {
			return err
		}
		paths = append(paths, p)
	}
	if err := lm.obj.Sync(ctx, paths); err != nil {
		return err
	}
	st, _ := json.Marshal(integratedState{Size: lm.minIndex, Root: root[:]})
	if err := put(ctx, lm.obj, integratedPath, st); err != nil {
		return err
	}
	lm.mu.Lock()
	lm.integrated = max(lm.integrated, lm.minIndex)
	lm.notify()
	lm.mu.Unlock()
	return nil
}

// logTiles reads a log's tiles over tlog-tiles HTTP for x/mod's tlog, which
// verifies them.
type logTiles struct {
	ctx   context.Context
	hc    *http.Client
	url   string
	cache map[tlog.Tile][]byte
}

func (l *logTiles) Height() int { return 8 }

func (l *logTiles) ReadTiles(tiles []tlog.Tile) ([][]byte, error) {
	out := make([][]byte, len(tiles))
	for i, t := range tiles {
		if b, ok := l.cache[t]; ok {
			out[i] = b
			continue
		}
		u := strings.TrimSuffix(l.url, "/") + "/" + layout.TilePath(uint64(t.L), uint64(t.N), uint8(t.W%layout.TileWidth))
		req, err := http.NewRequestWithContext(l.ctx, http.MethodGet, u, nil)
		if err != nil {
			return nil, err
		}
		resp, err := l.hc.Do(req)
		if err != nil {
			return nil, err
		}
		b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		resp.Body.Close()
		if err != nil {
			return nil, fmt.Errorf("GET %s: %w", u, err)
		}
		if resp.StatusCode != http.StatusOK {
			return nil, fmt.Errorf("GET %s: %s", u, resp.Status)
		}
		if want := t.W * tlog.HashSize; len(b) > want {
			b = b[:want] // a full tile served for a partial one
		}
		out[i] = b
	}
	return out, nil
}

func (l *logTiles) SaveTiles(tiles []tlog.Tile, data [][]byte) {
	if l.cache == nil {
		l.cache = map[tlog.Tile][]byte{}
	}
	for i, t := range tiles {
		l.cache[t] = data[i]
	}
}
