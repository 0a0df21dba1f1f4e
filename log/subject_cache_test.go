package log

import (
	"encoding/binary"
	"errors"
	"testing"

	"github.com/cairnlog/cairn/format/record"
)

// TestAppendKeyCacheFollowsErasures: on POSIX the append cache never
// expires, so what keeps an erased key out of new records is that an
// erasure forgets it, and that a key read before an erasure is not cached
// after it; the cache stays within maxCachedKeys.
func TestAppendKeyCacheFollowsErasures(t *testing.T) {
	ctx := t.Context()
	store, err := newFileKeyStore(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	k, err := openSubjectKeys(ctx, store, writeKEK(t, t.TempDir(), "cache.kek"))
	if err != nil {
		t.Fatal(err)
	}
	if store.shared() {
		t.Fatal("the POSIX key store says other processes write it")
	}
	alice := k.hash("alice")
	if _, err := k.forAppend(ctx, alice); err != nil {
		t.Fatal(err)
	}
	// The erasure as Erase does it: tombstone, then forget.
	if _, _, err := store.erase(ctx, subjectName(alice), keyEntry{ErasedAt: 1, ErasedBy: "t", Reason: "test"}); err != nil {
		t.Fatal(err)
	}
	k.forget(alice)
	if _, err := k.forAppend(ctx, alice); !errors.Is(err, ErrFailedPrecondition) {
		t.Fatalf("append for an erased subject: %v, want it refused", err)
	}

	// A key read before an erasure (of any subject) is used once, not kept.
	bob := k.hash("bob")
	k.mu.Lock()
	gen := k.gen
	k.mu.Unlock()
	c, err := k.read(ctx, bob)
	if err != nil {
		t.Fatal(err)
	}
	k.forget(alice)
	k.keep(bob, c, gen)
	k.mu.Lock()
	_, cached := k.cache[bob]
	k.mu.Unlock()
	if cached {
		t.Fatal("a key read before an erasure entered the cache after it")
	}

	// A full cache makes room instead of growing.
	k.mu.Lock()
	for i := range maxCachedKeys {
		var h record.SubjectHash
		binary.BigEndian.PutUint64(h[:], uint64(i)+1)
		k.cache[h] = c
	}
	gen = k.gen
	k.mu.Unlock()
	k.keep(bob, c, gen)
	k.mu.Lock()
	n := len(k.cache)
	_, cached = k.cache[bob]
	k.mu.Unlock()
	if n != maxCachedKeys || !cached {
		t.Fatalf("cache holds %d keys (bob cached: %v), want %d with bob", n, cached, maxCachedKeys)
	}
}
