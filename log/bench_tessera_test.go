package log

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/transparency-dev/tessera"
	"github.com/transparency-dev/tessera/storage/posix"
	"golang.org/x/mod/sumdb/note"
)

// BenchmarkTesseraPOSIXAppend is the ceiling under every POSIX append
// benchmark: Tessera v1.0.4's POSIX driver alone, in this process, with no
// network, no antispam and no envelope, fed 256-byte entries as fast as
// its queue takes them (16384 in flight), with the default sequencing batch
// and the one docs/log.md suggests for batched sources. Tessera sequences
// and integrates a batch in one goroutine, writing each entry bundle and
// tile as a new file with O_SYNC, a rename and a directory fsync, one after
// another: that serial flush, not CPU, is what bounds the rate on a disk
// with a millisecond fsync.
func BenchmarkTesseraPOSIXAppend(b *testing.B) {
	for _, bt := range []struct {
		name string
		size uint
		age  time.Duration
	}{{"256-50ms", DefaultBatchMaxSize, DefaultBatchMaxAge}, {"2048-20ms", 2048, 20 * time.Millisecond}} {
		b.Run(bt.name, func(b *testing.B) {
			for range b.N {
				benchTesseraPOSIX(b, bt.size, bt.age)
			}
		})
	}
}

func benchTesseraPOSIX(b *testing.B, size uint, age time.Duration) {
	b.StopTimer()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	skey, _ := newKey(b, testOrigin)
	signer, err := note.NewSigner(skey)
	if err != nil {
		b.Fatal(err)
	}
	d, err := posix.New(ctx, posix.Config{Path: b.TempDir()})
	if err != nil {
		b.Fatal(err)
	}
	app, shutdown, _, err := tessera.NewAppender(ctx, d, tessera.NewAppendOptions().
		WithCheckpointSigner(signer).
		WithCheckpointInterval(time.Second).
		WithBatching(size, age))
	if err != nil {
		b.Fatal(err)
	}
	defer func() { _ = shutdown(ctx) }()
	const n, inFlight = 300000, 16384
	entries := make([][]byte, n)
	for i := range entries {
		entries[i] = record256(i)
	}
	futures := make(chan tessera.IndexFuture, inFlight)
	var firstErr error
	var wg sync.WaitGroup
	wg.Go(func() {
		for f := range futures {
			if _, err := f(); err != nil && firstErr == nil {
				firstErr = err
			}
		}
	})
	b.StartTimer()
	start := time.Now()
	for i := range n {
		futures <- app.Add(ctx, tessera.NewEntry(entries[i]))
	}
	close(futures)
	wg.Wait()
	elapsed := time.Since(start)
	b.StopTimer()
	if firstErr != nil {
		b.Fatal(firstErr)
	}
	b.ReportMetric(n/elapsed.Seconds(), "records/s")
	b.ReportMetric(float64(elapsed.Microseconds())/n, "us/record")
	b.ReportMetric(0, "ns/op")
}
