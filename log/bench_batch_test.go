package log

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	cairnv1 "github.com/cairnlog/cairn/proto/cairn/v1"
)

// batchBenchRecords is the records one BenchmarkAppendBatch iteration sends:
// a few seconds at the target of 100k records/s.
const batchBenchRecords = 300000

// record256 is a 256-byte payload, distinct per i.
func record256(i int) []byte {
	return fmt.Appendf(nil, `{"bench":%10d,"pad":"%0230d"}`, i, 0)
}

// batchBenchInFlight is how many records the batch callers keep in flight
// together, like a source with several batches outstanding: one caller per
// batch, at least 4.
const batchBenchInFlight = 4096

// BenchmarkAppendBatch: AppendBatch of 256-byte records, batches of 100 and
// 1000 records, from enough concurrent callers to keep batchBenchInFlight
// records in flight (40 and 4).
func BenchmarkAppendBatch(b *testing.B) {
	for _, size := range []int{100, 1000} {
		b.Run(strconv.Itoa(size), func(b *testing.B) {
			benchAppendBatch(b, size, max(4, batchBenchInFlight/size))
		})
	}
}

func benchAppendBatch(b *testing.B, size, callers int) {
	for range b.N {
		b.StopTimer()
		c, vkey := benchLog(b)
		n := batchBenchRecords
		lat := newLatencies(n)
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		followed := make(chan struct{})
		go func() { lat.followCheckpoints(ctx, c.base, vkey, uint64(n)); close(followed) }()
		var next atomic.Int64
		var wg sync.WaitGroup
		var firstErr atomic.Value
		b.StartTimer()
		start := time.Now()
		for range callers {
			wg.Go(func() {
				for {
					first := int(next.Add(int64(size))) - size
					if first >= n {
						return
					}
					recs := make([]*cairnv1.AppendRequest, 0, size)
					for i := first; i < min(first+size, n); i++ {
						recs = append(recs, &cairnv1.AppendRequest{Payload: record256(i), IdempotencyKey: strconv.Itoa(i)})
					}
					sent := time.Now()
					resp, err := c.api.AppendBatch(context.Background(), &cairnv1.AppendBatchRequest{Records: recs})
					if err != nil {
						firstErr.CompareAndSwap(nil, err)
						return
					}
					for _, r := range resp.Results {
						lat.done(r.Index, sent)
					}
				}
			})
		}
		wg.Wait()
		elapsed := time.Since(start)
		b.StopTimer()
		if err, ok := firstErr.Load().(error); ok {
			b.Fatal(err)
		}
		<-followed
		cancel()
		lat.report(b, n, elapsed)
		c.stop(b)
	}
}
