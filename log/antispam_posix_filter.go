package log

import (
	"crypto/sha256"
	"encoding/binary"
	"hash/maphash"
	"math"
	"math/bits"
	"sync/atomic"
)

// identityFilter is a Bloom filter of fixed size over the identities in the
// POSIX antispam index, consulted before the index: an identity it does not
// hold is not in the index, and its lookup ends there. Almost every lookup
// is of a new record, a miss, which in Pebble searches both memtables'
// skiplists (they have no Bloom filter; 13% of a stream's CPU in #19's
// profiles) and every table's filter; here it costs one cache line.
//
// It only ever answers "absent" for an identity never added: bits are set,
// never cleared, so a false "absent" (which would sequence a duplicate) is
// impossible; a false "present" only costs the Pebble lookup it would have
// made anyway. Its size is fixed at open (a share of
// Config.AntispamMemoryMiB), so its memory does not grow with the index;
// instead its false positives rise as the index outgrows it (see
// falsePositiveRate), and with them the share of misses that still reach
// Pebble.
//
// It is a split-block Bloom filter: each identity sets one bit in each of
// the 8 words of one 64-byte block. Bits are set and read atomically, so the
// follower adds while appenders look up.
type identityFilter struct {
	blocks []filterBlock
	seed   maphash.Seed
	// added counts the identities added (re-adds included), for
	// falsePositiveRate.
	added atomic.Uint64
}

// filterBlock is one cache line of the filter.
type filterBlock [8]atomic.Uint64

// filterBlockBytes is the size of a filterBlock.
const filterBlockBytes = 64

// newIdentityFilter returns an empty filter of size bytes (rounded down to
// whole blocks, at least one).
func newIdentityFilter(size int64) *identityFilter {
	n := max(size/filterBlockBytes, 1)
	return &identityFilter{blocks: make([]filterBlock, n), seed: maphash.MakeSeed()}
}

// hash spreads an identity over 128 bits: 64 choose the block, 48 the bit
// in each of its words. Tessera's identities are SHA-256 hashes, uniform
// already, so their bytes are used as they are; anything else is hashed.
func (f *identityFilter) hash(id []byte) (block, bitsOf uint64) {
	if len(id) == sha256.Size {
		return binary.LittleEndian.Uint64(id), binary.LittleEndian.Uint64(id[8:])
	}
	h := maphash.Bytes(f.seed, id)
	return h, bits.RotateLeft64(h*0x9e3779b97f4a7c15, 29)
}

// add records id.
func (f *identityFilter) add(id []byte) {
	h1, h2 := f.hash(id)
	b := &f.blocks[reduce(h1, uint64(len(f.blocks)))]
	for i := range b {
		b[i].Or(1 << (h2 & 63))
		h2 >>= 6
	}
	f.added.Add(1)
}

// mayContain reports false only for an identity never added.
func (f *identityFilter) mayContain(id []byte) bool {
	h1, h2 := f.hash(id)
	b := &f.blocks[reduce(h1, uint64(len(f.blocks)))]
	for i := range b {
		if b[i].Load()&(1<<(h2&63)) == 0 {
			return false
		}
		h2 >>= 6
	}
	return true
}

// reduce maps h onto [0, n) (Lemire's multiply-shift, not a division).
func reduce(h, n uint64) uint64 {
	hi, _ := bits.Mul64(h, n)
	return hi
}

// bytes is the filter's size.
func (f *identityFilter) bytes() int64 { return int64(len(f.blocks)) * filterBlockBytes }

// falsePositiveRate estimates the share of absent identities the filter
// lets through to Pebble, from the identities added: n of them over m
// blocks load a block with k identities, k Poisson-distributed with mean
// n/m; a word of a block holding k has a given bit set with probability
// 1-(63/64)^k, and an absent identity passes when its bit is set in all 8
// words. (Re-added identities count twice, so this errs high.)
func (f *identityFilter) falsePositiveRate() float64 {
	mean := float64(f.added.Load()) / float64(len(f.blocks))
	if mean == 0 {
		return 0
	}
	// Sum the Poisson terms around the mean, where the mass is.
	lo := max(0, int(mean-12*math.Sqrt(mean)-12))
	hi := int(mean + 12*math.Sqrt(mean) + 12)
	rate := 0.0
	for k := lo; k <= hi; k++ {
		lg, _ := math.Lgamma(float64(k + 1))
		pk := math.Exp(float64(k)*math.Log(mean) - mean - lg)
		rate += pk * math.Pow(1-math.Pow(63.0/64, float64(k)), 8)
	}
	return rate
}
