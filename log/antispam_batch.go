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
	// lag is the follower's allowed distance behind the tree.
	lag uint64
	// stopped is closed once every serve worker has returned (their
	// context ended) and the queue was drained: a lookup whose done is
	// still open then will never be answered, so its waiter gives up.
	stopped chan struct{}
}

// lookup is one identity waiting for its batch.
type lookup struct {
	identity []byte
	found    bool
	index    uint64
	err      error
	done     chan struct{}
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
	a := &batchedAntispam{inner: inner, db: db, lag: uint64(lag), reqs: make(chan *lookup, 4*lookupBatch), stopped: make(chan struct{})}
	var workers sync.WaitGroup
	for range lookupWorkers {
		workers.Go(func() { a.serve(ctx) })
	}
	// The owner of the workers: it waits for all of them, then releases
	// every waiter they left behind.
	go func() {
		defer close(a.stopped)
		workers.Wait()
		for {
			select {
			case l := <-a.reqs:
				l.err = errLookupStopped
				close(l.done)
			default:
				return
			}
		}
	}()
	return a, nil
}

// errLookupStopped answers lookups still queued when the log shuts down.
var errLookupStopped = fmt.Errorf("%w: the antispam lookup has stopped", ErrShuttingDown)

func (a *batchedAntispam) Decorator() func(tessera.AddFn) tessera.AddFn {
	return func(delegate tessera.AddFn) tessera.AddFn {
		return func(ctx context.Context, e *tessera.Entry) tessera.IndexFuture {
			if a.pushback.Load() {
				return func() (tessera.Index, error) { return tessera.Index{}, tessera.ErrPushbackAntispam }
			}
			l := &lookup{identity: e.Identity(), done: make(chan struct{})}
			select {
			case a.reqs <- l:
			case <-ctx.Done():
				return func() (tessera.Index, error) { return tessera.Index{}, ctx.Err() }
			case <-a.stopped:
				return func() (tessera.Index, error) { return tessera.Index{}, errLookupStopped }
			}
			// Tessera's in-memory dedup hands this future to every identical
			// request, so it must resolve once: a second evaluation must not
			// append the entry again. The lookup is bounded by its query
			// timeout, so it is awaited regardless of ctx (which may belong
			// to a request that already ended).
			return sync.OnceValues(func() (tessera.Index, error) {
				select {
				case <-l.done:
				case <-a.stopped:
					// Every worker has returned: l is answered now or never.
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
				return delegate(ctx, e)()
			})
		}
	}
}

// serve answers batches of lookups until ctx ends; the lookups it leaves
// queued are released by the owner started in newBatchedAntispam.
func (a *batchedAntispam) serve(ctx context.Context) {
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
		for _, l := range batch {
			if err != nil {
				l.err = fmt.Errorf("%w: antispam lookup: %v", ErrUnavailable, err)
			}
			close(l.done)
		}
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

// Follower returns Tessera's follower (it fills the table), watched so that
// appends get pushback when it falls more than a.lag entries behind.
func (a *batchedAntispam) Follower(b func([]byte) ([][]byte, error)) tessera.Follower {
	return &lagWatcher{Follower: a.inner.Follower(b), pushback: &a.pushback, lag: a.lag}
}

// lagWatcher sets pushback while its follower trails the integrated tree.
type lagWatcher struct {
	tessera.Follower
	pushback *atomic.Bool
	lag      uint64
}

func (w *lagWatcher) Follow(ctx context.Context, lr tessera.LogReader) {
	go every(ctx, time.Second, func() {
		size, err1 := lr.IntegratedSize(ctx)
		done, err2 := w.EntriesProcessed(ctx)
		if err1 == nil && err2 == nil {
			w.pushback.Store(size > done && size-done > w.lag)
		}
	})
	w.Follower.Follow(ctx, lr)
}
