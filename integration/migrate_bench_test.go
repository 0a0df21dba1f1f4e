package integration

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/trillian"
)

// benchLeaves is the size of the Trillian tree the migration benchmark copies.
const benchLeaves = 1 << 18

// BenchmarkMigrateTrillian measures `cairn migrate trillian` from a local
// Trillian v1 log (log server and signer on MariaDB) of benchLeaves leaves
// of 100–300 bytes into fresh posix storage and into mysql+s3 (MariaDB +
// MinIO): the whole command, from process start to the verified root, in
// leaves/s. The tree is a PREORDERED_LOG filled with AddSequencedLeaves
// (fast to build); its leaves hash and its root is computed exactly as a
// LOG tree's.
func BenchmarkMigrateTrillian(b *testing.B) {
	e := startEngines(b)
	tr := startTrillian(b, e, "PREORDERED_LOG")
	ctx := context.Background()
	var wg sync.WaitGroup
	sem := make(chan struct{}, 4)
	const batch = 1000
	for start := 0; start < benchLeaves; start += batch {
		var leaves []*trillian.LogLeaf
		for i := start; i < min(start+batch, benchLeaves); i++ {
			v := []byte(fmt.Sprintf("legacy event %d %s", i, strings.Repeat("x", 100+i%200)))
			leaves = append(leaves, &trillian.LogLeaf{LeafValue: v, LeafIndex: int64(i)})
		}
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			if _, err := tr.tl.AddSequencedLeaves(ctx, &trillian.AddSequencedLeavesRequest{LogId: tr.tree, Leaves: leaves}); err != nil {
				b.Error(err)
			}
		}()
	}
	wg.Wait()
	tr.waitSize(b, benchLeaves)
	dir := b.TempDir()
	key := keygen(b, dir)
	flags := e.storage()("")
	for _, target := range []struct {
		name    string
		storage []string
	}{
		// Fresh targets: b.N is 1 (-benchtime 1x).
		{"posix/batch=16", []string{"--storage", "posix:" + dir + "/posix16"}},
		{"posix/batch=32", []string{"--storage", "posix:" + dir + "/posix32", "--batch", "32"}},
		{"mysql+s3/batch=16", flags[:len(flags)-2]},
	} {
		b.Run(target.name, func(b *testing.B) {
			if b.N > 1 {
				b.Skip("run with -benchtime 1x: a second pass over the same target copies nothing")
			}
			for range b.N {
				start := time.Now()
				out, stderr, code := tr.migrate(b, key, target.storage...)
				d := time.Since(start)
				if code != 0 {
					b.Fatalf("migrate: exit %d\n%s\n%s", code, out, stderr)
				}
				b.ReportMetric(float64(benchLeaves)/d.Seconds(), "leaves/s")
				b.ReportMetric(d.Seconds(), "s/migration")
			}
		})
	}
}
