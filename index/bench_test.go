package index

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"io"
	"log/slog"
	"math"
	mrand "math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cairnlog/cairn/client"
	"github.com/cairnlog/cairn/format/policy"
	"github.com/cairnlog/cairn/format/record"
	"github.com/cairnlog/cairn/format/search"
	"github.com/transparency-dev/merkle/rfc6962"
	"github.com/transparency-dev/tessera"
	"github.com/transparency-dev/tessera/api/layout"
	"github.com/transparency-dev/tessera/storage/posix"
	"golang.org/x/mod/sumdb/note"
)

// The index benchmark's fixture: a log of benchRecords JSON records
// (CAIRN_BENCH_INDEX_RECORDS, default 10 M) written as a posix tlog-tiles
// tree through Tessera's migration target — Tessera builds and checks the
// tiles; no /add, no witnesses — and the SQLite index of all of it. Both
// are built once and cached under .bench/ (gitignored, or
// CAIRN_BENCH_DIR): the first run takes minutes, later ones seconds.
const (
	benchOrigin   = "bench.cairn/index"
	benchIngest   = 1 << 20 // records the ingest rate is measured over, into a fresh database
	benchStepMS   = 10      // one record every 10 ms of submitter time
	benchActors   = 10_000  // actor=user-N: 1000 records each at 10 M
	benchQueryN   = 300     // queries of each kind
	benchT0Millis = 1795527000000
)

func benchRecords() uint64 {
	if s := os.Getenv("CAIRN_BENCH_INDEX_RECORDS"); s != "" {
		n, err := strconv.ParseUint(s, 10, 64)
		if err == nil && n >= benchIngest {
			return n
		}
	}
	return 10_000_000
}

func benchDir(b *testing.B) string {
	d := os.Getenv("CAIRN_BENCH_DIR")
	if d == "" {
		d = filepath.Join("..", ".bench")
	}
	if err := os.MkdirAll(d, 0o755); err != nil {
		b.Fatal(err)
	}
	return d
}

// benchLeaf is record i of the fixture.
func benchLeaf(i uint64) []byte {
	actions := [...]string{"read", "write", "delete"}
	payload := fmt.Sprintf(`{"actor":"user-%d","action":%q,"resource":{"id":"res-%d","kind":"document"},"request":"req-%016x"}`,
		i%benchActors, actions[i%3], (i*7919)%100_000, i)
	leaf, err := record.Record{Submitter: fmt.Sprintf("service-%d", i%20), Timestamp: benchT0Millis + i*benchStepMS,
		IdempotencyKey: "bench-" + strconv.FormatUint(i, 10), ContentType: "application/json", Payload: []byte(payload)}.Encode()
	if err != nil {
		panic(err)
	}
	return leaf
}

func benchBundle(k uint64, p uint8) []byte {
	n := uint64(p)
	if n == 0 {
		n = layout.EntryBundleWidth
	}
	var out []byte
	for i := k * layout.EntryBundleWidth; i < k*layout.EntryBundleWidth+n; i++ {
		l := benchLeaf(i)
		out = binary.BigEndian.AppendUint16(out, uint16(len(l)))
		out = append(out, l...)
	}
	return out
}

// benchLog builds (once) the fixture log of n records and checkpoints at
// benchIngest and n; it returns the tiles directory, the two notes and
// the policy.
func benchLog(b *testing.B, n uint64) (string, map[uint64][]byte, *policy.Policy) {
	dir := filepath.Join(benchDir(b), fmt.Sprintf("index-log-%d", n))
	keyFile := dir + ".key"
	notes := map[uint64][]byte{}
	if _, err := os.Stat(dir + ".done"); err != nil {
		b.Logf("building the %d-record fixture log in %s (once)", n, dir)
		start := time.Now()
		os.RemoveAll(dir)
		skey, vkey, err := note.GenerateKey(rand.Reader, benchOrigin)
		if err != nil {
			b.Fatal(err)
		}
		roots := map[uint64][]byte{}
		r := rangeFactory.NewEmptyRange(0)
		for i := range n {
			if err := r.Append(rfc6962.DefaultHasher.HashLeaf(benchLeaf(i)), nil); err != nil {
				b.Fatal(err)
			}
			if i+1 == benchIngest || i+1 == n {
				roots[i+1], _ = r.GetRootHash(nil)
			}
		}
		ctx := context.Background()
		drv, err := posix.New(ctx, posix.Config{Path: dir})
		if err != nil {
			b.Fatal(err)
		}
		mt, err := tessera.NewMigrationTarget(ctx, drv, tessera.NewMigrationOptions())
		if err != nil {
			b.Fatal(err)
		}
		if err := mt.Migrate(ctx, 4, n, roots[n], func(_ context.Context, k uint64, p uint8) ([]byte, error) { return benchBundle(k, p), nil }); err != nil {
			b.Fatal(err)
		}
		if err := os.WriteFile(keyFile, []byte(skey), 0o600); err != nil {
			b.Fatal(err)
		}
		if err := os.WriteFile(keyFile+".vkey", []byte(vkey), 0o644); err != nil {
			b.Fatal(err)
		}
		for size, root := range roots {
			if err := os.WriteFile(fmt.Sprintf("%s.root-%d", dir, size), root, 0o644); err != nil {
				b.Fatal(err)
			}
		}
		if err := os.WriteFile(dir+".done", nil, 0o644); err != nil {
			b.Fatal(err)
		}
		b.Logf("fixture log built in %v", time.Since(start).Round(time.Second))
	}
	skey, err := os.ReadFile(keyFile)
	if err != nil {
		b.Fatal(err)
	}
	signer, err := note.NewSigner(string(skey))
	if err != nil {
		b.Fatal(err)
	}
	for _, size := range []uint64{benchIngest, n} {
		root, err := os.ReadFile(fmt.Sprintf("%s.root-%d", dir, size))
		if err != nil {
			b.Fatal(err)
		}
		msg, err := note.Sign(&note.Note{Text: fmt.Sprintf("%s\n%d\n%s\n", benchOrigin, size, base64.StdEncoding.EncodeToString(root))}, signer)
		if err != nil {
			b.Fatal(err)
		}
		notes[size] = msg
	}
	vkey, err := os.ReadFile(keyFile + ".vkey")
	if err != nil {
		b.Fatal(err)
	}
	p, err := policy.Parse([]byte(fmt.Sprintf("log %s\nquorum none\n", vkey)))
	if err != nil {
		b.Fatal(err)
	}
	return dir, notes, p
}

// serveFixture serves the fixture's tiles with the checkpoint note cp.
func serveFixture(b *testing.B, dir string, cp *atomic.Pointer[[]byte]) *httptest.Server {
	files := http.FileServer(http.Dir(dir))
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/checkpoint" {
			_, _ = w.Write(*cp.Load())
			return
		}
		files.ServeHTTP(w, r)
	}))
	b.Cleanup(srv.Close)
	return srv
}

// runIndex indexes the fixture up to size into db and returns the wall time.
func runIndex(b *testing.B, url string, p *policy.Policy, db string, size uint64) (*Index, func(), time.Duration) {
	fields := []search.Field{}
	for _, s := range []string{"actor=.actor", "action=.action", "resource=.resource.id"} {
		f, err := search.ParseField(s)
		if err != nil {
			b.Fatal(err)
		}
		fields = append(fields, f)
	}
	ctx, cancel := context.WithCancel(context.Background())
	x, err := New(ctx, Config{LogURLs: []string{url}, Policy: p, DB: db, Fields: fields, PollInterval: 50 * time.Millisecond,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		b.Fatal(err)
	}
	done := make(chan error, 1)
	start := time.Now()
	go func() { done <- x.Run(ctx) }()
	last := time.Now()
	for x.Status().IndexedSize < size || x.Status().Checkpoint == "" {
		s := x.Status()
		if s.State == "fork" {
			b.Fatalf("index: %+v", s)
		}
		if time.Since(last) > 10*time.Second {
			last = time.Now()
			fmt.Fprintf(os.Stderr, "indexing: %d of %d (%s %s)\n", s.IndexedSize, size, s.State, s.Error)
		}
		time.Sleep(20 * time.Millisecond)
	}
	took := time.Since(start)
	stop := func() {
		cancel()
		<-done
		x.Close()
	}
	return x, stop, took
}

// BenchmarkIndex measures the index's ingest rate into a fresh SQLite
// database (1 M records, read over HTTP from the fixture's tiles, every
// entry verified, three JSON fields extracted) and the latency of proven
// queries at benchRecords indexed records, end to end through the Go
// client (HTTP, JSON lines, proof and claim verification): a selective
// field query (actor=user-N: 1000 matches, first page of 100) and a
// one-minute time range (6000 matches, first page of 100).
func BenchmarkIndex(b *testing.B) {
	n := benchRecords()
	dir, notes, p := benchLog(b, n)
	var cp atomic.Pointer[[]byte]
	small := notes[benchIngest]
	cp.Store(&small)

	// Ingest: a fresh database each run. Its goroutines (the fixture's
	// file server, the follower, its HTTP client) carry the profiler label
	// phase=ingest: go tool pprof -tagfocus phase=ingest shows the ingest
	// alone in a -cpuprofile of this benchmark.
	var srv *httptest.Server
	var took time.Duration
	pprof.Do(context.Background(), pprof.Labels("phase", "ingest"), func(context.Context) {
		srv = serveFixture(b, dir, &cp)
		fresh := b.TempDir() + "/ingest.db"
		var stop func()
		_, stop, took = runIndex(b, srv.URL, p, "sqlite:"+fresh, benchIngest)
		stop()
	})
	b.ReportMetric(float64(benchIngest)/took.Seconds(), "ingest-records/s")
	fmt.Printf("index ingest (sqlite, fresh db): %d records in %.1fs = %.0f records/s\n", benchIngest, took.Seconds(), float64(benchIngest)/took.Seconds())

	// Queries at n records: the cached index, brought up to n (it resumes).
	big := notes[n]
	cp.Store(&big)
	// The cached index is named by its schema version; one of another
	// version is deleted (the index is derived data) and rebuilt.
	dbPath := filepath.Join(benchDir(b), fmt.Sprintf("index-%d-v%d.db", n, SchemaVersion))
	stale, _ := filepath.Glob(filepath.Join(benchDir(b), fmt.Sprintf("index-%d*.db*", n)))
	for _, f := range stale {
		if !strings.HasPrefix(f, dbPath) {
			b.Logf("removing %s (another schema version)", f)
			os.Remove(f)
		}
	}
	x, stop, took := runIndex(b, srv.URL, p, "sqlite:"+dbPath, n)
	defer stop()
	if took > 5*time.Second {
		fmt.Printf("index catch-up to %d records: %.0fs (cached for later runs)\n", n, took.Seconds())
	}
	api := httptest.NewServer(x.Handler())
	defer api.Close()
	ic, err := client.NewIndex(api.URL, p, client.HTTPOptions{})
	if err != nil {
		b.Fatal(err)
	}
	rng := mrand.New(mrand.NewPCG(1, 2))
	minutes := n * benchStepMS / 60_000
	for _, kind := range []string{"field", "time-range"} {
		var lat []time.Duration
		for range benchQueryN {
			q := search.Query{}
			if kind == "field" {
				q.Fields = map[string]string{"actor": fmt.Sprintf("user-%d", rng.IntN(benchActors))}
			} else {
				m := rng.Uint64N(minutes - 1)
				q.Since = time.UnixMilli(int64(benchT0Millis + m*60_000))
				q.Until = q.Since.Add(time.Minute)
			}
			q.Limit = search.DefaultLimit
			start := time.Now()
			hits := 0
			err := ic.Search(context.Background(), q, func(*search.Hit) error {
				hits++
				if hits == search.DefaultLimit {
					return errFirstPage
				}
				return nil
			})
			if err != nil && err != errFirstPage {
				b.Fatal(err)
			}
			lat = append(lat, time.Since(start))
			if hits != search.DefaultLimit {
				b.Fatalf("%s query answered %d hits, want a full page", kind, hits)
			}
		}
		slices.Sort(lat)
		p50, p99 := lat[len(lat)/2], lat[int(math.Ceil(float64(len(lat))*0.99))-1]
		b.ReportMetric(float64(p50.Microseconds())/1000, kind+"-p50-ms")
		b.ReportMetric(float64(p99.Microseconds())/1000, kind+"-p99-ms")
		fmt.Printf("index query at %d records, %s, 100 proven hits, client-verified: p50 %.1f ms, p99 %.1f ms\n", n, kind, float64(p50.Microseconds())/1000, float64(p99.Microseconds())/1000)
	}
}

var errFirstPage = fmt.Errorf("first page")
