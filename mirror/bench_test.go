package mirror

import (
	"context"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// BenchmarkMirrorIngest pushes 100k records of 1 KiB from an x/mod-built log
// to a mirror over HTTP (gzip bodies of 32 packages, as client.Mirror
// sends them) and reports entries/s: "stored" until every package is
// authenticated and on disk, "cosigned" until the mirror checkpoint (tiles
// integrated by Tessera) is signed.
func BenchmarkMirrorIngest(b *testing.B) {
	const n = 100_000
	l := newMemLog(b, "example.com/log")
	payload := strings.Repeat("x", 1000)
	l.add(b, n, payload)
	for range b.N {
		tm := newTestMirror(b, l)
		p := tm.pusher(b)
		start := time.Now()
		if _, err := p.Push(context.Background(), l, l.verifier, l.checkpointAt(b, n)); err != nil {
			b.Fatal(err)
		}
		total := time.Since(start)
		b.ReportMetric(float64(n)/total.Seconds(), "entries_cosigned/s")
	}
}

// BenchmarkMirrorLag grows a log at a steady rate (a checkpoint every
// 200 ms, as the log's default interval) while a pusher follows it the way
// log serve --mirror does, and reports how far the mirror checkpoint is
// behind each published checkpoint: p50 and p99 seconds.
func BenchmarkMirrorLag(b *testing.B) {
	const rate = 5000 // records/s
	const run = 10 * time.Second
	for range b.N {
		l := newMemLog(b, "example.com/log")
		tm := newTestMirror(b, l)
		p := tm.pusher(b)
		var mu sync.Mutex // guards l and published
		published := map[uint64]time.Time{}
		var cps [][]byte
		ctx, cancel := context.WithTimeout(context.Background(), run)
		var wg sync.WaitGroup
		wg.Go(func() {
			t := time.NewTicker(200 * time.Millisecond)
			defer t.Stop()
			for {
				select {
				case <-ctx.Done():
					return
				case <-t.C:
				}
				mu.Lock()
				l.add(b, rate/5, "r")
				published[l.size()] = time.Now()
				cps = append(cps, l.checkpointAt(b, l.size()))
				mu.Unlock()
			}
		})
		var lags []float64
		for ctx.Err() == nil {
			mu.Lock()
			if len(cps) == 0 {
				mu.Unlock()
				time.Sleep(10 * time.Millisecond) // waiting for the first checkpoint of the simulated log
				continue
			}
			cp := cps[len(cps)-1]
			snap := l.fork()
			mu.Unlock()
			res, err := p.Push(context.Background(), snap, l.verifier, cp)
			if err != nil {
				b.Fatal(err)
			}
			done := time.Now()
			mu.Lock()
			for size, at := range published {
				if size <= res.Size {
					lags = append(lags, done.Sub(at).Seconds())
					delete(published, size)
				}
			}
			mu.Unlock()
		}
		cancel()
		wg.Wait()
		slices.Sort(lags)
		if len(lags) == 0 {
			b.Fatal("no checkpoint mirrored")
		}
		b.ReportMetric(lags[len(lags)/2], "p50_lag_s")
		b.ReportMetric(lags[len(lags)*99/100], "p99_lag_s")
		b.ReportMetric(rate, "records/s")
	}
}
