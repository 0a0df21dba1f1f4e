package log

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/transparency-dev/tessera/api/layout"
)

// TestStaticFileReadsTheStoredBytes: a tile or bundle opened for writeFile
// reads as the file (the path of writers that cannot sendfile, such as
// TLS connections), knows its size, and a missing file or a directory is
// refused (the caller falls back to Tessera's reader, which answers 404).
func TestStaticFileReadsTheStoredBytes(t *testing.T) {
	dir := t.TempDir()
	want := bytes.Repeat([]byte("0123456789abcdef"), 4096) // larger than one read
	if err := os.MkdirAll(filepath.Join(dir, "tile", "0"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "tile", "0", "000"), want, 0o644); err != nil {
		t.Fatal(err)
	}
	o := newStaticOpener(dir, 0)
	f, err := o.open("tile/0/000")
	if err != nil {
		t.Fatal(err)
	}
	if f.Size() != int64(len(want)) {
		t.Errorf("Size %d, want %d", f.Size(), len(want))
	}
	got, err := io.ReadAll(f)
	if err != nil || !bytes.Equal(got, want) {
		t.Fatalf("read %d bytes (%v), want the %d stored", len(got), err, len(want))
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := o.open("tile/0/001"); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a missing tile: %v, want os.ErrNotExist", err)
	}
	if f, err := o.open("tile/0"); err == nil {
		f.Close()
		t.Error("a directory was opened as a tile")
	}
}

// openFDs counts this process's open file descriptors (Linux).
func openFDs(t *testing.T) int {
	t.Helper()
	es, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skip("no /proc/self/fd")
	}
	return len(es)
}

// openFilesMetric is o's cairn_log_read_open_files as /metrics exports it.
func openFilesMetric(t *testing.T, o *staticOpener) float64 {
	t.Helper()
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(o.collector())
	mfs, err := reg.Gather()
	if err != nil || len(mfs) != 1 || mfs[0].GetName() != "cairn_log_read_open_files" {
		t.Fatalf("gathering cairn_log_read_open_files: %v %v", mfs, err)
	}
	return mfs[0].GetMetric()[0].GetGauge().GetValue()
}

// readStatic opens path, reads it whole and closes it.
func readStatic(t *testing.T, o *staticOpener, path string) []byte {
	t.Helper()
	f, err := o.open(path)
	if err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(f)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	return b
}

// TestStaticOpenerKeepsFullFilesOpen: full tiles and bundles stay open
// between answers, each read from its start, up to the bound; partial ones
// never; a file that two answers read at once is opened twice and kept
// once; forget and close release descriptors, and none leaks.
func TestStaticOpenerKeepsFullFilesOpen(t *testing.T) {
	if openFilesLimit() == 0 {
		t.Skip("the read path keeps files open only on Linux")
	}
	dir := t.TempDir()
	files := map[string][]byte{}
	for _, p := range []string{"tile/0/000", "tile/0/001", "tile/0/002", "tile/0/003.p/7", "tile/entries/000", "tile/entries/001"} {
		files[p] = []byte("contents of " + p)
		if err := os.MkdirAll(filepath.Dir(filepath.Join(dir, p)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, p), files[p], 0o644); err != nil {
			t.Fatal(err)
		}
	}
	before := openFDs(t)
	o := newStaticOpener(dir, 2)
	for range 3 {
		if got := readStatic(t, o, "tile/0/000"); !bytes.Equal(got, files["tile/0/000"]) {
			t.Fatalf("tile/0/000 read again from its open file: %q", got)
		}
	}
	if o.cached() != 1 || openFilesMetric(t, o) != 1 {
		t.Fatalf("%d files open after reading one full tile (cairn_log_read_open_files %v), want 1", o.cached(), openFilesMetric(t, o))
	}
	if got := readStatic(t, o, "tile/0/003.p/7"); !bytes.Equal(got, files["tile/0/003.p/7"]) || o.cached() != 1 {
		t.Fatalf("a partial tile: %q, %d open, want it read and not kept", got, o.cached())
	}
	// Two answers at once: each reads the whole file.
	a, err := o.open("tile/0/001")
	if err != nil {
		t.Fatal(err)
	}
	b, err := o.open("tile/0/001")
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range []staticFile{a, b} {
		if got, _ := io.ReadAll(f); !bytes.Equal(got, files["tile/0/001"]) {
			t.Fatalf("tile/0/001 read by two answers at once: %q", got)
		}
	}
	a.Close()
	b.Close()
	if o.cached() != 2 {
		t.Fatalf("%d files open, want 2 (one of the two descriptors of tile/0/001 closed)", o.cached())
	}
	// Full: a new file replaces one.
	readStatic(t, o, "tile/0/002")
	readStatic(t, o, "tile/entries/000")
	if o.cached() != 2 {
		t.Fatalf("%d files open, want the bound 2", o.cached())
	}
	// Retention deleted bundles 0 and 1: neither stays open, and bundle 1,
	// being sent while it was deleted, is not kept when its answer ends.
	readStatic(t, o, "tile/entries/000")
	inUse, err := o.open("tile/entries/001")
	if err != nil {
		t.Fatal(err)
	}
	o.forget([]uint64{0, 1})
	inUse.Close()
	o.mu.Lock()
	_, kept0 := o.idle["tile/entries/000"]
	_, kept1 := o.idle["tile/entries/001"]
	o.mu.Unlock()
	if kept0 || kept1 {
		t.Fatalf("deleted bundles still open: 0 %v, 1 %v", kept0, kept1)
	}
	// After close nothing stays open, and every descriptor was closed.
	readStatic(t, o, "tile/0/000")
	late, err := o.open("tile/0/001")
	if err != nil {
		t.Fatal(err)
	}
	if err := o.close(); err != nil {
		t.Fatal(err)
	}
	late.Close()
	readStatic(t, o, "tile/0/002")
	if o.cached() != 0 {
		t.Fatalf("%d files open after close", o.cached())
	}
	if after := openFDs(t); after != before {
		t.Fatalf("%d descriptors open before, %d after: a leak", before, after)
	}
}

// TestPrunedBundleIsNotServedFromAnOpenFile: a full entry bundle served
// from its file (and so kept open) is refused with 410 once retention puts
// it below the minimum index, and its descriptor is closed when retention
// deletes it; its hash tile, kept open too, is still served.
func TestPrunedBundleIsNotServedFromAnOpenFile(t *testing.T) {
	clock := &testClock{t: time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC)}
	tl := newTestLogWith(t, func(c *Config) {
		c.Now = clock.Now
		c.Retention = []byte("keep 365d\nthen purge\n")
	})
	ctx := context.Background()
	appendBundle(t, tl, "alice", layout.EntryBundleWidth)
	if err := tl.retainer.observe(ctx); err != nil {
		t.Fatal(err)
	}
	stored, err := os.ReadFile(filepath.Join(tl.dir, "tile", "entries", "000"))
	if err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if resp, body := getRaw(t, tl.base, "/tile/entries/000", ""); resp.StatusCode != http.StatusOK || !bytes.Equal(body, stored) {
			t.Fatalf("bundle 0 before pruning: %s, %d bytes", resp.Status, len(body))
		}
		getRaw(t, tl.base, "/tile/0/000", "")
	}
	// Each answer puts its file back after the client has it.
	static := tl.Log.static
	for deadline := time.Now().Add(10 * time.Second); static.cached() != 2; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%d files open after serving a full bundle and tile, want 2", static.cached())
		}
	}
	clock.Add(2 * year)
	deadline := time.Now().Add(60 * time.Second)
	for {
		// Deletion waits for the antispam follower to have read the bundle.
		if err := tl.EvaluateRetention(ctx); err != nil {
			t.Fatal(err)
		}
		if _, err := os.Stat(filepath.Join(tl.dir, "tile", "entries", "000")); errors.Is(err, os.ErrNotExist) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("bundle 0 was not deleted within a minute")
		}
		time.Sleep(100 * time.Millisecond)
	}
	if resp, body := getRaw(t, tl.base, "/tile/entries/000", ""); resp.StatusCode != http.StatusGone {
		t.Fatalf("pruned bundle 0: %s %q, want 410", resp.Status, body)
	}
	static.mu.Lock()
	_, open := static.idle["tile/entries/000"]
	static.mu.Unlock()
	if open {
		t.Fatal("the deleted bundle's descriptor is still open")
	}
	if resp, _ := getRaw(t, tl.base, "/tile/0/000", ""); resp.StatusCode != http.StatusOK {
		t.Fatalf("hash tile 0 after pruning: %s", resp.Status)
	}
}

// TestOpenFilesAreServedWholeAfterPartialAnswers: a kept-open tile is sent
// from its start after answers that left its position elsewhere: a HEAD,
// a client that went away mid-body, and many answers at once.
func TestOpenFilesAreServedWholeAfterPartialAnswers(t *testing.T) {
	tl := newTestLog(t)
	appendBundle(t, tl, "alice", layout.EntryBundleWidth)
	stored, err := os.ReadFile(filepath.Join(tl.dir, "tile", "entries", "000"))
	if err != nil {
		t.Fatal(err)
	}
	url := tl.base + "/tile/entries/000"
	head, err := http.Head(url)
	if err != nil {
		t.Fatal(err)
	}
	head.Body.Close()
	// A client that reads a few bytes and hangs up.
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	req.Header.Set("Accept-Encoding", "identity")
	tr := &http.Transport{DisableKeepAlives: true}
	resp, err := tr.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(resp.Body, make([]byte, 10)); err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	tr.CloseIdleConnections()
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for range 16 {
		wg.Go(func() {
			for range 10 {
				req, _ := http.NewRequest(http.MethodGet, url, nil)
				req.Header.Set("Accept-Encoding", "identity")
				resp, err := http.DefaultTransport.RoundTrip(req)
				if err != nil {
					errs <- err
					return
				}
				body, err := io.ReadAll(resp.Body)
				resp.Body.Close()
				if err != nil || resp.StatusCode != http.StatusOK || !bytes.Equal(body, stored) {
					errs <- fmt.Errorf("%s, %d bytes (%v), want the %d stored", resp.Status, len(body), err, len(stored))
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
}
