package client

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"sync/atomic"
	"time"

	"github.com/transparency-dev/tessera/api/layout"
)

// httpTiles reads a tlog-tiles log over HTTP, as Tessera's
// client.HTTPFetcher does (the same paths, os.ErrNotExist for a 404, a
// partial resource falling back to the full one), but reads each body
// into one buffer sized by its Content-Length. HTTPFetcher's io.ReadAll
// starts at 512 bytes and grows: on an audit replay that regrowth (copies,
// clearing, garbage) was a quarter of the client's CPU outside hashing in
// the profiles of #19.
type httpTiles struct {
	hc   *http.Client
	root *url.URL
	auth string // the Authorization header, if any
	// tls, timeout and noGzip are hc's TLS configuration, per-request
	// bound and DisableCompression, for the pipelined reads of an audit
	// (client/pipeline.go), which use connections of their own.
	tls     *tls.Config
	timeout time.Duration
	noGzip  bool
	// pipelined counts the bundles (with their tiles) read pipelined.
	pipelined atomic.Uint64
}

// maxResource bounds one tile, bundle or checkpoint: a full entry bundle
// of 256 records of the largest size the u16 framing allows is ~16 MiB.
const maxResource = 256 * (2 + 65535)

func (h *httpTiles) ReadCheckpoint(ctx context.Context) ([]byte, error) {
	return h.get(ctx, layout.CheckpointPath)
}

func (h *httpTiles) ReadTile(ctx context.Context, level, index uint64, p uint8) ([]byte, error) {
	return partialOrFull(p, func(p uint8) ([]byte, error) { return h.get(ctx, layout.TilePath(level, index, p)) })
}

func (h *httpTiles) ReadEntryBundle(ctx context.Context, index uint64, p uint8) ([]byte, error) {
	return partialOrFull(p, func(p uint8) ([]byte, error) { return h.get(ctx, layout.EntriesPath(index, p)) })
}

// partialOrFull reads the partial resource p, and the full one if the
// partial is gone (the tree grew past it since the checkpoint was read).
func partialOrFull(p uint8, read func(uint8) ([]byte, error)) ([]byte, error) {
	b, err := read(p)
	if p > 0 && errors.Is(err, os.ErrNotExist) {
		return read(0)
	}
	return b, err
}

// readTileInto and readEntryBundleInto are ReadTile and ReadEntryBundle
// reading into buf when the resource fits it (an audit worker's reused
// memory): the result is buf[:len] then, valid until buf's next use.
func (h *httpTiles) readTileInto(ctx context.Context, level, index uint64, p uint8, buf []byte) ([]byte, error) {
	return partialOrFull(p, func(p uint8) ([]byte, error) { return h.getInto(ctx, layout.TilePath(level, index, p), buf) })
}

func (h *httpTiles) readEntryBundleInto(ctx context.Context, index uint64, p uint8, buf []byte) ([]byte, error) {
	return partialOrFull(p, func(p uint8) ([]byte, error) { return h.getInto(ctx, layout.EntriesPath(index, p), buf) })
}

func (h *httpTiles) get(ctx context.Context, path string) ([]byte, error) {
	return h.getInto(ctx, path, nil)
}

// getInto is get reading into buf if the announced body fits it.
func (h *httpTiles) getInto(ctx context.Context, path string, buf []byte) ([]byte, error) {
	u := h.root.JoinPath(path).String()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	if h.auth != "" {
		req.Header.Set("Authorization", h.auth)
	}
	resp, err := h.hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("GET %s: %w", u, asTLSError(err))
	}
	defer resp.Body.Close()
	switch {
	case resp.StatusCode == http.StatusNotFound:
		return nil, fmt.Errorf("GET %s: %s: %w", u, resp.Status, os.ErrNotExist)
	case resp.StatusCode != http.StatusOK:
		return nil, fmt.Errorf("GET %s: %s", u, resp.Status)
	case resp.ContentLength > maxResource:
		return nil, fmt.Errorf("GET %s: %d bytes, more than a tile or bundle can be (%d)", u, resp.ContentLength, maxResource)
	}
	var b []byte
	if resp.ContentLength >= 0 {
		// One allocation of the announced size (none if it fits buf);
		// a body longer than announced is the transport's error, a
		// shorter one ours.
		if resp.ContentLength <= int64(cap(buf)) {
			b = buf[:resp.ContentLength]
		} else {
			b = make([]byte, resp.ContentLength)
		}
		if _, err := io.ReadFull(resp.Body, b); err != nil {
			return nil, fmt.Errorf("GET %s: reading the body: %w", u, err)
		}
		return b, nil
	}
	// Unknown length (chunked, or decompressed by the transport).
	b, err = io.ReadAll(io.LimitReader(resp.Body, maxResource+1))
	if err != nil {
		return nil, fmt.Errorf("GET %s: reading the body: %w", u, err)
	}
	if len(b) > maxResource {
		return nil, fmt.Errorf("GET %s: more than a tile or bundle can be (%d bytes)", u, maxResource)
	}
	return b, nil
}
