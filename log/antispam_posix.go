package log

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/bloom"
	"github.com/cockroachdb/pebble/v2/sstable"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/transparency-dev/tessera"
	"github.com/transparency-dev/tessera/client"
)

// DefaultAntispamMemoryMiB bounds the memory of the POSIX antispam index
// (Config.AntispamMemoryMiB): a quarter for Pebble's two memtables, a
// quarter for the identity filter in front of it (identityFilter), half for
// its block cache (which also holds the tables' index blocks and Bloom
// filters). Pebble reads its tables with pread through that
// cache and maps none of them, so the index adds no file-backed RSS as it
// grows: with Badger (before), whose tables are memory-mapped, RSS grew with
// the index (845 MiB at 14.5 M records, #19).
//
// The keys are SHA-256 hashes, which do not compress: the tables are
// written uncompressed.
const DefaultAntispamMemoryMiB = 128

// The POSIX antispam index is a Pebble database in DIR/.state/antispam with
// the key layout of Tessera v1.0.4's posix/antispam: each entry's identity
// hash maps to the 8-byte big-endian index of its first occurrence, and
// antispamNextKey holds the next index the follower will read. An index
// earlier versions wrote there with Badger is converted once at open
// (convertBadgerAntispam).
var antispamNextKey = []byte("@nextIdx")

const (
	// antispamFollowBatch is how many entries one follower batch indexes.
	antispamFollowBatch = 1500
	// antispamFetchers is how many entry bundles the follower reads ahead.
	antispamFetchers = 4
	// antispamPoll is how often an idle follower looks for new entries.
	antispamPoll = 250 * time.Millisecond
	// antispamMaxOpenFiles bounds the tables Pebble keeps open (each open
	// table holds a file descriptor and a small reader).
	antispamMaxOpenFiles = 512
)

// posixAntispam is tessera.Antispam on a Pebble database Cairn opens with
// sized caches. It may lag the log but never lies: an identity is written
// only with the index at which the follower read it from the integrated
// log, the first occurrence wins, and the follower's position is saved in
// the same atomic batch as the entries before it. After a crash the
// follower re-reads from the last saved position, which rewrites nothing
// already there.
type posixAntispam struct {
	db     *pebble.DB
	lag    uint64 // how far the follower may trail the tree before pushback
	logger *slog.Logger

	// pushback is set by the follower while it trails by more than lag.
	pushback atomic.Bool
	// caughtUp is set once the follower has indexed everything the log had
	// integrated when it started; until then every entry gets pushback.
	// Within lag a lookup may miss the newest entries (the in-memory dedup
	// covers those in a running log), but after a restart, kill -9 among
	// them, nothing covers them: a retry of a record acknowledged just
	// before would be sequenced again.
	caughtUp atomic.Bool

	// filter holds every identity in db (and some the follower is about to
	// write); lookups consult it once filterReady is set, after it has been
	// filled from db at open (fillFilter).
	filter      *identityFilter
	filterReady atomic.Bool

	lookups, hits, filtered prometheus.Counter
	next                    prometheus.Gauge

	// running counts the goroutines that use db (Tessera's call of
	// Follow); close cancels them and waits for them before closing db. mu
	// guards closed and cancels.
	mu      sync.Mutex
	closed  bool
	cancels []context.CancelFunc
	running sync.WaitGroup
}

// antispamSizes splits mib MiB between Pebble's memtables and its block
// cache (see DefaultAntispamMemoryMiB and antispamFilterSize).
func antispamSizes(mib int) (memtable uint64, memtables int, blockCache int64) {
	total := int64(mib) << 20
	return uint64(total / 8), 2, total / 2
}

// antispamFilterSize is the identity filter's share of mib MiB, in bytes: a
// quarter. The default 32 MiB answers 99.9% of misses alone with 16 M
// identities in the index, 99% with 27 M, 94% with 40 M, 65% with 70 M
// (falsePositiveRate).
func antispamFilterSize(mib int) int64 {
	return int64(mib) << 20 / 4
}

// pebbleOptions opens Pebble with the sizes of antispamSizes and cache (the
// block cache, whose reference the caller keeps until Open returns).
func pebbleOptions(mib int, cache *pebble.Cache, logger *slog.Logger) *pebble.Options {
	memtable, memtables, _ := antispamSizes(mib)
	o := &pebble.Options{
		Merger:                      firstIndexWins(),
		Cache:                       cache,
		MemTableSize:                memtable,
		MemTableStopWritesThreshold: memtables,
		MaxOpenFiles:                antispamMaxOpenFiles,
		FormatMajorVersion:          pebble.FormatNewest,
		Logger:                      pebbleLogger{logger},
	}
	for i := range o.Levels {
		// Every lookup of a new record misses: Bloom filters on every
		// level (Pebble's default leaves L0 without) answer most misses
		// without reading a data block.
		o.Levels[i].FilterPolicy = bloom.FilterPolicy(10)
		o.Levels[i].Compression = func() *sstable.CompressionProfile { return sstable.NoCompression }
	}
	return o
}

// openPOSIXAntispam opens (creating) the index in dir, converting a Badger
// index that earlier versions wrote there. Appends get pushback while the
// follower trails the tree by more than lag entries. close stops its
// goroutines and releases the database.
func openPOSIXAntispam(_ context.Context, dir string, mib int, lag uint, logger *slog.Logger) (*posixAntispam, error) {
	if err := convertBadgerAntispam(dir, mib, logger); err != nil {
		return nil, err
	}
	if err := convertToFirstIndexWins(dir, mib, logger); err != nil {
		return nil, err
	}
	db, err := openPebble(dir, mib, logger)
	if err != nil {
		return nil, err
	}
	a := &posixAntispam{
		db:     db,
		lag:    uint64(lag),
		logger: logger,
		filter: newIdentityFilter(antispamFilterSize(mib)),
		lookups: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "cairn_log_antispam_lookups_total",
			Help: "Records looked up in the persistent antispam index.",
		}),
		hits: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "cairn_log_antispam_hits_total",
			Help: "Lookups in the persistent antispam index that found an earlier index.",
		}),
		filtered: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "cairn_log_antispam_filter_misses_total",
			Help: "Lookups in the persistent antispam index that its identity filter answered as absent without reading Pebble.",
		}),
		next: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "cairn_log_antispam_next_index",
			Help: "The next log index the antispam follower will read: entries below it are indexed.",
		}),
	}
	ctx, cancel := context.WithCancel(context.Background())
	a.cancels = append(a.cancels, cancel)
	a.running.Add(1)
	go func() {
		defer a.running.Done()
		if err := a.fillFilter(ctx); err != nil && ctx.Err() == nil {
			logger.Warn("antispam index: filling its identity filter; lookups go to Pebble alone", slog.Any("error", err))
		}
	}()
	return a, nil
}

// fillFilter adds every identity in the index to the filter and then lets
// lookups consult it. The follower adds what it writes from open on, so an
// identity is in the filter whether it was in the database before the scan
// began or written during it.
func (a *posixAntispam) fillFilter(ctx context.Context) error {
	start := time.Now()
	it, err := a.db.NewIterWithContext(ctx, nil)
	if err != nil {
		return err
	}
	n := 0
	for ok := it.First(); ok; ok = it.Next() {
		if n%4096 == 0 && ctx.Err() != nil {
			it.Close()
			return ctx.Err()
		}
		if k := it.Key(); !bytes.Equal(k, antispamNextKey) {
			a.filter.add(k)
			n++
		}
	}
	if err := errors.Join(it.Error(), it.Close()); err != nil {
		return err
	}
	a.filterReady.Store(true)
	a.logger.Info("antispam index: identity filter filled", slog.Int("identities", n),
		slog.Int64("bytes", a.filter.bytes()), slog.Duration("took", time.Since(start)),
		slog.Float64("false_positive_rate", a.filter.falsePositiveRate()))
	return nil
}

// openPebble opens (creating) the Pebble database in dir.
func openPebble(dir string, mib int, logger *slog.Logger) (*pebble.DB, error) {
	_, _, cacheSize := antispamSizes(mib)
	cache := pebble.NewCache(cacheSize)
	// The database holds its own reference to the cache while open.
	defer cache.Unref()
	db, err := pebble.Open(dir, pebbleOptions(mib, cache, logger))
	if err != nil {
		return nil, fmt.Errorf("opening Pebble: %w", err)
	}
	return db, nil
}

// collectors are the index's metrics.
func (a *posixAntispam) collectors() []prometheus.Collector {
	filterBytes := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "cairn_log_antispam_filter_bytes",
		Help: "Size of the POSIX antispam index's identity filter (a quarter of --antispam-memory-mib), fixed at start.",
	}, func() float64 { return float64(a.filter.bytes()) })
	filterRate := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "cairn_log_antispam_filter_false_positive_ratio",
		Help: "Estimated share of new records the identity filter passes on to Pebble; it rises as the index outgrows the filter.",
	}, a.filter.falsePositiveRate)
	return []prometheus.Collector{a.lookups, a.hits, a.filtered, a.next, filterBytes, filterRate, newPebbleCollector(a.db)}
}

// close stops the follower, waits for it and closes the database.
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
	if a.filterReady.Load() && !a.filter.mayContain(identity) {
		a.filtered.Inc()
		return 0, false, nil
	}
	v, closer, err := a.db.Get(identity)
	if errors.Is(err, pebble.ErrNotFound) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, err
	}
	defer closer.Close()
	if len(v) != 8 {
		return 0, false, fmt.Errorf("antispam index: identity %x has a %d-byte value", identity, len(v))
	}
	a.hits.Inc()
	return binary.BigEndian.Uint64(v), true, nil
}

// lookupMany looks up identities in key order with one iterator (seeks in
// sorted order let Pebble move forward from the last position), writing
// each found identity's index to idx[i] and found[i]. idx and found are
// as long as identities.
func (a *posixAntispam) lookupMany(identities [][]byte, idx []uint64, found []bool) error {
	a.lookups.Add(float64(len(identities)))
	it, err := a.db.NewIter(nil)
	if err != nil {
		return err
	}
	defer it.Close()
	useFilter := a.filterReady.Load()
	for _, i := range sortedOrder(identities) {
		id := identities[i]
		found[i] = false
		if useFilter && !a.filter.mayContain(id) {
			a.filtered.Inc()
			continue
		}
		if !it.SeekPrefixGE(id) || !bytes.Equal(it.Key(), id) {
			continue
		}
		v, err := it.ValueAndErr()
		if err != nil {
			return err
		}
		if len(v) != 8 {
			return fmt.Errorf("antispam index: identity %x has a %d-byte value", id, len(v))
		}
		idx[i], found[i] = binary.BigEndian.Uint64(v), true
		a.hits.Inc()
	}
	return it.Error()
}

// sortedOrder returns the positions of keys in key order, equal keys in
// their order in keys.
func sortedOrder(keys [][]byte) []int {
	order := make([]int, len(keys))
	for i := range order {
		order[i] = i
	}
	slices.SortStableFunc(order, func(i, j int) int { return bytes.Compare(keys[i], keys[j]) })
	return order
}

// barrierAntispam is an antispam index with a start barrier (caughtUp, on
// both drivers): appends get pushback until it opens.
type barrierAntispam interface {
	// indexed is the next index the follower will read: every entry below
	// it is in the index.
	indexed(ctx context.Context) (uint64, error)
	// startBarrier is set once the index has covered what the log had
	// integrated at start.
	startBarrier() *atomic.Bool
}

func (a *posixAntispam) indexed(context.Context) (uint64, error) { return readNext(a.db) }

func (a *posixAntispam) startBarrier() *atomic.Bool { return &a.caughtUp }

// Decorator answers an entry whose identity is in the index with its first
// index (a duplicate), and passes the others on; while the follower trails
// too far it answers every entry with pushback.
func (a *posixAntispam) Decorator() func(tessera.AddFn) tessera.AddFn {
	return func(delegate tessera.AddFn) tessera.AddFn {
		return func(ctx context.Context, e *tessera.Entry) tessera.IndexFuture {
			if a.pushback.Load() || !a.caughtUp.Load() {
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
	return readNext(f.a.db)
}

// readNext reads the follower's position (0 before the first entry).
func readNext(r pebble.Reader) (uint64, error) {
	v, closer, err := r.Get(antispamNextKey)
	if errors.Is(err, pebble.ErrNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	defer closer.Close()
	if len(v) != 8 {
		return 0, fmt.Errorf("antispam index: its position is a %d-byte value", len(v))
	}
	return binary.BigEndian.Uint64(v), nil
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
		switch {
		case err == nil, errors.Is(err, os.ErrNotExist):
			// os.ErrNotExist: the log has not integrated its first entry
			// yet, so there is nothing to catch up.
			f.a.caughtUp.Store(true)
		case ctx.Err() == nil:
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

// index records the identities of the entries from index first on, and the
// new position, in one atomic batch. Each identity is written as a merge
// operand (firstIndexWins), in log order: where the index or this batch
// already holds it, the earlier index stands, without a lookup before the
// write (the lookups were 13–20% of the log's CPU in the profiles of #19).
// A position other than first means another writer moved it: nothing is
// written. The follower is the only writer.
func (f *antispamFollower) index(first uint64, identities [][]byte) error {
	db := f.a.db
	next, err := readNext(db)
	if err != nil {
		return err
	}
	if next != first {
		return fmt.Errorf("the index moved to %d while indexing from %d", next, first)
	}
	b := db.NewBatch()
	defer b.Close()
	var v [8]byte
	for i, id := range identities {
		// Into the filter before the index: a lookup that finds it in the
		// index must not be told it is absent.
		f.a.filter.add(id)
		binary.BigEndian.PutUint64(v[:], first+uint64(i))
		// The batch copies key and value.
		if err := b.Merge(id, v[:], nil); err != nil {
			return err
		}
	}
	binary.BigEndian.PutUint64(v[:], first+uint64(len(identities)))
	if err := b.Set(antispamNextKey, v[:], nil); err != nil {
		return err
	}
	// Not synced: a crash of the process loses nothing (the write is in the
	// WAL in the kernel's hands); a crash of the machine loses at most the
	// last batches, which the follower re-reads from the log.
	return b.Commit(pebble.NoSync)
}

// pebbleLogger sends Pebble's log lines to slog: errors as they are, its
// information at debug level. Fatalf logs and panics (Pebble's contract:
// it does not return).
type pebbleLogger struct{ l *slog.Logger }

func (p pebbleLogger) Infof(f string, a ...any) {
	p.l.Debug("antispam index: "+strings.TrimSpace(fmt.Sprintf(f, a...)), slog.String("component", "pebble"))
}
func (p pebbleLogger) Errorf(f string, a ...any) {
	p.l.Error("antispam index: "+strings.TrimSpace(fmt.Sprintf(f, a...)), slog.String("component", "pebble"))
}
func (p pebbleLogger) Fatalf(f string, a ...any) {
	msg := "antispam index: " + strings.TrimSpace(fmt.Sprintf(f, a...))
	p.l.Error(msg, slog.String("component", "pebble"))
	panic(msg)
}

// antispamMergerName names firstIndexWins in the database's OPTIONS file;
// Pebble refuses to open a database with a merger of another name (see
// convertToFirstIndexWins for indexes written before it).
const antispamMergerName = "cairn.antispam.first-index-wins"

// firstIndexWins is the index's merge operator: of an identity's values
// (8-byte indices written by Set or Merge), the oldest stands. The follower
// writes identities in log order, so the oldest is the identity's first
// index in the log, across batches, restarts and re-reads after a crash.
func firstIndexWins() *pebble.Merger {
	return &pebble.Merger{
		Name: antispamMergerName,
		Merge: func(_, value []byte) (pebble.ValueMerger, error) {
			return &oldestValue{v: slices.Clone(value)}, nil
		},
	}
}

// oldestValue is a pebble.ValueMerger keeping the oldest operand.
type oldestValue struct{ v []byte }

func (o *oldestValue) MergeNewer([]byte) error { return nil }

func (o *oldestValue) MergeOlder(value []byte) error {
	o.v = append(o.v[:0], value...)
	return nil
}

func (o *oldestValue) Finish(bool) ([]byte, io.Closer, error) { return o.v, nil, nil }
