package witness

import (
	"context"
	"fmt"
	"sync"
	"testing"

	"github.com/cairnlog/cairn/format/cosignature"
)

// BenchmarkAddCheckpoint measures checkpoints cosigned per second across 16 logs, each
// request a full add-checkpoint (parse, verify the log signature and the
// consistency proof, cosign, persist durably with fsync).
func BenchmarkAddCheckpoint(b *testing.B) {
	skey, vkey := newWitnessKey(b)
	benchAddCheckpoint(b, []string{skey}, vkey)
}

// BenchmarkAddCheckpointHybrid is BenchmarkAddCheckpoint for a witness with
// an Ed25519 and an ML-DSA-44 key: every answer carries both cosignatures.
func BenchmarkAddCheckpointHybrid(b *testing.B) {
	skey, vkey := newWitnessKey(b)
	pq, _, err := cosignature.GenerateKey("witness.test/w1", cosignature.MLDSA44)
	if err != nil {
		b.Fatal(err)
	}
	benchAddCheckpoint(b, []string{skey, pq}, vkey)
}

func benchAddCheckpoint(b *testing.B, skeys []string, vkey string) {
	const logs = 16
	const perLog = 400
	var ms []*memLog
	for i := range logs {
		ms = append(ms, newMemLog(b, fmt.Sprintf("example.test/log%d", i)))
	}
	w := startWitnessKeys(b, skeys, vkey, b.TempDir(), ms...)
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
		w = startWitnessKeys(b, skeys, vkey, b.TempDir(), ms...)
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
	// A checkpoint cosigned is one answer; it carries one cosignature per key.
	b.ReportMetric(float64(logs*perLog*b.N)/b.Elapsed().Seconds(), "checkpoints/s")
	b.ReportMetric(float64(logs*perLog*b.N*len(skeys))/b.Elapsed().Seconds(), "cosignatures/s")
	b.ReportMetric(0, "ns/op")
}
