package log

import (
	"context"
	"testing"

	"github.com/transparency-dev/tessera"
)

func TestOnlyRecordsKeyedByTheLogSkipTheAntispamLookup(t *testing.T) {
	var took string
	add := func(name string) tessera.AddFn {
		return func(context.Context, *tessera.Entry) tessera.IndexFuture {
			took = name
			return func() (tessera.Index, error) { return tessera.Index{}, nil }
		}
	}
	f := skipLookupWhenFresh(add("sequencer"), add("lookup"))
	e := tessera.NewEntry([]byte("leaf"))
	for _, tc := range []struct {
		key  string
		want string
	}{
		{"", "sequencer"},          // the log picks a random key: nothing to find
		{"order-1", "lookup"},      // a submitter's key may have been sequenced before
		{"cairn-auto-x", "lookup"}, // a submitter may send a key that looks like the log's
	} {
		f(withFresh(context.Background(), Submission{IdempotencyKey: tc.key}), e)
		if took != tc.want {
			t.Errorf("key %q went to the %s, want the %s", tc.key, took, tc.want)
		}
	}
	if f(context.Background(), e); took != "lookup" {
		t.Errorf("an unmarked append went to the %s", took)
	}
}
