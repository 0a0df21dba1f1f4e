package index

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"io"
	"log/slog"
	mrand "math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cairnlog/cairn/format/policy"
	"github.com/cairnlog/cairn/format/search"
	"github.com/cairnlog/cairn/internal/hastack"
	"github.com/cairnlog/cairn/internal/lockedbuf"
	"github.com/cairnlog/cairn/internal/testport"
	"github.com/transparency-dev/merkle/rfc6962"
	"github.com/transparency-dev/tessera"
	"github.com/transparency-dev/tessera/storage/posix"
	"golang.org/x/mod/sumdb/note"
)

// smallLog writes the first n records of the bench fixture (benchLeaf) as
// a posix tlog-tiles tree through Tessera's migration target and returns
// its directory, a signed checkpoint for each of sizes, and the policy.
func smallLog(t *testing.T, n uint64, sizes ...uint64) (string, map[uint64][]byte, *policy.Policy) {
	t.Helper()
	dir := t.TempDir()
	skey, vkey, err := note.GenerateKey(rand.Reader, benchOrigin)
	if err != nil {
		t.Fatal(err)
	}
	signer, err := note.NewSigner(skey)
	if err != nil {
		t.Fatal(err)
	}
	notes := map[uint64][]byte{}
	r := rangeFactory.NewEmptyRange(0)
	var root []byte
	for i := range n {
		if err := r.Append(rfc6962.DefaultHasher.HashLeaf(benchLeaf(i)), nil); err != nil {
			t.Fatal(err)
		}
		if root, err = r.GetRootHash(nil); err != nil {
			t.Fatal(err)
		}
		if slices.Contains(sizes, i+1) {
			msg, err := note.Sign(&note.Note{Text: fmt.Sprintf("%s\n%d\n%s\n", benchOrigin, i+1, base64.StdEncoding.EncodeToString(root))}, signer)
			if err != nil {
				t.Fatal(err)
			}
			notes[i+1] = msg
		}
	}
	ctx := context.Background()
	drv, err := posix.New(ctx, posix.Config{Path: dir})
	if err != nil {
		t.Fatal(err)
	}
	mt, err := tessera.NewMigrationTarget(ctx, drv, tessera.NewMigrationOptions())
	if err != nil {
		t.Fatal(err)
	}
	if err := mt.Migrate(ctx, 2, n, root, func(_ context.Context, k uint64, p uint8) ([]byte, error) { return benchBundle(k, p), nil }); err != nil {
		t.Fatal(err)
	}
	p, err := policy.Parse([]byte(fmt.Sprintf("log %s\nquorum none\n", vkey)))
	if err != nil {
		t.Fatal(err)
	}
	return dir, notes, p
}

// fixtureServer serves dir's tiles with the checkpoint *cp; entry bundles
// numbered failFrom or above answer 503 (an outage mid-catch-up).
func fixtureServer(t *testing.T, dir string, cp *atomic.Pointer[[]byte], failFrom *atomic.Int64) *httptest.Server {
	files := http.FileServer(http.Dir(dir))
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/checkpoint" {
			_, _ = w.Write(*cp.Load())
			return
		}
		if rest, ok := strings.CutPrefix(r.URL.Path, "/tile/entries/"); ok {
			var k int64
			fmt.Sscanf(strings.NewReplacer("x", "", "/", "").Replace(strings.Split(rest, ".p/")[0]), "%d", &k)
			if f := failFrom.Load(); f >= 0 && k >= f {
				http.Error(w, "unavailable", http.StatusServiceUnavailable)
				return
			}
		}
		if b, ok := grownTile(dir, r.URL.Path); ok {
			_, _ = w.Write(b)
			return
		}
		files.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	return srv
}

// grownTile answers a partial tile the fixture no longer holds (its tree
// is larger than the checkpoint served) with the prefix of the tile the
// tree grew it into, as a log serves a checkpoint older than its tiles.
func grownTile(dir, path string) ([]byte, bool) {
	full, w, ok := strings.Cut(path, ".p/")
	if !ok {
		return nil, false
	}
	if _, err := os.Stat(filepath.Join(dir, path)); err == nil {
		return nil, false
	}
	var width int
	fmt.Sscanf(w, "%d", &width)
	b, err := os.ReadFile(filepath.Join(dir, full))
	if err != nil {
		more, _ := filepath.Glob(filepath.Join(dir, full+".p", "*"))
		if len(more) == 0 {
			return nil, false
		}
		if b, err = os.ReadFile(more[len(more)-1]); err != nil {
			return nil, false
		}
	}
	if !strings.HasPrefix(path, "/tile/entries/") {
		return b[:min(len(b), 32*width)], true
	}
	end := 0
	for range width {
		end += 2 + int(binary.BigEndian.Uint16(b[end:]))
	}
	return b[:end], true
}

func testFields(t *testing.T) []search.Field {
	var out []search.Field
	for _, s := range []string{"actor=.actor", "action=.action", "resource=.resource.id"} {
		f, err := search.ParseField(s)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, f)
	}
	return out
}

func startTestIndex(t *testing.T, url string, p *policy.Policy, db string, chunkBundles int) (*Index, func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	x, err := New(ctx, Config{LogURLs: []string{url}, Policy: p, DB: db, Fields: testFields(t), PollInterval: 10 * time.Millisecond,
		ChunkBundles: chunkBundles, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- x.Run(ctx) }()
	return x, func() {
		cancel()
		<-done
		x.Close()
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// searchAll returns the indices every page of q answers.
func searchAll(t *testing.T, x *Index, q search.Query) []uint64 {
	t.Helper()
	var got []uint64
	q.Limit = 97 // pages that do not fall on bundle boundaries
	for {
		next, err := x.Search(context.Background(), &q, func(h *search.Hit) error {
			got = append(got, h.Index)
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		if next == "" {
			return got
		}
		fmt.Sscanf(next, "%d", &q.Page)
	}
}

// wantField is what a full replay of the fixture's first size records
// answers for NAME=VALUE.
func wantField(t *testing.T, size uint64, name, value string) []uint64 {
	var out []uint64
	fields := testFields(t)
	for i := range size {
		h, err := search.Describe(i, benchLeaf(i), nil, "", fields)
		if err != nil {
			t.Fatal(err)
		}
		if h.Fields[name] == value {
			out = append(out, i)
		}
	}
	return out
}

// merged returns field_merge's upto and the number of field_keys rows.
func merged(t *testing.T, spec string) (upto, keys uint64) {
	kind, dsn, _ := strings.Cut(spec, ":")
	if kind == "sqlite" {
		dsn = "file:" + dsn + "?_pragma=busy_timeout(10000)"
	}
	db, err := sql.Open(kind, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if err := db.QueryRow(`SELECT (SELECT upto FROM field_merge WHERE id = 1), (SELECT COUNT(*) FROM field_keys)`).Scan(&upto, &keys); err != nil {
		t.Fatal(err)
	}
	return upto, keys
}

// mariaDB starts a MariaDB server for the test (skipping it without one)
// and returns the DSN of a fresh database.
func mariaDB(t *testing.T) string {
	out := &lockedbuf.Buffer{}
	db, err := hastack.NewMariaDB(t.TempDir(), testport.Port(t), out)
	if err != nil {
		t.Skipf("MariaDB unavailable (install with scripts/ha-deps.sh): %v", err)
	}
	if err := db.Start(context.Background()); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	t.Cleanup(db.Kill)
	dsn, err := db.Database(context.Background(), "cairn_index_test")
	if err != nil {
		t.Fatal(err)
	}
	return dsn
}

// A catch-up in chunks that end short of the log's checkpoint keeps its
// field rows pending (in memory) and merges them into field_keys when a
// checkpoint is complete; queries answer exactly the served checkpoint's
// entries meanwhile; an index stopped mid-catch-up (each commit is one
// transaction) rebuilds its pending rows from the committed records and
// resumes; once the checkpoint is complete every field query answers what
// a replay computes.
func TestCatchUpThroughPendingFieldRows(t *testing.T) {
	t.Run("sqlite", func(t *testing.T) { testCatchUp(t, "sqlite:"+t.TempDir()+"/index.db") })
	t.Run("mysql", func(t *testing.T) { testCatchUp(t, "mysql:"+mariaDB(t)) })
}

func testCatchUp(t *testing.T, db string) {
	const early, size = 768, 3000 // early: a bundle boundary (the fixture has no partial bundle there)
	dir, notes, p := smallLog(t, size, early, size)
	var cp atomic.Pointer[[]byte]
	var failFrom atomic.Int64
	failFrom.Store(-1)
	first := notes[early]
	cp.Store(&first)
	srv := fixtureServer(t, dir, &cp, &failFrom)
	queries := [][2]string{{"action", "write"}, {"actor", "user-5"}, {"resource", fmt.Sprint((5 * 7919) % 100_000)}, {"actor", "nobody"}}
	check := func(x *Index, served uint64) {
		t.Helper()
		for _, q := range queries {
			got := searchAll(t, x, search.Query{Fields: map[string]string{q[0]: q[1]}})
			if want := wantField(t, served, q[0], q[1]); !slices.Equal(got, want) {
				t.Errorf("%s=%s at %d: got %v, want %v", q[0], q[1], served, got, want)
			}
		}
	}

	// One bundle a transaction; the log at 768 (chunks [0, 256) and
	// [256, 512) pending, [512, 768) merging them), then at 3000 with
	// bundles from 5 on failing: chunks [768, 1024) and [1024, 1280)
	// commit without completing the checkpoint.
	x, stop := startTestIndex(t, srv.URL, p, db, 1)
	waitFor(t, "the index at 768", func() bool {
		return x.Status().IndexedSize == early && x.Status().Checkpoint != ""
	})
	check(x, early)
	failFrom.Store(5)
	second := notes[size]
	cp.Store(&second)
	waitFor(t, "the index at 1280", func() bool { return x.Status().IndexedSize == 5*256 })
	check(x, early) // still the 768 checkpoint: nothing pending is answered
	stop()
	if upto, keys := merged(t, db); upto != early || keys != 3*early {
		t.Fatalf("stopped mid-catch-up: field rows merged up to %d (%d of them), want %d (%d)", upto, keys, early, 3*early)
	}

	// Restarted with the log healthy, it completes the checkpoint.
	failFrom.Store(-1)
	x, stop = startTestIndex(t, srv.URL, p, db, 1)
	defer stop()
	waitFor(t, "the index at 3000", func() bool { return x.Status().IndexedSize == size && x.Status().Checkpoint == string(second) })
	if upto, keys := merged(t, db); upto != size || keys != 3*size {
		t.Errorf("caught up: field rows merged up to %d (%d of them), want %d (%d)", upto, keys, size, 3*size)
	}
	check(x, size)
}

// A database written by an older Cairn (schema version 1: text field
// rows, no schema_version table) is refused, naming the file to delete;
// an empty database and one of this version open.
func TestOpenStoreRefusesAnotherSchemaVersion(t *testing.T) {
	ctx := context.Background()
	path := t.TempDir() + "/old.db"
	db, err := sql.Open("sqlite", "file:"+path)
	if err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{
		`CREATE TABLE records (idx INTEGER PRIMARY KEY, ts INTEGER NOT NULL, principal TEXT NOT NULL, content_type TEXT NOT NULL, state TEXT NOT NULL, leaf BLOB NOT NULL, rec BLOB)`,
		`CREATE TABLE fields (name TEXT NOT NULL, value TEXT NOT NULL, idx INTEGER NOT NULL, PRIMARY KEY (name, value, idx)) WITHOUT ROWID`,
	} {
		if _, err := db.Exec(q); err != nil {
			t.Fatal(err)
		}
	}
	db.Close()
	_, err = openStore(ctx, "sqlite:"+path)
	if err == nil || !strings.Contains(err.Error(), "schema version 1") || !strings.Contains(err.Error(), "delete "+path) {
		t.Fatalf("opening a version-1 index: %v", err)
	}
	if fi, _ := os.Stat(path); fi == nil {
		t.Fatal("the old database is gone")
	}
	fresh := t.TempDir() + "/new.db"
	for range 2 {
		s, err := openStore(ctx, "sqlite:"+fresh)
		if err != nil {
			t.Fatalf("opening a new index: %v", err)
		}
		s.Close()
	}
}

// mergeRuns orders any number of sorted runs as one sort would.
func TestMergeRunsSortsAsOneSort(t *testing.T) {
	for _, nRuns := range []int{0, 1, 2, 3, 7, 16} {
		var rows []fieldRow
		var ends []int
		for r := range nRuns {
			var run []fieldRow
			for i := range 50 + 13*r {
				run = append(run, fieldRow{fieldKey("f", fmt.Sprint(i%17, r%3)), uint64(1000*r + i)})
			}
			slices.SortFunc(run, compareFieldRows)
			rows = append(rows, run...)
			ends = append(ends, len(rows))
		}
		want := slices.Clone(rows)
		slices.SortFunc(want, compareFieldRows)
		if got := mergeRuns(rows, ends); !slices.Equal(got, want) {
			t.Errorf("%d runs: merged out of order", nRuns)
		}
	}
}

// sortFieldRows orders rows as a comparison sort does, whatever their
// keys' spread: many distinct values, a few hot ones (the rows of one
// value in one bucket), keys that share their first bits, any order.
func TestSortFieldRowsSortsAsSortFunc(t *testing.T) {
	rnd := mrand.New(mrand.NewPCG(3, 4))
	for _, n := range []int{0, 1, 63, 64, 65, 1000, 50_000} {
		for _, values := range []int{1, 3, 100, 1 << 20} {
			var rows []fieldRow
			for i := range n {
				r := fieldRow{fieldKey("f", fmt.Sprint(rnd.IntN(values))), uint64(rnd.IntN(n + 1))}
				if i%7 == 0 {
					r.key[15] ^= byte(i) // the same first bits, another key
				}
				rows = append(rows, r)
			}
			want := slices.Clone(rows)
			slices.SortFunc(want, compareFieldRows)
			if got := sortFieldRows(slices.Clone(rows)); !slices.Equal(got, want) {
				t.Errorf("%d rows of %d values: out of order", n, values)
			}
		}
	}
}

// BenchmarkSortFieldRows: one chunk's field rows (64 bundles, three
// fields a record), sorted as newBatch sorts them.
func BenchmarkSortFieldRows(b *testing.B) {
	rnd := mrand.New(mrand.NewPCG(1, 2))
	var rows []fieldRow
	for i := range DefaultChunkBundles * 256 {
		for _, f := range []string{"actor", "action", "resource"} {
			rows = append(rows, fieldRow{fieldKey(f, fmt.Sprint(rnd.IntN(10_000))), uint64(i)})
		}
	}
	for _, bc := range []struct {
		name string
		sort func([]fieldRow) []fieldRow
	}{{"buckets", sortFieldRows}, {"sortfunc", func(r []fieldRow) []fieldRow { slices.SortFunc(r, compareFieldRows); return r }}} {
		b.Run(bc.name, func(b *testing.B) {
			for b.Loop() {
				bc.sort(slices.Clone(rows))
			}
		})
	}
}
