package log

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/transparency-dev/tessera"
	"github.com/transparency-dev/tessera/storage/posix"
	"golang.org/x/mod/sumdb/note"
)

// antispamLog is a Tessera POSIX log in dir whose persistent antispam index
// is Cairn's, with an in-memory dedup window of one record, so that
// duplicates are found by the persistent index.
type antispamLog struct {
	app      *tessera.Appender
	as       *posixAntispam
	reader   tessera.LogReader
	shutdown func(context.Context) error
	cancel   context.CancelFunc
}

func openAntispamLog(t *testing.T, dir string, lag uint) *antispamLog {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	skey, _ := newKey(t, testOrigin)
	signer, err := note.NewSigner(skey)
	if err != nil {
		t.Fatal(err)
	}
	d, err := posix.New(ctx, posix.Config{Path: dir})
	if err != nil {
		t.Fatal(err)
	}
	as, err := openPOSIXAntispam(ctx, filepath.Join(dir, ".state", "antispam"), 16, lag, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	opts := tessera.NewAppendOptions().WithCheckpointSigner(signer).
		WithBatching(16, 10*time.Millisecond).WithCheckpointInterval(100*time.Millisecond).
		WithAntispam(1, as)
	app, shutdown, reader, err := tessera.NewAppender(ctx, d, opts)
	if err != nil {
		t.Fatal(err)
	}
	return &antispamLog{app: app, as: as, reader: reader, shutdown: shutdown, cancel: cancel}
}

// add appends data and returns its index.
func (l *antispamLog) add(t *testing.T, data string) tessera.Index {
	t.Helper()
	idx, err := l.app.Add(context.Background(), tessera.NewEntry([]byte(data)))()
	if err != nil {
		t.Fatalf("adding %q: %v", data, err)
	}
	return idx
}

// followed waits until the antispam index covers the integrated log.
func (l *antispamLog) followed(t *testing.T) {
	t.Helper()
	f := &antispamFollower{a: l.as}
	deadline := time.Now().Add(30 * time.Second)
	for {
		size, err1 := l.reader.IntegratedSize(context.Background())
		next, err2 := f.EntriesProcessed(context.Background())
		if err1 == nil && err2 == nil && size > 0 && next == size {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the antispam index is at %d (%v), the log at %d (%v)", next, err2, size, err1)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (l *antispamLog) close(t *testing.T) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := l.shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	l.cancel()
	if err := l.as.close(); err != nil {
		t.Fatal(err)
	}
}

// The index maps a record to its first index, across a restart, where
// Tessera's in-memory dedup has forgotten it.
func TestPOSIXAntispamAnswersTheFirstIndexAfterReopen(t *testing.T) {
	dir := t.TempDir()
	l := openAntispamLog(t, dir, 1000)
	for i := range 40 {
		if got := l.add(t, fmt.Sprintf("record %d", i)); got.Index != uint64(i) || got.IsDup {
			t.Fatalf("record %d: got %+v", i, got)
		}
	}
	l.followed(t)
	// Found by the persistent index (the in-memory window holds one record).
	if got := l.add(t, "record 7"); got.Index != 7 || !got.IsDup {
		t.Fatalf("record 7 again: got %+v, want index 7, a duplicate", got)
	}
	l.close(t)

	l = openAntispamLog(t, dir, 1000)
	defer l.close(t)
	for _, i := range []uint64{0, 7, 39} {
		if got := l.add(t, fmt.Sprintf("record %d", i)); got.Index != i || !got.IsDup {
			t.Fatalf("after reopening, record %d again: got %+v, want index %d, a duplicate", i, got, i)
		}
	}
	if got := l.add(t, "record 40"); got.Index != 40 || got.IsDup {
		t.Fatalf("a new record after reopening: got %+v, want index 40", got)
	}
	if n := counterValue(t, l.as.hits); n != 3 {
		t.Fatalf("cairn_log_antispam_hits_total is %v, want 3", n)
	}
}

// A follower that cannot read the log and trails it by more than the lag
// turns every append into pushback; the index says nothing it has not read.
func TestPOSIXAntispamPushesBackWhileTheFollowerTrails(t *testing.T) {
	dir := t.TempDir()
	l := openAntispamLog(t, dir, 1000)
	for i := range 20 {
		l.add(t, fmt.Sprintf("record %d", i))
	}
	l.followed(t)
	l.close(t)

	as, err := openPOSIXAntispam(context.Background(), filepath.Join(dir, ".state", "antispam"), 16, 4, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer as.close()
	f := &antispamFollower{a: as}
	// A log of 30 whose new bundle cannot be read: 10 behind, over the lag of 4.
	err = f.catchUp(context.Background(), failingReader{size: 30})
	if err == nil {
		t.Fatal("catching up on an unreadable log succeeded")
	}
	if next, _ := f.EntriesProcessed(context.Background()); next != 20 {
		t.Fatalf("the index moved to %d on an unreadable log, want 20", next)
	}
	add := as.Decorator()(func(context.Context, *tessera.Entry) tessera.IndexFuture {
		t.Fatal("an append passed the antispam index during pushback")
		return nil
	})
	if _, err := add(context.Background(), tessera.NewEntry([]byte("record 99")))(); !errors.Is(err, tessera.ErrPushback) {
		t.Fatalf("appending while the follower trails by 10: %v, want pushback", err)
	}
}

// failingReader is a log of size entries none of whose bundles can be read.
type failingReader struct {
	tessera.LogReader
	size uint64
}

func (r failingReader) IntegratedSize(context.Context) (uint64, error) { return r.size, nil }
func (r failingReader) ReadEntryBundle(context.Context, uint64, uint8) ([]byte, error) {
	return nil, errors.New("disk on fire")
}

func counterValue(t *testing.T, c prometheus.Counter) float64 {
	t.Helper()
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetCounter().GetValue()
}

// /metrics reports the index's memory as --antispam-memory-mib sized it.
func TestAntispamMemoryIsSizedByTheConfigAndExported(t *testing.T) {
	tl := newTestLogWith(t, func(c *Config) { c.AntispamMemoryMiB = 32 })
	m := string(tl.get(t, "/metrics"))
	for _, want := range []string{
		"cairn_log_antispam_memtable_bytes 8.388608e+06",     // 2 × 4 MiB
		"cairn_log_antispam_block_cache_bytes 2.5165824e+07", // 24 MiB
		"cairn_log_antispam_block_cache_used_bytes",
		"cairn_log_antispam_block_cache_hits_total",
		"cairn_log_antispam_memtable_used_bytes",
		"cairn_log_antispam_disk_bytes",
		"cairn_log_antispam_lookups_total",
		"cairn_log_antispam_next_index",
	} {
		if !strings.Contains(m, want) {
			t.Errorf("/metrics has no %q", want)
		}
	}
}

// lookupMany answers each identity of an unsorted batch (with repeats and
// identities the index lacks) as lookup answers it alone, in the batch's
// order; the follower keeps the first index of an identity repeated within
// one of its batches.
func TestPOSIXAntispamLooksUpManyInTheirOrder(t *testing.T) {
	as, err := openPOSIXAntispam(context.Background(), t.TempDir(), 16, 1000, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer as.close()
	f := &antispamFollower{a: as}
	id := func(i int) []byte { return benchIdentity(uint64(i)) }
	// Indices 0–5: identity 3 at 1 and 4, identity 5 at 5 only.
	if err := f.index(0, [][]byte{id(0), id(3), id(1), id(2), id(3), id(5)}); err != nil {
		t.Fatal(err)
	}
	// Indices 6–7: identity 0 again (its index 0 stands), identity 6 new.
	if err := f.index(6, [][]byte{id(0), id(6)}); err != nil {
		t.Fatal(err)
	}
	if err := f.index(6, [][]byte{id(7)}); err == nil {
		t.Fatal("indexing from a position the index has passed succeeded")
	}
	batch := [][]byte{id(6), id(9), id(3), id(0), id(3), id(4), id(5), id(2), id(1)}
	want := []struct {
		idx   uint64
		found bool
	}{{7, true}, {0, false}, {1, true}, {0, true}, {1, true}, {0, false}, {5, true}, {3, true}, {2, true}}
	idx, found := make([]uint64, len(batch)), make([]bool, len(batch))
	for i := range found {
		found[i], idx[i] = true, 99 // stale values lookupMany must overwrite
	}
	if err := as.lookupMany(batch, idx, found); err != nil {
		t.Fatal(err)
	}
	for i, w := range want {
		if found[i] != w.found || (w.found && idx[i] != w.idx) {
			t.Errorf("lookupMany, identity %d of the batch: index %d found %v, want %d found %v", i, idx[i], found[i], w.idx, w.found)
		}
		one, ok, err := as.lookup(batch[i])
		if err != nil || ok != w.found || (ok && one != w.idx) {
			t.Errorf("lookup, identity %d of the batch: index %d found %v (%v), want %d found %v", i, one, ok, err, w.idx, w.found)
		}
	}
	if next, _ := f.EntriesProcessed(context.Background()); next != 8 {
		t.Fatalf("the follower's position is %d, want 8", next)
	}
}
