package client

import (
	"bytes"
	"crypto/sha256"
	"encoding"
	"encoding/binary"
	"hash"

	"github.com/transparency-dev/merkle/rfc6962"
)

// leafHasher computes the RFC 6962 hashes of an audit (leaf hashes and the
// nodes above them) without allocating per hash, and with one call of
// SHA-256's block function per hash.
//
// An audit spends most of its CPU in SHA-256: ~5 blocks a record (a
// ~127-byte leaf takes 3 with its padding, an interior node 2). With
// sha256.Sum256 each hash costs several calls of the block function (the
// message's whole blocks, then the padding) and copies of the partial
// block and of the hash's state around them: a fifth of the replay's CPU in
// the profiles of #19. So the hasher pads the message itself (FIPS 180-4
// §5.1.1: 0x80, zeros, the length in bits) into a reused buffer and writes
// it to a reused crypto/sha256 hash in one call. After whole padded
// blocks the hash's state is the digest; it is read from the state's
// binary form (encoding.BinaryAppender: "sha\x03", then the eight state
// words big-endian, which is the digest's byte order). The hasher checks
// that form once against sha256.Sum256 and uses Sum256 if it ever differs.
// TestLeafHasherIsTheRFC6962LeafHash and TestSubtreeRootIsTheCompactRangeRoot
// hold it to the merkle package.
type leafHasher struct {
	d     hash.Hash
	state encoding.BinaryAppender
	// padded: the state reads as the digest (checked once); otherwise
	// sum falls back to sha256.Sum256.
	padded bool
	// msg is the message being hashed, then its padding; st the state.
	msg, st []byte
	sum     [sha256.Size]byte
	// nodes is subtreeRoot's working copy of a tile.
	nodes []byte
}

// stateMagic starts crypto/sha256's binary form of a SHA-256 state.
const stateMagic = "sha\x03"

// init readies the hasher on first use and checks the state's form.
func (lh *leafHasher) init() {
	lh.d = sha256.New()
	lh.state, lh.padded = lh.d.(encoding.BinaryAppender)
	if !lh.padded {
		return
	}
	probe := []byte("cairn: the state after whole padded blocks is the digest")
	lh.msg = append(lh.msg[:0], probe...)
	got := lh.sumMsg()
	want := sha256.Sum256(probe)
	lh.padded = bytes.Equal(got, want[:])
}

// sumMsg returns SHA-256 of lh.msg (which it pads in place); the result is
// valid until the next call.
func (lh *leafHasher) sumMsg() []byte {
	if !lh.padded {
		lh.sum = sha256.Sum256(lh.msg)
		return lh.sum[:]
	}
	n := len(lh.msg)
	// 0x80, then zeros up to 56 mod 64, then the length in bits.
	lh.msg = append(lh.msg, 0x80)
	lh.msg = append(lh.msg, make([]byte, (55-n%64+64)%64)...)
	lh.msg = binary.BigEndian.AppendUint64(lh.msg, uint64(n)*8)
	lh.d.Reset()
	_, _ = lh.d.Write(lh.msg)
	lh.st, _ = lh.state.AppendBinary(lh.st[:0])
	if len(lh.st) < len(stateMagic)+sha256.Size || string(lh.st[:len(stateMagic)]) != stateMagic {
		// Not the form init checked: unreachable, but never a wrong hash.
		lh.msg = lh.msg[:n]
		lh.padded = false
		return lh.sumMsg()
	}
	copy(lh.sum[:], lh.st[len(stateMagic):])
	return lh.sum[:]
}

// hash returns the RFC 6962 leaf hash of leaf; the result is valid until
// the next call.
func (lh *leafHasher) hash(leaf []byte) []byte {
	if lh.d == nil {
		lh.init()
	}
	lh.msg = append(append(lh.msg[:0], rfc6962.RFC6962LeafHashPrefix), leaf...)
	return lh.sumMsg()
}

// node returns the RFC 6962 hash of the interior node over l and r; the
// result is valid until the next call.
func (lh *leafHasher) node(l, r []byte) []byte {
	if lh.d == nil {
		lh.init()
	}
	lh.msg = append(append(append(lh.msg[:0], rfc6962.RFC6962NodeHashPrefix), l...), r...)
	return lh.sumMsg()
}

// subtreeRoot returns the RFC 6962 root of the perfect subtree whose leaf
// hashes (a power of two of them) are concatenated in hashes, as
// rfc6962.DefaultHasher.HashChildren would pairwise, in one scratch copy.
// TestSubtreeRootIsTheCompactRangeRoot holds it to the merkle package's
// compact range.
func (lh *leafHasher) subtreeRoot(hashes []byte) []byte {
	lh.nodes = append(lh.nodes[:0], hashes...)
	buf := lh.nodes
	const n2 = 2 * sha256.Size
	for n := len(buf) / sha256.Size; n > 1; n /= 2 {
		for i := range n / 2 {
			// Pair i's parent overwrites slot i, which pairs ≥ i no longer need.
			copy(buf[i*sha256.Size:], lh.node(buf[2*i*sha256.Size:2*i*sha256.Size+sha256.Size], buf[2*i*sha256.Size+sha256.Size:(i+1)*n2]))
		}
	}
	return bytes.Clone(buf[:sha256.Size])
}
