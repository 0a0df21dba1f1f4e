package mirror

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/cairnlog/cairn/internal/testport"

	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/cairnlog/cairn/format/addentries"
	"github.com/cairnlog/cairn/format/loglist"
	"github.com/cairnlog/cairn/internal/hastack"
	"github.com/cairnlog/cairn/internal/mysqls3"
	"github.com/cairnlog/cairn/internal/supervisor"
	"golang.org/x/mod/sumdb/note"
)

// The mysql+s3 tests share one MariaDB and one MinIO per test run (each
// test its own bucket), started on first use and killed by TestMain.

// envChild makes the test binary a mirror child process (kill -9 tests):
// its value is a childConfig in JSON.
const envChild = "CAIRN_MIRROR_TEST_CHILD"

type childConfig struct {
	Addr   string
	SKey   string
	Origin string
	VKey   string
	AWS    mysqls3.Config
}

func TestMain(m *testing.M) {
	if j := os.Getenv(envChild); j != "" {
		os.Exit(runChild(j))
	}
	code := m.Run()
	stopEngines()
	os.Exit(code)
}

// runChild serves a mirror on mysql+s3 until killed.
func runChild(j string) int {
	var c childConfig
	if err := json.Unmarshal([]byte(j), &c); err != nil {
		fmt.Fprintln(os.Stderr, "child:", err)
		return 2
	}
	v, err := note.NewVerifier(c.VKey)
	if err != nil {
		fmt.Fprintln(os.Stderr, "child:", err)
		return 2
	}
	m, err := New(context.Background(), Config{PrivateKeys: []string{c.SKey}, AWS: c.AWS,
		Logs: []loglist.Log{{Origin: c.Origin, VKey: c.VKey, Verifier: v}}})
	if err != nil {
		fmt.Fprintln(os.Stderr, "child:", err)
		return 2
	}
	defer m.Close()
	if err := http.ListenAndServe(c.Addr, m.Handler()); err != nil {
		fmt.Fprintln(os.Stderr, "child:", err)
		return 2
	}
	return 0
}

// engines is the run's MariaDB and MinIO; engineMu guards it.
var (
	engineMu sync.Mutex
	engines  struct {
		db  *hastack.MariaDB
		s3  *hastack.MinIO
		dir string
		err error
	}
)

// testAWS returns mysql+s3 settings on the shared engines with a bucket of
// the test's own, skipping when the engines are not installed (unless
// CAIRN_REQUIRE_HA is set: scripts/ha-deps.sh installs them).
func testAWS(t testing.TB, bucket string) mysqls3.Config {
	t.Helper()
	engineMu.Lock()
	defer engineMu.Unlock()
	if engines.db == nil && engines.err == nil {
		engines.err = startEngines()
	}
	if engines.err != nil {
		if os.Getenv("CAIRN_REQUIRE_HA") != "" {
			t.Fatal(engines.err)
		}
		t.Skipf("mysql+s3 engines unavailable (install with scripts/ha-deps.sh): %v", engines.err)
	}
	return mysqls3.Config{MySQLDSN: engines.db.DSN, S3Endpoint: engines.s3.Endpoint, S3Bucket: bucket, S3Region: "us-east-1",
		S3PathStyle: true, S3AccessKeyFile: engines.s3.AccessKeyFile, S3SecretKeyFile: engines.s3.SecretKeyFile}
}

func startEngines() error {
	dir, err := os.MkdirTemp("", "cairn-mirror-engines-")
	if err != nil {
		return err
	}
	engines.dir = dir
	dbPort, err := testport.Pick()
	if err != nil {
		return err
	}
	s3Port, err := testport.Pick()
	if err != nil {
		return err
	}
	db, err := hastack.NewMariaDB(dir+"/db", dbPort, io.Discard)
	if err != nil {
		return err
	}
	s3, err := hastack.NewMinIO(dir+"/s3", s3Port, io.Discard)
	if err != nil {
		return err
	}
	if err := db.Start(context.Background()); err != nil {
		return err
	}
	engines.db = db
	if err := s3.Start(context.Background()); err != nil {
		return err
	}
	engines.s3 = s3
	return nil
}

func stopEngines() {
	engineMu.Lock()
	defer engineMu.Unlock()
	if engines.s3 != nil {
		engines.s3.Kill()
	}
	if engines.db != nil {
		engines.db.Kill()
	}
	if engines.dir != "" {
		os.RemoveAll(engines.dir)
	}
}

// A mirror on mysql+s3 stores and serves a copy that x/mod verifies; a
// second frontend on the same bucket is refused while the first runs and
// takes over, serving the same copy, once it stopped.
func TestMySQLS3MirrorServesAVerifiedCopyWithOneWriter(t *testing.T) {
	aws := testAWS(t, "mirror-one-writer")
	l := newMemLog(t, "example.com/log")
	skey, vkey := newCosignerKey(t, "mirror.test/m1")
	tm := startMirrorWith(t, func(c *Config) { c.AWS = aws }, skey, vkey, "", l)
	ctx := context.Background()
	for _, step := range []int{1, 700, 3000} {
		l.add(t, step, "a")
		res, err := tm.pusher(t).Push(ctx, l, l.verifier, l.checkpointAt(t, l.size()))
		if err != nil || res.Size != l.size() {
			t.Fatalf("push to %d: %+v %v", l.size(), res, err)
		}
		checkServed(t, tm, l, l.size())
	}

	var ll []loglist.Log
	ll = append(ll, loglist.Log{Origin: l.origin, VKey: l.vkey, Verifier: l.verifier})
	_, err := New(ctx, Config{PrivateKeys: []string{skey}, Logs: ll, AWS: aws, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if !errors.Is(err, ErrStorageLocked) || !strings.Contains(err.Error(), "mirror-one-writer") {
		t.Fatalf("a second frontend on the same bucket: %v, want ErrStorageLocked naming the bucket", err)
	}

	// A fork is refused and its evidence kept in the bucket, readable
	// beside the running mirror.
	fork := l.fork()
	fork.entries, fork.hashes = nil, nil
	fork.add(t, int(l.size()), "fork")
	if code, b := tm.addCheckpoint(t, fork, l.size(), l.size()); code != 422 {
		t.Fatalf("a forked checkpoint: %d %s", code, b)
	}
	evs, err := ReadEvidenceMySQLS3(ctx, aws)
	if err != nil || len(evs) != 1 || evs[0].Origin != l.origin {
		t.Fatalf("evidence on mysql+s3: %+v %v", evs, err)
	}

	tm.srv.Close()
	tm.Close()
	tm2 := startMirrorWith(t, func(c *Config) { c.AWS = aws }, skey, vkey, "", l)
	checkServed(t, tm2, l, l.size())
	l.add(t, 10, "b")
	if _, err := tm2.pusher(t).Push(ctx, l, l.verifier, l.checkpointAt(t, l.size())); err != nil {
		t.Fatal(err)
	}
	checkServed(t, tm2, l, l.size())
}

// A mirror on mysql+s3 killed with -9 in the middle of an upload restarts,
// never serves (or counts) an entry it had not stored, and the pusher
// resumes to a cosigned, x/mod-verified copy.
func TestMySQLS3MirrorKilledMidUploadResumes(t *testing.T) {
	aws := testAWS(t, "mirror-kill9")
	l := newMemLog(t, "example.com/log")
	l.add(t, 20000, "k")
	skey, vkey := newCosignerKey(t, "mirror.test/m1")
	addr := testport.Addr(t)
	cfg, _ := json.Marshal(childConfig{Addr: addr, SKey: skey, Origin: l.origin, VKey: l.vkey, AWS: aws})
	start := func() *supervisor.Process {
		p, err := supervisor.Start(supervisor.Command{Name: "mirror", Path: os.Args[0], Args: []string{"-test.run=^$"}, Env: []string{envChild + "=" + string(cfg)}})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = p.Kill() })
		eventually(t, time.Minute, func() bool {
			resp, err := http.Get("http://" + addr + "/healthz")
			if err == nil {
				resp.Body.Close()
			}
			return err == nil
		}, func() string { return p.Output() })
		return p
	}
	p := start()
	tm := &testMirror{skey: skey, vkey: vkey, srv: &httptest.Server{URL: "http://" + addr}}
	if code, b := tm.addCheckpoint(t, l, 0, l.size()); code != 200 {
		t.Fatal(code, string(b))
	}
	// Stream the first packages of one request, then stop sending and
	// kill the mirror once it stored some.
	pr, pw := io.Pipe()
	defer pw.Close()
	done := make(chan struct{})
	go func() {
		defer close(done)
		resp, err := http.Post("http://"+addr+"/add-entries", "application/octet-stream", pr)
		if err == nil {
			resp.Body.Close()
		}
	}()
	body := entriesBody(t, l, 0, l.size(), 32)
	if _, err := pw.Write(body[:len(body)/3]); err != nil {
		t.Fatal(err)
	}
	// Wait until some entry bundles are in the bucket, read as a reader
	// of the store would.
	sdk, opts, err := aws.SDK(4)
	if err != nil {
		t.Fatal(err)
	}
	bucket := s3Objects{s3: s3.NewFromConfig(*sdk, opts), bucket: aws.S3Bucket, prefix: OriginID(l.origin) + "/"}
	var bundles []string
	eventually(t, time.Minute, func() bool {
		bundles, _ = bucket.List(context.Background(), "log/tile/entries")
		return len(bundles) >= 2
	}, func() string { return p.Output() })
	if code, _, _ := get(t, "http://"+addr+"/"+OriginID(l.origin)+"/checkpoint"); code != 404 {
		t.Fatalf("a checkpoint is served before its entries are stored: %d", code)
	}
	if err := p.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-p.Done()
	pw.CloseWithError(errors.New("mirror killed"))
	<-done

	p = start()
	// After the restart: no checkpoint yet, and the next entry it names
	// is at most what it had stored (it restarts at its integrated size;
	// the bundles of the interrupted request are sent again).
	if code, _, _ := get(t, "http://"+addr+"/"+OriginID(l.origin)+"/checkpoint"); code != 404 {
		t.Fatalf("a checkpoint is served after the restart before any commit: %d", code)
	}
	code, _, rb := tm.post(t, "/add-entries", addentries.Header{Origin: l.origin, UploadStart: l.size(), UploadEnd: l.size()}.Marshal())
	info, err := addentries.ParseMirrorInfo(rb)
	if code != 409 || err != nil || info.Next > uint64(len(bundles))*256 {
		t.Fatalf("probe after restart: %d %q %v", code, rb, err)
	}
	res, err := tm.pusher(t).Push(context.Background(), l, l.verifier, l.checkpointAt(t, l.size()))
	if err != nil || res.Size != l.size() {
		t.Fatalf("push after the restart: %+v %v\n%s", res, err, p.Output())
	}
	checkServed(t, tm, l, l.size())
}

// eventually polls cond until it holds or the deadline passes.
func eventually(t testing.TB, d time.Duration, cond func() bool, why func() string) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("condition not met within %v\n%s", d, why())
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// When the database drops the writer lock (its connection killed, as in a
// database restart) and another frontend takes it, the first stops writing:
// its uploads fail, the new holder's succeed.
func TestMySQLS3MirrorStopsWritingWhenItsLockWasTaken(t *testing.T) {
	aws := testAWS(t, "mirror-lock-lost")
	l := newMemLog(t, "example.com/log")
	skey, vkey := newCosignerKey(t, "mirror.test/m1")
	a := startMirrorWith(t, func(c *Config) { c.AWS = aws }, skey, vkey, "", l)
	ctx := context.Background()
	l.add(t, 300, "a")
	if _, err := a.pusher(t).Push(ctx, l, l.verifier, l.checkpointAt(t, l.size())); err != nil {
		t.Fatal(err)
	}
	db, err := sql.Open("mysql", aws.MySQLDSN)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var holder int64
	if err := db.QueryRowContext(ctx, "SELECT IS_USED_LOCK(?)", lockName(aws.S3Bucket)).Scan(&holder); err != nil {
		t.Fatal(err)
	}
	if _, err := db.ExecContext(ctx, fmt.Sprintf("KILL %d", holder)); err != nil {
		t.Fatal(err)
	}
	b := startMirrorWith(t, func(c *Config) { c.AWS = aws }, skey, vkey, "", l)
	l.add(t, 300, "b")
	eventually(t, time.Minute, func() bool {
		_, err := a.pusher(t).Push(ctx, l, l.verifier, l.checkpointAt(t, l.size()))
		return err != nil && strings.Contains(err.Error(), "500")
	}, func() string { return "the first frontend still writes" })
	if _, err := b.pusher(t).Push(ctx, l, l.verifier, l.checkpointAt(t, l.size())); err != nil {
		t.Fatal(err)
	}
	checkServed(t, b, l, l.size())
}
