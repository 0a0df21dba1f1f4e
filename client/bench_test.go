package client

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"syscall"
	"testing"

	"github.com/cairnlog/cairn/format/policy"
	"github.com/cairnlog/cairn/format/receipt"
	"github.com/cairnlog/cairn/internal/childfs"
	"github.com/transparency-dev/merkle/compact"
	"github.com/transparency-dev/merkle/rfc6962"
	"github.com/transparency-dev/tessera/api/layout"
	"golang.org/x/mod/sumdb/note"
)

const benchSize = 1 << 20 // 1,048,576 records

// buildLog writes a tlog-tiles log of n records (entry bundles, every hash
// tile, a signed checkpoint) and returns its directory and policy. The log is
// cached in the temp directory across runs.
func buildLog(b testing.TB, n uint64) (string, *policy.Policy) {
	dir := filepath.Join(os.TempDir(), fmt.Sprintf("cairn-bench-log-%d", n))
	if pol, err := os.ReadFile(filepath.Join(dir, "policy")); err == nil {
		p, err := policy.Parse(pol)
		if err == nil {
			return dir, p
		}
	}
	os.RemoveAll(dir)
	write := func(path string, data []byte) {
		p := filepath.Join(dir, path)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			b.Fatal(err)
		}
		if err := os.WriteFile(p, data, 0o644); err != nil {
			b.Fatal(err)
		}
	}
	rf := compact.RangeFactory{Hash: rfc6962.DefaultHasher.HashChildren}
	tree := rf.NewEmptyRange(0)
	// levels[l] holds the level-l hashes of the current (not yet full) tile.
	levels := make([][]byte, 8)
	flushTile := func(level int, index uint64, partial uint8) {
		write(layout.TilePath(uint64(level), index, partial), levels[level])
	}
	var addHash func(level int, h []byte, pos uint64)
	addHash = func(level int, h []byte, pos uint64) {
		levels[level] = append(levels[level], h...)
		if len(levels[level]) == 256*32 {
			flushTile(level, pos/256, 0)
			r := rf.NewEmptyRange(0)
			for i := 0; i < 256; i++ {
				_ = r.Append(levels[level][i*32:(i+1)*32], nil)
			}
			root, _ := r.GetRootHash(nil)
			levels[level] = levels[level][:0]
			addHash(level+1, root, pos/256)
		}
	}
	var bundle []byte
	for i := range n {
		e := fmt.Appendf(nil, `{"event":"benchmark","seq":%d,"pad":"%064d"}`, i, i)
		bundle = binary.BigEndian.AppendUint16(bundle, uint16(len(e)))
		bundle = append(bundle, e...)
		h := rfc6962.DefaultHasher.HashLeaf(e)
		_ = tree.Append(h, nil)
		addHash(0, h, i)
		if (i+1)%256 == 0 {
			write(layout.EntriesPath(i/256, 0), bundle)
			bundle = bundle[:0]
		}
	}
	if len(bundle) > 0 {
		write(layout.EntriesPath(n/256, uint8(n%256)), bundle)
	}
	// The partial tile of each level: index floor(n/256^(l+1)).
	for level, s := 0, n; level < len(levels); level, s = level+1, s/256 {
		if len(levels[level]) > 0 {
			flushTile(level, s/256, uint8(len(levels[level])/32))
		}
	}
	root, _ := tree.GetRootHash(nil)
	skey, vkey, _ := note.GenerateKey(rand.Reader, "bench.test/log")
	s, _ := note.NewSigner(skey)
	cp, _ := note.Sign(&note.Note{Text: fmt.Sprintf("bench.test/log\n%d\n%s\n", n, base64.StdEncoding.EncodeToString(root))}, s)
	write("checkpoint", cp)
	pol := []byte("log " + vkey + "\nquorum none\n")
	write("policy", pol)
	p, err := policy.Parse(pol)
	if err != nil {
		b.Fatal(err)
	}
	return dir, p
}

// BenchmarkAuditReplay replays a 1M-record log over HTTP (loopback): every
// entry hashed, every tile and the root recomputed. The log is served by
// a plain file server in a child process, so beside records/s (client and
// server sharing the box) it reports each side's CPU per record: the
// client's is what an auditor pays.
func BenchmarkAuditReplay(b *testing.B) {
	dir, p := buildLog(b, benchSize)
	base, pid := childfs.Start(b, dir)
	l, err := NewLog(base, p, HTTPOptions{})
	if err != nil {
		b.Fatal(err)
	}
	// Measure the replay, not the build: its files are flushed to disk and
	// its garbage collected before the clock starts.
	syscall.Sync()
	runtime.GC()
	cpu0, srv0 := selfCPU(), procCPU(pid)
	b.ResetTimer()
	for range b.N {
		res, err := l.Audit(context.Background(), nil, AuditOptions{})
		if err != nil {
			b.Fatal(err)
		}
		if res.Records != benchSize {
			b.Fatalf("audited %d", res.Records)
		}
	}
	b.StopTimer()
	records := float64(benchSize * uint64(b.N))
	b.ReportMetric(records/b.Elapsed().Seconds(), "records/s")
	b.ReportMetric(float64((selfCPU()-cpu0).Nanoseconds())/records, "client-cpu-ns/record")
	b.ReportMetric(float64((procCPU(pid)-srv0).Nanoseconds())/records, "server-cpu-ns/record")
	b.ReportMetric(0, "ns/op")
}

// BenchmarkVerifyReceipt verifies a receipt offline (signature + inclusion).
func BenchmarkVerifyReceipt(b *testing.B) {
	dir, p := buildLog(b, benchSize)
	l, err := NewLog(serve(b, dir), p, HTTPOptions{})
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	v, err := l.Checkpoint(ctx)
	if err != nil {
		b.Fatal(err)
	}
	const idx = 777777
	leaf, err := l.Entry(ctx, v, idx)
	if err != nil {
		b.Fatal(err)
	}
	pr, err := l.InclusionProof(ctx, idx, v.Checkpoint.Size)
	if err != nil {
		b.Fatal(err)
	}
	rc := receipt.Receipt{Index: idx, Proof: pr, Checkpoint: v.Raw}.Marshal()
	b.ResetTimer()
	for range b.N {
		if _, err := VerifyReceipt(p, leaf, rc); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "verifications/s")
}
