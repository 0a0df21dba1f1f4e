package log

import (
	"context"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	cairnv1 "github.com/cairnlog/cairn/proto/cairn/v1"
	"github.com/transparency-dev/tessera"
	"google.golang.org/grpc/metadata"
)

// RetryHeader is the gRPC metadata key and HTTP header of a retried request
// (defined once, in the API package both sides import).
const RetryHeader = cairnv1.RetryHeader

type retryKey struct{}

// retryCatchUpTimeout bounds how long a retry waits for the antispam index
// before answering Unavailable (the client then tries again).
const retryCatchUpTimeout = 15 * time.Second

// withRetry marks ctx as carrying a retried request when the gRPC metadata
// or the HTTP request (r may be nil) says so.
func withRetry(ctx context.Context, r *http.Request) context.Context {
	retry := r != nil && r.Header.Get(RetryHeader) != ""
	if md, ok := metadata.FromIncomingContext(ctx); ok && len(md.Get(RetryHeader)) > 0 {
		retry = true
	}
	if !retry {
		return ctx
	}
	return context.WithValue(ctx, retryKey{}, &retryState{})
}

// retryState is shared by every record of one retried request (or stream):
// the first miss waits for the antispam index; the others wait with it.
type retryState struct {
	once sync.Once
	err  error
}

// retryAntispam makes retries exact across frontends. Tessera's persistent
// antispam index is filled by a follower that tails the integrated log, so a
// record sequenced by frontend A moments ago is not in it yet when its retry
// reaches frontend B. For a request marked as a retry whose identity is not
// found, this waits until the follower has covered everything sequenced so
// far, then looks again: a record A had sequenced is found and answered with
// its index; one A never sequenced is appended once.
type retryAntispam struct {
	tessera.Antispam
	follower atomic.Pointer[tessera.Follower]
	// nextIndex reports the next index the sequencer will assign; set once
	// the appender exists.
	nextIndex atomic.Pointer[func(context.Context) (uint64, error)]
	timeout   time.Duration
}

func (a *retryAntispam) Follower(b func([]byte) ([][]byte, error)) tessera.Follower {
	f := a.Antispam.Follower(b)
	a.follower.Store(&f)
	return f
}

func (a *retryAntispam) Decorator() func(tessera.AddFn) tessera.AddFn {
	inner := a.Antispam.Decorator()
	return func(delegate tessera.AddFn) tessera.AddFn {
		lookup := inner(delegate)
		return skipLookupWhenFresh(delegate, inner(func(ctx context.Context, e *tessera.Entry) tessera.IndexFuture {
			st, retry := ctx.Value(retryKey{}).(*retryState)
			if !retry {
				return delegate(ctx, e)
			}
			st.once.Do(func() { st.err = a.catchUp(ctx) })
			if st.err != nil {
				return func() (tessera.Index, error) { return tessera.Index{}, st.err }
			}
			return lookup(ctx, e)
		}))
	}
}

// catchUp waits until the antispam follower has processed every entry
// sequenced before now.
func (a *retryAntispam) catchUp(ctx context.Context) error {
	f, next := a.follower.Load(), a.nextIndex.Load()
	if f == nil || next == nil {
		return fmt.Errorf("%w: the antispam index is not running yet", ErrUnavailable)
	}
	ctx, cancel := context.WithTimeout(ctx, a.timeout)
	defer cancel()
	target, err := (*next)(ctx)
	if err != nil {
		return fmt.Errorf("%w: reading the sequencer position: %v", ErrUnavailable, err)
	}
	for {
		done, err := (*f).EntriesProcessed(ctx)
		if err == nil && done >= target {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w: the antispam index has not yet caught up with index %d (at %d); retry", ErrUnavailable, target, done)
		case <-time.After(50 * time.Millisecond):
		}
	}
}
