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
	"github.com/transparency-dev/tessera/api/layout"
)

// benchSubjects is how many distinct data subjects BenchmarkAppendSubject
// spreads its records over: each one's key is created on its first record.
const benchSubjects = 1000

func benchSubjectAppends(b *testing.B, known bool) {
	kek := writeKEK(b, b.TempDir(), "bench.kek")
	subject := func(i int) []string { return []string{fmt.Sprintf("customer-%d", i%benchSubjects)} }
	var setup func(c *childLog)
	if known {
		// One record per subject, concurrently (sequential appends would
		// each wait out a batch and leave the log idling for a minute,
		// which cpu-us/record would count).
		setup = func(c *childLog) {
			var wg sync.WaitGroup
			const pad = (layout.EntryBundleWidth - benchSubjects%layout.EntryBundleWidth) % layout.EntryBundleWidth
			errs := make(chan error, benchSubjects+pad)
			for i := range benchSubjects {
				wg.Go(func() {
					if _, err := c.api.Append(context.Background(), &cairnv1.AppendRequest{Payload: []byte("known"), Subject: subject(i)}); err != nil {
						errs <- err
					}
				})
			}
			// Then plain records up to a whole entry bundle, so that the
			// measured appends start at a bundle boundary as
			// BenchmarkAppend's do on its empty log. From a boundary each
			// full sequencing batch (256) writes one whole bundle and
			// tile; from anywhere else it writes two partial ones and
			// their directories, and takes twice as long (measured: 12.8
			// against 5.6 ms a batch), whatever the records.
			for i := range pad {
				wg.Go(func() {
					if _, err := c.api.Append(context.Background(), &cairnv1.AppendRequest{Payload: fmt.Appendf(nil, "pad %d", i)}); err != nil {
						errs <- err
					}
				})
			}
			wg.Wait()
			close(errs)
			if err := <-errs; err != nil {
				b.Fatal(err)
			}
		}
	}
	runBenchWith(b, []string{envChildKEK + "=" + kek}, setup, func(c *childLog, lat *latencies, n int) error {
		const workers = 512
		var next atomic.Int64
		var wg sync.WaitGroup
		var firstErr atomic.Value
		for range workers {
			wg.Go(func() {
				for {
					i := int(next.Add(1)) - 1
					if i >= n {
						return
					}
					sent := time.Now()
					r, err := c.api.Append(context.Background(), &cairnv1.AppendRequest{Payload: payload(i), IdempotencyKey: strconv.Itoa(i), Subject: subject(i)})
					if err != nil {
						firstErr.CompareAndSwap(nil, err)
						return
					}
					lat.done(r.Index, sent)
				}
			})
		}
		wg.Wait()
		if err, ok := firstErr.Load().(error); ok {
			return err
		}
		return nil
	})
}

// BenchmarkErase measures erasure latency: from cairn.v1.Log/Erase to its
// answer (key destroyed durably, erasure record durably sequenced), one
// subject after another, each with records in the log.
func BenchmarkErase(b *testing.B) {
	const subjects = 200
	kek := writeKEK(b, b.TempDir(), "bench.kek")
	for range b.N {
		b.StopTimer()
		c, vkey := benchLog(b, envChildKEK+"="+kek)
		for i := range subjects {
			for j := range 3 {
				if _, err := c.api.Append(context.Background(), &cairnv1.AppendRequest{Payload: payload(i*3 + j), Subject: []string{fmt.Sprintf("customer-%d", i)}}); err != nil {
					b.Fatal(err)
				}
			}
		}
		c.waitForSize(b, vkey, 3*subjects)
		var took []time.Duration
		b.StartTimer()
		start := time.Now()
		for i := range subjects {
			t0 := time.Now()
			if _, err := c.api.Erase(context.Background(), &cairnv1.EraseRequest{Subject: fmt.Sprintf("customer-%d", i), Reason: "benchmark"}); err != nil {
				b.Fatal(err)
			}
			took = append(took, time.Since(t0))
		}
		elapsed := time.Since(start)
		b.StopTimer()
		b.ReportMetric(float64(subjects)/elapsed.Seconds(), "erasures/s")
		b.ReportMetric(percentile(took, 0.50), "p50-erase-ms")
		b.ReportMetric(percentile(took, 0.99), "p99-erase-ms")
		b.ReportMetric(0, "ns/op")
		c.stop(b)
	}
}
