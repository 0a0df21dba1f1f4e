package integration

// Migrating a Trillian v1 log: a real trillian_log_server and
// trillian_log_signer (the pinned release scripts/trillian-deps.sh builds)
// on MariaDB with Trillian's own schema, a tree made by createtree, leaves
// queued through Trillian's API; then `cairn migrate trillian` into posix
// and mysql+s3 storage, a Cairn log served from it with witnesses, and
// tampered Trillian data caught.

import (
	"bytes"
	"context"
	"crypto/sha256"
	"database/sql"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cairnlog/cairn/internal/testport"

	"github.com/cairnlog/cairn/format/checkpoint"
	"github.com/cairnlog/cairn/format/migration"
	"github.com/cairnlog/cairn/internal/supervisor"
	"github.com/cairnlog/cairn/log"
	"github.com/go-sql-driver/mysql"
	"github.com/google/trillian"
	"github.com/google/trillian/types"
	"github.com/transparency-dev/tessera/api/layout"
	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

// trillianVersion is the release scripts/trillian-deps.sh builds.
const trillianVersion = "v1.7.3"

// trillianBin is where scripts/trillian-deps.sh installs Trillian's binary name.
func trillianBin(name string) string {
	d := os.Getenv("CAIRN_CACHE_BIN")
	if d == "" {
		home, _ := os.UserHomeDir()
		d = filepath.Join(home, ".cache", "cairn", "bin")
	}
	return filepath.Join(d, "trillian-"+trillianVersion, name)
}

// trillianLog is a Trillian v1 log on the test's MariaDB.
type trillianLog struct {
	db     *sql.DB
	rpc    string
	tl     trillian.TrillianLogClient
	tree   int64
	server *supervisor.Process
	signer *supervisor.Process
	// serverCmd restarts the log server.
	serverCmd supervisor.Command
}

// startTrillian loads Trillian's schema (storage/mysql/schema/storage.sql of
// the pinned module) into a database of its own on e's MariaDB, starts the
// log server and the signer, and creates a tree of treeType with createtree.
func startTrillian(t testing.TB, e *engines, treeType string) *trillianLog {
	t.Helper()
	for _, b := range []string{"trillian_log_server", "trillian_log_signer", "createtree"} {
		if _, err := os.Stat(trillianBin(b)); err != nil {
			if os.Getenv("CAIRN_REQUIRE_HA") == "" {
				t.Skipf("Trillian %s is not installed (scripts/trillian-deps.sh): %v", trillianVersion, err)
			}
			t.Fatal(err)
		}
	}
	ctx := context.Background()
	dsn, err := e.db.Database(ctx, "trillian")
	if err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", "github.com/google/trillian").Output()
	if err != nil {
		t.Fatalf("locating the trillian module: %v", err)
	}
	schema, err := os.ReadFile(filepath.Join(strings.TrimSpace(string(out)), "storage", "mysql", "schema", "storage.sql"))
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := mysql.ParseDSN(dsn)
	if err != nil {
		t.Fatal(err)
	}
	cfg.MultiStatements = true
	db, err := sql.Open("mysql", cfg.FormatDSN())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	if _, err := db.Exec(string(schema)); err != nil {
		t.Fatalf("loading Trillian's schema: %v", err)
	}
	tr := &trillianLog{db: db, rpc: testport.Addr(t)}
	tr.serverCmd = supervisor.Command{Name: "trillian_log_server", Path: trillianBin("trillian_log_server"), Output: e.out,
		Args: []string{"--storage_system=mysql", "--mysql_uri=" + dsn, "--rpc_endpoint=" + tr.rpc, "--http_endpoint=" + testport.Addr(t), "--quota_system=noop", "--tree_gc=false"}}
	if tr.server, err = supervisor.Start(tr.serverCmd); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tr.server.Kill() })
	tr.signer, err = supervisor.Start(supervisor.Command{Name: "trillian_log_signer", Path: trillianBin("trillian_log_signer"), Output: e.out,
		Args: []string{"--storage_system=mysql", "--mysql_uri=" + dsn, "--rpc_endpoint=" + testport.Addr(t), "--http_endpoint=" + testport.Addr(t),
			"--quota_system=noop", "--force_master", "--sequencer_interval=50ms", "--batch_size=5000", "--num_sequencers=2"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tr.signer.Kill() })
	var id string
	eventually(t, time.Minute, func() error {
		cmd := exec.Command(trillianBin("createtree"), "--admin_server="+tr.rpc, "--tree_type="+treeType, "--max_root_duration=0")
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			return fmt.Errorf("createtree: %v: %s", err, stderr.String())
		}
		id = strings.TrimSpace(string(out))
		return nil
	})
	if tr.tree, err = strconv.ParseInt(id, 10, 64); err != nil {
		t.Fatalf("createtree printed %q", id)
	}
	conn, err := grpc.NewClient(tr.rpc, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	tr.tl = trillian.NewTrillianLogClient(conn)
	return tr
}

// legacyLeaves are the values queued into Trillian: mostly short, every
// 500th one large (60 KB), every 100th a copy of the leaf before it (with
// its own identity, so Trillian logs it twice).
func legacyLeaves(from, n int) (values, identities [][]byte) {
	for i := from; i < from+n; i++ {
		v := []byte(fmt.Sprintf("legacy audit event %d", i))
		switch {
		case i%500 == 499:
			v = bytes.Repeat([]byte(fmt.Sprintf("large %d|", i)), 60000/len(fmt.Sprintf("large %d|", i)))
		case i%100 == 1 && i > from:
			v = values[len(values)-1]
		}
		id := sha256.Sum256([]byte(fmt.Sprintf("identity %d", i)))
		values, identities = append(values, v), append(identities, id[:])
	}
	return values, identities
}

// queue queues leaves through Trillian's QueueLeaf, eight at a time, and
// waits until the signer integrated them all (the tree reaches want).
func (tr *trillianLog) queue(t testing.TB, values, identities [][]byte, want uint64) *types.LogRootV1 {
	t.Helper()
	ctx := context.Background()
	var wg sync.WaitGroup
	errs := make(chan error, len(values))
	sem := make(chan struct{}, 8)
	for i := range values {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			_, err := tr.tl.QueueLeaf(ctx, &trillian.QueueLeafRequest{LogId: tr.tree, Leaf: &trillian.LogLeaf{LeafValue: values[i], LeafIdentityHash: identities[i]}})
			if err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("QueueLeaf: %v", err)
	}
	return tr.waitSize(t, want)
}

// waitSize waits until Trillian's latest root has size want.
func (tr *trillianLog) waitSize(t testing.TB, want uint64) *types.LogRootV1 {
	t.Helper()
	var root *types.LogRootV1
	eventually(t, 3*time.Minute, func() error {
		resp, err := tr.tl.GetLatestSignedLogRoot(context.Background(), &trillian.GetLatestSignedLogRootRequest{LogId: tr.tree})
		if err != nil {
			return err
		}
		var r types.LogRootV1
		if err := r.UnmarshalBinary(resp.SignedLogRoot.LogRoot); err != nil {
			return err
		}
		if r.TreeSize != want {
			return fmt.Errorf("Trillian's tree has %d leaves, want %d", r.TreeSize, want)
		}
		root = &r
		return nil
	})
	return root
}

// migrate runs cairn migrate trillian into the storage flags.
func (tr *trillianLog) migrate(t testing.TB, keyFile string, storage ...string) (string, string, int) {
	t.Helper()
	args := append([]string{"migrate", "trillian", "--trillian", tr.rpc, "--trillian-plaintext", "--tree-id", strconv.FormatInt(tr.tree, 10),
		"--origin", origin, "--key", keyFile}, storage...)
	return run(t, nil, args...)
}

// TestMigrateTrillianKeepsEveryHashAndAppends migrates a live Trillian log
// into each storage driver: a first pass killed with -9 and resumed, a
// catch-up while Trillian keeps taking writes, the final pass, then a Cairn
// log with three witnesses on the migrated storage. Its first checkpoint is
// Trillian's root (checked with x/mod's note and tlog), an inclusion proof
// Trillian served verifies against it, the tiles verify with x/mod's
// tlog, cairn audit passes, cairn get shows a legacy leaf raw, and the log
// appends at the migrated size. Then a leaf changed in Trillian's database
// is caught, with its index.
func TestMigrateTrillianKeepsEveryHashAndAppends(t *testing.T) {
	e := startEngines(t)
	tr := startTrillian(t, e, "LOG")
	values, ids := legacyLeaves(0, 3000)
	tr.queue(t, values, ids, 3000)
	// The same leaves again: Trillian deduplicates them by identity.
	tr.queue(t, values[:50], ids[:50], 3000)

	t.Run("posix", func(t *testing.T) {
		var size uint64
		var proofAt *trillian.GetInclusionProofResponse
		var leaf []byte
		c := newClusterWith(t, clusterOpts{loopback: true, prepare: func(t *testing.T, c *cluster) {
			dir := c.dir + "/log"
			storage := []string{"--storage", "posix:" + dir}
			// A first pass, one bundle at a time, killed -9 once it wrote.
			p, err := supervisor.Start(supervisor.Command{Name: "migrate", Path: cairnBin, Args: append([]string{"migrate", "trillian", "--trillian", tr.rpc,
				"--trillian-plaintext", "--tree-id", strconv.FormatInt(tr.tree, 10), "--origin", origin, "--key", c.dir + "/log.key", "--batch", "1"}, storage...)})
			if err != nil {
				t.Fatal(err)
			}
			eventually(t, time.Minute, func() error {
				if m, _ := filepath.Glob(dir + "/tile/entries/*"); len(m) == 0 {
					return fmt.Errorf("no entry bundle written yet")
				}
				return nil
			})
			p.Kill()
			if err := p.Wait(); !strings.Contains(supervisor.ExitText(err), "kill") {
				t.Logf("the first pass ended before the kill: %v", supervisor.ExitText(err))
			}
			// Resumed; then Trillian takes more writes and a pass catches up.
			if out, stderr, code := tr.migrate(t, c.dir+"/log.key", storage...); code != 0 {
				t.Fatalf("resumed migration: exit %d\n%s\n%s", code, out, stderr)
			}
			more, moreIDs := legacyLeaves(3000, 700)
			tr.queue(t, more, moreIDs, 3700)
			out, stderr, code := tr.migrate(t, c.dir+"/log.key", storage...)
			if code != 0 {
				t.Fatalf("catch-up: exit %d\n%s\n%s", code, out, stderr)
			}
			// Cut-over: writers stopped, a last few leaves, the final pass.
			more, moreIDs = legacyLeaves(3700, 37)
			root := tr.queue(t, more, moreIDs, 3737)
			size = root.TreeSize
			proofAt, err = tr.tl.GetInclusionProof(context.Background(), &trillian.GetInclusionProofRequest{LogId: tr.tree, LeafIndex: 1234, TreeSize: int64(size)})
			if err != nil {
				t.Fatal(err)
			}
			lr, err := tr.tl.GetLeavesByRange(context.Background(), &trillian.GetLeavesByRangeRequest{LogId: tr.tree, StartIndex: 1234, Count: 1})
			if err != nil {
				t.Fatal(err)
			}
			leaf = lr.Leaves[0].LeafValue
			out, stderr, code = tr.migrate(t, c.dir+"/log.key", storage...)
			if code != 0 {
				t.Fatalf("final pass: exit %d\n%s\n%s", code, out, stderr)
			}
			if want := fmt.Sprintf("size %d, root %x", size, root.RootHash); !strings.Contains(out, want) {
				t.Fatalf("final pass says %q, want %q", out, want)
			}
			t.Logf("final pass: %s", out)
		}})
		cp := checkMigratedLog(t, c, tr, size)
		// An inclusion proof Trillian served before the cut-over verifies
		// against Cairn's checkpoint of the same size (x/mod tlog).
		var rp tlog.RecordProof
		for _, h := range proofAt.Proof.Hashes {
			rp = append(rp, tlog.Hash(h))
		}
		if err := tlog.CheckRecord(rp, int64(size), cp, 1234, tlog.RecordHash(leaf)); err != nil {
			t.Fatalf("Trillian's inclusion proof for leaf 1234 does not verify against Cairn's checkpoint: %v", err)
		}
		// cairn get shows a migrated leaf as a raw legacy leaf, with its source.
		out, stderr, code := run(t, nil, "get", "--log", "http://"+c.httpAddr, "--policy", c.policy, "1234")
		if want := fmt.Sprintf("legacy leaf   migrated from trillian tree %d (below the migration boundary at %d", tr.tree, size); code != 0 || !strings.Contains(out, want) {
			t.Fatalf("cairn get 1234: exit %d\n%s\n%s", code, out, stderr)
		}
		// After the cut-over the storage is a live log: migrating into it
		// again is refused and changes nothing.
		out, stderr, code = tr.migrate(t, c.dir+"/log.key", "--storage", "posix:"+c.dir+"/log")
		if code != 2 || !strings.Contains(stderr, "--storage: a log has already published a checkpoint") {
			t.Fatalf("migrating into a served log: exit %d, want 2\n%s\n%s", code, out, stderr)
		}
	})

	t.Run("mysql+s3", func(t *testing.T) {
		size := uint64(3737)
		c := newClusterWith(t, clusterOpts{loopback: true, storage: e.storage(), prepare: func(t *testing.T, c *cluster) {
			flags := e.storage()("")
			storage := flags[:len(flags)-2] // without --checkpoint-interval
			if out, stderr, code := tr.migrate(t, c.dir+"/log.key", storage...); code != 0 || !strings.Contains(out, fmt.Sprintf("size %d", size)) {
				t.Fatalf("migration to mysql+s3: exit %d\n%s\n%s", code, out, stderr)
			}
		}})
		checkMigratedLog(t, c, tr, size)
	})

	t.Run("Trillian killed mid-migration ends the pass, a rerun completes it", func(t *testing.T) {
		dir := t.TempDir()
		key := keygen(t, dir)
		p, err := supervisor.Start(supervisor.Command{Name: "migrate", Path: cairnBin, Args: []string{"migrate", "trillian", "--trillian", tr.rpc,
			"--trillian-plaintext", "--tree-id", strconv.FormatInt(tr.tree, 10), "--origin", origin, "--key", key, "--batch", "1", "--storage", "posix:" + dir + "/log"}})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { p.Kill() })
		eventually(t, time.Minute, func() error {
			if m, _ := filepath.Glob(dir + "/log/tile/entries/*"); len(m) == 0 {
				return fmt.Errorf("no entry bundle written yet")
			}
			return nil
		})
		tr.server.Kill()
		select {
		case <-p.Done():
		case <-time.After(5 * time.Minute):
			t.Fatalf("the migration did not end after Trillian died")
		}
		if err := p.Wait(); !strings.Contains(supervisor.ExitText(err), "exit status 2") || !strings.Contains(p.Output(), "from Trillian failed 10 times") {
			t.Fatalf("migration with Trillian dead: %s\n%s", supervisor.ExitText(err), tail(p.Output()))
		}
		t.Logf("ended: %s", lastLine(p.Output()))
		if tr.server, err = supervisor.Start(tr.serverCmd); err != nil {
			t.Fatal(err)
		}
		eventually(t, time.Minute, func() error {
			out, stderr, code := tr.migrate(t, key, "--storage", "posix:"+dir+"/log")
			if code != 0 || !strings.Contains(out, "size 3737") {
				return fmt.Errorf("rerun: exit %d\n%s\n%s", code, out, stderr)
			}
			return nil
		})
	})

	t.Run("a leaf changed in Trillian's database is caught", func(t *testing.T) {
		dir := t.TempDir()
		key := keygen(t, dir)
		// Its value only: the leaf no longer hashes to the hash Trillian holds.
		tamper(t, tr, 2345, "UPDATE LeafData l JOIN SequencedLeafData s ON l.TreeId = s.TreeId AND l.LeafIdentityHash = s.LeafIdentityHash SET l.LeafValue = 'rewritten' WHERE s.TreeId = ? AND s.SequenceNumber = ?")
		out, stderr, code := tr.migrate(t, key, "--storage", "posix:"+dir+"/a")
		if code != 1 || !strings.Contains(stderr, "leaf index 2345") {
			t.Fatalf("migrating a tampered leaf: exit %d, want 1 naming leaf index 2345\n%s\n%s", code, out, stderr)
		}
		t.Logf("caught: %s", lastLine(stderr))
		// Value and leaf hash together: every leaf hashes as Trillian says,
		// but the tree no longer has Trillian's root.
		tamper(t, tr, 2345, "UPDATE SequencedLeafData s JOIN LeafData l ON l.TreeId = s.TreeId AND l.LeafIdentityHash = s.LeafIdentityHash SET s.MerkleLeafHash = UNHEX(SHA2(CONCAT(UNHEX('00'), l.LeafValue), 256)) WHERE s.TreeId = ? AND s.SequenceNumber = ?")
		out, stderr, code = tr.migrate(t, key, "--storage", "posix:"+dir+"/b")
		if code != 1 || !strings.Contains(stderr, "at leaf index 2345") {
			t.Fatalf("migrating a consistently rewritten leaf: exit %d, want 1 naming leaf index 2345\n%s\n%s", code, out, stderr)
		}
		t.Logf("caught: %s", lastLine(stderr))
	})
}

// tamper runs query (TreeId, SequenceNumber parameters) on Trillian's database.
func tamper(t *testing.T, tr *trillianLog, index int64, query string) {
	t.Helper()
	res, err := tr.db.Exec(query, tr.tree, index)
	if err != nil {
		t.Fatal(err)
	}
	if n, _ := res.RowsAffected(); n != 1 {
		t.Fatalf("tampering changed %d rows, want 1", n)
	}
}

func keygen(t testing.TB, dir string) string {
	t.Helper()
	if _, stderr, code := run(t, nil, "keygen", "--name", origin, "--out", dir+"/log"); code != 0 {
		t.Fatal(stderr)
	}
	return dir + "/log.key"
}

// checkMigratedLog checks the Cairn log served from migrated storage: its
// tree at Trillian's size has Trillian's root, its checkpoints carry the
// witnesses' cosignatures, the tiles verify with x/mod tlog, cairn audit
// passes, the boundary is served and recorded at index size, and a record
// appended next gets index size+1. It returns the root at size.
func checkMigratedLog(t *testing.T, c *cluster, tr *trillianLog, size uint64) tlog.Hash {
	t.Helper()
	root := tr.waitSize(t, size)
	// The log publishes the migrated size first, then appends the boundary
	// record: wait for that one.
	raw, ws := c.waitSize(t, size+1, time.Minute)
	v, _ := note.NewVerifier(c.logVKey)
	n, err := note.Open(raw, note.VerifierList(v))
	if err != nil {
		t.Fatal(err)
	}
	cp, err := checkpoint.Parse([]byte(n.Text))
	if err != nil {
		t.Fatal(err)
	}
	if len(ws) < 2 {
		t.Fatalf("the migrated log's checkpoint has cosignatures of %v, want 2 of 3 witnesses", ws)
	}
	// Every tile, checked by x/mod's tlog against the checkpoint as a third
	// party would; the tree at the migrated size has Trillian's root.
	hr := tlog.TileHashReader(tlog.Tree{N: int64(cp.Size), Hash: tlog.Hash(cp.Root)}, httpTiles{base: "http://" + c.httpAddr})
	if got, err := tlog.TreeHash(int64(cp.Size), hr); err != nil || got != tlog.Hash(cp.Root) {
		t.Fatalf("x/mod tlog over the served tiles: root %x, %v; want %x", got, err, cp.Root)
	}
	th, err := tlog.TreeHash(int64(size), hr)
	if err != nil || !bytes.Equal(th[:], root.RootHash) {
		t.Fatalf("Cairn's tree at %d: root %x, %v; Trillian's root %x", size, th, err, root.RootHash)
	}
	if out, stderr, code := run(t, nil, "audit", "--quiet", "--log", "http://"+c.httpAddr, "--policy", c.policy); code != 0 || !strings.Contains(out, fmt.Sprintf("of which %d legacy leaves below the migration boundary", size)) {
		t.Fatalf("cairn audit of the migrated log: exit %d\n%s\n%s", code, out, stderr)
	}
	// Right after the cut-over the log appends the migration boundary, which
	// it also serves; then records append after it.
	resp, err := http.Get("http://" + c.httpAddr + "/" + migration.Path)
	if err != nil {
		t.Fatal(err)
	}
	var body bytes.Buffer
	_, _ = body.ReadFrom(resp.Body)
	resp.Body.Close()
	b, err := migration.Parse(body.Bytes())
	if err != nil || b.Size != size || b.TreeID != tr.tree || !bytes.Equal(b.Root, root.RootHash) {
		t.Fatalf("/%s: %s %q: %+v, %v", migration.Path, resp.Status, body.String(), b, err)
	}
	out, stderr, code := run(t, nil, "get", "--log", "http://"+c.httpAddr, "--policy", c.policy, "--output", "json", strconv.FormatUint(size, 10))
	if code != 0 || !strings.Contains(out, migration.ContentType) || !strings.Contains(out, log.BoundarySubmitter) {
		t.Fatalf("cairn get %d (the boundary record): exit %d\n%s\n%s", size, code, out, stderr)
	}
	i, err := c.add(t, "the first record after the migration")
	if err != nil || i != size+1 {
		t.Fatalf("append after the migration: index %d, %v; want %d", i, err, size+1)
	}
	c.waitSize(t, size+2, time.Minute)
	// A restart (kill -9) appends the boundary again: the same leaf, so the
	// same index, and the tree does not grow.
	c.log.kill9()
	c.log.start(t)
	c.log.waitServing(t, "http://"+c.httpAddr+"/readyz")
	eventually(t, time.Minute, func() error {
		if out := c.log.output(); !strings.Contains(out, fmt.Sprintf(`msg="migration boundary recorded" boundary=%d index=%d already=true`, size, size)) {
			return fmt.Errorf("the restarted log has not re-recorded the boundary as a duplicate yet:\n%s", tail(out))
		}
		return nil
	})
	if _, s, _ := c.checkpoint(t); s != size+2 {
		t.Fatalf("after a restart the tree has %d leaves, want %d: the boundary was appended twice?", s, size+2)
	}
	return th
}

// httpTiles reads tlog-tiles hash tiles over HTTP for x/mod's tlog.
type httpTiles struct{ base string }

func (h httpTiles) Height() int { return 8 }

func (h httpTiles) ReadTiles(tiles []tlog.Tile) ([][]byte, error) {
	out := make([][]byte, len(tiles))
	for i, t := range tiles {
		p := uint8(0)
		if t.W < 256 {
			p = uint8(t.W)
		}
		resp, err := http.Get(h.base + "/" + layout.TilePath(uint64(t.L), uint64(t.N), p))
		if err != nil {
			return nil, err
		}
		var b bytes.Buffer
		_, err = b.ReadFrom(resp.Body)
		resp.Body.Close()
		if err != nil {
			return nil, err
		}
		if resp.StatusCode != http.StatusOK {
			return nil, fmt.Errorf("tile %s: %s", layout.TilePath(uint64(t.L), uint64(t.N), p), resp.Status)
		}
		out[i] = b.Bytes()
	}
	return out, nil
}

func (h httpTiles) SaveTiles([]tlog.Tile, [][]byte) {}

// TestMigrateTrillianRefusesWhatItCannotCopy: a tree ID Trillian does not
// know, and a leaf too large for a tlog-tiles entry bundle, are clear errors
// (exit 2) naming the tree or the leaf index.
func TestMigrateTrillianRefusesWhatItCannotCopy(t *testing.T) {
	e := startEngines(t)
	tr := startTrillian(t, e, "LOG")
	dir := t.TempDir()
	key := keygen(t, dir)
	tree := tr.tree
	tr.tree = 424242
	out, stderr, code := tr.migrate(t, key, "--storage", "posix:"+dir+"/target")
	if code != 2 || !strings.Contains(stderr, "tree 424242") {
		t.Fatalf("unknown tree: exit %d\n%s\n%s", code, out, stderr)
	}
	if _, err := os.Stat(dir + "/target"); err == nil {
		t.Fatalf("an unknown tree created the target storage")
	}
	tr.tree = tree
	values := [][]byte{[]byte("small"), bytes.Repeat([]byte("x"), 70000)}
	ids := [][]byte{[]byte("identity-0-of-two-leaves-padding"), []byte("identity-1-of-two-leaves-padding")}
	tr.queue(t, values, ids, 2)
	out, stderr, code = tr.migrate(t, key, "--storage", "posix:"+dir+"/large")
	if code != 2 || !strings.Contains(stderr, "bytes: leaf too large for a tlog-tiles entry bundle (at most 65535)") {
		t.Fatalf("a 70000-byte leaf: exit %d, want 2\n%s\n%s", code, out, stderr)
	}
	t.Logf("refused: %s", lastLine(stderr))
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return lines[len(lines)-1]
}
