package index

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/cairnlog/cairn/format/search"
)

// BenchmarkIndexWrite measures the database writer alone — the stage of
// ingestion that bounds its rate (a CPU profile of BenchmarkIndex puts
// ~70% of ingest CPU in store.commit) — into a fresh SQLite database: the
// fixture's records, described (three JSON fields) beforehand, committed
// in chunks of DefaultChunkBundles bundles as the follower commits them.
func BenchmarkIndexWrite(b *testing.B) {
	const n = 1 << 18
	fields := []search.Field{}
	for _, s := range []string{"actor=.actor", "action=.action", "resource=.resource.id"} {
		f, err := search.ParseField(s)
		if err != nil {
			b.Fatal(err)
		}
		fields = append(fields, f)
	}
	rows := make([]*search.Hit, n)
	for i := range rows {
		h, err := search.Describe(uint64(i), benchLeaf(uint64(i)), nil, "", fields)
		if err != nil {
			b.Fatal(err)
		}
		rows[i] = h
	}
	chunk := DefaultChunkBundles * 256
	// The follower lays out a chunk (newBatch) while the writer commits the
	// previous one: the writer's rate does not include it.
	var batches []*batch
	for i := 0; i < n; i += chunk {
		batches = append(batches, newBatch(rows[i:i+chunk]))
	}
	ctx := context.Background()
	b.ResetTimer()
	var took time.Duration
	for range b.N {
		s, err := openStore(ctx, "sqlite:"+b.TempDir()+"/write.db")
		if err != nil {
			b.Fatal(err)
		}
		start := time.Now()
		for j, rows := range batches {
			st := &savedState{Size: uint64((j + 1) * chunk), Root: make([]byte, 32), Fields: "bench"}
			if err := s.commit(ctx, rows, nil, st, j == len(batches)-1); err != nil {
				b.Fatal(err)
			}
		}
		took += time.Since(start)
		s.Close()
	}
	rate := float64(n*b.N) / took.Seconds()
	b.ReportMetric(rate, "records/s")
	fmt.Printf("index writer (sqlite, fresh db, chunks of %d): %.0f records/s\n", chunk, rate)
}
