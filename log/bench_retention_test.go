package log

import (
	"context"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/transparency-dev/tessera/api/layout"
)

// benchBundles is how many full entry bundles each retention benchmark prunes.
const benchBundles = 32

// BenchmarkRetention measures prune throughput in entry bundles per second:
// the minimum index moves past benchBundles full bundles, which are then
// archived (copied, read back, verified against the level-0 tiles) and
// deleted, or only deleted (purge), on each storage driver.
func BenchmarkRetention(b *testing.B) {
	for _, tc := range []struct{ name, then string }{{"archive", "archive"}, {"purge", "purge"}} {
		b.Run("posix/"+tc.name, func(b *testing.B) { benchRetention(b, nil, tc.then) })
		b.Run("mysql+s3/"+tc.name, func(b *testing.B) {
			b.StopTimer()
			aws := testEngines(b)
			b.StartTimer()
			benchRetention(b, &aws, tc.then)
		})
	}
}

func benchRetention(b *testing.B, aws *AWSConfig, then string) {
	ctx := context.Background()
	for range b.N {
		b.StopTimer()
		clock := &testClock{t: time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC)}
		skey, vkey := newKey(b, testOrigin)
		cfg := testConfig(b.TempDir(), skey)
		if aws != nil {
			cfg.Storage, cfg.AWS, cfg.CheckpointInterval = "mysql+s3", *aws, time.Second
		}
		switch {
		case then == "purge":
			cfg.Retention = []byte("keep 1d\nthen purge\n")
		case aws != nil:
			cfg.Retention = []byte(fmt.Sprintf("keep 1d\nthen archive s3://%s-archive/%d\n", aws.S3Bucket, time.Now().UnixNano()))
		default:
			cfg.Retention = []byte("keep 1d\nthen archive posix:" + filepath.Join(b.TempDir(), "archive") + "\n")
		}
		cfg.Now, cfg.RetentionInterval = clock.Now, time.Hour
		tl := startLog(b, cfg)
		tl.vkey = vkey
		n := benchBundles * layout.EntryBundleWidth
		var wg sync.WaitGroup
		sem := make(chan struct{}, 256)
		for i := range n {
			sem <- struct{}{}
			wg.Go(func() {
				defer func() { <-sem }()
				if _, err := tl.Append(ctx, Submission{Payload: fmt.Appendf(nil, "bench record %d", i)}, "bench"); err != nil {
					b.Error(err)
				}
			})
		}
		wg.Wait()
		tl.waitForSize(b, vkey, int64(n))
		if err := tl.retainer.observe(ctx); err != nil {
			b.Fatal(err)
		}
		for deadline := time.Now().Add(2 * time.Minute); ; {
			if f, err := tl.retainer.followed(ctx); err == nil && f >= uint64(n) {
				break
			}
			if time.Now().After(deadline) {
				b.Fatal("the antispam follower did not catch up within 2 minutes")
			}
			time.Sleep(100 * time.Millisecond)
		}
		clock.Add(2 * 24 * time.Hour)
		b.StartTimer()
		start := time.Now()
		if err := tl.EvaluateRetention(ctx); err != nil {
			b.Fatal(err)
		}
		elapsed := time.Since(start)
		b.StopTimer()
		st, err := tl.retainer.store.load(ctx)
		if err != nil || st.Deleted != benchBundles {
			b.Fatalf("deleted %d bundles (%v), want %d", st.Deleted, err, benchBundles)
		}
		b.ReportMetric(float64(benchBundles)/elapsed.Seconds(), "bundles/s")
		if err := tl.stop(b); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
}
