package log

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"
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
	// Appends get pushback until the follower has caught up with what the
	// log had integrated when it opened (posixAntispam.caughtUp).
	deadline := time.Now().Add(30 * time.Second)
	for !as.caughtUp.Load() {
		if time.Now().After(deadline) {
			t.Fatal("the antispam follower did not catch up with the opened log")
		}
		time.Sleep(5 * time.Millisecond)
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

// reopenedAt20 returns the index of a log of 20 records, all indexed,
// reopened with a lag of 4 and no follower running.
func reopenedAt20(t *testing.T) *posixAntispam {
	t.Helper()
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
	t.Cleanup(func() { _ = as.close() })
	return as
}

// requirePushback fails unless as answers an append with pushback.
func requirePushback(t *testing.T, as *posixAntispam, when string) {
	t.Helper()
	add := as.Decorator()(func(context.Context, *tessera.Entry) tessera.IndexFuture {
		t.Fatalf("an append passed the antispam index %s", when)
		return nil
	})
	if _, err := add(context.Background(), tessera.NewEntry([]byte("record 99")))(); !errors.Is(err, tessera.ErrPushback) {
		t.Fatalf("appending %s: %v, want pushback", when, err)
	}
}

// A follower that cannot read the log and trails it by more than the lag
// turns every append into pushback; the index says nothing it has not read.
func TestPOSIXAntispamPushesBackWhileTheFollowerTrails(t *testing.T) {
	as := reopenedAt20(t)
	f := &antispamFollower{a: as}
	// A log of 30 whose new bundle cannot be read: 10 behind, over the lag of 4.
	if err := f.catchUp(context.Background(), failingReader{size: 30}); err == nil {
		t.Fatal("catching up on an unreadable log succeeded")
	}
	if next, _ := f.EntriesProcessed(context.Background()); next != 20 {
		t.Fatalf("the index moved to %d on an unreadable log, want 20", next)
	}
	requirePushback(t, as, "while the follower trails by 10")
}

// After a restart, an index that trails the log by less than the lag still
// answers pushback until its follower has caught up once: the entries it
// has not read may be retries of records acknowledged before the restart
// (kill -9 among them), which no in-memory window covers any more.
func TestPOSIXAntispamPushesBackAfterOpenUntilCaughtUp(t *testing.T) {
	as := reopenedAt20(t)
	f := &antispamFollower{a: as}
	// A log of 22 whose new bundle cannot be read: 2 behind, within the lag of 4.
	if err := f.catchUp(context.Background(), failingReader{size: 22}); err == nil {
		t.Fatal("catching up on an unreadable log succeeded")
	}
	requirePushback(t, as, "before the follower caught up after opening")
	// What the log's start check compares with its integrated size (22
	// here: the barrier stays closed; New opens it when they are equal).
	if next, err := as.indexed(context.Background()); err != nil || next != 20 {
		t.Fatalf("the index reports %d indexed (%v), want 20", next, err)
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
		"cairn_log_antispam_block_cache_bytes 1.6777216e+07", // 16 MiB
		"cairn_log_antispam_filter_bytes 8.388608e+06",       // 8 MiB
		"cairn_log_antispam_filter_false_positive_ratio",
		"cairn_log_antispam_filter_misses_total",
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

// The follower writes identities without looking them up first (a merge
// that keeps the oldest value): an identity's first index stands against
// later batches, a follower re-reading entries it had indexed (its position
// moved back, as after a crash of the machine, or a rebuild over an
// existing index), compactions that merge the operands in the tables, and
// a reopen that replays them from the WAL.
func TestPOSIXAntispamFollowerKeepsTheFirstIndexWithoutLookingUp(t *testing.T) {
	dir := t.TempDir()
	logger := slog.New(slog.DiscardHandler)
	as, err := openPOSIXAntispam(context.Background(), dir, 16, 1000, logger)
	if err != nil {
		t.Fatal(err)
	}
	f := &antispamFollower{a: as}
	id := func(i int) []byte { return benchIdentity(uint64(i)) }
	want := map[int]uint64{}
	indexed := func(first uint64, ids ...int) {
		t.Helper()
		batch := make([][]byte, len(ids))
		for i, n := range ids {
			batch[i] = id(n)
			if _, ok := want[n]; !ok {
				want[n] = first + uint64(i)
			}
		}
		if err := f.index(first, batch); err != nil {
			t.Fatal(err)
		}
	}
	check := func(when string) {
		t.Helper()
		for n, idx := range want {
			got, ok, err := as.lookup(id(n))
			if err != nil || !ok || got != idx {
				t.Fatalf("%s: identity %d answers index %d found %v (%v), want %d", when, n, got, ok, err, idx)
			}
		}
		if _, ok, _ := as.lookup(id(99)); ok {
			t.Fatalf("%s: an identity never indexed is found", when)
		}
	}
	indexed(0, 1, 2, 1, 3)
	indexed(4, 2, 4, 1)
	if err := as.db.Flush(); err != nil { // the first operands go to a table
		t.Fatal(err)
	}
	indexed(7, 3, 5, 4)
	check("after three batches")
	// The position moves back to 4 (a re-read): the same entries again.
	if err := as.db.Set(antispamNextKey, []byte{0, 0, 0, 0, 0, 0, 0, 4}, pebble.Sync); err != nil {
		t.Fatal(err)
	}
	indexed(4, 2, 4, 1)
	indexed(7, 3, 5, 4)
	check("after a re-read")
	if err := as.db.Compact(context.Background(), []byte{0}, []byte{0xff}, true); err != nil {
		t.Fatal(err)
	}
	check("after a compaction")
	indexed(10, 5, 6)
	if err := as.close(); err != nil {
		t.Fatal(err)
	}
	as, err = openPOSIXAntispam(context.Background(), dir, 16, 1000, logger)
	if err != nil {
		t.Fatal(err)
	}
	defer as.close()
	check("after a reopen")
	if next, _ := readNext(as.db); next != 12 {
		t.Fatalf("the follower's position is %d, want 12", next)
	}
}

// writeMergerlessIndex writes a Pebble index as Cairn did before the
// first-index-wins merger: Pebble's default merger in its OPTIONS file, the
// identities of kv and the follower's position next, all set.
func writeMergerlessIndex(t *testing.T, dir string, kv map[string]uint64, next uint64) {
	t.Helper()
	db, err := pebble.Open(dir, &pebble.Options{FormatMajorVersion: pebble.FormatNewest, Logger: pebbleLogger{slog.New(slog.DiscardHandler)}})
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range kv {
		if err := db.Set([]byte(k), binary.BigEndian.AppendUint64(nil, v), pebble.NoSync); err != nil {
			t.Fatal(err)
		}
	}
	if err := db.Flush(); err != nil { // some in tables, some only in the WAL
		t.Fatal(err)
	}
	if err := db.Set(antispamNextKey, binary.BigEndian.AppendUint64(nil, next), pebble.NoSync); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	if name, err := pebbleMergerName(dir); err != nil || name != pebble.DefaultMerger.Name {
		t.Fatalf("the fixture's merger is %q (%v), want %q", name, err, pebble.DefaultMerger.Name)
	}
}

// A Pebble index written before the merger (which Pebble would refuse to
// open with it) is copied once into one with the merger: it answers every
// identity with the same index, its follower continues from the same
// position and keeps first indices, and a copy cut short is redone or
// finished.
func TestMergerlessPebbleAntispamIsCopiedOnceAndAnswersTheSame(t *testing.T) {
	logger := slog.New(slog.DiscardHandler)
	kv := map[string]uint64{}
	for i := range 500 {
		kv[string(benchIdentity(uint64(i)))] = uint64(i)
	}
	verify := func(t *testing.T, dir string) {
		t.Helper()
		as, err := openPOSIXAntispam(context.Background(), dir, 16, 1000, logger)
		if err != nil {
			t.Fatal(err)
		}
		defer as.close()
		if name, err := pebbleMergerName(dir); err != nil || name != antispamMergerName {
			t.Fatalf("after opening, the index's merger is %q (%v), want %q", name, err, antispamMergerName)
		}
		for k, v := range kv {
			if got, ok, err := as.lookup([]byte(k)); err != nil || !ok || got != v {
				t.Fatalf("identity %x answers %d found %v (%v), want %d", k, got, ok, err, v)
			}
		}
		f := &antispamFollower{a: as}
		if next, _ := f.EntriesProcessed(context.Background()); next != 500 {
			t.Fatalf("the follower's position is %d, want 500", next)
		}
		// Index 500 repeats identity 7; 501 is new.
		if err := f.index(500, [][]byte{benchIdentity(7), benchIdentity(501)}); err != nil {
			t.Fatal(err)
		}
		if got, _, _ := as.lookup(benchIdentity(7)); got != 7 {
			t.Fatalf("identity 7 answers %d after the follower met it again, want 7", got)
		}
		if got, _, _ := as.lookup(benchIdentity(501)); got != 501 {
			t.Fatalf("identity 501 answers %d, want 501", got)
		}
		for _, left := range []string{dir + antispamMergingSuffix, dir + antispamPremergeSuffix} {
			if exists(left) {
				t.Fatalf("%s is left behind", left)
			}
		}
	}
	t.Run("once", func(t *testing.T) {
		dir := filepath.Join(t.TempDir(), "antispam")
		writeMergerlessIndex(t, dir, kv, 500)
		verify(t, dir)
		// A second open copies nothing: identity 501 (written by the
		// follower after the copy) is still there.
		as, err := openPOSIXAntispam(context.Background(), dir, 16, 1000, logger)
		if err != nil {
			t.Fatal(err)
		}
		defer as.close()
		if got, ok, _ := as.lookup(benchIdentity(501)); !ok || got != 501 {
			t.Fatalf("after a second open identity 501 answers %d found %v", got, ok)
		}
	})
	t.Run("cut during the copy", func(t *testing.T) {
		dir := filepath.Join(t.TempDir(), "antispam")
		writeMergerlessIndex(t, dir, kv, 500)
		// A partial copy: a database holding a wrong position only.
		writeMergerlessIndex(t, dir+antispamMergingSuffix, nil, 9)
		verify(t, dir)
	})
	t.Run("cut between the renames", func(t *testing.T) {
		dir := filepath.Join(t.TempDir(), "antispam")
		writeMergerlessIndex(t, dir, kv, 500)
		if _, err := copyPebble(dir, dir+antispamMergingSuffix, 16, logger); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(dir, dir+antispamPremergeSuffix); err != nil {
			t.Fatal(err)
		}
		verify(t, dir)
	})
	t.Run("cut before the old copy was removed", func(t *testing.T) {
		dir := filepath.Join(t.TempDir(), "antispam")
		writeMergerlessIndex(t, dir, kv, 500)
		if _, err := copyPebble(dir, dir+antispamMergingSuffix, 16, logger); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(dir, dir+antispamPremergeSuffix); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(dir+antispamMergingSuffix, dir); err != nil {
			t.Fatal(err)
		}
		verify(t, dir)
	})
	t.Run("an unknown merger", func(t *testing.T) {
		dir := filepath.Join(t.TempDir(), "antispam")
		db, err := pebble.Open(dir, &pebble.Options{Merger: &pebble.Merger{Name: "someone.else", Merge: pebble.DefaultMerger.Merge}, Logger: pebbleLogger{logger}})
		if err != nil {
			t.Fatal(err)
		}
		if err := db.Close(); err != nil {
			t.Fatal(err)
		}
		_, err = openPOSIXAntispam(context.Background(), dir, 16, 1000, logger)
		if err == nil || !strings.Contains(err.Error(), "someone.else") || !strings.Contains(err.Error(), dir) {
			t.Fatalf("opening an index with an unknown merger: %v, want an error naming it and the directory", err)
		}
	})
}

// /readyz answers 503 while the start barrier is closed (appends would get
// pushback), naming why, so a load balancer sends appends to a frontend
// whose index has caught up; a new log opens it before it serves.
func TestNotReadyWhileTheAntispamCatchesUpAfterStart(t *testing.T) {
	tl := newTestLog(t)
	if b := tl.get(t, "/readyz"); string(b) != "ready\n" {
		t.Fatalf("a new log's /readyz: %q", b)
	}
	tl.Log.barrier.Store(false)
	resp, err := http.Get(tl.base + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable || !strings.Contains(string(body), "antispam index is catching up") {
		t.Fatalf("/readyz with the barrier closed: %s %q, want 503 naming the antispam catch-up", resp.Status, body)
	}
	tl.Log.barrier.Store(true)
	if b := tl.get(t, "/readyz"); string(b) != "ready\n" {
		t.Fatalf("/readyz after the catch-up: %q", b)
	}
}
