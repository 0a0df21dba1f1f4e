package client

import (
	"context"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	cairnv1 "github.com/cairnlog/cairn/proto/cairn/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// batchLog answers AppendBatch with index = its count of records so far,
// first refusing failFirst calls with Unavailable.
type batchLog struct {
	cairnv1.UnimplementedLogServer
	mu        sync.Mutex
	failFirst int
	calls     []int // records per accepted call
	next      uint64
	keys      map[string]uint64
}

func (b *batchLog) AppendBatch(_ context.Context, r *cairnv1.AppendBatchRequest) (*cairnv1.AppendBatchResponse, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.failFirst > 0 {
		b.failFirst--
		return nil, status.Error(codes.Unavailable, "frontend going away")
	}
	b.calls = append(b.calls, len(r.Records))
	resp := &cairnv1.AppendBatchResponse{}
	for _, rec := range r.Records {
		idx, dup := b.keys[rec.IdempotencyKey]
		if !dup {
			idx = b.next
			b.next++
			b.keys[rec.IdempotencyKey] = idx
		}
		resp.Results = append(resp.Results, &cairnv1.AppendResponse{Id: rec.Id, Index: idx, Duplicate: dup, Leaf: rec.Payload})
	}
	return resp, nil
}

func serveBatchLog(t *testing.T, b *batchLog) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	cairnv1.RegisterLogServer(srv, b)
	go srv.Serve(ln)
	t.Cleanup(srv.Stop)
	return ln.Addr().String()
}

func TestSubmitBatchSplitsKeepsOrderAndFailsOver(t *testing.T) {
	a := &batchLog{failFirst: 1, keys: map[string]uint64{}}
	s, err := NewSubmitter([]string{serveBatchLog(t, a)}, SubmitterOptions{Backoff: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	n := 2*DefaultBatchRecords + 5
	recs := make([]Record, n)
	for i := range recs {
		recs[i] = Record{Payload: fmt.Appendf(nil, "r%d", i)}
	}
	res, err := s.SubmitBatch(context.Background(), recs, false)
	if err != nil {
		t.Fatal(err)
	}
	if len(res) != n {
		t.Fatalf("%d results for %d records", len(res), n)
	}
	for i, r := range res {
		if r.Index != uint64(i) || string(r.Leaf) != fmt.Sprintf("r%d", i) {
			t.Fatalf("result %d: index %d leaf %q", i, r.Index, r.Leaf)
		}
	}
	if fmt.Sprint(a.calls) != fmt.Sprint([]int{DefaultBatchRecords, DefaultBatchRecords, 5}) {
		t.Fatalf("calls carried %v records", a.calls)
	}
}

// reorderingLog answers a batch with its results swapped.
type reorderingLog struct{ batchLog }

func (r *reorderingLog) AppendBatch(ctx context.Context, req *cairnv1.AppendBatchRequest) (*cairnv1.AppendBatchResponse, error) {
	resp, err := r.batchLog.AppendBatch(ctx, req)
	if err == nil && len(resp.Results) > 1 {
		resp.Results[0], resp.Results[1] = resp.Results[1], resp.Results[0]
	}
	return resp, err
}

func TestSubmitBatchRefusesResultsOutOfOrder(t *testing.T) {
	l := &reorderingLog{batchLog{keys: map[string]uint64{}}}
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	srv := grpc.NewServer()
	cairnv1.RegisterLogServer(srv, l)
	go srv.Serve(ln)
	t.Cleanup(srv.Stop)
	s, err := NewSubmitter([]string{ln.Addr().String()}, SubmitterOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	_, err = s.SubmitBatch(context.Background(), []Record{{Payload: []byte("a")}, {Payload: []byte("b")}}, false)
	if err == nil || !strings.Contains(err.Error(), "answered record 0 with the result for id 1") {
		t.Fatalf("got %v, want the swapped results refused", err)
	}
}
