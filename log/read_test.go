package log

import (
	"context"
	"fmt"
	"testing"

	"github.com/cairnlog/cairn/format/record"
	cairnv1 "github.com/cairnlog/cairn/proto/cairn/v1"
	"google.golang.org/protobuf/proto"
)

// #20: GetEntries was capped at 1024 entries but not in bytes; with 64 KiB
// records one call built ~61 MB. Now an answer stays within
// MaxEntriesResponseBytes (so gRPC's default 4 MiB client limit reads it),
// says it is truncated, and the next call continues where it stopped.
func TestGetEntriesIsBoundedInBytes(t *testing.T) {
	tl := newTestLogWith(t, func(c *Config) { c.MaxRecordBytes = record.MaxPayloadBytes })
	const n = 80 // 80 × ~64 KiB ≈ 5.2 MB, over one answer
	payload := make([]byte, record.MaxPayloadBytes)
	ctx := context.Background()
	for i := range n {
		copy(payload, fmt.Sprintf("record %03d", i))
		if _, err := tl.api.Append(ctx, &cairnv1.AppendRequest{Payload: payload, IdempotencyKey: fmt.Sprint(i)}); err != nil {
			t.Fatal(err)
		}
	}
	tl.waitForSize(t, tl.vkey, n)

	var got [][]byte
	calls := 0
	for start := uint64(0); start < n; calls++ {
		resp, err := tl.api.GetEntries(ctx, &cairnv1.GetEntriesRequest{Start: start, Count: 1024})
		if err != nil {
			t.Fatalf("GetEntries(%d): %v", start, err)
		}
		if size := proto.Size(resp); size > MaxEntriesResponseBytes {
			t.Fatalf("GetEntries(%d) answer is %d bytes, over %d", start, size, MaxEntriesResponseBytes)
		}
		if len(resp.Entries) == 0 {
			t.Fatalf("GetEntries(%d) returned no entry", start)
		}
		last := start+uint64(len(resp.Entries)) == n
		if resp.Truncated == last {
			t.Fatalf("GetEntries(%d): %d entries, truncated=%v", start, len(resp.Entries), resp.Truncated)
		}
		got = append(got, resp.Entries...)
		start += uint64(len(resp.Entries))
	}
	if calls < 2 {
		t.Fatalf("%d records of 64 KiB came back in one answer", n)
	}
	for i, leaf := range got {
		r, err := record.Decode(leaf)
		if err != nil {
			t.Fatal(err)
		}
		if want := fmt.Sprintf("record %03d", i); string(r.Payload[:len(want)]) != want {
			t.Fatalf("entry %d holds %q", i, r.Payload[:len(want)])
		}
	}
	// A short request is not marked truncated.
	resp, err := tl.api.GetEntries(ctx, &cairnv1.GetEntriesRequest{Start: 3, Count: 2})
	if err != nil || len(resp.Entries) != 2 || resp.Truncated {
		t.Fatalf("GetEntries(3, 2): %d entries truncated=%v %v", len(resp.GetEntries()), resp.GetTruncated(), err)
	}
}
