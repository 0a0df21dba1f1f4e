package client

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"strings"
	"testing"

	"github.com/transparency-dev/merkle/rfc6962"
)

// TestCancelledAuditLeavesNoGoroutineBehind cancels an audit after its
// first bundle: it stops with the cancellation (not a verification
// failure), and none of its fetchers or workers outlives it.
func TestCancelledAuditLeavesNoGoroutineBehind(t *testing.T) {
	src, p := buildLog(t, 70000)
	l, err := NewLog(serve(t, src), p, HTTPOptions{})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	_, err = l.Audit(ctx, nil, AuditOptions{Workers: 8, Progress: func(done, total uint64) { cancel() }})
	if !errors.Is(err, context.Canceled) || errors.Is(err, ErrVerification) {
		t.Fatalf("cancelled audit: %v, want context.Canceled and no verification failure", err)
	}
	if n := goroutinesIn("client.(*Log).Audit") + goroutinesIn("client.(*httpTiles).pipeline"); n != 0 {
		t.Fatalf("%d audit goroutines still running after Audit returned", n)
	}
}

// TestVerificationFailuresSayWhatFailed: a changed record is reported as
// such, hashes are base64, and no message blames the policy for what is
// not a policy failure.
func TestVerificationFailuresSayWhatFailed(t *testing.T) {
	l := openFixture(t, fixture)
	ctx := context.Background()
	v, err := l.Checkpoint(ctx)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := l.Entry(ctx, v, 5)
	if err != nil {
		t.Fatal(err)
	}
	if err := l.VerifyRecord(ctx, v, 5, leaf); err != nil {
		t.Fatalf("the log's own leaf 5: %v", err)
	}
	changed := append(bytes.Clone(leaf), '!')
	err = l.VerifyRecord(ctx, v, 5, changed)
	want := "the record does not match leaf 5: it hashes to " + b64(rfc6962.DefaultHasher.HashLeaf(changed))
	if !errors.Is(err, ErrVerification) || !strings.HasPrefix(err.Error(), want) {
		t.Fatalf("a changed record: %v, want a verification failure starting %q", err, want)
	}

	dir := copyDir(t, fixture)
	flip(t, dir+"/tile/entries/000", 100)
	_, err = openFixture(t, dir).Audit(ctx, nil, AuditOptions{})
	if !errors.Is(err, ErrVerification) || strings.Contains(err.Error(), "policy") || !strings.Contains(err.Error(), "=, but tile/0/000 has ") {
		t.Fatalf("tampered audit: %v, want base64 hashes and no mention of the policy", err)
	}
}

// TestAnIndexBeyondTheTreeIsNotInTheLog: one rule for Entry,
// VerifyInclusion and VerifyRecord: ErrNotInLog, not a verification failure.
func TestAnIndexBeyondTheTreeIsNotInTheLog(t *testing.T) {
	l := openFixture(t, fixture)
	ctx := context.Background()
	v, err := l.Checkpoint(ctx)
	if err != nil {
		t.Fatal(err)
	}
	_, errEntry := l.Entry(ctx, v, 360)
	for name, err := range map[string]error{
		"Entry":           errEntry,
		"VerifyInclusion": l.VerifyInclusion(ctx, v, 360, make([]byte, 32)),
		"VerifyRecord":    l.VerifyRecord(ctx, v, 1<<40, []byte("x")),
	} {
		if !errors.Is(err, ErrNotInLog) || errors.Is(err, ErrVerification) {
			t.Errorf("%s beyond size 360: %v, want ErrNotInLog", name, err)
		}
	}
}

// TestLeafHasherIsTheRFC6962LeafHash holds the audit's allocation-free leaf
// hasher to rfc6962.DefaultHasher.HashLeaf.
func TestLeafHasherIsTheRFC6962LeafHash(t *testing.T) {
	var lh leafHasher
	for n := range 600 {
		leaf := make([]byte, n)
		rand.Read(leaf)
		want := rfc6962.DefaultHasher.HashLeaf(leaf)
		if got := lh.hash(leaf); !bytes.Equal(got, want) {
			t.Fatalf("leaf of %d bytes: %x, HashLeaf says %x", n, got, want)
		}
		// An interior node over two leaves, as the tiles hash them.
		wantNode := rfc6962.DefaultHasher.HashChildren(want, leaf)
		if got := lh.node(want, leaf); !bytes.Equal(got, wantNode) {
			t.Fatalf("node over %d+32 bytes: %x, HashChildren says %x", n, got, wantNode)
		}
	}
}

// TestSubtreeRootIsTheCompactRangeRoot holds the audit's in-place subtree
// root to the merkle package: the compact range of the same leaf hashes.
func TestSubtreeRootIsTheCompactRangeRoot(t *testing.T) {
	for _, n := range []int{1, 2, 4, 8, 256} {
		hashes := make([]byte, n*32)
		rand.Read(hashes)
		r := rangeFactory.NewEmptyRange(0)
		for i := range n {
			if err := r.Append(hashes[i*32:(i+1)*32], nil); err != nil {
				t.Fatal(err)
			}
		}
		want, err := r.GetRootHash(nil)
		if err != nil {
			t.Fatal(err)
		}
		var lh leafHasher
		before := bytes.Clone(hashes)
		if got := lh.subtreeRoot(hashes); !bytes.Equal(got, want) {
			t.Fatalf("%d leaves: %x, the compact range says %x", n, got, want)
		}
		if !bytes.Equal(hashes, before) {
			t.Fatalf("%d leaves: subtreeRoot changed its input", n)
		}
	}
}
