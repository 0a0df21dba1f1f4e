package log

import (
	"context"
	"fmt"
	"log/slog"
	"math"
	"testing"
	"time"
)

// The identity filter never answers "absent" for an identity added to it,
// and lets through about the share of absent ones falsePositiveRate
// estimates, for SHA-256 identities and for short ones it hashes.
func TestIdentityFilterHasNoFalseAbsentAndTheEstimatedFalsePositives(t *testing.T) {
	for _, tc := range []struct {
		name string
		id   func(uint64) []byte
	}{
		{"sha256", benchIdentity},
		{"short", func(i uint64) []byte { return fmt.Appendf(nil, "id-%d", i) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newIdentityFilter(64 << 10) // 1024 blocks
			const n = 40_000                 // ~39 per block: ~0.1% false positives
			for i := range uint64(n) {
				f.add(tc.id(i))
			}
			for i := range uint64(n) {
				if !f.mayContain(tc.id(i)) {
					t.Fatalf("identity %d was added but the filter says it is absent", i)
				}
			}
			const probes = 200_000
			passed := 0
			for i := range uint64(probes) {
				if f.mayContain(tc.id(1<<40 + i)) {
					passed++
				}
			}
			got, est := float64(passed)/probes, f.falsePositiveRate()
			if est <= 0 || est > 0.01 || math.Abs(got-est) > est/2+0.0005 {
				t.Errorf("false positives: %.5f measured, %.5f estimated", got, est)
			}
		})
	}
	if f := newIdentityFilter(1); f.bytes() != filterBlockBytes || f.falsePositiveRate() != 0 {
		t.Errorf("a filter smaller than a block has %d bytes and rate %v, want one block and 0", f.bytes(), f.falsePositiveRate())
	}
}

// waitFilterReady waits until the index's identity filter answers lookups.
func waitFilterReady(t *testing.T, as *posixAntispam) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !as.filterReady.Load() {
		if time.Now().After(deadline) {
			t.Fatal("the identity filter was not filled within 30s")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// An index reopened over existing identities fills its filter from the
// database while the follower goes on writing, and afterwards answers every
// identity, old or written during the fill, with its first index: the filter
// answers only misses, from which it spares Pebble.
func TestPOSIXAntispamFilterFilledAtOpenHidesNoIdentity(t *testing.T) {
	dir := t.TempDir()
	logger := slog.New(slog.DiscardHandler)
	as, err := openPOSIXAntispam(context.Background(), dir, 16, 1<<20, logger)
	if err != nil {
		t.Fatal(err)
	}
	f := &antispamFollower{a: as}
	const batches = 40 // 60,000 identities, in tables and the WAL
	next := uint64(0)
	indexBatch := func(f *antispamFollower) {
		t.Helper()
		ids := make([][]byte, antispamFollowBatch)
		for i := range ids {
			ids[i] = benchIdentity(next + uint64(i))
		}
		if err := f.index(next, ids); err != nil {
			t.Fatal(err)
		}
		next += uint64(len(ids))
	}
	for range batches / 2 {
		indexBatch(f)
	}
	if err := as.db.Flush(); err != nil {
		t.Fatal(err)
	}
	for range batches / 2 {
		indexBatch(f)
	}
	if err := as.close(); err != nil {
		t.Fatal(err)
	}

	as, err = openPOSIXAntispam(context.Background(), dir, 16, 1<<20, logger)
	if err != nil {
		t.Fatal(err)
	}
	defer as.close()
	f = &antispamFollower{a: as}
	// Written while the fill may still be scanning.
	for range 4 {
		indexBatch(f)
	}
	waitFilterReady(t, as)
	for i := range next {
		idx, found, err := as.lookup(benchIdentity(i))
		if err != nil || !found || idx != i {
			t.Fatalf("identity %d: index %d found %v (%v), want %d found", i, idx, found, err, i)
		}
	}
	if c := counterValue(t, as.filtered); c != 0 {
		t.Fatalf("the filter answered %v lookups of indexed identities", c)
	}
	const misses = 1000
	for i := range uint64(misses) {
		if _, found, err := as.lookup(benchIdentity(1<<40 + i)); err != nil || found {
			t.Fatalf("a new identity: found %v (%v)", found, err)
		}
	}
	if c := counterValue(t, as.filtered); c < misses*0.99 {
		t.Errorf("the filter answered %v of %d misses, want nearly all", c, misses)
	}
	// A duplicate within a follower batch and across batches keeps its first index.
	if err := f.index(next, [][]byte{benchIdentity(5), benchIdentity(1 << 41)}); err != nil {
		t.Fatal(err)
	}
	for _, w := range []struct {
		id  []byte
		idx uint64
	}{{benchIdentity(5), 5}, {benchIdentity(1 << 41), next + 1}} {
		if idx, found, err := as.lookup(w.id); err != nil || !found || idx != w.idx {
			t.Errorf("identity %x: index %d found %v (%v), want %d", w.id[:4], idx, found, err, w.idx)
		}
	}
}
