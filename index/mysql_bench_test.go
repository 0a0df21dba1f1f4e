package index

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"

	"github.com/cairnlog/cairn/internal/testport"

	"github.com/cairnlog/cairn/internal/hastack"
	"github.com/cairnlog/cairn/internal/lockedbuf"
)

// BenchmarkIndexMySQL measures the ingest rate into a fresh MariaDB
// database (the HA storage), as BenchmarkIndex does for SQLite: the
// fixture's first benchIngest records, read over HTTP, verified, three
// JSON fields extracted. Skipped without MariaDB (scripts/ha-deps.sh).
func BenchmarkIndexMySQL(b *testing.B) {
	n := benchRecords()
	dir, notes, p := benchLog(b, n)
	var cp atomic.Pointer[[]byte]
	small := notes[benchIngest]
	cp.Store(&small)
	srv := serveFixture(b, dir, &cp)

	port := testport.Port(b)
	out := &lockedbuf.Buffer{}
	db, err := hastack.NewMariaDB(b.TempDir(), port, out)
	if err != nil {
		b.Skipf("MariaDB unavailable (install with scripts/ha-deps.sh): %v", err)
	}
	if err := db.Start(context.Background()); err != nil {
		b.Fatalf("%v\n%s", err, out)
	}
	defer db.Kill()
	dsn, err := db.Database(context.Background(), "cairn_index_bench")
	if err != nil {
		b.Fatal(err)
	}
	_, stop, took := runIndex(b, srv.URL, p, "mysql:"+dsn, benchIngest)
	stop()
	b.ReportMetric(float64(benchIngest)/took.Seconds(), "ingest-records/s")
	fmt.Printf("index ingest (mysql, fresh db): %d records in %.1fs = %.0f records/s\n", benchIngest, took.Seconds(), float64(benchIngest)/took.Seconds())
}
