package mirror

import (
	"bytes"
	"compress/gzip"
	"context"
	"fmt"
	"io"
	"net/http"
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
// integrated) is signed.
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

// BenchmarkMirrorStore measures the mirror's side alone: 100k records of
// 1 KiB, in add-entries requests of 32 packages built (and gzipped) before
// the clock starts, as a client streams them. entries_stored/s covers every
// package but the last being authenticated and durably written (202s);
// commit_s is the last request: the rest of the integration, the root
// check and the cosignature.
func BenchmarkMirrorStore(b *testing.B) {
	const n = 100_000
	l := newMemLog(b, "example.com/log")
	l.add(b, n, strings.Repeat("x", 1000))
	var bodies [][]byte
	for start := uint64(0); start < n; start += 32 * 256 {
		bodies = append(bodies, gzipped(entriesBody(b, l, start, n, 32)))
	}
	for range b.N {
		tm := newTestMirror(b, l)
		if code, body := tm.addCheckpoint(b, l, 0, n); code != 200 {
			b.Fatal(code, string(body))
		}
		start := time.Now()
		for i, body := range bodies {
			if i == len(bodies)-1 {
				stored := time.Since(start)
				b.ReportMetric(float64(n-(n%(32*256)))/stored.Seconds(), "entries_stored/s")
				start = time.Now()
			}
			code, _, rb := tm.postGzip(b, "/add-entries", body)
			if (i < len(bodies)-1 && code != 202) || (i == len(bodies)-1 && code != 200) {
				b.Fatalf("request %d: %d %s", i, code, rb)
			}
		}
		b.ReportMetric(time.Since(start).Seconds(), "commit_s")
	}
}

func gzipped(b []byte) []byte {
	var out bytes.Buffer
	w := gzip.NewWriter(&out)
	_, _ = w.Write(b)
	_ = w.Close()
	return out.Bytes()
}

func (tm *testMirror) postGzip(t testing.TB, path string, body []byte) (int, http.Header, []byte) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, tm.srv.URL+path, bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/octet-stream")
	req.Header.Set("Content-Encoding", "gzip")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	rb, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, rb
}

// BenchmarkMirrorIngestMySQLS3 is BenchmarkMirrorIngest on mysql+s3: the
// run's MariaDB and MinIO (skipped when they are not installed), a bucket of
// its own per iteration.
func BenchmarkMirrorIngestMySQLS3(b *testing.B) {
	const n = 100_000
	l := newMemLog(b, "example.com/log")
	l.add(b, n, strings.Repeat("x", 1000))
	skey, vkey := newCosignerKey(b, "mirror.test/m1")
	for i := range b.N {
		aws := testAWS(b, fmt.Sprintf("bench-ingest-%d-%d", time.Now().UnixNano(), i))
		tm := startMirrorWith(b, func(c *Config) { c.AWS = aws }, skey, vkey, "", l)
		start := time.Now()
		if _, err := tm.pusher(b).Push(context.Background(), l, l.verifier, l.checkpointAt(b, n)); err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(float64(n)/time.Since(start).Seconds(), "entries_cosigned/s")
		tm.srv.Close()
		tm.Close()
	}
}
