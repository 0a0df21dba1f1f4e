package log

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
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
// records in flight (40 and 4): with the default sequencing batch, and with
// the one docs/log.md suggests for batched sources (throughputBatching).
func BenchmarkAppendBatch(b *testing.B) {
	for _, size := range []int{100, 1000} {
		b.Run(strconv.Itoa(size), func(b *testing.B) {
			benchAppendBatch(b, size, max(4, batchBenchInFlight/size))
		})
	}
	for _, size := range []int{100, 1000} {
		b.Run(strconv.Itoa(size)+"-seq2048", func(b *testing.B) {
			benchAppendBatch(b, size, max(4, batchBenchInFlight/size), envChildBatching+"="+throughputBatching)
		})
	}
}

// throughputBatching is the sequencing batch (--batch-max-size,
// --batch-max-age) docs/log.md suggests for a log fed by AppendBatch and
// AppendStream: batches of 2048 write Tessera's partial tiles and tree state
// once per 2048 records instead of once per 256.
const throughputBatching = "2048,20ms"

func benchAppendBatch(b *testing.B, size, callers int, env ...string) {
	for range b.N {
		b.StopTimer()
		c, vkey := benchLog(b, env...)
		n := batchBenchRecords
		lat := newLatencies(n)
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		followed := make(chan struct{})
		go func() { lat.followCheckpoints(ctx, c.base, vkey, uint64(n)); close(followed) }()
		// The requests are built before the clock starts: the load
		// generator shares the 2 cores with the log, so it only sends.
		batches := make([]*cairnv1.AppendBatchRequest, 0, (n+size-1)/size)
		for first := 0; first < n; first += size {
			recs := make([]*cairnv1.AppendRequest, 0, size)
			for i := first; i < min(first+size, n); i++ {
				recs = append(recs, &cairnv1.AppendRequest{Payload: record256(i), IdempotencyKey: strconv.Itoa(i)})
			}
			batches = append(batches, &cairnv1.AppendBatchRequest{Records: recs})
		}
		var next atomic.Int64
		var wg sync.WaitGroup
		var firstErr atomic.Value
		cpu0 := childCPU(c.cmd.Process.Pid)
		c.startProfile()
		b.StartTimer()
		start := time.Now()
		for range callers {
			wg.Go(func() {
				for {
					k := int(next.Add(1)) - 1
					if k >= len(batches) {
						return
					}
					sent := time.Now()
					resp, err := c.api.AppendBatch(context.Background(), batches[k])
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
		reportCPU(b, childCPU(c.cmd.Process.Pid)-cpu0, n)
		if err, ok := firstErr.Load().(error); ok {
			b.Fatal(err)
		}
		<-followed
		cancel()
		lat.report(b, n, elapsed)
		c.stop(b)
	}
}

// childCPU returns the CPU time (user + system) the process pid has used,
// from /proc/PID/stat (clock ticks of 10ms). CPU per record is what a
// benchmark on a loaded machine still measures fairly: wall-clock rates
// move with the load, the work per record does not.
func childCPU(pid int) time.Duration {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// Fields after the command name (which may hold spaces) start at ")".
	f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+2:]))
	if len(f) < 13 {
		return 0
	}
	u, _ := strconv.ParseUint(f[11], 10, 64)
	s, _ := strconv.ParseUint(f[12], 10, 64)
	return time.Duration(u+s) * 10 * time.Millisecond
}

// reportCPU reports the child's CPU per record over a run of n records.
func reportCPU(b *testing.B, used time.Duration, n int) {
	b.ReportMetric(float64(used.Microseconds())/float64(n), "cpu-µs/record")
}
