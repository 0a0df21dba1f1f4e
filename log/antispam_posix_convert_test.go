package log

import (
	"bytes"
	"context"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	cairnv1 "github.com/cairnlog/cairn/proto/cairn/v1"
	"github.com/cockroachdb/pebble/v2"
	"github.com/dgraph-io/badger/v4"
	"google.golang.org/grpc/metadata"
)

// The fixture testdata/antispam-badger-kill9.tar.gz is a POSIX log written
// by Cairn before the antispam index moved to Pebble (commit 30d6649, its
// Badger index in log/.state/antispam) and killed with SIGKILL: batch
// "badger" (batchOf, 300 records) at indices 0–299, appended and indexed;
// batch "tail" (100 records) at 300–399, appended just before the kill, so
// the index may not hold them. log.key is its signing key. The archive keeps
// Badger's preallocated files sparse (tar --sparse).
const badgerFixture = "testdata/antispam-badger-kill9.tar.gz"

// extractBadgerFixture unpacks the fixture into a new directory and returns
// the log's directory and signing key.
func extractBadgerFixture(t *testing.T) (dir, skey string) {
	t.Helper()
	out := t.TempDir()
	if b, err := exec.Command("tar", "-xzf", badgerFixture, "-C", out).CombinedOutput(); err != nil {
		t.Fatalf("extracting %s: %v: %s", badgerFixture, err, b)
	}
	key, err := os.ReadFile(filepath.Join(out, "log.key"))
	if err != nil {
		t.Fatal(err)
	}
	return filepath.Join(out, "log"), strings.TrimSpace(string(key))
}

// readBadger returns every key and value of the Badger database in dir.
func readBadger(t *testing.T, dir string) map[string][]byte {
	t.Helper()
	db, err := badger.Open(badger.DefaultOptions(dir).WithLogger(nil))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	kv := map[string][]byte{}
	err = db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.DefaultIteratorOptions)
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			v, err := it.Item().ValueCopy(nil)
			if err != nil {
				return err
			}
			kv[string(it.Item().KeyCopy(nil))] = v
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return kv
}

// readPebble returns every key and value of the Pebble database in dir.
func readPebble(t *testing.T, dir string) map[string][]byte {
	t.Helper()
	db, err := pebble.Open(dir, &pebble.Options{ErrorIfNotExists: true, Merger: firstIndexWins(), Logger: pebbleLogger{slog.New(slog.DiscardHandler)}})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	it, err := db.NewIter(nil)
	if err != nil {
		t.Fatal(err)
	}
	defer it.Close()
	kv := map[string][]byte{}
	for it.First(); it.Valid(); it.Next() {
		kv[string(it.Key())] = bytes.Clone(it.Value())
	}
	if err := it.Error(); err != nil {
		t.Fatal(err)
	}
	return kv
}

func sameKV(t *testing.T, got, want map[string][]byte) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("the converted index has %d keys, the Badger index %d", len(got), len(want))
	}
	for k, v := range want {
		if !bytes.Equal(got[k], v) {
			t.Fatalf("key %x: converted value %x, Badger's %x", k, got[k], v)
		}
	}
}

// A Badger index left by a killed earlier version is converted key for key
// (identities and the follower's position), once; the Badger directory is
// kept aside.
func TestBadgerAntispamIsConvertedKeyForKey(t *testing.T) {
	dir, _ := extractBadgerFixture(t)
	asDir := filepath.Join(dir, ".state", "antispam")
	// Badger's own view of the killed database (opening it replays its
	// memtable log, as the conversion does).
	want := readBadger(t, asDir)
	if len(want) < 301 { // 300 identities and the position at least
		t.Fatalf("the fixture's Badger index has %d keys, want at least 301", len(want))
	}
	if err := convertBadgerAntispam(asDir, 16, slog.New(slog.DiscardHandler)); err != nil {
		t.Fatal(err)
	}
	if isBadgerDir(asDir) {
		t.Fatalf("%s is still a Badger database", asDir)
	}
	if !isBadgerDir(asDir + antispamBadgerSuffix) {
		t.Fatalf("the Badger index was not kept aside in %s", asDir+antispamBadgerSuffix)
	}
	sameKV(t, readPebble(t, asDir), want)
	// Once: a second open finds Pebble and leaves it.
	if err := convertBadgerAntispam(asDir, 16, slog.New(slog.DiscardHandler)); err != nil {
		t.Fatal(err)
	}
	sameKV(t, readPebble(t, asDir), want)
}

// A conversion cut before its copy was complete is redone from the Badger
// index; one cut between its two renames is finished.
func TestInterruptedBadgerConversionIsRedoneOrFinished(t *testing.T) {
	logger := slog.New(slog.DiscardHandler)
	t.Run("during the copy", func(t *testing.T) {
		dir, _ := extractBadgerFixture(t)
		asDir := filepath.Join(dir, ".state", "antispam")
		want := readBadger(t, asDir)
		// A partial copy: a Pebble database holding a wrong position only.
		tmp := asDir + antispamConvertingSuffix
		db, err := pebble.Open(tmp, &pebble.Options{Logger: pebbleLogger{logger}})
		if err != nil {
			t.Fatal(err)
		}
		if err := db.Set(antispamNextKey, []byte{0, 0, 0, 0, 0, 0, 0, 9}, pebble.Sync); err != nil {
			t.Fatal(err)
		}
		if err := db.Close(); err != nil {
			t.Fatal(err)
		}
		if err := convertBadgerAntispam(asDir, 16, logger); err != nil {
			t.Fatal(err)
		}
		sameKV(t, readPebble(t, asDir), want)
		if exists(tmp) {
			t.Fatalf("%s is left behind", tmp)
		}
	})
	t.Run("between the renames", func(t *testing.T) {
		dir, _ := extractBadgerFixture(t)
		asDir := filepath.Join(dir, ".state", "antispam")
		want := readBadger(t, asDir)
		tmp := asDir + antispamConvertingSuffix
		if _, err := copyBadgerToPebble(asDir, tmp, 16, logger); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(asDir, asDir+antispamBadgerSuffix); err != nil {
			t.Fatal(err)
		}
		if err := convertBadgerAntispam(asDir, 16, logger); err != nil {
			t.Fatal(err)
		}
		sameKV(t, readPebble(t, asDir), want)
	})
	t.Run("with an earlier Badger copy in the way", func(t *testing.T) {
		dir, _ := extractBadgerFixture(t)
		asDir := filepath.Join(dir, ".state", "antispam")
		if err := os.Mkdir(asDir+antispamBadgerSuffix, 0o700); err != nil {
			t.Fatal(err)
		}
		err := convertBadgerAntispam(asDir, 16, logger)
		if err == nil || !strings.Contains(err.Error(), asDir+antispamBadgerSuffix) {
			t.Fatalf("converting with %s in the way: %v, want an error naming it", asDir+antispamBadgerSuffix, err)
		}
		if !isBadgerDir(asDir) {
			t.Fatal("a refused conversion changed the Badger index")
		}
	})
}

// A log written (and killed) by the Badger version keeps deduplicating
// after the upgrade: the log process converts the index at start, every
// record of the old log retried is answered with its first index (those
// indexed in Badger from the converted index, the tail the killed follower
// had not indexed after the follower re-reads it), a new record gets the
// next index, and a restart converts nothing again.
func TestLogWithBadgerAntispamKeepsDeduplicatingAfterUpgrade(t *testing.T) {
	dir, skey := extractBadgerFixture(t)
	asDir := filepath.Join(dir, ".state", "antispam")
	child := startChild(t, dir, skey)
	if isBadgerDir(asDir) || !isBadgerDir(asDir+antispamBadgerSuffix) {
		t.Fatalf("the log started without converting %s", asDir)
	}
	retry := metadata.AppendToOutgoingContext(context.Background(), RetryHeader, "1")
	check := func(when string) {
		t.Helper()
		for _, b := range []struct {
			prefix string
			first  uint64
			n      int
		}{{"badger", 0, 300}, {"tail", 300, 100}} {
			resp, err := child.api.AppendBatch(retry, &cairnv1.AppendBatchRequest{Records: batchOf(b.prefix, b.n)})
			if err != nil {
				t.Fatalf("%s, retrying batch %s: %v", when, b.prefix, err)
			}
			for i, r := range resp.Results {
				if r.Index != b.first+uint64(i) || !r.Duplicate {
					t.Fatalf("%s, record %d of batch %s: index %d (duplicate %v), want %d, a duplicate", when, i, b.prefix, r.Index, r.Duplicate, b.first+uint64(i))
				}
			}
		}
	}
	check("after the upgrade")
	resp, err := child.api.AppendBatch(context.Background(), &cairnv1.AppendBatchRequest{Records: batchOf("new", 10)})
	if err != nil {
		t.Fatal(err)
	}
	if r := resp.Results[0]; r.Index != 400 || r.Duplicate {
		t.Fatalf("a new record after the upgrade: index %d (duplicate %v), want 400", r.Index, r.Duplicate)
	}
	child.stop(t)

	child = startChild(t, dir, skey)
	check("after a restart")
	if isBadgerDir(asDir) {
		t.Fatal("the restart left a Badger index")
	}
	m := string(child.get(t, "/metrics"))
	if !strings.Contains(m, "cairn_log_antispam_tables") {
		t.Fatalf("/metrics has no Pebble table count: %s", firstLines(m, 5))
	}
}

func firstLines(s string, n int) string {
	lines := strings.SplitN(s, "\n", n+1)
	return strings.Join(lines[:min(n, len(lines))], "\n")
}
