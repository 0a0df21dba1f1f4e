package log

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/transparency-dev/tessera"
	awsantispam "github.com/transparency-dev/tessera/storage/aws/antispam"
)

// batchedAntispam reads Tessera's MySQL antispam index (the AntispamIDSeq
// table its follower fills) with one query per batch of concurrent lookups.
// Tessera's own decorator issues one query per record, which caps a frontend
// at a few thousand records/s on a database sharing its machine; batching
// keeps the same semantics (a record already in the index gets its index,
// marked duplicate) at the cost of one round trip per batch.
type batchedAntispam struct {
	inner    *awsantispam.AntispamStorage
	db       *sql.DB
	reqs     chan *lookup
	pushback atomic.Bool
	// caughtUp is set once the follower has indexed everything the log had
	// integrated when this frontend started; until then every entry gets
	// pushback, as on posix (posixAntispam.caughtUp): after a restart this
	// frontend's in-memory dedup is empty, and a retry of a record
	// acknowledged just before a kill -9 would otherwise be sequenced again
	// while the index still trails it by less than lag.
	caughtUp atomic.Bool
	// lag is the follower's allowed distance behind the tree.
	lag uint64
	// stopped is closed once every serve worker has returned (their
	// context ended) and the queue was drained: a lookup queued after that
	// fails at once.
	stopped chan struct{}
	// finished is closed after stopped, once every resolver has returned
	// too: a lookup whose done is still open then will never be answered,
	// so its waiter gives up.
	finished chan struct{}
}

// lookup is one entry waiting for its batch. A miss is passed on to
// delegate by a resolver as soon as its batch is answered, not when its
// future is called: see resolve.
type lookup struct {
	ctx      context.Context
	entry    *tessera.Entry
	delegate tessera.AddFn
	identity []byte

	found  bool
	index  uint64
	err    error
	future tessera.IndexFuture // a miss: delegate's future
	done   chan struct{}
}

const (
	// lookupWorkers run batches concurrently; lookupBatch caps one batch.
	lookupWorkers = 4
	lookupBatch   = 512
)

// newBatchedAntispam serves lookups from db and population from inner's follower.
func newBatchedAntispam(ctx context.Context, inner *awsantispam.AntispamStorage, db *sql.DB, lag uint) (*batchedAntispam, error) {
	// The query below reads schema version 1 of Tessera's table.
	if awsantispam.SchemaCompatibilityVersion != 1 {
		return nil, fmt.Errorf("tessera's MySQL antispam schema is version %d; Cairn reads version 1", awsantispam.SchemaCompatibilityVersion)
	}
	a := &batchedAntispam{inner: inner, db: db, lag: uint64(lag), reqs: make(chan *lookup, 4*lookupBatch),
		stopped: make(chan struct{}), finished: make(chan struct{})}
	var workers, resolvers sync.WaitGroup
	for range lookupWorkers {
		workers.Go(func() { a.serve(ctx, &resolvers) })
	}
	// The owner of the workers and of the resolvers they start: it waits
	// for the workers, releases every waiter they left behind, then waits
	// for the resolvers (which see stopped if they queue a lookup).
	go func() {
		defer close(a.finished)
		workers.Wait()
		a.releaseQueued()
		close(a.stopped)
		resolvers.Wait()
	}()
	return a, nil
}

// releaseQueued answers every lookup left in the queue with errLookupStopped.
func (a *batchedAntispam) releaseQueued() {
	for {
		select {
		case l := <-a.reqs:
			l.err = errLookupStopped
			close(l.done)
		default:
			return
		}
	}
}

// errLookupStopped answers lookups still queued when the log shuts down.
var errLookupStopped = fmt.Errorf("%w: the antispam lookup has stopped", ErrShuttingDown)

func (a *batchedAntispam) Decorator() func(tessera.AddFn) tessera.AddFn {
	return func(delegate tessera.AddFn) tessera.AddFn {
		return func(ctx context.Context, e *tessera.Entry) tessera.IndexFuture {
			if a.pushback.Load() || !a.caughtUp.Load() {
				return func() (tessera.Index, error) { return tessera.Index{}, tessera.ErrPushbackAntispam }
			}
			l := &lookup{ctx: ctx, entry: e, delegate: delegate, identity: e.Identity(), done: make(chan struct{})}
			select {
			case a.reqs <- l:
			case <-ctx.Done():
				return func() (tessera.Index, error) { return tessera.Index{}, ctx.Err() }
			case <-a.stopped:
				return func() (tessera.Index, error) { return tessera.Index{}, errLookupStopped }
			}
			// The future only waits: a miss was handed to delegate when its
			// batch was answered. The lookup is bounded by its query
			// timeout, so it is awaited regardless of ctx (which may belong
			// to a request that already ended).
			return func() (tessera.Index, error) {
				select {
				case <-l.done:
				case <-a.finished:
					// Every worker and resolver has returned: l is
					// answered now or never.
					select {
					case <-l.done:
					default:
						return tessera.Index{}, errLookupStopped
					}
				}
				if l.err != nil {
					return tessera.Index{}, l.err
				}
				if l.found {
					return tessera.Index{Index: l.index, IsDup: true}, nil
				}
				return l.future()
			}
		}
	}
}

// serve answers batches of lookups until ctx ends; the lookups it leaves
// queued are released by the owner started in newBatchedAntispam. The
// misses of each batch go to a resolver of their own in resolvers.
func (a *batchedAntispam) serve(ctx context.Context, resolvers *sync.WaitGroup) {
	batch := make([]*lookup, 0, lookupBatch)
	args := make([]any, 0, lookupBatch)
	var q strings.Builder
	for {
		select {
		case <-ctx.Done():
			return
		case l := <-a.reqs:
			batch = append(batch[:0], l)
		}
	fill:
		for len(batch) < lookupBatch {
			select {
			case l := <-a.reqs:
				batch = append(batch, l)
			default:
				break fill
			}
		}
		q.Reset()
		q.WriteString("SELECT h, idx FROM AntispamIDSeq WHERE h IN (?")
		q.WriteString(strings.Repeat(",?", len(batch)-1))
		q.WriteString(")")
		args = args[:0]
		for _, l := range batch {
			args = append(args, l.identity)
		}
		err := a.query(ctx, q.String(), args, batch)
		var misses []*lookup
		for _, l := range batch {
			switch {
			case err != nil:
				l.err = fmt.Errorf("%w: antispam lookup: %v", ErrUnavailable, err)
			case !l.found:
				misses = append(misses, l)
				continue
			}
			close(l.done)
		}
		if len(misses) > 0 {
			resolvers.Go(func() { resolve(misses) })
		}
	}
}

// resolve hands each miss to its delegate, in order, and releases its
// waiters. It runs as soon as the batch is answered rather than when a
// miss's future is first called: a caller that awaits its futures one at a
// time (AppendStream's awaiter, AppendBatch) would otherwise enqueue one
// entry per Tessera sequencing batch, each waiting out the batch's age (a
// stream on mysql+s3 slowed to ~170 records/s, #19). It runs apart from the
// workers because a delegate may block: Tessera's queue pushes back while
// its flush is busy, and a retry waits for the follower and looks up again.
func resolve(misses []*lookup) {
	for _, l := range misses {
		l.future = l.delegate(l.ctx, l.entry)
		close(l.done)
	}
}

func (a *batchedAntispam) query(ctx context.Context, q string, args []any, batch []*lookup) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	rows, err := a.db.QueryContext(ctx, q, args...)
	if err != nil {
		return err
	}
	defer rows.Close()
	found := make(map[string]uint64, len(batch))
	for rows.Next() {
		var h []byte
		var idx uint64
		if err := rows.Scan(&h, &idx); err != nil {
			return err
		}
		found[string(h)] = idx
	}
	if err := rows.Err(); err != nil {
		return err
	}
	for _, l := range batch {
		l.index, l.found = found[string(l.identity)]
	}
	return nil
}

func (a *batchedAntispam) indexed(ctx context.Context) (uint64, error) {
	// A follower only to read the shared position; Tessera starts the one
	// that fills the index.
	return a.inner.Follower(nil).EntriesProcessed(ctx)
}

func (a *batchedAntispam) startBarrier() *atomic.Bool { return &a.caughtUp }

// Follower returns Tessera's follower (it fills the table), watched so that
// appends get pushback when it falls more than a.lag entries behind.
func (a *batchedAntispam) Follower(b func([]byte) ([][]byte, error)) tessera.Follower {
	return &lagWatcher{Follower: a.inner.Follower(b), pushback: &a.pushback, caughtUp: &a.caughtUp, lag: a.lag}
}

// lagWatcher sets pushback while its follower trails the integrated tree,
// and caughtUp once it has reached the tree's size at start.
type lagWatcher struct {
	tessera.Follower
	pushback, caughtUp *atomic.Bool
	lag                uint64
}

// lagWatchEvery is how often lagWatcher compares the follower with the
// tree; until the follower has caught up after a start, it looks every
// antispamPoll instead, since appends wait for it.
const lagWatchEvery = time.Second

// Follow runs the follower, and the watch beside it until the follower
// returns.
func (w *lagWatcher) Follow(ctx context.Context, lr tessera.LogReader) {
	wctx, stop := context.WithCancel(ctx)
	var watching sync.WaitGroup
	watching.Go(func() { w.watch(wctx, lr) })
	defer watching.Wait()
	defer stop()
	w.Follower.Follow(ctx, lr)
}

func (w *lagWatcher) watch(ctx context.Context, lr tessera.LogReader) {
	var atStart uint64
	known := false
	for wait := time.Duration(0); ; {
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		size, err1 := lr.IntegratedSize(ctx)
		done, err2 := w.EntriesProcessed(ctx)
		if err1 != nil || err2 != nil {
			wait = antispamPoll
			continue
		}
		if !known {
			atStart, known = size, true
		}
		w.pushback.Store(size > done && size-done > w.lag)
		if done >= atStart {
			w.caughtUp.Store(true)
		}
		wait = lagWatchEvery
		if !w.caughtUp.Load() {
			wait = antispamPoll
		}
	}
}
