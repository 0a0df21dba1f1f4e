package log

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cairnlog/cairn/client"
	"github.com/cairnlog/cairn/format/policy"
	"github.com/cairnlog/cairn/format/record"
	"github.com/cairnlog/cairn/internal/archive"
	"github.com/cairnlog/cairn/internal/fielderr"
	cairnv1 "github.com/cairnlog/cairn/proto/cairn/v1"
	"github.com/transparency-dev/tessera/api/layout"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// testClock is an injected clock that tests move by hand.
type testClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *testClock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *testClock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

const year = 365 * 24 * time.Hour

// appendBundle appends n records by submitter concurrently and waits for a
// checkpoint covering them; it returns their indexes.
func appendBundle(t *testing.T, tl *testLog, submitter string, n int) []uint64 {
	t.Helper()
	ctx := context.Background()
	idx := make([]uint64, n)
	errs := make(chan error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			a, err := tl.Append(ctx, Submission{Payload: fmt.Appendf(nil, "%s record %d %d", submitter, i, time.Now().UnixNano())}, submitter)
			idx[i] = a.Index
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	var top uint64
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	for _, i := range idx {
		top = max(top, i)
	}
	tl.waitForSize(t, tl.vkey, int64(top)+1)
	return idx
}

// httpGet returns an HTTP GET's status and body.
func httpGet(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestRetentionPrunesArchivesAndKeepsEveryProof(t *testing.T) {
	forEachDriverWith(t, func(c *Config, dir string) {
		// mysql+s3 archives to a bucket of the same object store.
		to := "posix:" + filepath.Join(dir, "archive")
		if c.Storage == "mysql+s3" {
			to = "s3://" + c.AWS.S3Bucket + "-archive/cairn/log1"
		}
		c.Retention = []byte("keep 365d\ngrace 30d\nthen archive " + to + "\n")
	}, testRetentionPrunesArchivesAndKeepsEveryProof)
}

func testRetentionPrunesArchivesAndKeepsEveryProof(t *testing.T, tl *testLog, clock *testClock) {
	ctx := context.Background()
	r := tl.retainer
	// Four full bundles integrated a year apart, by alice, except bundle 2 (bob).
	type issued struct {
		index    uint64
		rc, leaf []byte
	}
	var receipts []issued
	for k, who := range []string{"alice", "alice", "bob", "alice"} {
		idx := appendBundle(t, tl, who, layout.EntryBundleWidth)
		if err := r.observe(ctx); err != nil {
			t.Fatal(err)
		}
		rc, leaf, err := tl.Receipt(ctx, idx[0])
		if err != nil {
			t.Fatal(err)
		}
		receipts = append(receipts, issued{idx[0], rc, leaf})
		if k < 3 {
			clock.Add(year)
		}
	}
	if got := strings.TrimSpace(string(tl.get(t, "/minimum-index"))); got != "0" {
		t.Fatalf("minimum index before any evaluation = %s, want 0", got)
	}
	// Bundle 0: 3y old, 1: 2y, 2: 1y, 3: 0. Move on 200 days: 0..2 are over
	// keep 365d, 3 is not. A hold on [300, 310) stops the prune at 256.
	clock.Add(200 * 24 * time.Hour)
	h, err := tl.AddHold(ctx, Hold{From: 300, To: 310, Reason: "case 42"}, "admin")
	if err != nil {
		t.Fatal(err)
	}
	if err := tl.EvaluateRetention(ctx); err != nil {
		t.Fatal(err)
	}
	if got := tl.MinimumIndex(); got != 256 {
		t.Fatalf("minimum index with a hold on [300,310) = %d, want 256", got)
	}
	if code, body := httpGet(t, tl.base+"/tile/entries/000"); code != http.StatusGone || !strings.Contains(body, "minimum index 256") || !strings.Contains(body, "archived at "+archiveOf(t, tl)) {
		t.Fatalf("pruned bundle 0: %d %q, want 410 naming the minimum index and the archive", code, body)
	}
	if code, _ := httpGet(t, tl.base+"/tile/entries/001"); code != http.StatusOK {
		t.Fatalf("held bundle 1: %d, want 200", code)
	}
	// Serving denial first: within grace the bundle is still on storage.
	if _, err := tl.reader.ReadEntryBundle(ctx, 0, 0); err != nil {
		t.Fatalf("bundle 0 was deleted within its grace period: %v", err)
	}

	// Releasing the hold prunes nothing at once; the next evaluation does.
	if _, err := tl.ReleaseHold(ctx, h.ID, "case closed", "admin"); err != nil {
		t.Fatal(err)
	}
	if got := tl.MinimumIndex(); got != 256 {
		t.Fatalf("releasing a hold moved the minimum index to %d", got)
	}
	// A principal hold on bob keeps bundle 2.
	if _, err := tl.AddHold(ctx, Hold{Principal: "bob", Reason: "litigation"}, "admin"); err != nil {
		t.Fatal(err)
	}
	clock.Add(31 * 24 * time.Hour)
	// Deletion waits for Tessera's antispam follower to have read the
	// bundles; poll until it has.
	deadline := time.Now().Add(60 * time.Second)
	for {
		if err := tl.EvaluateRetention(ctx); err != nil {
			t.Fatal(err)
		}
		if _, err := tl.reader.ReadEntryBundle(ctx, 0, 0); errors.Is(err, os.ErrNotExist) || time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if got := tl.MinimumIndex(); got != 512 {
		t.Fatalf("minimum index with bob held = %d, want 512", got)
	}
	// Bundle 0's grace is over: archived, verified and deleted; bundle 1's is not.
	if _, err := tl.reader.ReadEntryBundle(ctx, 0, 0); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("bundle 0 still on storage after its grace period: %v", err)
	}
	if _, err := tl.reader.ReadEntryBundle(ctx, 1, 0); err != nil {
		t.Fatalf("bundle 1 deleted within its grace: %v", err)
	}
	if code, _ := httpGet(t, tl.base+"/tile/entries/002"); code != http.StatusOK {
		t.Fatalf("bob's held bundle 2: %d, want 200", code)
	}
	// Hash tiles stay served, every receipt issued before verifies, and
	// inclusion of a record below the minimum index still proves.
	if code, _ := httpGet(t, tl.base+"/tile/0/000"); code != http.StatusOK {
		t.Fatalf("hash tile 0 of a pruned bundle: %d, want 200", code)
	}
	for _, rc := range receipts {
		verifyReceipt(t, tl.vkey, rc.rc, rc.leaf)
	}
	if _, _, err := tl.inclusionProof(ctx, 5, 0); err != nil {
		t.Fatalf("inclusion proof below the minimum index: %v", err)
	}
	if _, _, err := tl.entries(ctx, 5, 1); !errors.Is(err, ErrPruned) {
		t.Fatalf("entries below the minimum index: %v, want ErrPruned", err)
	}
	if _, err := tl.api.GetEntries(ctx, &cairnv1.GetEntriesRequest{Start: 5, Count: 1}); status.Code(err) != codes.FailedPrecondition || !strings.Contains(err.Error(), "minimum index 512") {
		t.Fatalf("gRPC GetEntries below the minimum index: %v, want FailedPrecondition naming it", err)
	}
	if _, err := tl.api.GetInclusionProof(ctx, &cairnv1.GetInclusionProofRequest{Index: 5}); err != nil {
		t.Fatalf("gRPC inclusion proof below the minimum index: %v", err)
	}
	// The moves and holds are in the tree, by RetentionSubmitter.
	// (appended, they are in the tree once a checkpoint covers them)
	events := retentionEvents(t, tl)
	for deadline := time.Now().Add(30 * time.Second); len(events) < 5 && time.Now().Before(deadline); {
		time.Sleep(100 * time.Millisecond)
		events = retentionEvents(t, tl)
	}
	for _, want := range []string{eventHoldAdd, eventMinimumIndex, eventHoldRelease, eventHoldAdd, eventMinimumIndex} {
		if len(events) == 0 || events[0] != want {
			t.Fatalf("retention audit records %v, want the sequence hold-add, move, release, hold-add, move", retentionEvents(t, tl))
		}
		events = events[1:]
	}
	if got := strings.TrimSpace(string(tl.get(t, "/minimum-index"))); got != "512" {
		t.Fatalf("GET /minimum-index = %s, want 512", got)
	}
	if m := string(tl.get(t, "/metrics")); !strings.Contains(m, "cairn_log_minimum_index_entries 512") {
		t.Fatal("/metrics does not report cairn_log_minimum_index_entries 512")
	}

	// The client: get of a pruned record says so and names the archive;
	// the audit verifies the tree, the archive and the retained records.
	pol, err := policy.Parse([]byte("log " + tl.vkey + "\nquorum none\n"))
	if err != nil {
		t.Fatal(err)
	}
	cl, err := client.NewLog(tl.base, pol, client.HTTPOptions{})
	if err != nil {
		t.Fatal(err)
	}
	v, err := cl.Checkpoint(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cl.Entry(ctx, v, 5); !errors.Is(err, client.ErrPruned) || !strings.Contains(err.Error(), "minimum index 512") || !strings.Contains(err.Error(), "archived at "+archiveOf(t, tl)) {
		t.Fatalf("client get of pruned record 5: %v, want ErrPruned naming the minimum index and the archive", err)
	}
	if _, err := cl.Entry(ctx, v, 600); err != nil {
		t.Fatalf("client get of held record 600: %v", err)
	}
	arch := tl.retainer.archive
	res, err := cl.Audit(ctx, nil, client.AuditOptions{Archive: arch})
	if err != nil {
		t.Fatalf("audit with the archive: %v", err)
	}
	if res.MinimumIndex != 512 || res.ArchivedBundles != 1 {
		t.Fatalf("audit: minimum index %d, %d archived bundles verified; want 512 and 1 (bundle 1 is within its grace)", res.MinimumIndex, res.ArchivedBundles)
	}
	// An audit state from this run refuses a minimum index that moves back.
	if _, err := cl.Audit(ctx, res.State, client.AuditOptions{Archive: arch}); err != nil {
		t.Fatalf("resumed audit: %v", err)
	}
	back := *res.State
	back.MinimumIndex = 768
	if _, err := cl.Audit(ctx, &back, client.AuditOptions{}); !errors.Is(err, client.ErrVerification) || !strings.Contains(err.Error(), "moved backwards") {
		t.Fatalf("audit after the minimum index moved back: %v", err)
	}
	// One flipped byte in the archive is reported at its index.
	b, err := arch.Get(ctx, "tile/entries/000")
	if err != nil {
		t.Fatal(err)
	}
	// Entry 7's payload ends its record; flip the last byte of entry 7.
	off := 0
	for range 8 {
		off += 2 + (int(b[off])<<8 | int(b[off+1]))
	}
	b[off-1] ^= 1
	if err := arch.Put(ctx, "tile/entries/000", b); err != nil {
		t.Fatal(err)
	}
	if _, err := cl.Audit(ctx, nil, client.AuditOptions{Archive: arch}); !errors.Is(err, client.ErrVerification) || !strings.Contains(err.Error(), "entry 7 ") {
		t.Fatalf("audit of a tampered archive: %v, want a verification failure naming entry 7", err)
	}
	// Records removed at or above the minimum index fail the audit.
	if strings.HasPrefix(tl.cfg.Storage, "posix:") {
		if err := os.Remove(filepath.Join(tl.dir, "tile", "entries", "002")); err != nil {
			t.Fatal(err)
		}
		if _, err := cl.Audit(ctx, nil, client.AuditOptions{}); !errors.Is(err, client.ErrVerification) || !strings.Contains(err.Error(), "tile/entries/002") {
			t.Fatalf("audit with bundle 2 (above the minimum index) removed: %v, want a verification failure naming it", err)
		}
	}
}

// archiveOf is the archive store of tl's retention policy.
func archiveOf(t *testing.T, tl *testLog) string {
	t.Helper()
	return tl.retainer.policy.ArchiveTo
}

// retentionEvents lists the types of the retention audit records in the log.
func retentionEvents(t *testing.T, tl *testLog) []string {
	t.Helper()
	ctx := context.Background()
	_, size, err := tl.latest(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var types []string
	for i := tl.MinimumIndex(); i < size; i++ {
		leaves, _, err := tl.entries(ctx, i, 1)
		if err != nil {
			t.Fatal(err)
		}
		rec, err := record.Decode(leaves[0])
		if err != nil || rec.Submitter != RetentionSubmitter {
			continue
		}
		var ev struct{ Type string }
		if err := json.Unmarshal(rec.Payload, &ev); err != nil {
			t.Fatal(err)
		}
		types = append(types, ev.Type)
	}
	return types
}

// forEachDriverWith runs f on a log per storage driver with an injected
// clock and the configuration mod sets (dir is a scratch directory).
func forEachDriverWith(t *testing.T, mod func(c *Config, dir string), f func(t *testing.T, tl *testLog, clock *testClock)) {
	start := func(t *testing.T, aws *AWSConfig) {
		clock := &testClock{t: time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC)}
		tl := newTestLogWith(t, func(c *Config) {
			if aws != nil {
				c.Storage, c.AWS, c.CheckpointInterval = "mysql+s3", *aws, time.Second
			}
			c.Now = clock.Now
			mod(c, t.TempDir())
		})
		f(t, tl, clock)
	}
	t.Run("posix", func(t *testing.T) { start(t, nil) })
	t.Run("mysql+s3", func(t *testing.T) {
		aws := testEngines(t)
		start(t, &aws)
	})
}

func TestRetentionPolicyRefusedAtStart(t *testing.T) {
	skey, _ := newKey(t, testOrigin)
	for _, tc := range []struct{ policy, want string }{
		{"keep 1y\nthen purge", "Go syntax"},
		{"keep 1d\nthen shred", "then purge"},
		{"keep 1d\nthen archive s3://bucket/p", "needs Config.Storage mysql+s3"},
		{"keep 1d\nthen archive posix:/proc/cairn-cannot-write-here", "not writable"},
	} {
		dir := filepath.Join(t.TempDir(), "log")
		cfg := testConfig(dir, skey)
		cfg.Retention = []byte(tc.policy)
		_, err := New(context.Background(), cfg)
		var fe *fielderr.Error
		if err == nil || !errors.As(err, &fe) || fe.Field != "Config.Retention" || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("policy %q: %v, want a Config.Retention error naming %q", tc.policy, err, tc.want)
		}
		if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("policy %q: the refused log created its storage directory", tc.policy)
		}
	}
}

func TestMinimumIndexIsZeroWithoutPolicy(t *testing.T) {
	tl := newTestLog(t)
	if got := string(tl.get(t, "/minimum-index")); got != "0\n" {
		t.Fatalf("GET /minimum-index = %q, want \"0\\n\"", got)
	}
	if !bytes.Contains(tl.get(t, "/metrics"), []byte("cairn_log_minimum_index_entries 0")) {
		t.Fatal("metric missing")
	}
}

// TestKilledArchiveAndDeleteLosesNothing kills (SIGKILL) a log process
// during its retention run, once after archiving and before deleting, once
// after deleting and before saving its progress; the next run finishes the
// job, and no bundle is deleted before its archived copy verified. Each run
// is a process of its own (the POSIX antispam index is locked per process).
func TestKilledArchiveAndDeleteLosesNothing(t *testing.T) {
	t.Run("posix", func(t *testing.T) { testKilledArchiveAndDeleteLosesNothing(t, nil) })
	t.Run("mysql+s3", func(t *testing.T) {
		aws := testEngines(t)
		testKilledArchiveAndDeleteLosesNothing(t, &aws)
	})
}

func testKilledArchiveAndDeleteLosesNothing(t *testing.T, aws *AWSConfig) {
	ctx := context.Background()
	skey, vkey := newKey(t, testOrigin)
	dir, arch := t.TempDir(), filepath.Join(t.TempDir(), "archive")
	policyText := "keep 1ms\nthen archive posix:" + arch + "\n"
	env := []string{envChildRetention + "=" + policyText}
	get := func(key string) ([]byte, error) { return os.ReadFile(filepath.Join(dir, key)) }
	if aws != nil {
		j, _ := json.Marshal(aws)
		env = append(env, envChildAWS+"="+string(j))
		ak, _ := os.ReadFile(aws.S3AccessKeyFile)
		sk, _ := os.ReadFile(aws.S3SecretKeyFile)
		st, err := archive.Open("s3://"+aws.S3Bucket, &archive.S3Options{Endpoint: aws.S3Endpoint, Region: aws.S3Region, PathStyle: aws.S3PathStyle,
			AccessKey: strings.TrimSpace(string(ak)), SecretKey: strings.TrimSpace(string(sk))})
		if err != nil {
			t.Fatal(err)
		}
		get = func(key string) ([]byte, error) { return st.Get(ctx, key) }
	}

	// Three full bundles (the policy is not evaluated: the interval is an hour).
	c := startChild(t, dir, skey, env...)
	var wg sync.WaitGroup
	for i := range 3 * layout.EntryBundleWidth {
		wg.Go(func() { appendGRPC(t, c.api, fmt.Sprintf("record %d", i)) })
	}
	wg.Wait()
	c.waitForSize(t, vkey, 3*layout.EntryBundleWidth)
	c.stop(t)
	tiles := make([][]byte, 3)
	for k := range tiles {
		var err error
		if tiles[k], err = get(layout.TilePath(0, uint64(k), 0)); err != nil {
			t.Fatal(err)
		}
	}
	onStorage := func(k int) bool {
		_, err := get(layout.EntriesPath(uint64(k), 0))
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			t.Fatal(err)
		}
		return err == nil
	}

	// kill -9 after archiving, before deleting: nothing is deleted, and the
	// archived copies verify.
	killedChild(t, dir, skey, append(env, envChildRetentionKill+"=before-delete"))
	for k := range tiles {
		if !onStorage(k) {
			t.Fatalf("bundle %d was deleted although the run was killed before deleting", k)
		}
		b, err := os.ReadFile(filepath.Join(arch, layout.EntriesPath(uint64(k), 0)))
		if err != nil {
			t.Fatalf("bundle %d was not archived before the kill: %v", k, err)
		}
		if err := VerifyBundle(b, tiles[k], uint64(k)); err != nil {
			t.Fatal(err)
		}
	}

	// kill -9 after deleting, before saving the progress.
	killedChild(t, dir, skey, append(env, envChildRetentionKill+"=after-delete"))
	for k := range tiles {
		if onStorage(k) {
			t.Fatalf("bundle %d is still on storage after the deleting run", k)
		}
	}

	// The next run finishes the job from the archive: the bundles it finds
	// deleted must be in the archive and verify there.
	c = startChild(t, dir, skey, append(env, envChildRetentionKill+"=finish")...)
	eventually(t, 60*time.Second, func() error {
		if !bytes.Contains(c.get(t, "/metrics"), []byte("cairn_log_retention_deleted_bundles_total 3")) {
			return errors.New("cairn_log_retention_deleted_bundles_total is not 3 yet")
		}
		return nil
	})
	if got := strings.TrimSpace(string(c.get(t, "/minimum-index"))); got != "768" {
		t.Fatalf("minimum index after the kills = %s, want 768", got)
	}
	pol, err := policy.Parse([]byte("log " + vkey + "\nquorum none\n"))
	if err != nil {
		t.Fatal(err)
	}
	cl, err := client.NewLog(c.base, pol, client.HTTPOptions{})
	if err != nil {
		t.Fatal(err)
	}
	st, _ := archive.Open("posix:"+arch, nil)
	res, err := cl.Audit(ctx, nil, client.AuditOptions{Archive: st})
	if err != nil {
		t.Fatalf("audit after the kills: %v", err)
	}
	if res.ArchivedBundles != 3 || res.MinimumIndex != 768 {
		t.Fatalf("audit: %d archived bundles verified, minimum index %d; want 3 and 768", res.ArchivedBundles, res.MinimumIndex)
	}
	c.stop(t)
}

// killedChild runs a child log that kills itself with SIGKILL during its
// retention run, and waits for it to die that way.
func killedChild(t *testing.T, dir, skey string, env []string) {
	t.Helper()
	c := startChild(t, dir, skey, env...)
	done := make(chan error, 1)
	go func() { done <- c.cmd.Wait() }()
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), "killed") {
			t.Fatalf("child exited with %v, want killed by SIGKILL at its kill point", err)
		}
	case <-time.After(90 * time.Second):
		t.Fatal("child was not killed within 90s")
	}
}
