package integration

// High availability on mysql+s3: two log frontends share one MariaDB
// (sequencing, antispam) and one MinIO bucket (tiles). Real engines, real
// processes, real faults: kill -9 of a frontend, of the database, of the
// object store.

import (
	"bytes"
	"context"
	"database/sql"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cairnlog/cairn/internal/testport"

	"github.com/cairnlog/cairn/internal/lockedbuf"

	aaws "github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/cairnlog/cairn/client"
	"github.com/cairnlog/cairn/format/policy"
	"github.com/cairnlog/cairn/format/record"
	"github.com/cairnlog/cairn/internal/hastack"
	cairnv1 "github.com/cairnlog/cairn/proto/cairn/v1"
	"github.com/transparency-dev/tessera/api"
	"github.com/transparency-dev/tessera/api/layout"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// engines is a MariaDB and a MinIO of one test.
type engines struct {
	db     *hastack.MariaDB
	s3     *hastack.MinIO
	bucket string
	out    *lockedbuf.Buffer
}

// startEngines starts MariaDB and MinIO on free loopback ports. Without
// them installed the test is skipped, unless CAIRN_REQUIRE_HA is set (as
// make test does after scripts/ha-deps.sh installed them).
func startEngines(t testing.TB) *engines {
	t.Helper()
	dir := t.TempDir()
	e := &engines{bucket: "cairn-it", out: &lockedbuf.Buffer{}}
	var err error
	fail := func(err error) {
		if os.Getenv("CAIRN_REQUIRE_HA") == "" {
			t.Skipf("mysql+s3 engines unavailable (install with scripts/ha-deps.sh): %v", err)
		}
		t.Fatal(err)
	}
	if e.db, err = hastack.NewMariaDB(dir+"/db", testport.Port(t), e.out); err != nil {
		fail(err)
	}
	if e.s3, err = hastack.NewMinIO(dir+"/s3", testport.Port(t), e.out); err != nil {
		fail(err)
	}
	ctx := context.Background()
	if err := e.db.Start(ctx); err != nil {
		t.Fatalf("%v\n%s", err, e.out)
	}
	t.Cleanup(e.db.Kill)
	if err := e.s3.Start(ctx); err != nil {
		t.Fatalf("%v\n%s", err, e.out)
	}
	t.Cleanup(e.s3.Kill)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("engine output:\n%s", tail(e.out.String()))
		}
	})
	return e
}

// storage returns the mysql+s3 flags for every frontend.
func (e *engines) storage(extra ...string) func(string) []string {
	return func(string) []string {
		return append([]string{"--storage", "mysql+s3", "--mysql-dsn", e.db.DSN, "--s3-endpoint", e.s3.Endpoint,
			"--s3-bucket", e.bucket, "--s3-region", "us-east-1", "--s3-path-style",
			"--s3-access-key-file", e.s3.AccessKeyFile, "--s3-secret-key-file", e.s3.SecretKeyFile,
			"--checkpoint-interval", "1s"}, extra...)
	}
}

// newHACluster is two frontends of one mysql+s3 log and three witnesses.
func newHACluster(t *testing.T, extra ...string) (*cluster, *engines) {
	e := startEngines(t)
	c := newClusterWith(t, clusterOpts{frontends: 2, loopback: true, storage: e.storage(extra...)})
	return c, e
}

// acked is an acknowledged record.
type acked struct {
	index uint64
	leaf  []byte
	// payload is checked instead when the leaf is not known (AppendStream
	// answers carry only the index).
	payload []byte
}

// loadResult is what a load run saw.
type loadResult struct {
	mu    sync.Mutex
	acks  []acked
	codes map[codes.Code]int
}

func (r *loadResult) add(a acked) {
	r.mu.Lock()
	r.acks = append(r.acks, a)
	r.mu.Unlock()
}

func (r *loadResult) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.acks)
}

func (r *loadResult) failed(err error) {
	r.mu.Lock()
	r.codes[status.Code(err)]++
	r.mu.Unlock()
}

// load runs workers that submit through the client package, spread over
// the frontends (each worker prefers a different one and fails over), until
// stop is closed.
func load(t *testing.T, c *cluster, workers int, stop <-chan struct{}) (*loadResult, *sync.WaitGroup) {
	res := &loadResult{codes: map[codes.Code]int{}}
	var wg sync.WaitGroup
	for w := range workers {
		eps := append(append([]string{}, c.grpcAddrs[w%len(c.grpcAddrs):]...), c.grpcAddrs[:w%len(c.grpcAddrs)]...)
		s, err := client.NewSubmitter(eps, client.SubmitterOptions{Attempts: 4, Backoff: 50 * time.Millisecond, MaxBackoff: 500 * time.Millisecond, CallTimeout: 10 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		wg.Go(func() {
			defer s.Close()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				got, err := s.Submit(context.Background(), client.Record{Payload: fmt.Appendf(nil, "w%d-r%d", w, i), ContentType: "text/plain"}, false)
				if err != nil {
					res.failed(err)
					// Back off before the next record, or stop.
					select {
					case <-stop:
						return
					case <-time.After(20 * time.Millisecond):
					}
					continue
				}
				res.add(acked{index: got.Index, leaf: got.Leaf})
			}
		})
	}
	return res, &wg
}

// waitAcks waits until n more records were acknowledged.
func (r *loadResult) waitAcks(t *testing.T, n int, within time.Duration) {
	t.Helper()
	target := r.count() + n
	eventually(t, within, func() error {
		if got := r.count(); got < target {
			r.mu.Lock()
			defer r.mu.Unlock()
			return fmt.Errorf("%d of %d acknowledgements (failures: %v)", got, target, r.codes)
		}
		return nil
	})
}

// waitFailures waits until n more submissions failed with code.
func (r *loadResult) waitFailures(t *testing.T, code codes.Code, n int, within time.Duration) {
	t.Helper()
	r.mu.Lock()
	target := r.codes[code] + n
	r.mu.Unlock()
	eventually(t, within, func() error {
		r.mu.Lock()
		defer r.mu.Unlock()
		if got := r.codes[code]; got < target {
			return fmt.Errorf("%d of %d %v failures (%d acknowledged, failures %v)", got, target, code, len(r.acks), r.codes)
		}
		return nil
	})
}

// verifyLog waits until frontend i publishes a checkpoint covering every
// acknowledged record, then checks every acknowledged leaf is at its index
// byte for byte, no record appears twice, and the log audits clean.
func verifyLog(t *testing.T, c *cluster, i int, acks []acked) {
	t.Helper()
	var maxIdx uint64
	for _, a := range acks {
		maxIdx = max(maxIdx, a.index)
	}
	base := "http://" + c.httpAddrs[i]
	pol, err := policy.Parse(mustRead(t, c.policy))
	if err != nil {
		t.Fatal(err)
	}
	l, err := client.NewLog(base, pol, client.HTTPOptions{})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	var size uint64
	eventually(t, 90*time.Second, func() error {
		v, err := l.Checkpoint(ctx)
		if err != nil {
			return fmt.Errorf("no checkpoint covering index %d: %w", maxIdx, err)
		}
		if size = v.Checkpoint.Size; size <= maxIdx {
			return fmt.Errorf("checkpoint at %d does not cover index %d", size, maxIdx)
		}
		return nil
	})
	leaves := make([][]byte, 0, size)
	for k := uint64(0); k*layout.EntryBundleWidth < size; k++ {
		b, err := l.ReadEntryBundle(ctx, k, layout.PartialTileSize(0, k, size))
		if err != nil {
			t.Fatalf("entry bundle %d: %v", k, err)
		}
		var eb api.EntryBundle
		if err := eb.UnmarshalText(b); err != nil {
			t.Fatalf("entry bundle %d: %v", k, err)
		}
		leaves = append(leaves, eb.Entries...)
	}
	for _, a := range acks {
		if a.leaf == nil {
			if r, err := record.Decode(leaves[a.index]); err != nil || !bytes.Equal(r.Payload, a.payload) {
				t.Fatalf("index %d holds %q, acknowledged for %q", a.index, r.Payload, a.payload)
			}
			continue
		}
		if !bytes.Equal(leaves[a.index], a.leaf) {
			t.Fatalf("index %d holds %x, acknowledged %x", a.index, leaves[a.index], a.leaf)
		}
	}
	seen := map[string]int{}
	for idx, leaf := range leaves {
		r, err := record.Decode(leaf)
		if err != nil {
			t.Fatalf("index %d: %v", idx, err)
		}
		if prev, dup := seen[r.IdempotencyKey]; dup && r.IdempotencyKey != "" {
			t.Fatalf("record %q (idempotency key %s) appears twice: at %d and %d", r.Payload, r.IdempotencyKey, prev, idx)
		}
		seen[r.IdempotencyKey] = idx
	}
	if out, stderr, code := run(t, nil, "audit", "--quiet", "--log", base, "--policy", c.policy); code != 0 {
		t.Fatalf("audit: exit %d %s %s", code, out, stderr)
	}
	t.Logf("verified %d acknowledged records in a tree of %d: all at their index, none twice, audit clean", len(acks), size)
}

// Tests 1 and 2: a frontend killed mid-load loses nothing; it rejoins on restart.
func TestHAFrontendKilledMidLoadLosesNothingAndRejoins(t *testing.T) {
	c, _ := newHACluster(t)
	stop := make(chan struct{})
	res, wg := load(t, c, 8, stop)
	// Beside the unary submitters, one AppendStream through frontend 0 that
	// breaks when it is killed: the client resends what was not acknowledged
	// to frontend 1, marked as a retry, and nothing is appended twice.
	streamed := make([]client.Record, 20000)
	for i := range streamed {
		streamed[i] = client.Record{Payload: fmt.Appendf(nil, "stream-%d", i), ContentType: "text/plain"}
	}
	var streamAcks []acked
	streamedBy := map[string]int{}
	streamDone := make(chan error, 1)
	go func() {
		s, err := client.NewSubmitter(c.grpcAddrs, client.SubmitterOptions{Backoff: 50 * time.Millisecond})
		if err != nil {
			streamDone <- err
			return
		}
		defer s.Close()
		got, err := s.SubmitStream(context.Background(), streamed)
		for i, g := range got {
			streamAcks = append(streamAcks, acked{index: g.Index, payload: streamed[i].Payload})
			streamedBy[g.Endpoint]++
		}
		streamDone <- err
	}()
	// Kill frontend 0 in the middle of the stream (and of the unary load).
	waitMetric(t, c.httpAddrs[0], `cairn_log_append_requests_total{api="stream"}`, 12000)
	c.logs[0].kill9()
	killedAt := res.count()
	res.waitAcks(t, 300, time.Minute) // the survivor keeps accepting
	close(stop)
	wg.Wait()
	if err := <-streamDone; err != nil {
		t.Fatalf("SubmitStream across the kill: %v", err)
	}
	if streamedBy[c.grpcAddrs[1]] == 0 {
		t.Fatalf("the stream never moved to the surviving frontend %s: %v (frontends %v)", c.grpcAddrs[1], streamedBy, c.grpcAddrs)
	}
	t.Logf("%d acknowledged (%d after the kill); failures %v; streamed %d, acknowledged by frontend %v", res.count(), res.count()-killedAt, res.codes, len(streamAcks), streamedBy)
	verifyLog(t, c, 1, append(res.acks, streamAcks...))

	// The killed frontend rejoins without operator action and serves the same log.
	c.logs[0].start(t)
	c.logs[0].waitServing(t, "http://"+c.httpAddrs[0]+"/readyz")
	stop2 := make(chan struct{})
	res2, wg2 := load(t, c, 4, stop2)
	res2.waitAcks(t, 100, time.Minute)
	close(stop2)
	wg2.Wait()
	verifyLog(t, c, 0, append(append(res.acks, streamAcks...), res2.acks...))

	// A retry that lands on the other frontend gets the index the first
	// frontend assigned (the shared antispam index, awaited for retries).
	req := &cairnv1.AppendRequest{Payload: []byte("retried"), ContentType: "text/plain", IdempotencyKey: "retry-across-frontends", TimestampUnixMillis: uint64(time.Now().UnixMilli())}
	first := appendVia(t, c.grpcAddrs[0], req, false)
	again := appendVia(t, c.grpcAddrs[1], req, true)
	if again.Index != first.Index || !again.Duplicate {
		t.Fatalf("retry on the other frontend: index %d duplicate %v, first attempt got %d", again.Index, again.Duplicate, first.Index)
	}
	// The same over HTTP, with the Cairn-Retry header.
	firstHTTP := postAdd(t, c.httpAddrs[1], "retried over http", false)
	againHTTP := postAdd(t, c.httpAddrs[0], "retried over http", true)
	if firstHTTP != againHTTP {
		t.Fatalf("HTTP retry on the other frontend got index %s, the first attempt %s", againHTTP, firstHTTP)
	}
}

func postAdd(t *testing.T, addr, payload string, retry bool) string {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, "http://"+addr+"/add", strings.NewReader(payload))
	// The key makes the retry the same record (without one, every request is its own).
	req.Header.Set("Idempotency-Key", payload)
	if retry {
		req.Header.Set("Cairn-Retry", "1")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("POST %s/add: %s %s", addr, resp.Status, b)
	}
	return strings.TrimSpace(string(b))
}

// waitStatus polls url until it answers with code (a minute at most).
func waitStatus(t *testing.T, url string, code int) {
	t.Helper()
	eventually(t, time.Minute, func() error { return answers(url, code) })
}

// waitMetric polls a frontend's /metrics until the sample reaches at least v.
func waitMetric(t *testing.T, httpAddr, sample string, v float64) {
	t.Helper()
	// Generous: on a loaded 2-core machine a mysql+s3 frontend has taken a
	// minute for 10k streamed records.
	eventually(t, 3*time.Minute, func() error {
		resp, err := http.Get("http://" + httpAddr + "/metrics")
		if err != nil {
			return err
		}
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			return err
		}
		for _, line := range strings.Split(string(b), "\n") {
			if rest, ok := strings.CutPrefix(line, sample+" "); ok {
				got, err := strconv.ParseFloat(strings.TrimSpace(rest), 64)
				if err != nil {
					t.Fatalf("%s on %s: %q: %v", sample, httpAddr, line, err)
				}
				if got < v {
					return fmt.Errorf("%s on %s is %v, want ≥ %v", sample, httpAddr, got, v)
				}
				return nil
			}
		}
		return fmt.Errorf("%s on %s: no such sample yet", sample, httpAddr)
	})
}

func appendVia(t *testing.T, addr string, req *cairnv1.AppendRequest, retry bool) *cairnv1.AppendResponse {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if retry {
		ctx = metadata.AppendToOutgoingContext(ctx, "cairn-retry", "1")
	}
	resp, err := cairnv1.NewLogClient(conn).Append(ctx, req)
	if err != nil {
		t.Fatalf("Append via %s: %v", addr, err)
	}
	return resp
}

// Test 3: the database restarted mid-load: appends fail cleanly with
// Unavailable and resume on their own.
func TestHADatabaseRestartMidLoad(t *testing.T) {
	c, e := newHACluster(t)
	stop := make(chan struct{})
	res, wg := load(t, c, 6, stop)
	res.waitAcks(t, 200, time.Minute)
	e.db.Kill()
	// While it is down, appends fail (they neither hang nor get acknowledged)
	// and no frontend calls itself ready, so a load balancer would drain them.
	res.waitFailures(t, codes.Unavailable, 12, time.Minute)
	for _, a := range c.httpAddrs {
		waitStatus(t, "http://"+a+"/readyz", http.StatusServiceUnavailable)
	}
	if err := e.db.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	for _, a := range c.httpAddrs {
		waitStatus(t, "http://"+a+"/readyz", http.StatusOK)
	}
	res.waitAcks(t, 200, 2*time.Minute) // resumed on their own
	close(stop)
	wg.Wait()
	t.Logf("%d acknowledged; failures by code: %v", res.count(), res.codes)
	for code := range res.codes {
		if code != codes.Unavailable && code != codes.ResourceExhausted && code != codes.DeadlineExceeded {
			t.Errorf("an append failed with %v during the database outage; want Unavailable", code)
		}
	}
	for _, l := range c.logs {
		if !l.running() {
			t.Fatalf("%s exited during the database outage", l.name)
		}
	}
	verifyLog(t, c, 0, res.acks)
}

// Test 4: the object store unavailable: appends back off (pushback), nothing
// acknowledged is lost, integration resumes when it returns.
func TestHAObjectStoreOutage(t *testing.T) {
	c, e := newHACluster(t, "--pushback-max-outstanding", "400")
	stop := make(chan struct{})
	res, wg := load(t, c, 6, stop)
	res.waitAcks(t, 200, time.Minute)
	e.s3.Kill()
	t.Logf("object store killed after %d acknowledgements", res.count())
	// Appends are sequenced durably in the database until the unintegrated
	// backlog reaches the pushback limit, then refused with ResourceExhausted.
	res.waitFailures(t, codes.ResourceExhausted, 1, time.Minute)
	if err := e.s3.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	res.waitAcks(t, 200, 2*time.Minute)
	close(stop)
	wg.Wait()
	t.Logf("%d acknowledged; failures by code: %v", res.count(), res.codes)
	verifyLog(t, c, 1, res.acks)
}

// Tessera's garbage collector removes the partial tiles and bundles that
// full ones made obsolete. On v1.0.4 it stalls on S3-compatible stores
// (tessera#1179) unless Cairn answers empty DeleteObjects itself.
func TestHAGarbageCollectionAdvances(t *testing.T) {
	c, e := newHACluster(t, "--gc-interval", "500ms")
	stop := make(chan struct{})
	res, wg := load(t, c, 4, stop)
	res.waitAcks(t, 3*layout.EntryBundleWidth, 2*time.Minute)
	close(stop)
	wg.Wait()
	verifyLog(t, c, 0, res.acks)

	db, err := sql.Open("mysql", e.db.DSN)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	s3c := s3.New(s3.Options{Region: "us-east-1", BaseEndpoint: aaws.String(e.s3.Endpoint), UsePathStyle: true,
		Credentials: credentials.NewStaticCredentialsProvider("cairn", string(bytes.TrimSpace(mustRead(t, e.s3.SecretKeyFile))), "")})
	var gcFrom uint64
	eventually(t, 90*time.Second, func() error {
		if err := db.QueryRow("SELECT fromSize FROM GCCoord WHERE id = 0").Scan(&gcFrom); err != nil {
			t.Fatal(err)
		}
		l, err := s3c.ListObjectsV2(context.Background(), &s3.ListObjectsV2Input{Bucket: aaws.String(e.bucket), Prefix: aaws.String("tile/entries/000.p/")})
		if err != nil {
			t.Fatal(err)
		}
		if gcFrom < 2*layout.EntryBundleWidth || len(l.Contents) != 0 {
			return fmt.Errorf("GC stuck: GCCoord.fromSize %d, %d partial bundles of bundle 0 remain", gcFrom, len(l.Contents))
		}
		return nil
	})
	t.Logf("GC advanced to %d; the partial bundles of full bundle 0 are gone", gcFrom)
	// A client still asking for a collected partial gets its prefix of the full bundle.
	resp, err := http.Get("http://" + c.httpAddrs[1] + "/tile/entries/000.p/5")
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	var eb api.EntryBundle
	if resp.StatusCode != http.StatusOK || eb.UnmarshalText(body) != nil || len(eb.Entries) != 5 {
		t.Fatalf("collected partial bundle 000.p/5: %s, %d entries", resp.Status, len(eb.Entries))
	}
}
