package log

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cairnlog/cairn/format/receipt"
	"github.com/cairnlog/cairn/format/record"
	cairnv1 "github.com/cairnlog/cairn/proto/cairn/v1"
	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// testLog is a real log on loopback ports over a temporary POSIX directory.
type testLog struct {
	*Log
	dir    string
	skey   string
	vkey   string
	cancel context.CancelFunc
	done   chan error
	conn   *grpc.ClientConn
	api    cairnv1.LogClient
	base   string
}

const testOrigin = "example.test/cairn"

func newKey(t testing.TB, name string) (skey, vkey string) {
	t.Helper()
	skey, vkey, err := note.GenerateKey(rand.Reader, name)
	if err != nil {
		t.Fatal(err)
	}
	return skey, vkey
}

func testConfig(dir, skey string) Config {
	return Config{
		Origin:             testOrigin,
		PrivateKey:         skey,
		Storage:            "posix:" + dir,
		HTTPAddr:           "127.0.0.1:0",
		GRPCAddr:           "127.0.0.1:0",
		CheckpointInterval: 100 * time.Millisecond,
		BatchMaxAge:        20 * time.Millisecond,
		InsecurePlaintext:  true,
		Logger:             slog.New(slog.NewTextHandler(io.Discard, nil)),
	}
}

func startLog(t testing.TB, cfg Config) *testLog {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	l, err := New(ctx, cfg)
	if err != nil {
		cancel()
		t.Fatalf("New: %v", err)
	}
	tl := &testLog{Log: l, dir: strings.TrimPrefix(cfg.Storage, "posix:"), skey: cfg.PrivateKey, cancel: cancel, done: make(chan error, 1)}
	go func() { tl.done <- l.Run(ctx) }()
	tl.conn, err = grpc.NewClient(l.GRPCAddr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	tl.api = cairnv1.NewLogClient(tl.conn)
	tl.base = "http://" + l.HTTPAddr()
	t.Cleanup(func() { tl.stop(t) })
	return tl
}

// stop drains the log and returns Run's result (once).
func (tl *testLog) stop(t testing.TB) error {
	if tl.cancel == nil {
		return nil
	}
	tl.cancel()
	tl.cancel = nil
	tl.conn.Close()
	select {
	case err := <-tl.done:
		return err
	case <-time.After(90 * time.Second):
		t.Fatal("log did not shut down within 90s")
		return nil
	}
}

func newTestLog(t testing.TB) *testLog { return newTestLogWith(t, nil) }

// newTestLogWith starts a log whose configuration mod may change.
func newTestLogWith(t testing.TB, mod func(*Config)) *testLog {
	t.Helper()
	skey, vkey := newKey(t, testOrigin)
	cfg := testConfig(t.TempDir(), skey)
	if mod != nil {
		mod(&cfg)
	}
	tl := startLog(t, cfg)
	tl.vkey = vkey
	return tl
}

// forEachDriver runs f on a fresh log per storage driver: posix, and
// mysql+s3 on a MariaDB and a MinIO of the test's own (skipped where they
// are not installed, unless CAIRN_REQUIRE_HA is set).
func forEachDriver(t *testing.T, f func(t *testing.T, tl *testLog)) {
	t.Run("posix", func(t *testing.T) { f(t, newTestLog(t)) })
	t.Run("mysql+s3", func(t *testing.T) {
		aws := testEngines(t)
		f(t, newTestLogWith(t, func(c *Config) {
			c.Storage, c.AWS, c.CheckpointInterval = "mysql+s3", aws, time.Second
		}))
	})
}

func (tl *testLog) get(t testing.TB, path string) []byte {
	t.Helper()
	resp, err := http.Get(tl.base + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s: %s", path, resp.Status, b)
	}
	return b
}

// waitForSize polls /checkpoint until it commits to at least size entries and
// returns the checkpoint, verified with x/mod's note package.
func (tl *testLog) waitForSize(t testing.TB, vkey string, size int64) ([]byte, tlog.Tree) {
	t.Helper()
	v, err := note.NewVerifier(vkey)
	if err != nil {
		t.Fatal(err)
	}
	var b []byte
	var tree tlog.Tree
	eventually(t, 60*time.Second, func() error {
		resp, err := http.Get(tl.base + "/checkpoint")
		if err != nil {
			return err
		}
		b, _ = io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("GET /checkpoint: %s", resp.Status)
		}
		n, err := note.Open(b, note.VerifierList(v))
		if err != nil {
			t.Fatalf("checkpoint does not verify with x/mod note: %v\n%s", err, b)
		}
		if tree = parseTree(t, n.Text); tree.N < size {
			return fmt.Errorf("checkpoint size %d, want ≥ %d", tree.N, size)
		}
		return nil
	})
	return b, tree
}

// eventually polls cond until it returns nil and fails the test with cond's
// last error once within has passed.
func eventually(t testing.TB, within time.Duration, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(within)
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("not within %v: %v", within, err)
		}
		<-tick.C
	}
}

// parseTree parses checkpoint text strictly, independently of Cairn's code.
func parseTree(t testing.TB, text string) tlog.Tree {
	t.Helper()
	lines := strings.Split(text, "\n")
	if len(lines) != 4 || lines[0] != testOrigin || lines[3] != "" {
		t.Fatalf("checkpoint text is not origin/size/root: %q", text)
	}
	n, err := strconv.ParseInt(lines[1], 10, 64)
	if err != nil || strconv.FormatInt(n, 10) != lines[1] {
		t.Fatalf("bad size line %q", lines[1])
	}
	h, err := tlog.ParseHash(lines[2])
	if err != nil {
		t.Fatalf("bad root line %q", lines[2])
	}
	return tlog.Tree{N: n, Hash: h}
}

func appendGRPC(t testing.TB, api cairnv1.LogClient, payload string) *cairnv1.AppendResponse {
	t.Helper()
	resp, err := api.Append(context.Background(), &cairnv1.AppendRequest{
		Payload:             []byte(payload),
		ContentType:         "text/plain",
		IdempotencyKey:      payload,
		TimestampUnixMillis: uint64(time.Now().UnixMilli()),
	})
	if err != nil {
		t.Fatalf("Append(%q): %v", payload, err)
	}
	return resp
}

func postAdd(t testing.TB, base string, body []byte, header http.Header) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, base+"/add", bytes.NewReader(body))
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// tileReader serves x/mod tlog tiles from the log's tlog-tiles HTTP paths
// (tlog-tiles drops the tile height from sumdb's tile/8/L/N path).
type tileReader struct {
	t  testing.TB
	tl *testLog
}

func (r tileReader) Height() int { return 8 }

func (r tileReader) ReadTiles(tiles []tlog.Tile) ([][]byte, error) {
	out := make([][]byte, len(tiles))
	for i, tile := range tiles {
		out[i] = r.tl.get(r.t, "/"+strings.Replace(tile.Path(), "tile/8/", "tile/", 1))
	}
	return out, nil
}

func (r tileReader) SaveTiles([]tlog.Tile, [][]byte) {}

// verifyWithXMod checks the whole published tree with golang.org/x/mod/sumdb/tlog:
// the root recomputed from the served tiles matches the checkpoint, and every
// leaf in the entry bundles hashes to its level-0 tile hash.
func verifyWithXMod(t testing.TB, tl *testLog, tree tlog.Tree) [][]byte {
	t.Helper()
	hr := tlog.TileHashReader(tree, tileReader{t, tl})
	root, err := tlog.TreeHash(tree.N, hr)
	if err != nil {
		t.Fatalf("x/mod tlog.TreeHash over served tiles: %v", err)
	}
	if root != tree.Hash {
		t.Fatalf("root from tiles %v != checkpoint root %v", root, tree.Hash)
	}
	var leaves [][]byte
	for n := int64(0); n*256 < tree.N; n++ {
		w := min(tree.N-n*256, 256)
		path := fmt.Sprintf("/tile/entries/%03d", n)
		if w < 256 {
			path += fmt.Sprintf(".p/%d", w)
		}
		b := tl.get(t, path)
		for len(b) > 0 {
			l := int(b[0])<<8 | int(b[1])
			leaves = append(leaves, b[2:2+l])
			b = b[2+l:]
		}
	}
	if int64(len(leaves)) != tree.N {
		t.Fatalf("entry bundles hold %d entries, tree has %d", len(leaves), tree.N)
	}
	idx := make([]int64, len(leaves))
	for i := range leaves {
		idx[i] = tlog.StoredHashIndex(0, int64(i))
	}
	hashes, err := hr.ReadHashes(idx)
	if err != nil {
		t.Fatal(err)
	}
	for i, leaf := range leaves {
		if tlog.RecordHash(leaf) != hashes[i] {
			t.Fatalf("entry %d hashes to %v, level-0 tile says %v", i, tlog.RecordHash(leaf), hashes[i])
		}
	}
	return leaves
}

// verifyReceipt checks a tlog-proof with x/mod only: the checkpoint signature
// and the inclusion of leaf.
func verifyReceipt(t testing.TB, vkey string, rc, leaf []byte) receipt.Receipt {
	t.Helper()
	r, err := receipt.Parse(rc)
	if err != nil {
		t.Fatalf("receipt does not parse: %v\n%s", err, rc)
	}
	v, _ := note.NewVerifier(vkey)
	n, err := note.Open(r.Checkpoint, note.VerifierList(v))
	if err != nil {
		t.Fatalf("receipt checkpoint does not verify: %v", err)
	}
	tree := parseTree(t, n.Text)
	var p tlog.RecordProof
	for _, h := range r.Proof {
		p = append(p, tlog.Hash(h))
	}
	if err := tlog.CheckRecord(p, tree.N, tree.Hash, int64(r.Index), tlog.RecordHash(leaf)); err != nil {
		t.Fatalf("x/mod tlog.CheckRecord rejects the receipt for index %d: %v", r.Index, err)
	}
	return r
}

func TestAppendedRecordsVerifyWithXMod(t *testing.T) {
	forEachDriver(t, testAppendedRecordsVerifyWithXMod)
}

func testAppendedRecordsVerifyWithXMod(t *testing.T, tl *testLog) {
	want := map[uint64][]byte{}

	// gRPC Append.
	for i := range 40 {
		r := appendGRPC(t, tl.api, fmt.Sprintf("grpc-%d", i))
		want[r.Index] = r.Leaf
	}
	// gRPC AppendStream.
	stream, err := tl.api.AppendStream(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	const streamed = 300
	go func() {
		for i := range streamed {
			_ = stream.Send(&cairnv1.AppendRequest{Id: uint64(i), Payload: []byte(fmt.Sprintf("stream-%d", i)), IdempotencyKey: strconv.Itoa(i)})
		}
		_ = stream.CloseSend()
	}()
	seen := map[uint64]bool{}
	for {
		r, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if r.ErrorCode != 0 {
			t.Fatalf("stream item %d failed: %s", r.Id, r.ErrorMessage)
		}
		if seen[r.Id] {
			t.Fatalf("two responses for stream item %d", r.Id)
		}
		seen[r.Id] = true
		want[r.Index] = nil
	}
	if len(seen) != streamed {
		t.Fatalf("got %d stream responses, want %d", len(seen), streamed)
	}
	// HTTP /add.
	for i := range 30 {
		code, body := postAdd(t, tl.base, []byte(fmt.Sprintf("http-%d", i)), http.Header{"Content-Type": {"text/plain"}})
		if code != http.StatusOK {
			t.Fatalf("/add: %d %s", code, body)
		}
		idx, err := strconv.ParseUint(strings.TrimSpace(strings.SplitN(body, "\n", 2)[0]), 10, 64)
		if err != nil {
			t.Fatalf("/add answered %q, not a decimal index", body)
		}
		want[idx] = nil
	}
	total := 40 + streamed + 30
	if len(want) != total {
		t.Fatalf("%d distinct indices for %d records", len(want), total)
	}

	_, tree := tl.waitForSize(t, tl.vkey, int64(total))
	leaves := verifyWithXMod(t, tl, tree)
	for idx, leaf := range want {
		if leaf != nil && !bytes.Equal(leaves[idx], leaf) {
			t.Fatalf("leaf %d differs from what Append returned", idx)
		}
		if _, err := record.Decode(leaves[idx]); err != nil {
			t.Fatalf("leaf %d is not a record envelope: %v", idx, err)
		}
	}

	// Every receipt verifies.
	for idx := range want {
		rc, err := tl.api.GetReceipt(context.Background(), &cairnv1.GetReceiptRequest{Index: idx})
		if err != nil {
			t.Fatalf("GetReceipt(%d): %v", idx, err)
		}
		if !bytes.Equal(rc.Leaf, leaves[idx]) {
			t.Fatalf("GetReceipt(%d) leaf differs from the entry bundle", idx)
		}
		if r := verifyReceipt(t, tl.vkey, rc.Receipt, rc.Leaf); r.Index != idx {
			t.Fatalf("receipt for %d says index %d", idx, r.Index)
		}
	}
}

func TestTilesHeadersAndGzip(t *testing.T) { forEachDriver(t, testTilesHeadersAndGzip) }

func testTilesHeadersAndGzip(t *testing.T, tl *testLog) {
	for i := range 3 {
		appendGRPC(t, tl.api, fmt.Sprintf("r%d", i))
	}
	tl.waitForSize(t, tl.vkey, 3)
	for _, c := range []struct {
		path, ctype, cache string
	}{
		{"/checkpoint", "text/plain; charset=utf-8", "no-cache"},
		{"/tile/0/000.p/3", "application/octet-stream", "max-age=31536000, immutable"},
		{"/tile/entries/000.p/3", "application/octet-stream", "max-age=31536000, immutable"},
	} {
		req, _ := http.NewRequest(http.MethodGet, tl.base+c.path, nil)
		req.Header.Set("Accept-Encoding", "gzip")
		resp, err := http.DefaultTransport.RoundTrip(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != c.ctype || resp.Header.Get("Cache-Control") != c.cache {
			t.Errorf("%s: %d, Content-Type %q, Cache-Control %q", c.path, resp.StatusCode, resp.Header.Get("Content-Type"), resp.Header.Get("Cache-Control"))
		}
		if strings.HasPrefix(c.path, "/tile/entries/") && resp.Header.Get("Content-Encoding") != "gzip" {
			t.Errorf("%s: not gzipped for a client that accepts gzip", c.path)
		}
	}
	if got := len(tl.get(t, "/tile/0/000.p/3")); got != 3*32 {
		t.Errorf("partial tile of width 3 is %d bytes, want 96", got)
	}
	for _, p := range []string{"/tile/0/000.p/4", "/tile/0/001", "/tile/entries/000"} {
		resp, err := http.Get(tl.base + p)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusNotFound {
			t.Errorf("GET %s: %d, want 404 (%s)", p, resp.StatusCode, body)
		}
	}
	resp, err := http.Get(tl.base + "/tile/0/0001")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest {
		t.Errorf("malformed tile path: %d, want 400", resp.StatusCode)
	}
}

func TestRetriedRecordGetsSameIndex(t *testing.T) { forEachDriver(t, testRetriedRecordGetsSameIndex) }

func testRetriedRecordGetsSameIndex(t *testing.T, tl *testLog) {
	req := &cairnv1.AppendRequest{Payload: []byte("payment 42 approved"), IdempotencyKey: "req-7", TimestampUnixMillis: uint64(time.Now().UnixMilli())}
	first, err := tl.api.Append(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	again, err := tl.api.Append(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	if again.Index != first.Index || !again.Duplicate {
		t.Fatalf("retry got index %d (duplicate=%v), first was %d", again.Index, again.Duplicate, first.Index)
	}
	// A different idempotency key is a different record.
	req.IdempotencyKey = "req-8"
	other, err := tl.api.Append(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	if other.Index == first.Index {
		t.Fatal("a record with another idempotency key got the same index")
	}
}

// rawCodec sends bytes as they are, to put garbage on the wire.
type rawCodec struct{}

func (rawCodec) Marshal(v any) ([]byte, error)      { return *(v.(*[]byte)), nil }
func (rawCodec) Unmarshal(data []byte, v any) error { *(v.(*[]byte)) = data; return nil }
func (rawCodec) Name() string                       { return "proto" }

func TestBadInputIsRejectedAndAppendsNothing(t *testing.T) {
	tl := newTestLog(t)
	appendGRPC(t, tl.api, "before")
	ctx := context.Background()

	grpcCases := []struct {
		name string
		req  *cairnv1.AppendRequest
		want string
	}{
		{"empty payload", &cairnv1.AppendRequest{}, "payload is empty"},
		{"bad content type", &cairnv1.AppendRequest{Payload: []byte("x"), ContentType: "not a type"}, "content type"},
		{"control character in key", &cairnv1.AppendRequest{Payload: []byte("x"), IdempotencyKey: "a\nb"}, "idempotency key"},
		{"bidi override in key", &cairnv1.AppendRequest{Payload: []byte("x"), IdempotencyKey: "ab\u202ec"}, "idempotency key contains bidirectional control U+202E at byte offset 2"},
		{"timestamp far in the past", &cairnv1.AppendRequest{Payload: []byte("x"), TimestampUnixMillis: 1000}, "allowed skew"},
	}
	for _, c := range grpcCases {
		_, err := tl.api.Append(ctx, c.req)
		if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: got %v, want InvalidArgument mentioning %q", c.name, err, c.want)
		}
	}
	// Garbage protobuf on the wire.
	garbage := []byte{0xff, 0xff, 0xff, 0xff, 0x0f, 0x01}
	var out []byte
	err := tl.conn.Invoke(ctx, "/cairn.v1.Log/Append", &garbage, &out, grpc.ForceCodecV2(nil), grpc.ForceCodec(rawCodec{}))
	if c := status.Code(err); c != codes.Internal && c != codes.InvalidArgument {
		t.Errorf("garbage protobuf: got %v", err)
	}

	httpCases := []struct {
		name   string
		body   []byte
		header http.Header
		code   int
	}{
		{"empty body", nil, nil, http.StatusBadRequest},
		{"oversized body", make([]byte, DefaultMaxRecordBytes+1), nil, http.StatusRequestEntityTooLarge},
		{"multipart form", []byte("--x--"), http.Header{"Content-Type": {"multipart/form-data; boundary=x"}}, http.StatusUnsupportedMediaType},
		{"malformed content type", []byte("x"), http.Header{"Content-Type": {"text/"}}, http.StatusBadRequest},
		{"bad timestamp header", []byte("x"), http.Header{"Cairn-Timestamp": {"yesterday"}}, http.StatusBadRequest},
	}
	for _, c := range httpCases {
		code, body := postAdd(t, tl.base, c.body, c.header)
		if code != c.code || len(body) == 0 {
			t.Errorf("%s: got %d %q, want %d with a message", c.name, code, body, c.code)
		}
	}
	// Nothing above was sequenced: the next record gets index 1.
	if r := appendGRPC(t, tl.api, "after"); r.Index != 1 {
		t.Fatalf("next record got index %d, want 1: a bad request was sequenced", r.Index)
	}
}

func TestAppendWaitsForReceipt(t *testing.T) {
	tl := newTestLog(t)
	resp, err := tl.api.Append(context.Background(), &cairnv1.AppendRequest{Payload: []byte("wait for me"), WaitForReceipt: true})
	if err != nil {
		t.Fatal(err)
	}
	if r := verifyReceipt(t, tl.vkey, resp.Receipt, resp.Leaf); r.Index != resp.Index {
		t.Fatalf("receipt index %d, append index %d", r.Index, resp.Index)
	}
}

// TestRestartContinuesTheSameTree runs the log as a child process (the
// antispam index holds an exclusive lock until its process exits), stops it
// with SIGTERM and starts it again on the same directory.
func TestRestartContinuesTheSameTree(t *testing.T) {
	dir := t.TempDir()
	skey, vkey := newKey(t, testOrigin)
	child := startChild(t, dir, skey)
	dupReq := &cairnv1.AppendRequest{Payload: []byte("retried across a restart"), IdempotencyKey: "k1", TimestampUnixMillis: uint64(time.Now().UnixMilli())}
	for i := range 299 {
		appendGRPC(t, child.api, fmt.Sprintf("first-%d", i))
	}
	first, err := child.api.Append(context.Background(), dupReq)
	if err != nil {
		t.Fatal(err)
	}
	_, before := child.waitForSize(t, vkey, 300)
	child.stop(t)

	child = startChild(t, dir, skey)
	for i := range 50 {
		if r := appendGRPC(t, child.api, fmt.Sprintf("second-%d", i)); r.Index < 300 {
			t.Fatalf("after restart a new record got index %d < 300", r.Index)
		}
	}
	// A record sequenced before the restart is still deduplicated after it.
	again, err := child.api.Append(context.Background(), dupReq)
	if err != nil {
		t.Fatal(err)
	}
	if again.Index != first.Index || !again.Duplicate {
		t.Fatalf("retry after restart got index %d (duplicate=%v), want %d", again.Index, again.Duplicate, first.Index)
	}
	_, after := child.waitForSize(t, vkey, 350)
	cp, err := child.api.GetConsistencyProof(context.Background(), &cairnv1.GetConsistencyProofRequest{FromSize: uint64(before.N), ToSize: uint64(after.N)})
	if err != nil {
		t.Fatal(err)
	}
	var p tlog.TreeProof
	for _, h := range cp.Proof {
		p = append(p, tlog.Hash(h))
	}
	if err := tlog.CheckTree(p, after.N, after.Hash, before.N, before.Hash); err != nil {
		t.Fatalf("x/mod tlog.CheckTree rejects %d → %d: %v", before.N, after.N, err)
	}
	leaves := verifyWithXMod(t, child.testLog, after)
	if r, _ := record.Decode(leaves[7]); string(r.Payload) != "first-7" {
		t.Fatalf("leaf 7 is %q after restart", r.Payload)
	}
}

func TestShutdownPublishesEveryAcknowledgedRecord(t *testing.T) {
	dir := t.TempDir()
	skey, vkey := newKey(t, testOrigin)
	cfg := testConfig(dir, skey)
	cfg.CheckpointInterval = 2 * time.Second // the final checkpoint must come from the drain
	tl := startLog(t, cfg)
	var last uint64
	for i := range 20 {
		last = appendGRPC(t, tl.api, fmt.Sprintf("r%d", i)).Index
	}
	if err := tl.stop(t); err != nil {
		t.Fatalf("shutdown: %v", err)
	}
	// Read the checkpoint straight from disk.
	cp := readFile(t, dir+"/checkpoint")
	v, _ := note.NewVerifier(vkey)
	n, err := note.Open(cp, note.VerifierList(v))
	if err != nil {
		t.Fatal(err)
	}
	if tree := parseTree(t, n.Text); tree.N < int64(last)+1 {
		t.Fatalf("final checkpoint has size %d, but index %d was acknowledged", tree.N, last)
	}
}

func TestStartupRejectsOriginThatIsNotTheKeyName(t *testing.T) {
	skey, _ := newKey(t, "example.test/other")
	_, err := New(context.Background(), testConfig(t.TempDir(), skey))
	if err == nil || !strings.Contains(err.Error(), "does not match the key name") {
		t.Fatalf("got %v, want an origin/key name mismatch error", err)
	}
}

func TestGetEntriesAndProofErrors(t *testing.T) { forEachDriver(t, testGetEntriesAndProofErrors) }

func testGetEntriesAndProofErrors(t *testing.T, tl *testLog) {
	var leaves [][]byte
	for i := range 5 {
		leaves = append(leaves, appendGRPC(t, tl.api, fmt.Sprintf("e%d", i)).Leaf)
	}
	_, tree := tl.waitForSize(t, tl.vkey, 5)
	ctx := context.Background()
	// Every inclusion proof the API serves checks with x/mod's tlog.
	for i, leaf := range leaves {
		p, err := tl.api.GetInclusionProof(ctx, &cairnv1.GetInclusionProofRequest{Index: uint64(i), TreeSize: uint64(tree.N)})
		if err != nil {
			t.Fatalf("GetInclusionProof(%d): %v", i, err)
		}
		var rp tlog.RecordProof
		for _, h := range p.Proof {
			rp = append(rp, tlog.Hash(h))
		}
		if err := tlog.CheckRecord(rp, tree.N, tree.Hash, int64(i), tlog.RecordHash(leaf)); err != nil {
			t.Fatalf("x/mod rejects the inclusion proof of %d: %v", i, err)
		}
	}
	got, err := tl.api.GetEntries(ctx, &cairnv1.GetEntriesRequest{Start: 1, Count: 10})
	if err != nil || len(got.Entries) != 4 {
		t.Fatalf("GetEntries(1, 10) = %d entries, %v; want 4", len(got.GetEntries()), err)
	}
	if _, err := tl.api.GetEntries(ctx, &cairnv1.GetEntriesRequest{Start: 5, Count: 1}); status.Code(err) != codes.NotFound {
		t.Errorf("GetEntries beyond the tree: %v, want NotFound", err)
	}
	if _, err := tl.api.GetInclusionProof(ctx, &cairnv1.GetInclusionProofRequest{Index: 9}); status.Code(err) != codes.NotFound {
		t.Errorf("inclusion proof beyond the tree: %v, want NotFound", err)
	}
	if _, err := tl.api.GetConsistencyProof(ctx, &cairnv1.GetConsistencyProofRequest{FromSize: 4, ToSize: 3}); status.Code(err) != codes.InvalidArgument {
		t.Errorf("consistency proof 4→3: %v, want InvalidArgument", err)
	}
}

func readFile(t testing.TB, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// A request marked as a retry (cairn-retry) first waits for the persistent
// antispam index to cover everything sequenced, then finds an earlier copy
// (or appends a new record once). On one frontend the in-memory window
// already answers; across frontends see integration/ha_test.go.
func TestRetryMarkedRequests(t *testing.T) {
	forEachDriver(t, func(t *testing.T, tl *testLog) {
		retry := metadata.AppendToOutgoingContext(context.Background(), RetryHeader, "1")
		req := &cairnv1.AppendRequest{Payload: []byte("retried"), IdempotencyKey: "k1", TimestampUnixMillis: uint64(time.Now().UnixMilli())}
		fresh, err := tl.api.Append(retry, req)
		if err != nil {
			t.Fatalf("a retry of a record never sequenced: %v", err)
		}
		if fresh.Duplicate {
			t.Fatal("a record never sequenced came back as a duplicate")
		}
		again, err := tl.api.Append(retry, req)
		if err != nil || again.Index != fresh.Index || !again.Duplicate {
			t.Fatalf("retry: index %d duplicate %v err %v; first %d", again.GetIndex(), again.GetDuplicate(), err, fresh.Index)
		}
		// Over HTTP too, with a stream of retried records beside it.
		h := http.Header{"Cairn-Retry": {"1"}, "Idempotency-Key": {"h1"}}
		code, body := postAdd(t, tl.base, []byte("retried over http"), h)
		code2, body2 := postAdd(t, tl.base, []byte("retried over http"), h)
		if code != 200 || code2 != 200 || body != body2 {
			t.Fatalf("HTTP retries: %d %q then %d %q", code, body, code2, body2)
		}
		stream, err := tl.api.AppendStream(retry)
		if err != nil {
			t.Fatal(err)
		}
		for i := range 50 {
			if err := stream.Send(&cairnv1.AppendRequest{Id: uint64(i), Payload: fmt.Appendf(nil, "s%d", i%25), IdempotencyKey: "s"}); err != nil {
				t.Fatal(err)
			}
		}
		stream.CloseSend()
		idx := map[string]uint64{}
		for range 50 {
			r, err := stream.Recv()
			if err != nil || r.ErrorCode != 0 {
				t.Fatalf("stream: %v %s", err, r.GetErrorMessage())
			}
			key := fmt.Sprint(r.Id % 25)
			if prev, ok := idx[key]; ok && prev != r.Index {
				t.Fatalf("record %s got indices %d and %d", key, prev, r.Index)
			}
			idx[key] = r.Index
		}
	})
}
