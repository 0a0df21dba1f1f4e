package log

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/dgraph-io/badger/v4"
	"github.com/prometheus/client_golang/prometheus"
)

// Before Pebble, the POSIX antispam index was a Badger database in the same
// directory (Cairn's own, or Tessera v1.0.4's posix/antispam: the same key
// layout). convertBadgerAntispam turns one into a Pebble database once, at
// open:
//
//  1. every key and value of the Badger database in dir is copied into a
//     new Pebble database in dir+antispamConvertingSuffix, which is flushed;
//  2. dir is renamed to dir+antispamBadgerSuffix (kept for the operator to
//     delete once satisfied) and the new database renamed to dir.
//
// A crash during step 1 leaves the Badger database in place and a partial
// copy, which the next open removes and redoes; a crash between the two
// renames leaves no dir, the complete copy and the old database aside,
// which the next open finishes.
const (
	antispamConvertingSuffix = ".converting"
	antispamBadgerSuffix     = ".badger"
	// antispamConvertBatch is how many keys one Pebble batch of the
	// conversion holds.
	antispamConvertBatch = 1 << 16
)

// isBadgerDir reports whether dir holds a Badger database (Badger always
// writes its KEYREGISTRY; Pebble never does).
func isBadgerDir(dir string) bool {
	_, err := os.Stat(filepath.Join(dir, "KEYREGISTRY"))
	return err == nil
}

func exists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

// convertBadgerAntispam converts a Badger index in dir to Pebble (see
// above); with none there it does nothing.
func convertBadgerAntispam(dir string, mib int, logger *slog.Logger) error {
	tmp, old := dir+antispamConvertingSuffix, dir+antispamBadgerSuffix
	if !exists(dir) && exists(tmp) && exists(old) {
		logger.Info("antispam index: finishing its conversion from Badger to Pebble", slog.String("dir", dir))
		return renameSynced(tmp, dir)
	}
	if !isBadgerDir(dir) {
		return nil
	}
	logger.Info("antispam index: converting from Badger to Pebble (once)", slog.String("dir", dir))
	start := time.Now()
	n, err := swapInCopy(dir, tmp, old, "converting the antispam index %s from Badger to Pebble", func() (int, error) {
		return copyBadgerToPebble(dir, tmp, mib, logger)
	})
	if err != nil {
		return err
	}
	logger.Info("antispam index: converted from Badger to Pebble; the Badger copy may be deleted",
		slog.String("dir", dir), slog.Int("keys", n), slog.String("badger", old), slog.Duration("took", time.Since(start)))
	return nil
}

// swapInCopy builds a new index in tmp with build (after removing what an
// interrupted run left there, which is incomplete), then moves the index in
// dir aside to old and the new one into its place: a crash at any point
// leaves either the old index in dir or both copies, which the converters
// above finish. A copy already at old, from an earlier conversion, is in
// the way and refused. what ("... %s ...", the index's dir) prefixes errors.
func swapInCopy(dir, tmp, old, what string, build func() (int, error)) (int, error) {
	if exists(old) {
		return 0, fmt.Errorf(what+": %s is in the way (an index converted earlier): move or remove it", dir, old)
	}
	if err := os.RemoveAll(tmp); err != nil {
		return 0, fmt.Errorf("removing the partial copy %s: %w", tmp, err)
	}
	n, err := build()
	if err != nil {
		return 0, fmt.Errorf(what+": %w", dir, err)
	}
	if err := os.Rename(dir, old); err != nil {
		return 0, fmt.Errorf("moving the antispam index %s aside: %w", dir, err)
	}
	return n, renameSynced(tmp, dir)
}

// renameSynced renames from to to and syncs their parent directory.
func renameSynced(from, to string) error {
	if err := os.Rename(from, to); err != nil {
		return fmt.Errorf("renaming the converted antispam index: %w", err)
	}
	d, err := os.Open(filepath.Dir(to))
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// copyBadgerToPebble copies every key of the Badger database in from into a
// new Pebble database in to, flushed to its tables, and returns how many.
func copyBadgerToPebble(from, to string, mib int, logger *slog.Logger) (n int, err error) {
	bdb, err := badger.Open(badger.DefaultOptions(from).
		WithNumMemtables(1).WithMemTableSize(16 << 20).WithBlockCacheSize(16 << 20).WithIndexCacheSize(16 << 20).
		WithNumCompactors(2).WithLogger(badgerLogger{logger}))
	if err != nil {
		return 0, fmt.Errorf("opening Badger: %w", err)
	}
	defer func() {
		if cerr := bdb.Close(); err == nil && cerr != nil {
			err = fmt.Errorf("closing Badger: %w", cerr)
		}
	}()
	pdb, err := openPebble(to, mib, logger)
	if err != nil {
		return 0, err
	}
	defer func() {
		if cerr := pdb.Close(); err == nil && cerr != nil {
			err = fmt.Errorf("closing Pebble: %w", cerr)
		}
	}()
	b := pdb.NewBatch()
	defer func() { b.Close() }()
	err = bdb.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.DefaultIteratorOptions)
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			item := it.Item()
			v, err := item.ValueCopy(nil)
			if err != nil {
				return fmt.Errorf("reading %x: %w", item.Key(), err)
			}
			if err := b.Set(item.Key(), v, nil); err != nil {
				return err
			}
			n++
			if b.Count() >= antispamConvertBatch {
				if err := b.Commit(pebble.NoSync); err != nil {
					return err
				}
				b.Close()
				b = pdb.NewBatch()
			}
		}
		return nil
	})
	if err != nil {
		return n, err
	}
	if err := b.Commit(pebble.NoSync); err != nil {
		return n, err
	}
	// Tables, not only the WAL: the copy is whole before dir is renamed.
	if err := pdb.Flush(); err != nil {
		return n, fmt.Errorf("flushing Pebble: %w", err)
	}
	return n, nil
}

// An index that Cairn wrote with Pebble before it had a merge operator
// (its OPTIONS file names Pebble's default, "pebble.concatenate", which
// Cairn never used) is copied once into a database with firstIndexWins,
// because Pebble refuses to open a database whose merger has another name:
//
//  1. every key and value of dir is copied into a new database in
//     dir+antispamMergingSuffix, which is flushed;
//  2. dir is renamed to dir+antispamPremergeSuffix, the copy to dir, and
//     the old database removed.
//
// A crash during step 1 leaves dir as it was and a partial copy, which the
// next open removes and redoes; a crash within step 2 leaves the complete
// copy and the old database, which the next open finishes with.
const (
	antispamMergingSuffix  = ".merging"
	antispamPremergeSuffix = ".premerge"
)

// pebbleMergerName returns the merger name in the OPTIONS file of the
// Pebble database in dir ("" when there is no database).
func pebbleMergerName(dir string) (string, error) {
	desc, err := pebble.Peek(dir, vfs.Default)
	if errors.Is(err, os.ErrNotExist) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("reading the Pebble database in %s: %w", dir, err)
	}
	if !desc.Exists || desc.OptionsFilename == "" {
		return "", nil
	}
	text, err := os.ReadFile(desc.OptionsFilename)
	if err != nil {
		return "", err
	}
	// Parse sets Pebble's default merger itself and asks the hook for any
	// other (a file without one, or with RocksDB's "nullptr", leaves none).
	var o pebble.Options
	hooks := &pebble.ParseHooks{NewMerger: func(n string) (*pebble.Merger, error) {
		return &pebble.Merger{Name: n}, nil
	}}
	if err := o.Parse(string(text), hooks); err != nil {
		return "", fmt.Errorf("reading %s: %w", desc.OptionsFilename, err)
	}
	if o.Merger == nil {
		return "", nil
	}
	return o.Merger.Name, nil
}

// convertToFirstIndexWins gives the Pebble index in dir the merger
// firstIndexWins (see above); an index that has it, or none, is left alone.
func convertToFirstIndexWins(dir string, mib int, logger *slog.Logger) error {
	tmp, old := dir+antispamMergingSuffix, dir+antispamPremergeSuffix
	if !exists(dir) && exists(tmp) && exists(old) {
		logger.Info("antispam index: finishing its copy with the first-index-wins merger", slog.String("dir", dir))
		if err := renameSynced(tmp, dir); err != nil {
			return err
		}
	}
	name, err := pebbleMergerName(dir)
	if err != nil {
		return err
	}
	switch name {
	case "", antispamMergerName:
		if exists(old) {
			// The copy was complete: what is left is the old database.
			return os.RemoveAll(old)
		}
		return nil
	case pebble.DefaultMerger.Name:
	default:
		return fmt.Errorf("the antispam index %s was written with the Pebble merger %q, which Cairn does not know", dir, name)
	}
	logger.Info("antispam index: copying it once into a database with the first-index-wins merger", slog.String("dir", dir))
	start := time.Now()
	n, err := swapInCopy(dir, tmp, old, "converting the antispam index %s to the first-index-wins merger", func() (int, error) {
		return copyPebble(dir, tmp, mib, logger)
	})
	if err != nil {
		return err
	}
	if err := os.RemoveAll(old); err != nil {
		return fmt.Errorf("removing the antispam index's old copy %s: %w", old, err)
	}
	logger.Info("antispam index: copied with the first-index-wins merger",
		slog.String("dir", dir), slog.Int("keys", n), slog.Duration("took", time.Since(start)))
	return nil
}

// copyPebble copies every key of the Pebble database in from (opened read
// only, with Pebble's default merger) into a new database in to, flushed to
// its tables, and returns how many.
func copyPebble(from, to string, mib int, logger *slog.Logger) (n int, err error) {
	src, err := pebble.Open(from, &pebble.Options{ReadOnly: true, Logger: pebbleLogger{logger}})
	if err != nil {
		return 0, fmt.Errorf("opening Pebble: %w", err)
	}
	defer func() {
		if cerr := src.Close(); err == nil && cerr != nil {
			err = fmt.Errorf("closing Pebble: %w", cerr)
		}
	}()
	dst, err := openPebble(to, mib, logger)
	if err != nil {
		return 0, err
	}
	defer func() {
		if cerr := dst.Close(); err == nil && cerr != nil {
			err = fmt.Errorf("closing Pebble: %w", cerr)
		}
	}()
	it, err := src.NewIter(nil)
	if err != nil {
		return 0, err
	}
	defer func() {
		if cerr := it.Close(); err == nil && cerr != nil {
			err = cerr
		}
	}()
	b := dst.NewBatch()
	defer func() { b.Close() }()
	for it.First(); it.Valid(); it.Next() {
		v, err := it.ValueAndErr()
		if err != nil {
			return n, fmt.Errorf("reading %x: %w", it.Key(), err)
		}
		if err := b.Set(it.Key(), v, nil); err != nil {
			return n, err
		}
		n++
		if b.Count() >= antispamConvertBatch {
			if err := b.Commit(pebble.NoSync); err != nil {
				return n, err
			}
			b.Close()
			b = dst.NewBatch()
		}
	}
	if err := it.Error(); err != nil {
		return n, err
	}
	if err := b.Commit(pebble.NoSync); err != nil {
		return n, err
	}
	// Tables, not only the WAL: the copy is whole before dir is renamed.
	if err := dst.Flush(); err != nil {
		return n, fmt.Errorf("flushing Pebble: %w", err)
	}
	return n, nil
}

// pebbleCollector exports the antispam index's Pebble metrics at each
// scrape: what its caches and memtables hold and how they are used.
type pebbleCollector struct {
	db                                   *pebble.DB
	cacheUsed, cacheHits, cacheMisses    *prometheus.Desc
	memtableUsed, memtables              *prometheus.Desc
	tables, openTables, disk, compaction *prometheus.Desc
}

func newPebbleCollector(db *pebble.DB) pebbleCollector {
	d := func(name, help string) *prometheus.Desc {
		return prometheus.NewDesc("cairn_log_antispam_"+name, help, nil, nil)
	}
	return pebbleCollector{
		db:           db,
		cacheUsed:    d("block_cache_used_bytes", "Bytes the POSIX antispam index's Pebble block cache holds (data, index and filter blocks; at most cairn_log_antispam_block_cache_bytes)."),
		cacheHits:    d("block_cache_hits_total", "Block reads of the POSIX antispam index served by its block cache."),
		cacheMisses:  d("block_cache_misses_total", "Block reads of the POSIX antispam index that read its table files."),
		memtableUsed: d("memtable_used_bytes", "Bytes the POSIX antispam index's Pebble memtables hold (at most cairn_log_antispam_memtable_bytes)."),
		memtables:    d("memtables", "Pebble memtables of the POSIX antispam index (the mutable one and those waiting to be flushed)."),
		tables:       d("tables", "Table files of the POSIX antispam index."),
		openTables:   d("open_tables", "Table files of the POSIX antispam index Pebble holds open."),
		disk:         d("disk_bytes", "Disk space of the POSIX antispam index (tables, WAL, manifest)."),
		compaction:   d("compactions_total", "Compactions of the POSIX antispam index's tables."),
	}
}

// Describe implements prometheus.Collector.
func (c pebbleCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.cacheUsed, c.cacheHits, c.cacheMisses, c.memtableUsed, c.memtables, c.tables, c.openTables, c.disk, c.compaction} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (c pebbleCollector) Collect(ch chan<- prometheus.Metric) {
	m := c.db.Metrics()
	g := func(d *prometheus.Desc, v float64) { ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v) }
	k := func(d *prometheus.Desc, v float64) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, v)
	}
	g(c.cacheUsed, float64(m.BlockCache.Size))
	k(c.cacheHits, float64(m.BlockCache.Hits))
	k(c.cacheMisses, float64(m.BlockCache.Misses))
	g(c.memtableUsed, float64(m.MemTable.Size))
	g(c.memtables, float64(m.MemTable.Count))
	g(c.tables, float64(m.Total().TablesCount))
	g(c.openTables, float64(m.FileCache.TableCount))
	g(c.disk, float64(m.DiskSpaceUsage()))
	k(c.compaction, float64(m.Compact.Count))
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
