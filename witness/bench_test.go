package witness

import (
	"context"
	"fmt"
	"sync"
	"testing"
)

// BenchmarkAddCheckpoint measures cosignatures/s across 16 logs, each
// request a full add-checkpoint (parse, verify the log signature and the
// consistency proof, cosign, persist durably with fsync).
func BenchmarkAddCheckpoint(b *testing.B) {
	const logs = 16
	const perLog = 400
	var ms []*memLog
	for i := range logs {
		ms = append(ms, newMemLog(b, fmt.Sprintf("example.test/log%d", i)))
	}
	w := newTestWitness(b, ms...)
	// Pre-build each log's sequence of growing checkpoints with proofs.
	reqs := make([][]AddCheckpointRequest, logs)
	for i, m := range ms {
		prev := int64(0)
		for k := range perLog {
			m.add(b, fmt.Sprintf("r%d", k))
			reqs[i] = append(reqs[i], AddCheckpointRequest{Old: uint64(prev), Proof: m.proof(b, prev), Checkpoint: m.checkpoint(b)})
			prev = m.n
		}
	}
	b.ResetTimer()
	for range b.N {
		b.StopTimer()
		w = startWitness(b, w.skey, w.vkey, b.TempDir(), ms...)
		b.StartTimer()
		var wg sync.WaitGroup
		for i := range logs {
			wg.Go(func() {
				for _, r := range reqs[i] {
					if _, err := w.AddCheckpoint(context.Background(), r); err != nil {
						b.Error(err)
						return
					}
				}
			})
		}
		wg.Wait()
	}
	b.ReportMetric(float64(logs*perLog*b.N)/b.Elapsed().Seconds(), "cosignatures/s")
	b.ReportMetric(0, "ns/op")
}
