package log

import (
	"context"

	"github.com/transparency-dev/tessera"
)

// freshKey marks the context of an append whose idempotency key the log
// picked itself (autoKeyPrefix + 128 random bits): its leaf has never been
// sequenced, so no antispam index can hold it.
type freshKey struct{}

// withFresh returns ctx marked fresh when the log picks s's key.
func withFresh(ctx context.Context, s Submission) context.Context {
	if s.IdempotencyKey != "" {
		return ctx
	}
	return context.WithValue(ctx, freshKey{}, true)
}

// skipLookupWhenFresh sends a fresh record straight to the sequencer,
// past the persistent antispam lookup (a Pebble read per record with posix,
// a quarter of the CPU of an append in the profiles of #19), which can only
// miss. Every other record takes next, the full antispam path. Tessera's
// in-memory dedup sits in front either way, and the follower indexes fresh
// records like any other.
func skipLookupWhenFresh(delegate, next tessera.AddFn) tessera.AddFn {
	return func(ctx context.Context, e *tessera.Entry) tessera.IndexFuture {
		if fresh, _ := ctx.Value(freshKey{}).(bool); fresh {
			return delegate(ctx, e)
		}
		return next(ctx, e)
	}
}
