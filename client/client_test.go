package client

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cairnlog/cairn/format/policy"
	"github.com/cairnlog/cairn/internal/testport"
	cairnv1 "github.com/cairnlog/cairn/proto/cairn/v1"
	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
	"google.golang.org/grpc"
)

const fixture = "../testdata/interop/tessera-log-360"

// copyDir copies the fixture log so a test may tamper with it.
func copyDir(t testing.TB, src string) string {
	t.Helper()
	dst := t.TempDir()
	err := filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		if d.IsDir() {
			return os.MkdirAll(filepath.Join(dst, rel), 0o755)
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(dst, rel), b, 0o644)
	})
	if err != nil {
		t.Fatal(err)
	}
	return dst
}

// serve serves a directory as a static tlog-tiles log.
func serve(t testing.TB, dir string) string {
	t.Helper()
	srv := httptest.NewServer(http.FileServer(http.Dir(dir)))
	t.Cleanup(srv.Close)
	return srv.URL
}

func loadPolicy(t testing.TB, path string) *policy.Policy {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	p, err := policy.Parse(b)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func openFixture(t testing.TB, dir string) *Log {
	t.Helper()
	l, err := NewLog(serve(t, dir), loadPolicy(t, "../testdata/interop.policy"), HTTPOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func TestAuditsALogWrittenByTessera(t *testing.T) {
	l := openFixture(t, fixture)
	res, err := l.Audit(context.Background(), nil, AuditOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if res.Records != 360 || res.Checkpoint.Checkpoint.Size != 360 {
		t.Fatalf("audited %d records of %d", res.Records, res.Checkpoint.Checkpoint.Size)
	}
	// Every leaf is provable with x/mod's independent tlog code too.
	ctx := context.Background()
	v := res.Checkpoint
	tree := tlog.Tree{N: int64(v.Checkpoint.Size), Hash: tlog.Hash(v.Checkpoint.Root)}
	for _, i := range []uint64{0, 255, 256, 299, 359} {
		leaf, err := l.Entry(ctx, v, i)
		if err != nil {
			t.Fatal(err)
		}
		p, err := l.InclusionProof(ctx, i, v.Checkpoint.Size)
		if err != nil {
			t.Fatal(err)
		}
		var rp tlog.RecordProof
		for _, h := range p {
			rp = append(rp, tlog.Hash(h))
		}
		if err := tlog.CheckRecord(rp, tree.N, tree.Hash, int64(i), tlog.RecordHash(leaf)); err != nil {
			t.Fatalf("x/mod rejects the inclusion proof of %d: %v", i, err)
		}
	}
}

func TestConsistencyWithTheFixturesEarlierCheckpoints(t *testing.T) {
	l := openFixture(t, fixture)
	ctx := context.Background()
	v, err := l.Checkpoint(ctx)
	if err != nil {
		t.Fatal(err)
	}
	lite, _ := policy.Parse([]byte(strings.Replace(mustRead(t, "../testdata/interop.policy"), "quorum ed25519", "quorum lite", 1)))
	for _, f := range []string{"../testdata/interop/tessera-log-360.checkpoint-300.txt", "../testdata/interop/tessera-log-360.checkpoint-350.txt"} {
		old, err := lite.Verify([]byte(mustRead(t, f)))
		if err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		if err := l.VerifyConsistency(ctx, old.Checkpoint.Size, old.Checkpoint.Root[:], v); err != nil {
			t.Fatalf("%s → 360: %v", f, err)
		}
	}
}

func mustRead(t testing.TB, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestTorchwoodReceiptVerifiesOffline(t *testing.T) {
	p := loadPolicy(t, "../testdata/tlog-proof.policy")
	leaf := []byte(mustRead(t, "../testdata/interop/tlog-proof-index3.entry"))
	rc := []byte(mustRead(t, "../testdata/interop/tlog-proof-index3.tlog-proof"))
	vr, err := VerifyReceipt(p, leaf, rc)
	if err != nil {
		t.Fatal(err)
	}
	if vr.Receipt.Index != 3 {
		t.Fatalf("index %d", vr.Receipt.Index)
	}
	for name, c := range map[string]struct{ leaf, rc []byte }{
		"other record":       {[]byte("hello 5"), rc},
		"flipped proof byte": {leaf, []byte(strings.Replace(string(rc), "g4Oc78", "g4Oc79", 1))},
		"other index":        {leaf, []byte(strings.Replace(string(rc), "index 3", "index 2", 1))},
		"garbage":            {leaf, []byte("c2sp.org/tlog-proof@v1\nindex x\n\n")},
	} {
		if _, err := VerifyReceipt(p, c.leaf, c.rc); !errors.Is(err, ErrVerification) {
			t.Errorf("%s: %v, want a verification failure", name, err)
		}
	}
	// The wrong log key: nothing verifies.
	if _, err := VerifyReceipt(loadPolicy(t, "../testdata/interop.policy"), leaf, rc); !errors.Is(err, ErrVerification) {
		t.Errorf("receipt under another log's policy: %v", err)
	}
}

func flip(t *testing.T, path string, at int) {
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	b[at] ^= 0x01
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestAuditNamesWhereTheLogWasTamperedWith(t *testing.T) {
	for _, c := range []struct {
		name   string
		damage func(t *testing.T, dir string)
		want   string
	}{
		{"flipped byte in an entry bundle", func(t *testing.T, dir string) { flip(t, dir+"/tile/entries/000", 100) }, "tile/entries/000"},
		{"flipped byte in a level-0 tile", func(t *testing.T, dir string) { flip(t, dir+"/tile/0/001.p/104", 40) }, "tile/0/001.p/104"},
		{"flipped byte in a level-1 tile", func(t *testing.T, dir string) { flip(t, dir+"/tile/1/000.p/1", 3) }, "tile/1/000.p/1"},
		{"missing partial tile", func(t *testing.T, dir string) { os.Remove(dir + "/tile/0/001.p/104") }, "tile/0/001.p/104 is missing"},
		{"missing entry bundle", func(t *testing.T, dir string) { os.Remove(dir + "/tile/entries/001.p/104") }, "tile/entries/001.p/104 is missing"},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := copyDir(t, fixture)
			c.damage(t, dir)
			_, err := openFixture(t, dir).Audit(context.Background(), nil, AuditOptions{})
			if !errors.Is(err, ErrVerification) || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("audit: %v, want a verification failure naming %q", err, c.want)
			}
		})
	}
}

func TestValidlySignedCheckpointWithAWrongRootFails(t *testing.T) {
	skey, vkey, _ := note.GenerateKey(rand.Reader, "example.test/oneshot")
	signer, _ := note.NewSigner(skey)
	p, _ := policy.Parse([]byte("log " + vkey + "\nquorum none\n"))
	dir := copyDir(t, fixture)
	sign := func(size int, root []byte) {
		n, err := note.Sign(&note.Note{Text: fmt.Sprintf("example.test/oneshot\n%d\n%s\n", size, base64.StdEncoding.EncodeToString(root))}, signer)
		if err != nil {
			t.Fatal(err)
		}
		os.WriteFile(dir+"/checkpoint", n, 0o644)
	}
	wrong := make([]byte, 32)
	sign(360, wrong)
	l, _ := NewLog(serve(t, dir), p, HTTPOptions{})
	ctx := context.Background()
	if _, err := l.Audit(ctx, nil, AuditOptions{}); !errors.Is(err, ErrVerification) || !strings.Contains(err.Error(), "root recomputed") {
		t.Fatalf("audit of a wrong root: %v", err)
	}
	v, err := l.Checkpoint(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := l.Entry(ctx, v, 5); !errors.Is(err, ErrVerification) {
		t.Fatalf("inclusion against a wrong root: %v", err)
	}
	// A monitor that knew the real root at 360 sees a split view.
	real := openFixture(t, fixture)
	rv, _ := real.Checkpoint(ctx)
	state := filepath.Join(t.TempDir(), "state")
	(&State{Size: 360, Root: rv.Checkpoint.Root[:], Checkpoint: string(rv.Raw)}).Save(state)
	err = l.Monitor(ctx, state, time.Second, true, func(MonitorEvent) {})
	if !errors.Is(err, ErrVerification) || !strings.Contains(err.Error(), "split view") {
		t.Fatalf("monitor: %v, want a split-view alarm", err)
	}
}

func TestMonitorFollowsAndAlarmsOnAFork(t *testing.T) {
	ctx := context.Background()
	dir := copyDir(t, fixture)
	// Start the monitor at size 300 by serving the older checkpoint.
	cp360, _ := os.ReadFile(dir + "/checkpoint")
	os.WriteFile(dir+"/checkpoint", []byte(mustRead(t, "../testdata/interop/tessera-log-360.checkpoint-300.txt")), 0o644)
	p, _ := policy.Parse([]byte(strings.Replace(mustRead(t, "../testdata/interop.policy"), "quorum ed25519", "quorum lite", 1)))
	l, _ := NewLog(serve(t, dir), p, HTTPOptions{})
	state := filepath.Join(t.TempDir(), "state")
	var events []MonitorEvent
	record := func(ev MonitorEvent) { events = append(events, ev) }
	if err := l.Monitor(ctx, state, time.Second, true, record); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(dir+"/checkpoint", cp360, 0o644)
	if err := l.Monitor(ctx, state, time.Second, true, record); err != nil || !events[1].Advanced {
		t.Fatalf("300 → 360: %v", err)
	}
	// A stale (older, consistent) checkpoint is not an alarm.
	os.WriteFile(dir+"/checkpoint", []byte(mustRead(t, "../testdata/interop/tessera-log-360.checkpoint-350.txt")), 0o644)
	if err := l.Monitor(ctx, state, time.Second, true, record); err != nil {
		t.Fatalf("a stale consistent checkpoint raised: %v", err)
	}
	// A tile that no longer proves 350 → 360 is.
	os.WriteFile(dir+"/checkpoint", cp360, 0o644)
	st, _ := LoadState(state)
	st.Size, st.Root = 350, make([]byte, 32)
	st.Checkpoint = mustRead(t, "../testdata/interop/tessera-log-360.checkpoint-350.txt")
	st.Save(state)
	if err := l.Monitor(ctx, state, time.Second, true, record); !errors.Is(err, ErrVerification) {
		t.Fatalf("a tree that does not extend the known one: %v", err)
	}
}

func TestAuditResumesFromState(t *testing.T) {
	ctx := context.Background()
	dir := copyDir(t, fixture)
	os.WriteFile(dir+"/checkpoint", []byte(mustRead(t, "../testdata/interop/tessera-log-360.checkpoint-300.txt")), 0o644)
	p, _ := policy.Parse([]byte(strings.Replace(mustRead(t, "../testdata/interop.policy"), "quorum ed25519", "quorum lite", 1)))
	l, _ := NewLog(serve(t, dir), p, HTTPOptions{})
	res, err := l.Audit(ctx, nil, AuditOptions{})
	if err != nil || res.Records != 300 {
		t.Fatalf("first audit: %v", err)
	}
	path := filepath.Join(t.TempDir(), "state")
	if err := res.State.Save(path); err != nil {
		t.Fatal(err)
	}
	st, err := LoadState(path)
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(dir+"/checkpoint", []byte(mustRead(t, fixture+"/checkpoint")), 0o644)
	res, err = l.Audit(ctx, st, AuditOptions{})
	if err != nil {
		t.Fatalf("resumed audit: %v", err)
	}
	if res.From != 300 || res.Records != 60 {
		t.Fatalf("resumed audit: from %d, %d records", res.From, res.Records)
	}
	// A rewritten entry after the saved state is caught by a resumed audit.
	flip(t, dir+"/tile/entries/001.p/104", 300)
	if _, err := l.Audit(ctx, st, AuditOptions{}); !errors.Is(err, ErrVerification) {
		t.Fatalf("resumed audit over tampered data: %v", err)
	}
}

// fakeLog answers Append on a real gRPC server (the log package itself is
// exercised against this client in the integration tests).
type fakeLog struct {
	cairnv1.UnimplementedLogServer
	calls int
}

func (f *fakeLog) Append(_ context.Context, r *cairnv1.AppendRequest) (*cairnv1.AppendResponse, error) {
	f.calls++
	return &cairnv1.AppendResponse{Index: 42, Leaf: r.Payload}, nil
}

func TestSubmitFailsOverToTheNextEndpoint(t *testing.T) {
	deadAddr := testport.Addr(t) // claimed and never bound: connections are refused
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	srv := grpc.NewServer()
	f := &fakeLog{}
	cairnv1.RegisterLogServer(srv, f)
	go srv.Serve(ln)
	t.Cleanup(srv.Stop)

	s, err := NewSubmitter([]string{deadAddr, ln.Addr().String()}, SubmitterOptions{Backoff: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	res, err := s.Submit(context.Background(), Record{Payload: []byte("x")}, false)
	if err != nil {
		t.Fatal(err)
	}
	if res.Index != 42 || res.Endpoint != ln.Addr().String() || f.calls != 1 {
		t.Fatalf("submitted %+v after %d calls", res, f.calls)
	}
	// All endpoints down: a clear error after bounded attempts.
	s2, _ := NewSubmitter([]string{deadAddr}, SubmitterOptions{Attempts: 3, Backoff: time.Millisecond})
	defer s2.Close()
	if _, err := s2.Submit(context.Background(), Record{Payload: []byte("x")}, false); err == nil || !strings.Contains(err.Error(), "after 3 attempts") {
		t.Fatalf("all endpoints down: %v", err)
	}
}

func TestAuditChecksEveryLevelOfALargerLog(t *testing.T) {
	// 70,000 records: 273 full level-0 tiles, level 1 full + partial, level 2 partial.
	src, p := buildLog(t, 70000)
	for _, c := range []struct{ path, want string }{
		{"", ""},
		{"tile/1/000", "tile/1/000 hash"},
		{"tile/1/001.p/17", "tile/1/001.p/17 hash"},
		{"tile/2/000.p/1", "tile/2/000.p/1 hash"},
		{"tile/0/272", "tile/0/272"},
		{"tile/entries/273.p/112", "tile/entries/273.p/112"},
	} {
		dir := copyDir(t, src)
		if c.path != "" {
			flip(t, filepath.Join(dir, c.path), 5)
		}
		l, _ := NewLog(serve(t, dir), p, HTTPOptions{})
		_, err := l.Audit(context.Background(), nil, AuditOptions{})
		if c.path == "" {
			if err != nil {
				t.Fatalf("untampered: %v", err)
			}
			continue
		}
		if !errors.Is(err, ErrVerification) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("flipped %s: %v, want a failure naming %q", c.path, err, c.want)
		}
	}
}
