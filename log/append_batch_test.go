package log

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cairnlog/cairn/format/batch"
	"github.com/cairnlog/cairn/format/record"
	cairnv1 "github.com/cairnlog/cairn/proto/cairn/v1"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// batchOf returns n records with keys prefix-0 … prefix-(n-1).
func batchOf(prefix string, n int) []*cairnv1.AppendRequest {
	rs := make([]*cairnv1.AppendRequest, n)
	for i := range rs {
		k := fmt.Sprintf("%s-%d", prefix, i)
		rs[i] = &cairnv1.AppendRequest{Id: uint64(i), Payload: []byte(k), ContentType: "text/plain", IdempotencyKey: k}
	}
	return rs
}

// treeSize appends a probe record and returns its index: the number of
// records sequenced before it.
func treeSize(t *testing.T, tl *testLog) uint64 {
	t.Helper()
	return appendGRPC(t, tl.api, fmt.Sprintf("probe-%d", time.Now().UnixNano())).Index
}

func TestAppendBatchKeepsOrderAndVerifiesWithXMod(t *testing.T) {
	tl := newTestLog(t)
	recs := batchOf("ordered", 300)
	recs[299].WaitForReceipt = true
	resp, err := tl.api.AppendBatch(context.Background(), &cairnv1.AppendBatchRequest{Records: recs})
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Results) != len(recs) {
		t.Fatalf("%d results for %d records", len(resp.Results), len(recs))
	}
	last := resp.Results[299]
	if len(last.Receipt) == 0 {
		t.Fatal("no receipt for the record that asked for one")
	}
	verifyReceipt(t, tl.vkey, last.Receipt, last.Leaf)
	_, tree := tl.waitForSize(t, tl.vkey, int64(last.Index)+1)
	leaves := verifyWithXMod(t, tl, tree)
	for i, r := range resp.Results {
		if r.Id != uint64(i) || r.Duplicate {
			t.Fatalf("result %d: id %d duplicate %v", i, r.Id, r.Duplicate)
		}
		if i > 0 && r.Index <= resp.Results[i-1].Index {
			t.Fatalf("result %d has index %d, not after record %d's %d", i, r.Index, i-1, resp.Results[i-1].Index)
		}
		if !bytes.Equal(leaves[r.Index], r.Leaf) {
			t.Fatalf("leaf %d in the tree is not result %d's leaf", r.Index, i)
		}
		got, err := record.Decode(leaves[r.Index])
		if err != nil || string(got.Payload) != string(recs[i].Payload) {
			t.Fatalf("index %d holds %q (%v), want record %d %q", r.Index, got.Payload, err, i, recs[i].Payload)
		}
	}
}

func TestAppendBatchIsAllOrNothingOnInvalidRecord(t *testing.T) {
	tl := newTestLogWith(t, func(c *Config) { c.MaxBatchRecords = 10 })
	before := treeSize(t, tl)
	for _, tc := range []struct {
		name string
		mod  func([]*cairnv1.AppendRequest) []*cairnv1.AppendRequest
		code codes.Code
		want string
	}{
		{"empty payload", func(rs []*cairnv1.AppendRequest) []*cairnv1.AppendRequest { rs[3].Payload = nil; return rs }, codes.InvalidArgument, "record 3: invalid record: the payload is empty"},
		{"bad JSON", func(rs []*cairnv1.AppendRequest) []*cairnv1.AppendRequest {
			rs[5].ContentType = "application/json"
			return rs
		}, codes.InvalidArgument, "record 5: invalid record: the payload is declared application/json"},
		{"too large", func(rs []*cairnv1.AppendRequest) []*cairnv1.AppendRequest {
			rs[9].Payload = make([]byte, DefaultMaxRecordBytes+1)
			return rs
		}, codes.ResourceExhausted, "record 9: record too large"},
		{"clock skew", func(rs []*cairnv1.AppendRequest) []*cairnv1.AppendRequest {
			rs[1].TimestampUnixMillis = 1
			return rs
		}, codes.InvalidArgument, "record 1: invalid record: timestamp 1"},
		{"too many records", func(rs []*cairnv1.AppendRequest) []*cairnv1.AppendRequest { return append(rs, rs[0]) }, codes.InvalidArgument, "11 records, over this log's limit of 10"},
		{"no records", func([]*cairnv1.AppendRequest) []*cairnv1.AppendRequest { return nil }, codes.InvalidArgument, "the batch has no records"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			recs := tc.mod(batchOf("rejected-"+tc.name, 10))
			_, err := tl.api.AppendBatch(context.Background(), &cairnv1.AppendBatchRequest{Records: recs})
			if st := status.Convert(err); st.Code() != tc.code || !strings.Contains(st.Message(), tc.want) {
				t.Fatalf("got %v, want %v naming %q", err, tc.code, tc.want)
			}
		})
	}
	// The same batches over HTTP.
	body := func(rs []batch.Record) []byte {
		b, err := batch.Encode(rs)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	hdr := http.Header{"Content-Type": {batch.ContentType}}
	good := []batch.Record{{Payload: []byte("a"), IdempotencyKey: "http-a"}, {Payload: []byte("b"), IdempotencyKey: "http-b"}}
	for _, tc := range []struct {
		name string
		body []byte
		code int
		want string
	}{
		{"empty payload", body(append(good, batch.Record{IdempotencyKey: "x"})), http.StatusBadRequest, "record 2: invalid record: the payload is empty"},
		{"too large", body(append(good, batch.Record{Payload: make([]byte, DefaultMaxRecordBytes+1)})), http.StatusRequestEntityTooLarge, "record 2: record too large"},
		{"truncated", body(good)[:41], http.StatusBadRequest, "record 1 at byte offset"},
		{"empty body", nil, http.StatusBadRequest, "the batch has no records"},
	} {
		t.Run("http "+tc.name, func(t *testing.T) {
			code, msg := postAdd(t, tl.base, tc.body, hdr)
			if code != tc.code || !strings.Contains(msg, tc.want) {
				t.Fatalf("got %d %q, want %d naming %q", code, msg, tc.code, tc.want)
			}
		})
	}
	// Nothing of any refused batch was sequenced: the next record follows the probe.
	if after := treeSize(t, tl); after != before+1 {
		t.Fatalf("after refused batches the next index is %d, want %d", after, before+1)
	}
}

func TestAppendBatchDeduplicatesPerRecord(t *testing.T) {
	tl := newTestLog(t)
	first := appendGRPC(t, tl.api, "seen-before")
	recs := []*cairnv1.AppendRequest{
		{Payload: []byte("new-1"), IdempotencyKey: "new-1"},
		{Payload: []byte("seen-before"), ContentType: "text/plain", IdempotencyKey: "seen-before", TimestampUnixMillis: recordTimestamp(t, first.Leaf)},
		{Payload: []byte("new-2"), IdempotencyKey: "new-2"},
		{Payload: []byte("new-1"), IdempotencyKey: "new-1"}, // twice in one batch
	}
	resp, err := tl.api.AppendBatch(context.Background(), &cairnv1.AppendBatchRequest{Records: recs})
	if err != nil {
		t.Fatal(err)
	}
	r := resp.Results
	if !r[1].Duplicate || r[1].Index != first.Index {
		t.Fatalf("a record sequenced before got index %d duplicate=%v, want %d duplicate", r[1].Index, r[1].Duplicate, first.Index)
	}
	if r[0].Duplicate || r[2].Duplicate || r[3].Index != r[0].Index {
		t.Fatalf("results %+v: want new-1 and new-2 new, the second new-1 at new-1's index", r)
	}
	// The whole batch again: every record resolves to its first index.
	again, err := tl.api.AppendBatch(context.Background(), &cairnv1.AppendBatchRequest{Records: recs})
	if err != nil {
		t.Fatal(err)
	}
	for i, a := range again.Results {
		if !a.Duplicate || a.Index != r[i].Index {
			t.Fatalf("retried record %d got index %d duplicate=%v, want %d", i, a.Index, a.Duplicate, r[i].Index)
		}
	}
}

// recordTimestamp returns the timestamp in a leaf, so a retry builds the same leaf.
func recordTimestamp(t *testing.T, leaf []byte) uint64 {
	t.Helper()
	r, err := record.Decode(leaf)
	if err != nil {
		t.Fatal(err)
	}
	return r.Timestamp
}

func TestHTTPBatchAddAnswersIndicesInOrder(t *testing.T) {
	tl := newTestLog(t)
	var rs []batch.Record
	for i := range 20 {
		rs = append(rs, batch.Record{ContentType: "text/plain", IdempotencyKey: fmt.Sprintf("h%d", i), Payload: fmt.Appendf(nil, "http record %d", i)})
	}
	body, err := batch.Encode(rs)
	if err != nil {
		t.Fatal(err)
	}
	hdr := http.Header{"Content-Type": {batch.ContentType}}
	code, text := postAdd(t, tl.base, body, hdr)
	if code != http.StatusOK {
		t.Fatalf("POST /add batch: %d %s", code, text)
	}
	lines := strings.Fields(text)
	if len(lines) != len(rs) {
		t.Fatalf("%d indices for %d records: %q", len(lines), len(rs), text)
	}
	idx := make([]uint64, len(lines))
	for i, s := range lines {
		if idx[i], err = strconv.ParseUint(s, 10, 64); err != nil {
			t.Fatal(err)
		}
	}
	_, tree := tl.waitForSize(t, tl.vkey, int64(slicesMax(idx))+1)
	leaves := verifyWithXMod(t, tl, tree)
	for i, ix := range idx {
		got, err := record.Decode(leaves[ix])
		if err != nil || !bytes.Equal(got.Payload, rs[i].Payload) || got.IdempotencyKey != rs[i].IdempotencyKey {
			t.Fatalf("index %d holds %q, want record %d %q", ix, got.Payload, i, rs[i].Payload)
		}
	}
	// A retried body resolves to the same indices.
	if code, again := postAdd(t, tl.base, body, hdr); code != http.StatusOK || again != text {
		t.Fatalf("retry: %d %q, want %q", code, again, text)
	}
}

func slicesMax(s []uint64) uint64 {
	var m uint64
	for _, v := range s {
		m = max(m, v)
	}
	return m
}

// TestBatchCutByKillLosesNoAcknowledgedRecord appends batches from several
// submitters, kills the log with SIGKILL mid-stream, restarts it on the same
// directory and checks, with x/mod, that every acknowledged record is in the
// tree at the index it was given, and that a retry of an acknowledged batch
// after the restart (Tessera's in-memory dedup gone) is answered from the
// persistent antispam index with the same indices.
func TestBatchCutByKillLosesNoAcknowledgedRecord(t *testing.T) {
	dir := t.TempDir()
	skey, vkey := newKey(t, testOrigin)
	child := startChild(t, dir, skey)
	var mu sync.Mutex
	acked := map[uint64][]byte{}
	batches := map[string][]uint64{} // acknowledged batch → its indices
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			for b := 0; ctx.Err() == nil; b++ {
				prefix := fmt.Sprintf("kill-w%d-b%d", w, b)
				recs := batchOf(prefix, 200)
				resp, err := child.api.AppendBatch(ctx, &cairnv1.AppendBatchRequest{Records: recs})
				if err != nil {
					return // the kill, or the cancel
				}
				mu.Lock()
				for _, r := range resp.Results {
					acked[r.Index] = r.Leaf
					batches[prefix] = append(batches[prefix], r.Index)
				}
				mu.Unlock()
			}
		})
	}
	eventually(t, 60*time.Second, func() error {
		mu.Lock()
		defer mu.Unlock()
		if len(acked) < 2000 {
			return fmt.Errorf("%d records acknowledged", len(acked))
		}
		return nil
	})
	if err := child.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = child.cmd.Wait()
	cancel()
	wg.Wait()

	child = startChild(t, dir, skey)
	var top uint64
	for ix := range acked {
		top = max(top, ix)
	}
	_, tree := child.waitForSize(t, vkey, int64(top)+1)
	leaves := verifyWithXMod(t, child.testLog, tree)
	for ix, leaf := range acked {
		if !bytes.Equal(leaves[ix], leaf) {
			t.Fatalf("acknowledged record at index %d is not in the tree after kill -9", ix)
		}
	}
	t.Logf("%d acknowledged records survived kill -9 (tree size %d)", len(acked), tree.N)

	retry := metadata.AppendToOutgoingContext(context.Background(), RetryHeader, "1")
	for prefix, want := range batches {
		resp, err := child.api.AppendBatch(retry, &cairnv1.AppendBatchRequest{Records: batchOf(prefix, 200)})
		if err != nil {
			t.Fatalf("retrying batch %s after kill -9: %v", prefix, err)
		}
		for i, r := range resp.Results {
			if r.Index != want[i] || !r.Duplicate {
				t.Fatalf("retrying batch %s after kill -9: record %d got index %d (duplicate %v), acknowledged at %d", prefix, i, r.Index, r.Duplicate, want[i])
			}
		}
	}
}
