package log

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"log/slog"
	"testing"
	"time"
)

// antispamBenchPrefill is how many identities BenchmarkPOSIXAntispam puts in
// the index before it measures.
const antispamBenchPrefill = 1 << 20

// identity is the i-th benchmark identity (a SHA-256 hash, as Tessera's).
func benchIdentity(i uint64) []byte {
	h := sha256.Sum256(binary.BigEndian.AppendUint64(nil, i))
	return h[:]
}

// BenchmarkPOSIXAntispam measures the persistent antispam index alone, with
// antispamBenchPrefill identities in it: the follower indexing batches of
// antispamFollowBatch new identities (ns/op per identity), filling the
// identity filter from the index (at start), and lookups of identities it
// does not hold (every new record) and holds (a retry).
func BenchmarkPOSIXAntispam(b *testing.B) {
	as, err := openPOSIXAntispam(context.Background(), b.TempDir(), DefaultAntispamMemoryMiB, 1<<20, slog.New(slog.DiscardHandler))
	if err != nil {
		b.Fatal(err)
	}
	defer as.close()
	f := &antispamFollower{a: as}
	next := uint64(0)
	indexBatch := func() {
		ids := make([][]byte, antispamFollowBatch)
		for i := range ids {
			ids[i] = benchIdentity(next + uint64(i))
		}
		if err := f.index(next, ids); err != nil {
			b.Fatal(err)
		}
		next += uint64(len(ids))
	}
	for next < antispamBenchPrefill {
		indexBatch()
	}
	for !as.filterReady.Load() { // filled at open, from an empty index
		time.Sleep(time.Millisecond)
	}
	b.Run("index", func(b *testing.B) {
		for b.Loop() {
			indexBatch()
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*antispamFollowBatch), "ns/identity")
	})
	b.Run("fill", func(b *testing.B) {
		// The scan of the index into the identity filter at start.
		for b.Loop() {
			if err := as.fillFilter(context.Background()); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(next), "ns/identity")
	})
	b.Run("lookup-miss", func(b *testing.B) {
		i := uint64(1 << 40)
		for b.Loop() {
			if _, found, err := as.lookup(benchIdentity(i)); err != nil || found {
				b.Fatal(found, err)
			}
			i++
		}
	})
	b.Run("lookup-hit", func(b *testing.B) {
		i := uint64(0)
		for b.Loop() {
			if _, found, err := as.lookup(benchIdentity(i % antispamBenchPrefill)); err != nil || !found {
				b.Fatal(i, found, err)
			}
			i += 7919
		}
	})
}

// BenchmarkIdentityFilter measures the identity filter at the default size
// (antispamFilterSize of DefaultAntispamMemoryMiB) holding 16 M identities:
// the follower's add of a new identity and an appender's check of one.
func BenchmarkIdentityFilter(b *testing.B) {
	f := newIdentityFilter(antispamFilterSize(DefaultAntispamMemoryMiB))
	// id sets a uniform 32-byte identity from i (splitmix64), cheaper than
	// hashing one.
	id := make([]byte, 32)
	set := func(i uint64) []byte {
		for o := 0; o < 32; o += 8 {
			i += 0x9e3779b97f4a7c15
			z := (i ^ i>>30) * 0xbf58476d1ce4e5b9
			z = (z ^ z>>27) * 0x94d049bb133111eb
			binary.LittleEndian.PutUint64(id[o:], z^z>>31)
		}
		return id
	}
	const held = 16 << 20
	for i := range uint64(held) {
		f.add(set(i))
	}
	b.Run("add", func(b *testing.B) {
		i := uint64(1 << 40)
		for b.Loop() {
			f.add(set(i))
			i++
		}
	})
	b.Run("may-contain", func(b *testing.B) {
		i := uint64(1 << 41)
		for b.Loop() {
			f.mayContain(set(i))
			i++
		}
	})
}
