package log

import (
	"bytes"
	"compress/gzip"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"testing"

	cairnv1 "github.com/cairnlog/cairn/proto/cairn/v1"
	"golang.org/x/mod/sumdb/tlog"
)

// getRaw GETs path with the given Accept-Encoding (none: identity) without
// the transport's transparent decompression, and returns the response and
// its body as sent.
func getRaw(t *testing.T, base, path, acceptEncoding string) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, base+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if acceptEncoding == "" {
		acceptEncoding = "identity"
	}
	req.Header.Set("Accept-Encoding", acceptEncoding)
	resp, err := http.DefaultTransport.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, b
}

// TestStoredTilesAndBundlesAreServedAsStored: with POSIX storage, the read
// path sends full and partial tiles and entry bundles straight from their
// files (writeFile): the bytes on disk, with their Content-Length and the
// tlog-tiles headers; a bundle is still gzipped for a client that asks for
// it, and what is served hashes, with x/mod's tlog, to the checkpoint.
func TestStoredTilesAndBundlesAreServedAsStored(t *testing.T) {
	tl := newTestLog(t)
	const n = 300 // one full tile and bundle, and a partial one of 44
	req := &cairnv1.AppendBatchRequest{}
	for i := range n {
		req.Records = append(req.Records, &cairnv1.AppendRequest{Payload: fmt.Appendf(nil, "record %d", i)})
	}
	if _, err := tl.api.AppendBatch(context.Background(), req); err != nil {
		t.Fatal(err)
	}
	_, tree := tl.waitForSize(t, tl.vkey, n)
	verifyWithXMod(t, tl, tree)

	tile0 := tl.get(t, "/tile/0/000")
	for _, path := range []string{"/tile/0/000", "/tile/0/001.p/44", "/tile/1/000.p/1", "/tile/entries/000", "/tile/entries/001.p/44"} {
		stored, err := os.ReadFile(filepath.Join(tl.dir, filepath.FromSlash(path[1:])))
		if err != nil {
			t.Fatal(err)
		}
		resp, body := getRaw(t, tl.base, path, "")
		if resp.StatusCode != http.StatusOK || !bytes.Equal(body, stored) {
			t.Fatalf("GET %s: %s, %d bytes, want the %d stored bytes", path, resp.Status, len(body), len(stored))
		}
		if cl := resp.Header.Get("Content-Length"); cl != strconv.Itoa(len(stored)) {
			t.Errorf("GET %s: Content-Length %q, want %d", path, cl, len(stored))
		}
		if resp.Header.Get("Cache-Control") != cacheImmutable || resp.Header.Get("Content-Type") != "application/octet-stream" || resp.Header.Get("Content-Encoding") != "" {
			t.Errorf("GET %s: headers %v", path, resp.Header)
		}
	}

	// The full bundle as sent uncompressed hashes to the full tile, entry
	// by entry (x/mod's RecordHash).
	_, bundle := getRaw(t, tl.base, "/tile/entries/000", "")
	for i := 0; i < 256; i++ {
		l := int(bundle[0])<<8 | int(bundle[1])
		h := tlog.RecordHash(bundle[2 : 2+l])
		if !bytes.Equal(h[:], tile0[i*32:(i+1)*32]) {
			t.Fatalf("entry %d of the bundle served from its file does not hash to the tile's", i)
		}
		bundle = bundle[2+l:]
	}
	if len(bundle) != 0 {
		t.Fatalf("%d bytes after the 256 entries of a full bundle", len(bundle))
	}

	// A client that accepts gzip still gets it, and the same bytes.
	resp, gz := getRaw(t, tl.base, "/tile/entries/000", "gzip")
	if resp.Header.Get("Content-Encoding") != "gzip" || resp.Header.Get("Vary") != "Accept-Encoding" {
		t.Fatalf("gzip-accepting client: Content-Encoding %q, Vary %q", resp.Header.Get("Content-Encoding"), resp.Header.Get("Vary"))
	}
	zr, err := gzip.NewReader(bytes.NewReader(gz))
	if err != nil {
		t.Fatal(err)
	}
	plain, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	stored, _ := os.ReadFile(filepath.Join(tl.dir, "tile", "entries", "000"))
	if !bytes.Equal(plain, stored) {
		t.Fatal("the gzipped bundle is not the stored one")
	}
	// HEAD: the headers alone.
	head, err := http.Head(tl.base + "/tile/0/000")
	if err != nil {
		t.Fatal(err)
	}
	head.Body.Close()
	if head.StatusCode != http.StatusOK || head.ContentLength != 256*32 {
		t.Errorf("HEAD /tile/0/000: %s, Content-Length %d", head.Status, head.ContentLength)
	}
	// Paths that are not stored still answer 404 through the fallback.
	for _, path := range []string{"/tile/0/001.p/45", "/tile/entries/002", "/tile/0/002"} {
		if resp, body := getRaw(t, tl.base, path, ""); resp.StatusCode != http.StatusNotFound {
			t.Errorf("GET %s: %s (%s), want 404", path, resp.Status, body)
		}
	}
}
