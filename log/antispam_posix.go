package log

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/dgraph-io/badger/v4/options"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/transparency-dev/tessera"
	"github.com/transparency-dev/tessera/client"
)

// DefaultAntispamMemoryMiB bounds the memory of the POSIX antispam index
// (Config.AntispamMemoryMiB): half for Badger's two memtables, half for its
// cache of table indices and Bloom filters. Tessera v1.0.4's own POSIX
// antispam opens Badger with fixed defaults (five 64 MiB memtables, a 256
// MiB block cache, every table index in memory): the RSS growth a
// 10-minute soak found in #19.
//
// The keys are SHA-256 hashes, which do not compress: the tables are
// written uncompressed and read straight from their memory-mapped files, so
// Badger needs no block cache (with one, it decompressed and copied every
// block it read: 6% of the bytes a soak allocated, profile of #19).
const DefaultAntispamMemoryMiB = 128

// The POSIX antispam index is a Badger database in DIR/.state/antispam with
// the key layout of Tessera v1.0.4's posix/antispam (so an index that
// version built is read as it is): each entry's identity hash maps to the
// 8-byte big-endian index of its first occurrence, and antispamNextKey
// holds the next index the follower will read.
var antispamNextKey = []byte("@nextIdx")

const (
	// antispamFollowBatch is how many entries one follower transaction
	// indexes (Tessera's default, well under Badger's transaction limit).
	antispamFollowBatch = 1500
	// antispamFetchers is how many entry bundles the follower reads ahead.
	antispamFetchers = 4
	// antispamPoll is how often an idle follower looks for new entries.
	antispamPoll = 250 * time.Millisecond
)

// posixAntispam is tessera.Antispam on a Badger database Cairn opens with
// sized caches. It may lag the log but never lies: an identity is written
// only with the index at which the follower read it from the integrated
// log, the first occurrence wins, and the follower's position is saved in
// the same transaction as the entries before it. After a crash the
// follower re-reads from the last saved position, which rewrites nothing
// already there.
type posixAntispam struct {
	db     *badger.DB
	lag    uint64 // how far the follower may trail the tree before pushback
	logger *slog.Logger

	// pushback is set by the follower while it trails by more than lag.
	pushback atomic.Bool

	lookups, hits prometheus.Counter
	next          prometheus.Gauge

	// running counts the goroutines that use db (the value-log collector and
	// Tessera's call of Follow); close cancels them and waits for them
	// before closing db. mu guards closed and cancels.
	mu      sync.Mutex
	closed  bool
	cancels []context.CancelFunc
	running sync.WaitGroup
}

// badgerOptions sizes Badger's memory to about mib MiB (see
// DefaultAntispamMemoryMiB for the split).
func badgerOptions(dir string, mib int, logger *slog.Logger) badger.Options {
	total := int64(mib) << 20
	return badger.DefaultOptions(dir).
		WithNumMemtables(2).
		WithMemTableSize(total / 4).
		WithCompression(options.None).
		WithBlockCacheSize(0).
		WithIndexCacheSize(total / 2).
		// Values are 8 bytes and stay in the LSM tree (under a threshold
		// that must also stay below a memtable's largest batch): the value
		// log only needs to be small.
		WithValueThreshold(1 << 10).
		WithValueLogFileSize(64 << 20).
		WithNumCompactors(2).
		// The follower is the only writer: transactions need not track
		// their reads for conflicts (an allocation per lookup).
		WithDetectConflicts(false).
		WithLogger(badgerLogger{logger})
}

// openPOSIXAntispam opens (creating) the index in dir. Appends get
// pushback while the follower trails the tree by more than lag entries.
// close stops its goroutines and releases the database.
func openPOSIXAntispam(ctx context.Context, dir string, mib int, lag uint, logger *slog.Logger) (*posixAntispam, error) {
	db, err := badger.Open(badgerOptions(dir, mib, logger))
	if err != nil {
		return nil, fmt.Errorf("opening Badger: %w", err)
	}
	a := &posixAntispam{
		db:     db,
		lag:    uint64(lag),
		logger: logger,
		lookups: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "cairn_log_antispam_lookups_total",
			Help: "Records looked up in the persistent antispam index.",
		}),
		hits: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "cairn_log_antispam_hits_total",
			Help: "Lookups in the persistent antispam index that found an earlier index.",
		}),
		next: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "cairn_log_antispam_next_index",
			Help: "The next log index the antispam follower will read: entries below it are indexed.",
		}),
	}
	ctx, cancel := context.WithCancel(ctx)
	a.cancels = append(a.cancels, cancel)
	a.running.Go(func() { a.collectValueLog(ctx) })
	return a, nil
}

// collectors are the index's metrics.
func (a *posixAntispam) collectors() []prometheus.Collector {
	return []prometheus.Collector{a.lookups, a.hits, a.next}
}

// collectValueLog runs Badger's value-log garbage collection every minute
// until ctx ends.
func (a *posixAntispam) collectValueLog(ctx context.Context) {
	t := time.NewTicker(time.Minute)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		for a.db.RunValueLogGC(0.7) == nil {
		}
	}
}

// close stops the follower and the collector, waits for them and closes
// the database, flushing its memtables.
func (a *posixAntispam) close() error {
	a.mu.Lock()
	a.closed = true
	for _, cancel := range a.cancels {
		cancel()
	}
	a.mu.Unlock()
	a.running.Wait()
	return a.db.Close()
}

// lookup returns the index recorded for identity, if any.
func (a *posixAntispam) lookup(identity []byte) (uint64, bool, error) {
	a.lookups.Inc()
	var idx uint64
	found := false
	err := a.db.View(func(txn *badger.Txn) error {
		item, err := txn.Get(identity)
		if errors.Is(err, badger.ErrKeyNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		return item.Value(func(v []byte) error {
			if len(v) != 8 {
				return fmt.Errorf("antispam index: identity %x has a %d-byte value", identity, len(v))
			}
			idx, found = binary.BigEndian.Uint64(v), true
			return nil
		})
	})
	if found {
		a.hits.Inc()
	}
	return idx, found, err
}

// Decorator answers an entry whose identity is in the index with its first
// index (a duplicate), and passes the others on; while the follower trails
// too far it answers every entry with pushback.
func (a *posixAntispam) Decorator() func(tessera.AddFn) tessera.AddFn {
	return func(delegate tessera.AddFn) tessera.AddFn {
		return func(ctx context.Context, e *tessera.Entry) tessera.IndexFuture {
			if a.pushback.Load() {
				return func() (tessera.Index, error) { return tessera.Index{}, tessera.ErrPushbackAntispam }
			}
			idx, found, err := a.lookup(e.Identity())
			switch {
			case err != nil:
				return func() (tessera.Index, error) {
					return tessera.Index{}, fmt.Errorf("looking up the antispam index: %w", err)
				}
			case found:
				return func() (tessera.Index, error) { return tessera.Index{Index: idx, IsDup: true}, nil }
			}
			return delegate(ctx, e)
		}
	}
}

// Follower returns the follower that fills the index from the log, turning
// entry bundles into identity hashes with identities.
func (a *posixAntispam) Follower(identities func([]byte) ([][]byte, error)) tessera.Follower {
	return &antispamFollower{a: a, identities: identities}
}

// antispamFollower tails the integrated log into the index.
type antispamFollower struct {
	a          *posixAntispam
	identities func([]byte) ([][]byte, error)
}

// Name implements tessera.Follower.
func (f *antispamFollower) Name() string { return "Cairn POSIX antispam" }

// EntriesProcessed is the next index the follower will read.
func (f *antispamFollower) EntriesProcessed(context.Context) (uint64, error) {
	var next uint64
	err := f.a.db.View(func(txn *badger.Txn) error {
		var err error
		next, err = readNext(txn)
		return err
	})
	return next, err
}

// readNext reads the follower's position (0 before the first entry).
func readNext(txn *badger.Txn) (uint64, error) {
	item, err := txn.Get(antispamNextKey)
	if errors.Is(err, badger.ErrKeyNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	var next uint64
	err = item.Value(func(v []byte) error {
		if len(v) != 8 {
			return fmt.Errorf("antispam index: its position is a %d-byte value", len(v))
		}
		next = binary.BigEndian.Uint64(v)
		return nil
	})
	return next, err
}

// Follow indexes the log's integrated entries until ctx ends (Tessera runs
// it in a goroutine of its own) or the index is closed.
func (f *antispamFollower) Follow(ctx context.Context, lr tessera.LogReader) {
	f.a.mu.Lock()
	if f.a.closed {
		f.a.mu.Unlock()
		return
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	f.a.cancels = append(f.a.cancels, cancel)
	f.a.running.Add(1)
	f.a.mu.Unlock()
	defer f.a.running.Done()

	t := time.NewTicker(antispamPoll)
	defer t.Stop()
	for {
		err := f.catchUp(ctx, lr)
		if err != nil && ctx.Err() == nil && !errors.Is(err, os.ErrNotExist) {
			// os.ErrNotExist: the log has not integrated its first entry yet.
			f.a.logger.Warn("antispam follower", slog.Any("error", err))
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// catchUp indexes every entry from the saved position to the log's
// integrated size, in transactions of antispamFollowBatch entries.
func (f *antispamFollower) catchUp(ctx context.Context, lr tessera.LogReader) error {
	next, err := f.EntriesProcessed(ctx)
	if err != nil {
		return err
	}
	f.a.next.Set(float64(next))
	size, err := lr.IntegratedSize(ctx)
	if err != nil {
		return err
	}
	if next > size {
		return fmt.Errorf("the index is at %d, beyond the log's integrated size %d", next, size)
	}
	f.a.pushback.Store(size-next > f.a.lag)
	if next == size {
		return nil
	}
	// Each batch holds its identities and the index of the first.
	batch := make([][]byte, 0, antispamFollowBatch)
	first := next
	sizeFn := func(context.Context) (uint64, error) { return size, nil }
	bundles := client.EntryBundles(ctx, antispamFetchers, sizeFn, lr.ReadEntryBundle, next, size-next)
	for e, err := range client.Entries(bundles, f.identities) {
		if err != nil {
			return fmt.Errorf("reading entry %d: %w", first+uint64(len(batch)), err)
		}
		if want := first + uint64(len(batch)); e.Index != want {
			return fmt.Errorf("the entry stream gave index %d, want %d", e.Index, want)
		}
		batch = append(batch, e.Entry)
		if len(batch) == antispamFollowBatch || e.Index+1 == size {
			if err := f.index(first, batch); err != nil {
				return err
			}
			first += uint64(len(batch))
			batch = batch[:0]
			f.a.next.Set(float64(first))
			f.a.pushback.Store(size-first > f.a.lag)
		}
	}
	if first != size {
		return fmt.Errorf("the entry stream ended at %d, want %d", first, size)
	}
	return nil
}

// index records identities (of the entries from index first on) that are not
// in the index yet, and the new position, in one transaction. A position
// other than first means another writer moved it: nothing is written.
func (f *antispamFollower) index(first uint64, identities [][]byte) error {
	return f.a.db.Update(func(txn *badger.Txn) error {
		next, err := readNext(txn)
		if err != nil {
			return err
		}
		if next != first {
			return fmt.Errorf("the index moved to %d while indexing from %d", next, first)
		}
		for i, id := range identities {
			_, err := txn.Get(id)
			if err == nil {
				continue // an earlier index stands
			}
			if !errors.Is(err, badger.ErrKeyNotFound) {
				return err
			}
			if err := txn.Set(id, binary.BigEndian.AppendUint64(nil, first+uint64(i))); err != nil {
				return err
			}
		}
		return txn.Set(antispamNextKey, binary.BigEndian.AppendUint64(nil, first+uint64(len(identities))))
	})
}

// badgerLogger sends Badger's log lines to slog: errors and warnings as
// they are, its chatty information at debug level.
type badgerLogger struct{ l *slog.Logger }

func (b badgerLogger) Errorf(f string, a ...any) {
	b.l.Error("antispam index: "+strings.TrimSpace(fmt.Sprintf(f, a...)), slog.String("component", "badger"))
}
func (b badgerLogger) Warningf(f string, a ...any) {
	b.l.Warn("antispam index: "+strings.TrimSpace(fmt.Sprintf(f, a...)), slog.String("component", "badger"))
}
func (b badgerLogger) Infof(f string, a ...any) {
	b.l.Debug("antispam index: "+strings.TrimSpace(fmt.Sprintf(f, a...)), slog.String("component", "badger"))
}
func (b badgerLogger) Debugf(f string, a ...any) {
	b.l.Debug("antispam index: "+strings.TrimSpace(fmt.Sprintf(f, a...)), slog.String("component", "badger"))
}
