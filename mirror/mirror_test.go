package mirror

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cairnlog/cairn/client"
	"github.com/cairnlog/cairn/format/addcheckpoint"
	"github.com/cairnlog/cairn/format/addentries"
	"github.com/cairnlog/cairn/format/checkpoint"
	"github.com/cairnlog/cairn/format/loglist"
	"github.com/cairnlog/cairn/format/policy"
	fnote "github.com/transparency-dev/formats/note"
	"github.com/transparency-dev/tessera/api/layout"
	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

// memLog is a log built with golang.org/x/mod/sumdb/tlog and signed with
// x/mod's note: an implementation independent of Tessera and of Cairn. It
// serves its tiles and bundles as a client.TileSource.
type memLog struct {
	origin   string
	signer   note.Signer
	verifier note.Verifier
	vkey     string
	entries  [][]byte
	hashes   []tlog.Hash
	// bundles caches encoded entry bundles by index and width, as a log
	// serves them from storage (a copy made by fork starts empty).
	bundles *sync.Map // [2]uint64 → []byte
}

func newMemLog(t testing.TB, origin string) *memLog {
	t.Helper()
	skey, vkey, err := note.GenerateKey(rand.Reader, origin)
	if err != nil {
		t.Fatal(err)
	}
	s, _ := note.NewSigner(skey)
	v, _ := note.NewVerifier(vkey)
	return &memLog{origin: origin, signer: s, verifier: v, vkey: vkey, bundles: &sync.Map{}}
}

func (m *memLog) ReadHashes(idx []int64) ([]tlog.Hash, error) {
	out := make([]tlog.Hash, len(idx))
	for i, x := range idx {
		out[i] = m.hashes[x]
	}
	return out, nil
}

func (m *memLog) size() uint64 { return uint64(len(m.entries)) }

func (m *memLog) add(t testing.TB, n int, prefix string) {
	for range n {
		e := fmt.Appendf(nil, "%s entry %d", prefix, len(m.entries))
		hs, err := tlog.StoredHashes(int64(len(m.entries)), e, m)
		if err != nil {
			t.Fatal(err)
		}
		m.hashes = append(m.hashes, hs...)
		m.entries = append(m.entries, e)
	}
}

func (m *memLog) fork() *memLog {
	c := *m
	c.hashes = append([]tlog.Hash(nil), m.hashes...)
	c.entries = append([][]byte(nil), m.entries...)
	c.bundles = &sync.Map{}
	return &c
}

func (m *memLog) checkpointAt(t testing.TB, n uint64) []byte {
	t.Helper()
	b, err := m.signedCheckpoint(n)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func (m *memLog) signedCheckpoint(n uint64) ([]byte, error) {
	root, err := tlog.TreeHash(int64(n), m)
	if err != nil {
		return nil, err
	}
	text := fmt.Sprintf("%s\n%d\n%s\n", m.origin, n, base64.StdEncoding.EncodeToString(root[:]))
	return note.Sign(&note.Note{Text: text}, m.signer)
}

func (m *memLog) ReadCheckpoint(context.Context) ([]byte, error) { return m.signedCheckpoint(m.size()) }

func (m *memLog) ReadTile(_ context.Context, level, index uint64, p uint8) ([]byte, error) {
	w := int(p)
	if w == 0 {
		w = 256
	}
	return tlog.ReadTileData(tlog.Tile{H: 8, L: int(level), N: int64(index), W: w}, m)
}

func (m *memLog) ReadEntryBundle(_ context.Context, index uint64, p uint8) ([]byte, error) {
	w := uint64(p)
	if w == 0 {
		w = 256
	}
	if b, ok := m.bundles.Load([2]uint64{index, w}); ok {
		return b.([]byte), nil
	}
	var b []byte
	for _, e := range m.entries[index*256 : index*256+w] {
		b = binary.BigEndian.AppendUint16(b, uint16(len(e)))
		b = append(b, e...)
	}
	m.bundles.Store([2]uint64{index, w}, b)
	return b, nil
}

func (m *memLog) proof(t testing.TB, old, n uint64) [][]byte {
	if old == 0 || old == n {
		return nil
	}
	p, err := tlog.ProveTree(int64(n), int64(old), m)
	if err != nil {
		t.Fatal(err)
	}
	var out [][]byte
	for _, h := range p {
		out = append(out, append([]byte(nil), h[:]...))
	}
	return out
}

type testMirror struct {
	*Mirror
	skey string
	vkey string
	dir  string
	srv  *httptest.Server
	logs []*memLog
}

func newCosignerKey(t testing.TB, name string) (skey, vkey string) {
	t.Helper()
	skey, vkey, err := note.GenerateKey(rand.Reader, name)
	if err != nil {
		t.Fatal(err)
	}
	if vkey, err = fnote.VKeyToCosignatureV1(vkey); err != nil {
		t.Fatal(err)
	}
	return skey, vkey
}

func startMirror(t testing.TB, skey, vkey, dir string, logs ...*memLog) *testMirror {
	t.Helper()
	return startMirrorWith(t, func(*Config) {}, skey, vkey, dir, logs...)
}

// startMirrorWith starts a mirror whose Config edit may change first.
func startMirrorWith(t testing.TB, edit func(*Config), skey, vkey, dir string, logs ...*memLog) *testMirror {
	t.Helper()
	var ll []loglist.Log
	for _, l := range logs {
		ll = append(ll, loglist.Log{Origin: l.origin, VKey: l.vkey, Verifier: l.verifier})
	}
	cfg := Config{PrivateKeys: []string{skey}, Logs: ll, Dir: dir, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
	edit(&cfg)
	m, err := New(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(m.Close)
	srv := httptest.NewServer(m.Handler())
	t.Cleanup(srv.Close)
	return &testMirror{Mirror: m, skey: skey, vkey: vkey, dir: dir, srv: srv, logs: logs}
}

func newTestMirror(t testing.TB, logs ...*memLog) *testMirror {
	skey, vkey := newCosignerKey(t, "mirror.test/m1")
	return startMirror(t, skey, vkey, t.TempDir(), logs...)
}

func (tm *testMirror) verifier(t testing.TB) note.Verifier {
	v, err := fnote.NewVerifierForCosignatureV1(tm.vkey)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func (tm *testMirror) pusher(t testing.TB) *client.Mirror {
	p, err := client.NewMirror(tm.srv.URL, []note.Verifier{tm.verifier(t)}, nil, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func (tm *testMirror) post(t testing.TB, path string, body []byte) (int, http.Header, []byte) {
	t.Helper()
	resp, err := http.Post(tm.srv.URL+path, "application/octet-stream", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, b
}

func (tm *testMirror) addCheckpoint(t testing.TB, l *memLog, old, n uint64) (int, []byte) {
	code, _, b := tm.post(t, "/add-checkpoint", addcheckpoint.Request{Old: old, Proof: l.proof(t, old, n), Checkpoint: l.checkpointAt(t, n)}.Marshal())
	return code, b
}

// entriesBody builds an add-entries body for [start, end) with at most
// maxPkgs packages, from the log's own hashes.
func entriesBody(t testing.TB, l *memLog, start, end uint64, maxPkgs int) []byte {
	t.Helper()
	b := addentries.Header{Origin: l.origin, UploadStart: start, UploadEnd: end}.Marshal()
	n := 0
	for sp := range addentries.Spans(start, end) {
		if n++; n > maxPkgs {
			break
		}
		p, err := addentries.Proof(sp.SubtreeStart, sp.End, end, func(r addentries.Range) ([]byte, error) {
			return addentries.RangeHash(r, func(level, index uint64) ([]byte, error) {
				h, err := l.ReadHashes([]int64{tlog.StoredHashIndex(int(level), int64(index))})
				return h[0][:], err
			})
		})
		if err != nil {
			t.Fatal(err)
		}
		if b, err = addentries.AppendPackage(b, l.entries[sp.Start:sp.End], p); err != nil {
			t.Fatal(err)
		}
	}
	return b
}

// httpTiles reads a mirror's tiles over HTTP for x/mod's tlog.TileHashReader.
type httpTiles struct {
	t    testing.TB
	base string
}

func (h httpTiles) Height() int { return 8 }

func (h httpTiles) ReadTiles(tiles []tlog.Tile) ([][]byte, error) {
	var out [][]byte
	for _, tile := range tiles {
		resp, err := http.Get(h.base + "/" + layout.TilePath(uint64(tile.L), uint64(tile.N), uint8(tile.W%256)))
		if err != nil {
			return nil, err
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			return nil, fmt.Errorf("tile %v: %d", tile, resp.StatusCode)
		}
		out = append(out, b)
	}
	return out, nil
}

func (h httpTiles) SaveTiles([]tlog.Tile, [][]byte) {}

func get(t testing.TB, url string) (int, http.Header, []byte) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, b
}

// checkServed verifies the mirror's copy of l with x/mod alone: the
// checkpoint carries the log's signature and the mirror's cosignature,
// every tile verifies against its root, and every bundle entry hashes to
// its leaf.
func checkServed(t *testing.T, tm *testMirror, l *memLog, want uint64) {
	t.Helper()
	checkServedFrom(t, tm, l, want, 0)
}

// checkServedFrom is checkServed for a mirror whose minimum index is from:
// the entries from there on are served and verify.
func checkServedFrom(t *testing.T, tm *testMirror, l *memLog, want, from uint64) {
	t.Helper()
	base := tm.srv.URL + "/" + OriginID(l.origin)
	code, h, cp := get(t, base+"/checkpoint")
	if code != 200 || h.Get("Content-Type") != "text/plain; charset=utf-8" || h.Get("Cache-Control") != "no-cache" {
		t.Fatalf("checkpoint: %d %v", code, h)
	}
	n, err := note.Open(cp, note.VerifierList(l.verifier, tm.verifier(t)))
	if err != nil || len(n.Sigs) != 2 {
		t.Fatalf("mirror checkpoint does not carry both signatures: %v\n%s", err, cp)
	}
	c, err := checkpoint.Parse([]byte(n.Text))
	if err != nil {
		t.Fatal(err)
	}
	tree := tlog.Tree{N: int64(c.Size), Hash: tlog.Hash(c.Root)}
	if uint64(tree.N) != want {
		t.Fatalf("mirror checkpoint size %d, want %d", tree.N, want)
	}
	hr := tlog.TileHashReader(tree, httpTiles{t, base})
	for k := from / 256; k*256 < want; k++ {
		w := min(256, want-k*256)
		code, h, b := get(t, base+"/"+layout.EntriesPath(k, uint8(w%256)))
		if code != 200 || h.Get("Cache-Control") != "max-age=31536000, immutable" || h.Get("Content-Type") != "application/octet-stream" {
			t.Fatalf("bundle %d: %d %v", k, code, h)
		}
		idx := make([]int64, 0, w)
		for i := range w {
			idx = append(idx, tlog.StoredHashIndex(0, int64(k*256+i)))
		}
		hashes, err := hr.ReadHashes(idx)
		if err != nil {
			t.Fatalf("x/mod tlog rejects the mirror's tiles: %v", err)
		}
		for i := range w {
			l := binary.BigEndian.Uint16(b)
			if tlog.RecordHash(b[2:2+l]) != hashes[i] {
				t.Fatalf("entry %d in the bundle does not hash to its leaf", k*256+i)
			}
			b = b[2+l:]
		}
	}
}

func TestPushedLogIsServedAndVerifiesWithXMod(t *testing.T) {
	l := newMemLog(t, "example.com/log")
	tm := newTestMirror(t, l)
	p := tm.pusher(t)
	ctx := context.Background()
	for _, step := range []int{1, 299, 700, 9000} {
		l.add(t, step, "a")
		res, err := p.Push(ctx, l, l.verifier, l.checkpointAt(t, l.size()))
		if err != nil {
			t.Fatalf("push to %d: %v", l.size(), err)
		}
		if res.Size != l.size() {
			t.Fatalf("pushed to %d, want %d", res.Size, l.size())
		}
		checkServed(t, tm, l, l.size())
	}
	// A restarted mirror serves the same and accepts more.
	tm2 := startMirror(t, tm.skey, tm.vkey, tm.dir, l)
	checkServed(t, tm2, l, l.size())
	l.add(t, 10, "b")
	if _, err := tm2.pusher(t).Push(ctx, l, l.verifier, l.checkpointAt(t, l.size())); err != nil {
		t.Fatal(err)
	}
	checkServed(t, tm2, l, l.size())
}

func TestAddEntriesStatusCodes(t *testing.T) {
	l := newMemLog(t, "example.com/log")
	other := newMemLog(t, "example.com/other")
	tm := newTestMirror(t, l, other)
	l.add(t, 600, "a")

	var h http.Header
	code, _, b := tm.post(t, "/add-entries", entriesBody(t, newMemLog(t, "example.com/unknown"), 0, 0, 32))
	if code != 404 {
		t.Fatalf("unknown origin: %d %s", code, b)
	}
	if code, _, b = tm.post(t, "/add-entries", entriesBody(t, l, 0, 600, 32)); code != 422 {
		t.Fatalf("no pending checkpoint: %d %s", code, b)
	}
	if code, b := tm.addCheckpoint(t, l, 0, 600); code != 200 || len(b) != 0 {
		t.Fatalf("add-checkpoint: %d %q (want 200 and no cosignature)", code, b)
	}
	info := func(h http.Header, b []byte) addentries.MirrorInfo {
		t.Helper()
		if h.Get("Content-Type") != addentries.MediaTypeMirrorInfo {
			t.Fatalf("Content-Type %q", h.Get("Content-Type"))
		}
		i, err := addentries.ParseMirrorInfo(b)
		if err != nil {
			t.Fatal(err)
		}
		return i
	}
	// upload_end not a pending size: 409 naming the pending size.
	code, h, b = tm.post(t, "/add-entries", entriesBody(t, l, 0, 500, 32))
	if code != 409 || info(h, b).Size != 600 || info(h, b).Next != 0 {
		t.Fatalf("unknown upload_end: %d %s", code, b)
	}
	// upload_start past the next entry: 409.
	code, h, b = tm.post(t, "/add-entries", entriesBody(t, l, 300, 600, 32))
	if code != 409 || info(h, b).Next != 0 || info(h, b).Size != 600 {
		t.Fatalf("start past next: %d %s", code, b)
	}
	// The first package cut short: 400, nothing stored.
	full := entriesBody(t, l, 0, 600, 32)
	hdr := len(addentries.Header{Origin: l.origin, UploadEnd: 600}.Marshal())
	if code, _, b = tm.post(t, "/add-entries", full[:hdr+100]); code != 400 {
		t.Fatalf("truncated first package: %d %s", code, b)
	}
	if code, _, b = tm.post(t, "/add-entries", []byte{0, 200, 'x'}); code != 400 {
		t.Fatalf("malformed header: %d %s", code, b)
	}
	// A wrong entry: 422.
	bad := newMemLog(t, "example.com/log")
	bad.signer, bad.verifier, bad.vkey = l.signer, l.verifier, l.vkey
	bad.add(t, 600, "forged")
	if code, _, b = tm.post(t, "/add-entries", entriesBody(t, bad, 0, 600, 32)); code != 422 {
		t.Fatalf("entries not in the checkpoint: %d %s", code, b)
	}
	// One package, then the body ends: 202 with the next entry.
	code, h, b = tm.post(t, "/add-entries", entriesBody(t, l, 0, 600, 1))
	if code != 202 || info(h, b).Next != 256 || info(h, b).Size != 600 {
		t.Fatalf("partial upload: %d %s", code, b)
	}
	// Too many re-sent entries: 409.
	tm.maxExcess = 100
	if code, _, b = tm.post(t, "/add-entries", entriesBody(t, l, 0, 600, 32)); code != 409 {
		t.Fatalf("excess entries: %d %s", code, b)
	}
	tm.maxExcess = DefaultMaxExcessEntries
	// The rest, from mid-bundle: 200 with the mirror's cosignature.
	code, _, b = tm.post(t, "/add-entries", entriesBody(t, l, 256, 600, 32))
	if code != 200 {
		t.Fatalf("rest: %d %s", code, b)
	}
	if _, err := note.Open(append([]byte(strings.SplitN(string(l.checkpointAt(t, 600)), "\n\n", 2)[0]+"\n\n"), b...), note.VerifierList(tm.verifier(t))); err != nil {
		t.Fatalf("200 body is not the mirror's cosignature: %v\n%s", err, b)
	}
	// Re-sending an older pending size after the mirror moved past it: 409.
	l.add(t, 10, "b")
	if code, b := tm.addCheckpoint(t, l, 600, 610); code != 200 {
		t.Fatalf("add-checkpoint 610: %d %s", code, b)
	}
	if code, _, b = tm.post(t, "/add-entries", entriesBody(t, l, 600, 610, 32)); code != 200 {
		t.Fatalf("to 610: %d %s", code, b)
	}
	if code, h, b = tm.post(t, "/add-entries", entriesBody(t, l, 600, 600, 32)); code != 409 || info(h, b).Size != 610 {
		t.Fatalf("upload_end below the mirror checkpoint: %d %s", code, b)
	}
	// gzip bodies are accepted (client.Mirror sends them; checked above too).
	checkServed(t, tm, l, 610)
	if code, _, b = tm.post(t, "/add-entries", entriesBody(t, other, 0, 0, 1)); code != 422 {
		t.Fatalf("other log without pending: %d %s", code, b)
	}
}

func TestAddCheckpointStatusCodesAndForkEvidence(t *testing.T) {
	l := newMemLog(t, "example.com/log")
	tm := newTestMirror(t, l)
	l.add(t, 10, "a")
	if code, b := tm.addCheckpoint(t, l, 0, 10); code != 200 {
		t.Fatalf("first: %d %s", code, b)
	}
	code, h, b := tm.post(t, "/add-checkpoint", addcheckpoint.Request{Old: 0, Checkpoint: l.checkpointAt(t, 10)}.Marshal())
	if code != 409 || h.Get("Content-Type") != "text/x.tlog.size" || string(b) != "10\n" {
		t.Fatalf("stale old: %d %q %q", code, h.Get("Content-Type"), b)
	}
	if code, _, b = tm.post(t, "/add-checkpoint", []byte("old x\n\n")); code != 400 {
		t.Fatalf("malformed: %d %s", code, b)
	}
	if code, _, b = tm.post(t, "/add-checkpoint", addcheckpoint.Request{Old: 11, Checkpoint: l.checkpointAt(t, 10)}.Marshal()); code != 400 {
		t.Fatalf("old > size: %d %s", code, b)
	}
	stranger := newMemLog(t, "example.com/stranger")
	stranger.add(t, 1, "s")
	if code, _ := tm.addCheckpoint(t, stranger, 0, 1); code != 404 {
		t.Fatalf("unknown origin: %d", code)
	}
	impostor := newMemLog(t, "example.com/log")
	impostor.add(t, 12, "i")
	if code, _ := tm.addCheckpoint(t, impostor, 10, 12); code != 403 {
		t.Fatalf("wrong key: %d", code)
	}
	// A fork: same size, different root; and a bad consistency proof.
	fork := l.fork()
	fork.entries, fork.hashes = nil, nil
	fork.add(t, 12, "fork")
	if code, _, b := tm.post(t, "/add-checkpoint", addcheckpoint.Request{Old: 10, Checkpoint: fork.checkpointAt(t, 10)}.Marshal()); code != 422 {
		t.Fatalf("same size, other root: %d %s", code, b)
	}
	if code, b := tm.addCheckpoint(t, fork, 10, 12); code != 422 {
		t.Fatalf("inconsistent: %d %s", code, b)
	}
	evs, err := ReadEvidence(tm.dir)
	if err != nil || len(evs) != 2 {
		t.Fatalf("evidence: %d, %v", len(evs), err)
	}
	// The pending checkpoint did not move.
	l.add(t, 5, "a")
	if code, b := tm.addCheckpoint(t, l, 10, 15); code != 200 {
		t.Fatalf("the real log continues: %d %s", code, b)
	}
}

// A client that stops sending mid-body must not hold up another client, and
// the mirror checkpoint never moves backwards.
func TestStalledUploadBlocksNobodyAndCheckpointNeverRewinds(t *testing.T) {
	l := newMemLog(t, "example.com/log")
	tm := newTestMirror(t, l)
	l.add(t, 1000, "a")
	if code, b := tm.addCheckpoint(t, l, 0, 1000); code != 200 {
		t.Fatal(code, string(b))
	}
	body := entriesBody(t, l, 0, 1000, 32)
	pr, pw := io.Pipe()
	var wg sync.WaitGroup
	wg.Add(1)
	var stalledCode int
	go func() {
		defer wg.Done()
		resp, err := http.Post(tm.srv.URL+"/add-entries", "application/octet-stream", pr)
		if err != nil {
			return
		}
		stalledCode = resp.StatusCode
		resp.Body.Close()
	}()
	hdr := len(addentries.Header{Origin: l.origin, UploadEnd: 1000}.Marshal())
	if _, err := pw.Write(body[:hdr+300]); err != nil {
		t.Fatal(err)
	}
	// Another client completes the upload while the first one stalls.
	done := make(chan error, 1)
	go func() {
		_, err := tm.pusher(t).Push(context.Background(), l, l.verifier, l.checkpointAt(t, 1000))
		done <- err
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(2 * time.Minute):
		t.Fatal("a stalled upload blocked another client")
	}
	// The mirror moves on to 1200; the stalled client then finishes its
	// upload to 1000: its entries are skipped, and the checkpoint stays.
	l.add(t, 200, "b")
	if _, err := tm.pusher(t).Push(context.Background(), l, l.verifier, l.checkpointAt(t, 1200)); err != nil {
		t.Fatal(err)
	}
	_, _ = pw.Write(body[hdr+300:])
	pw.Close()
	wg.Wait()
	if stalledCode != 409 {
		t.Fatalf("an upload that ended below the mirror checkpoint got %d, want 409", stalledCode)
	}
	checkServed(t, tm, l, 1200)
}

// A mirror killed mid-upload resumes: entries it stored are kept, the rest
// are re-sent, and it never cosigns a size whose entries it had not stored.
func TestRestartMidUploadResumes(t *testing.T) {
	l := newMemLog(t, "example.com/log")
	tm := newTestMirror(t, l)
	l.add(t, 3000, "a")
	if code, b := tm.addCheckpoint(t, l, 0, 3000); code != 200 {
		t.Fatal(code, string(b))
	}
	if code, _, b := tm.post(t, "/add-entries", entriesBody(t, l, 0, 3000, 5)); code != 202 {
		t.Fatal(code, string(b))
	}
	if code, _, _ := get(t, tm.srv.URL+"/"+OriginID(l.origin)+"/checkpoint"); code != 404 {
		t.Fatalf("a checkpoint is served before any commit: %d", code)
	}
	tm.srv.Close()
	tm.Close()
	tm2 := startMirror(t, tm.skey, tm.vkey, tm.dir, l)
	res, err := tm2.pusher(t).Push(context.Background(), l, l.verifier, l.checkpointAt(t, 3000))
	if err != nil {
		t.Fatal(err)
	}
	if res.Size != 3000 {
		t.Fatalf("size %d", res.Size)
	}
	checkServed(t, tm2, l, 3000)
	if _, err := os.Stat(filepath.Join(tm.dir, OriginID(l.origin), "pending.json")); err != nil {
		t.Fatal(err)
	}
}

// serveMemLog serves a memLog over tlog-tiles HTTP (the log's own read path).
func serveMemLog(t testing.TB, l *memLog) *httptest.Server {
	return serveMemLogWithMinimum(t, l, 0)
}

// serveMemLogWithMinimum also answers GET /minimum-index when min > 0 (a log
// with retention; one without answers 404).
func serveMemLogWithMinimum(t testing.TB, l *memLog, min uint64) *httptest.Server {
	mux := http.NewServeMux()
	if min > 0 {
		mux.HandleFunc("GET /minimum-index", func(w http.ResponseWriter, r *http.Request) { fmt.Fprintf(w, "%d\n", min) })
	}
	mux.HandleFunc("GET /checkpoint", func(w http.ResponseWriter, r *http.Request) {
		b, _ := l.ReadCheckpoint(r.Context())
		_, _ = w.Write(b)
	})
	mux.HandleFunc("GET /tile/entries/{path...}", func(w http.ResponseWriter, r *http.Request) {
		i, p, err := layout.ParseTileIndexPartial(r.PathValue("path"))
		if err != nil || (i*256+uint64(p) > l.size()) || (p == 0 && (i+1)*256 > l.size()) {
			http.NotFound(w, r)
			return
		}
		if min > 0 && (i+1)*256 <= min {
			http.Error(w, "pruned", http.StatusNotFound) // tlog-tiles pruning
			return
		}
		b, _ := l.ReadEntryBundle(r.Context(), i, p)
		_, _ = w.Write(b)
	})
	mux.HandleFunc("GET /tile/{level}/{path...}", func(w http.ResponseWriter, r *http.Request) {
		lv, i, p, err := layout.ParseTileLevelIndexPartial(r.PathValue("level"), r.PathValue("path"))
		if err != nil {
			http.NotFound(w, r)
			return
		}
		b, err := l.ReadTile(r.Context(), lv, i, p)
		if err != nil {
			http.NotFound(w, r)
			return
		}
		_, _ = w.Write(b)
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv
}

func TestClientsReadVerifyAndAuditFromAMirrorWhenTheLogIsGone(t *testing.T) {
	ctx := context.Background()
	l := newMemLog(t, "example.com/log")
	l.add(t, 1500, "a")
	logSrv := serveMemLog(t, l)
	tm := newTestMirror(t, l)
	if _, err := tm.pusher(t).Push(ctx, l, l.verifier, l.checkpointAt(t, l.size())); err != nil {
		t.Fatal(err)
	}
	p, err := policy.Parse([]byte(fmt.Sprintf("log %s\nwitness m1 %s\nquorum none\n", l.vkey, tm.vkey)))
	if err != nil {
		t.Fatal(err)
	}
	mirrorURL := tm.srv.URL + "/" + OriginID(l.origin)
	rl, err := client.NewLogFromURLs([]string{logSrv.URL, mirrorURL}, p, client.HTTPOptions{})
	if err != nil {
		t.Fatal(err)
	}
	checks, err := rl.CheckSources(ctx)
	if err != nil || len(checks) != 2 || checks[1].Err != "" {
		t.Fatalf("the mirror's copy is not consistent with the log's: %+v %v", checks, err)
	}
	// Region A goes dark: the log's URL stops answering.
	logSrv.Close()
	v, err := rl.Checkpoint(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := v.Cosigned["m1"]; !ok || v.Checkpoint.Size != 1500 {
		t.Fatalf("checkpoint from the mirror: size %d, cosigned %v", v.Checkpoint.Size, v.Cosigned)
	}
	for _, i := range []uint64{0, 255, 256, 1499} {
		e, err := rl.Entry(ctx, v, i)
		if err != nil || !bytes.Equal(e, l.entries[i]) {
			t.Fatalf("entry %d from the mirror: %q %v", i, e, err)
		}
	}
	res, err := rl.Audit(ctx, nil, client.AuditOptions{})
	if err != nil || res.Records != 1500 {
		t.Fatalf("audit from the mirror: %+v %v", res, err)
	}
}

// A mirror that would need entries the log pruned (below its minimum index)
// is told so, instead of failing on a missing bundle.
func TestPushBelowTheLogsMinimumIndexSaysSo(t *testing.T) {
	l := newMemLog(t, "example.com/log")
	l.add(t, 1000, "a")
	srv := serveMemLogWithMinimum(t, l, 512)
	p, err := policy.Parse([]byte("log " + l.vkey + "\nquorum none\n"))
	if err != nil {
		t.Fatal(err)
	}
	rl, err := client.NewLog(srv.URL, p, client.HTTPOptions{})
	if err != nil {
		t.Fatal(err)
	}
	tm := newTestMirror(t, l)
	_, err = tm.pusher(t).Push(context.Background(), rl, l.verifier, l.checkpointAt(t, 1000))
	if err == nil || !strings.Contains(err.Error(), "minimum index 512") {
		t.Fatalf("push below the minimum index: %v", err)
	}
	// Without retention (404) the same push goes through.
	rl2, _ := client.NewLog(serveMemLog(t, l).URL, p, client.HTTPOptions{})
	if _, err := tm.pusher(t).Push(context.Background(), rl2, l.verifier, l.checkpointAt(t, 1000)); err != nil {
		t.Fatal(err)
	}
}

// The mirror relays a witness cosignature only when it knows the witness's
// key and the cosignature verifies: a forged line by a known witness, or any
// line by an unknown key, is dropped, so the served checkpoint never carries
// a line that would make a client reject it.
func TestMirrorRelaysOnlyCosignaturesThatVerify(t *testing.T) {
	l := newMemLog(t, "example.com/log")
	known, knownV := newCosignerKey(t, "witness.test/known")
	forged, forgedV := newCosignerKey(t, "witness.test/forged")
	stranger, _ := newCosignerKey(t, "witness.test/stranger")
	var vs []note.Verifier
	for _, k := range []string{knownV, forgedV} {
		v, err := fnote.NewVerifierForCosignatureV1(k)
		if err != nil {
			t.Fatal(err)
		}
		vs = append(vs, v)
	}
	skey, vkey := newCosignerKey(t, "mirror.test/m1")
	tm := startMirrorWith(t, func(c *Config) { c.Witnesses = vs }, skey, vkey, t.TempDir(), l)

	l.add(t, 300, "a")
	cp := l.checkpointAt(t, l.size())
	text, _, _ := bytes.Cut(cp, []byte("\n\n"))
	var lines []string
	for _, k := range []string{known, forged, stranger} {
		s, err := fnote.NewSignerForCosignatureV1(k)
		if err != nil {
			t.Fatal(err)
		}
		signed, err := note.Sign(&note.Note{Text: string(text) + "\n"}, s)
		if err != nil {
			t.Fatal(err)
		}
		lines = append(lines, string(signed[len(text)+2:]))
	}
	// The forged line names the known key "forged" but carries the
	// signature bytes of another cosignature.
	fsig := strings.Fields(lines[1])
	ksig := strings.Fields(lines[0])
	kb, _ := base64.StdEncoding.DecodeString(ksig[2])
	fb, _ := base64.StdEncoding.DecodeString(fsig[2])
	lines[1] = fmt.Sprintf("— %s %s\n", fsig[1], base64.StdEncoding.EncodeToString(append(fb[:4:4], kb[4:]...)))
	cosigned := append(append([]byte{}, cp...), strings.Join(lines, "")...)

	res, err := tm.pusher(t).Push(context.Background(), l, l.verifier, cosigned)
	if err != nil || res.Size != l.size() {
		t.Fatalf("push: %+v %v", res, err)
	}
	_, _, served := get(t, tm.srv.URL+"/"+OriginID(l.origin)+"/checkpoint")
	// A client that knows every key, the forged one's included, accepts it.
	n, err := note.Open(served, note.VerifierList(l.verifier, vs[0], vs[1], tm.verifier(t)))
	if err != nil {
		t.Fatalf("a client knowing every key rejects the mirror checkpoint: %v\n%s", err, served)
	}
	var names []string
	for _, s := range n.Sigs {
		names = append(names, s.Name)
	}
	if got := strings.Join(names, " "); got != "example.com/log witness.test/known mirror.test/m1" || len(n.UnverifiedSigs) != 0 {
		t.Fatalf("served signatures %q (+%d unverified), want the log's, the known witness's and the mirror's\n%s", got, len(n.UnverifiedSigs), served)
	}
	_, _, metrics := get(t, tm.srv.URL+"/metrics")
	if !strings.Contains(string(metrics), `cairn_mirror_dropped_cosignatures_total{origin="example.com/log"}`) {
		t.Fatalf("no dropped-cosignature metric:\n%s", metrics)
	}
}

// A mirror configured to start at a log's minimum index (rounded down to a
// bundle: 1100 → 1024) reads the tree left
// of it from the log once (verified against a checkpoint), then stores and
// cosigns everything from there: the entries it serves verify with x/mod,
// the pruned ones are 404, and it keeps going after a restart.
func TestMirrorStartsAtTheLogsMinimumIndex(t *testing.T) {
	l := newMemLog(t, "example.com/log")
	l.add(t, 3000, "a")
	srv := serveMemLogWithMinimum(t, l, 1024)
	p, err := policy.Parse([]byte("log " + l.vkey + "\nquorum none\n"))
	if err != nil {
		t.Fatal(err)
	}
	src, err := client.NewLog(srv.URL, p, client.HTTPOptions{})
	if err != nil {
		t.Fatal(err)
	}
	skey, vkey := newCosignerKey(t, "mirror.test/m1")
	seeded := func(c *Config) { c.Seeds = map[string]Seed{l.origin: {MinimumIndex: 1100, URL: srv.URL}} }
	tm := startMirrorWith(t, seeded, skey, vkey, t.TempDir(), l)
	ctx := context.Background()
	res, err := tm.pusher(t).Push(ctx, src, l.verifier, l.checkpointAt(t, l.size()))
	if err != nil || res.Size != 3000 || res.Entries != 3000-1024 {
		t.Fatalf("push from the minimum index: %+v %v", res, err)
	}
	checkServedFrom(t, tm, l, 3000, 1024)
	base := tm.srv.URL + "/" + OriginID(l.origin)
	if code, _, b := get(t, base+"/minimum-index"); code != 200 || string(b) != "1024\n" {
		t.Errorf("minimum-index: %d %q, want 1024", code, b)
	}
	for _, path := range []string{"/tile/entries/000", "/tile/entries/003", "/tile/0/000", "/tile/0/003"} {
		if code, _, _ := get(t, base+path); code != 404 {
			t.Errorf("%s below the minimum index: %d, want 404", path, code)
		}
	}
	l.add(t, 70000, "b") // across a level-1 tile boundary
	if _, err := tm.pusher(t).Push(ctx, src, l.verifier, l.checkpointAt(t, l.size())); err != nil {
		t.Fatal(err)
	}
	checkServedFrom(t, tm, l, l.size(), 1024)

	tm.srv.Close()
	tm.Close()
	tm2 := startMirrorWith(t, seeded, skey, vkey, tm.dir, l)
	l.add(t, 10, "c")
	if _, err := tm2.pusher(t).Push(ctx, src, l.verifier, l.checkpointAt(t, l.size())); err != nil {
		t.Fatal(err)
	}
	checkServedFrom(t, tm2, l, l.size(), 1024)
}
