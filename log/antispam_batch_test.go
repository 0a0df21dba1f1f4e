package log

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/cairnlog/cairn/internal/testport"

	"github.com/cairnlog/cairn/internal/hastack"
	"github.com/transparency-dev/tessera"
	awsantispam "github.com/transparency-dev/tessera/storage/aws/antispam"
)

// testMariaDB starts a MariaDB of the test's own (skipped where it is not
// installed, unless CAIRN_REQUIRE_HA is set) and returns its DSN.
func testMariaDB(t *testing.T) string {
	t.Helper()
	port := testport.Port(t)
	db, err := hastack.NewMariaDB(t.TempDir(), port, io.Discard)
	if err == nil {
		err = db.Start(context.Background())
	}
	if err != nil {
		if os.Getenv("CAIRN_REQUIRE_HA") != "" {
			t.Fatal(err)
		}
		t.Skip(err)
	}
	t.Cleanup(db.Kill)
	return db.DSN
}

// mysqlAntispam starts a MariaDB of the test's own and Tessera's MySQL
// antispam on it, and returns the antispam, a pool of the same database and
// the context the antispam runs under (cancel ends it; so does the test's end).
func mysqlAntispam(t *testing.T) (context.Context, context.CancelFunc, *awsantispam.AntispamStorage, *sql.DB) {
	t.Helper()
	dsn := testMariaDB(t)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	inner, err := awsantispam.NewAntispam(ctx, dsn, awsantispam.AntispamOpts{})
	if err != nil {
		t.Fatal(err)
	}
	db, err := sql.Open("mysql", dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return ctx, cancel, inner, db
}

// Lookups still queued when the antispam's context ends are released with
// an error instead of blocking their appends forever, and a lookup made
// after that fails at once. The table is locked so that every worker is
// stuck in a query and the other lookups wait in the queue.
func TestAntispamLookupsAreReleasedOnShutdown(t *testing.T) {
	ctx, cancel, inner, db := mysqlAntispam(t)
	locker, err := db.Conn(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer locker.Close()
	if _, err := locker.ExecContext(context.Background(), "LOCK TABLES AntispamIDSeq WRITE"); err != nil {
		t.Fatal(err)
	}

	a, err := newBatchedAntispam(ctx, inner, db, antispamLag(DefaultDedupCacheEntries))
	if err != nil {
		t.Fatal(err)
	}
	a.caughtUp.Store(true) // no follower runs here: the lookups are what is tested
	add := a.Decorator()(func(context.Context, *tessera.Entry) tessera.IndexFuture {
		return func() (tessera.Index, error) { return tessera.Index{}, errors.New("appended after a failed lookup") }
	})
	results := make(chan error, 64)
	await := func(f tessera.IndexFuture) {
		go func() { _, err := f(); results <- err }()
	}
	submit := func(i int) { await(add(context.Background(), tessera.NewEntry(fmt.Appendf(nil, "record %d", i)))) }

	// Occupy every worker with a query blocked on the lock.
	n := 0
	deadline := time.Now().Add(60 * time.Second)
	for waiting := 0; waiting < lookupWorkers; {
		if n < lookupWorkers {
			submit(n)
			n++
		}
		if err := db.QueryRow("SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE INFO LIKE 'SELECT h, idx FROM AntispamIDSeq%'").Scan(&waiting); err != nil {
			t.Fatal(err)
		}
		if time.Now().After(deadline) {
			t.Fatalf("only %d of %d lookup workers reached the database", waiting, lookupWorkers)
		}
		time.Sleep(10 * time.Millisecond) // polling the database, not waiting for an outcome
	}
	// These wait in the queue: no worker is free.
	for range 20 {
		submit(n)
		n++
	}
	if len(a.reqs) == 0 {
		t.Fatal("no lookup is queued")
	}

	cancel()
	timeout := time.After(60 * time.Second)
	for i := range n {
		select {
		case err := <-results:
			if err == nil || !errors.Is(err, ErrUnavailable) && !errors.Is(err, ErrShuttingDown) && !errors.Is(err, context.Canceled) {
				t.Fatalf("lookup %d answered %v, want an error", i, err)
			}
		case <-timeout:
			t.Fatalf("%d of %d lookups still blocked 60s after shutdown", n-i, n)
		}
	}
	// After shutdown, a new lookup fails at once instead of queueing forever.
	select {
	case <-a.stopped:
	case <-time.After(60 * time.Second):
		t.Fatal("the lookup workers did not stop")
	}
	await(add(context.Background(), tessera.NewEntry([]byte("late"))))
	select {
	case err := <-results:
		if !errors.Is(err, ErrShuttingDown) {
			t.Fatalf("a lookup after shutdown answered %v, want ErrShuttingDown", err)
		}
	case <-time.After(60 * time.Second):
		t.Fatal("a lookup after shutdown blocked")
	}
}

// A miss is handed to the sequencer as soon as its batch is answered, not
// when its future is first called: a caller that awaits its futures one at
// a time (AppendStream, AppendBatch) must not enqueue one entry per
// sequencing batch (#19: a stream on mysql+s3 slowed to ~170 records/s).
// No future is called here until every entry has reached the delegate.
func TestAntispamMissesReachTheSequencerBeforeTheirFuturesAreCalled(t *testing.T) {
	ctx, _, inner, db := mysqlAntispam(t)
	a, err := newBatchedAntispam(ctx, inner, db, antispamLag(DefaultDedupCacheEntries))
	if err != nil {
		t.Fatal(err)
	}
	a.caughtUp.Store(true) // no follower runs here: the lookups are what is tested
	const n = 2000
	var mu sync.Mutex
	delegated := map[string]uint64{}
	add := a.Decorator()(func(_ context.Context, e *tessera.Entry) tessera.IndexFuture {
		mu.Lock()
		defer mu.Unlock()
		idx := uint64(len(delegated))
		delegated[string(e.Data())] = idx
		return func() (tessera.Index, error) { return tessera.Index{Index: idx}, nil }
	})
	futures := make([]tessera.IndexFuture, n)
	for i := range futures {
		futures[i] = add(context.Background(), tessera.NewEntry(fmt.Appendf(nil, "record %d", i)))
	}
	eventually(t, time.Minute, func() error {
		mu.Lock()
		defer mu.Unlock()
		if len(delegated) < n {
			return fmt.Errorf("%d of %d entries reached the sequencer before any future was called", len(delegated), n)
		}
		return nil
	})
	for i, f := range futures {
		idx, err := f()
		if want := delegated[fmt.Sprintf("record %d", i)]; err != nil || idx.Index != want || idx.IsDup {
			t.Fatalf("record %d: %+v %v, want index %d", i, idx, err, want)
		}
		if again, err := f(); err != nil || again != idx {
			t.Fatalf("record %d's future answered %+v %v the second time, %+v the first", i, again, err, idx)
		}
	}
}

// On mysql+s3 too, a frontend answers every entry with pushback after it
// starts until the follower has indexed what the log had integrated then,
// even within the lag (its in-memory dedup is empty after a restart), and
// no longer once it has.
func TestMySQLAntispamPushesBackAfterStartUntilCaughtUp(t *testing.T) {
	ctx, cancel, inner, db := mysqlAntispam(t)
	identities := func([]byte) ([][]byte, error) { return nil, nil }
	// The followers run until the test ends, and are joined before the
	// database closes (cleanups run last registered first).
	var followers sync.WaitGroup
	t.Cleanup(func() { cancel(); followers.Wait() })
	appendTo := func(a *batchedAntispam) (tessera.Index, error) {
		add := a.Decorator()(func(context.Context, *tessera.Entry) tessera.IndexFuture {
			return func() (tessera.Index, error) { return tessera.Index{Index: 7}, nil }
		})
		return add(context.Background(), tessera.NewEntry([]byte("a retried record")))()
	}

	// 2 entries integrated, none indexed (the bundle cannot be read),
	// within the lag.
	behind, err := newBatchedAntispam(ctx, inner, db, antispamLag(DefaultDedupCacheEntries))
	if err != nil {
		t.Fatal(err)
	}
	followers.Go(func() { behind.Follower(identities).Follow(ctx, failingReader{size: 2}) })
	time.Sleep(3 * lagWatchEvery)
	if _, err := appendTo(behind); !errors.Is(err, tessera.ErrPushback) {
		t.Fatalf("an append before the follower caught up answered %v, want pushback", err)
	}

	// Nothing integrated: caught up at once.
	fresh, err := newBatchedAntispam(ctx, inner, db, antispamLag(DefaultDedupCacheEntries))
	if err != nil {
		t.Fatal(err)
	}
	followers.Go(func() { fresh.Follower(identities).Follow(ctx, failingReader{size: 0}) })
	eventually(t, time.Minute, func() error {
		idx, err := appendTo(fresh)
		if err != nil || idx.Index != 7 {
			return fmt.Errorf("an append after the follower caught up answered %+v, %v", idx, err)
		}
		return nil
	})
}
