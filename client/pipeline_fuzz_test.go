package client

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/transparency-dev/merkle/rfc6962"
	"github.com/transparency-dev/tessera/api"
	"github.com/transparency-dev/tessera/api/layout"
	"golang.org/x/mod/sumdb/tlog"
)

// FuzzParseAnswer feeds arbitrary server bytes to the pipelined reader of
// one answer: it must never panic, and a body it accepts is what net/http's
// own reading of the same answer gives (gunzipped), within maxResource.
func FuzzParseAnswer(f *testing.F) {
	f.Add([]byte("HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabc"))
	f.Add([]byte("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"))
	f.Add([]byte("HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nto the end"))
	f.Add([]byte("HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n"))
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	_, _ = zw.Write([]byte("bundle bytes"))
	_ = zw.Close()
	f.Add(append([]byte("HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n"), chunk(gz.Bytes())...))
	f.Fuzz(func(t *testing.T, answer []byte) {
		body, _, err := parseAnswer(bufio.NewReader(bytes.NewReader(answer)), make([]byte, 0, 4))
		if err != nil {
			return
		}
		if len(body) > maxResource {
			t.Fatalf("accepted a body of %d bytes", len(body))
		}
		resp, err := http.ReadResponse(bufio.NewReader(bytes.NewReader(answer)), nil)
		if err != nil {
			t.Fatalf("accepted an answer net/http does not parse: %v", err)
		}
		var r io.Reader = resp.Body
		if strings.EqualFold(resp.Header.Get("Content-Encoding"), "gzip") {
			if r, err = gzip.NewReader(resp.Body); err != nil {
				t.Fatalf("accepted a gzip body net/http's reading does not open: %v", err)
			}
		}
		want, err := io.ReadAll(r)
		if err != nil || resp.StatusCode != http.StatusOK || !bytes.Equal(body, want) {
			t.Fatalf("accepted %q; net/http reads status %d, %q, %v", body, resp.StatusCode, want, err)
		}
	})
}

// chunk frames b as one HTTP/1.1 chunk and the last chunk.
func chunk(b []byte) []byte {
	out := fmt.Appendf(nil, "%x\r\n", len(b))
	out = append(out, b...)
	return append(out, "\r\n0\r\n\r\n"...)
}

// FuzzCheckBundle feeds arbitrary entry bundles to the audit's in-place
// bundle check, against a level-0 tile made from Tessera's own parsing of
// the bundle and x/mod's leaf hashes: it must never panic; a bundle that
// parses into at least the tile's width of entries must pass, and fail
// once any byte of the tile is flipped; one that does not parse must fail.
// Every failure is a verification failure (the log's data is wrong).
func FuzzCheckBundle(f *testing.F) {
	f.Add(frame("a", "b", "c"), uint8(3), uint16(40))
	f.Add(frame("a", "b"), uint8(3), uint16(0))
	f.Add([]byte{0, 5, 'a'}, uint8(1), uint16(0))
	f.Add(append(frame("x"), 0xff), uint8(1), uint16(31))
	f.Fuzz(func(t *testing.T, raw []byte, width uint8, flip uint16) {
		w := uint64(width)
		if w == 0 {
			w = 256
		}
		const k = 5
		size := k*256 + w
		var eb api.EntryBundle
		parsed := eb.UnmarshalText(raw) == nil && uint64(len(eb.Entries)) >= w
		tile := make([]byte, w*32)
		if parsed {
			for i := range w {
				h := tlog.RecordHash(eb.Entries[i])
				copy(tile[i*32:], h[:])
			}
		}
		check := func(tile []byte) bundleResult {
			var s auditScratch
			return checkBundle(bundleResult{k: k}, &s, 0, size, bytes.Clone(raw), tile, bundleFiles{k: k, p: layout.PartialTileSize(0, k, size)})
		}
		res := check(bytes.Clone(tile))
		switch {
		case !parsed && res.err == nil:
			t.Fatalf("accepted a bundle Tessera does not parse into %d entries", w)
		case res.err != nil && !errors.Is(res.err, ErrVerification):
			t.Fatalf("failure that is not a verification failure: %v", res.err)
		case !parsed:
			return
		case res.err != nil:
			t.Fatalf("rejected a bundle that hashes to its tile: %v", res.err)
		}
		// The range is the bundle's leaves.
		r := rangeFactory.NewEmptyRange(k * 256)
		for i := range w {
			_ = r.Append(rfc6962.DefaultHasher.HashLeaf(eb.Entries[i]), nil)
		}
		if !res.rng.Equal(r) || res.count != w {
			t.Fatalf("range of %d leaves [%d, %d): %x, want %x", res.count, res.rng.Begin(), res.rng.End(), res.rng.Hashes(), r.Hashes())
		}
		bad := bytes.Clone(tile)
		bad[int(flip)%len(bad)] ^= 1
		if res := check(bad); !errors.Is(res.err, ErrVerification) {
			t.Fatalf("a flipped tile byte %d: %v", int(flip)%len(bad), res.err)
		}
	})
}

// frame is an entry bundle of the given entries (u16 length ‖ entry).
func frame(entries ...string) []byte {
	var b []byte
	for _, e := range entries {
		b = binary.BigEndian.AppendUint16(b, uint16(len(e)))
		b = append(b, e...)
	}
	return b
}
