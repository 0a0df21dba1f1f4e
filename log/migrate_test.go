package log

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cairnlog/cairn/format/checkpoint"
	"github.com/cairnlog/cairn/format/migration"
	"github.com/cairnlog/cairn/format/record"
	"github.com/cairnlog/cairn/internal/fielderr"
	"github.com/transparency-dev/merkle/compact"
	"github.com/transparency-dev/merkle/rfc6962"
	"github.com/transparency-dev/tessera/api/layout"
	"golang.org/x/mod/sumdb/note"
)

// migrateLegacy fills posix storage dir with n raw leaves through the
// migration target, records the boundary, and returns the leaves and root.
func migrateLegacy(t *testing.T, dir string, n uint64) ([][]byte, []byte, []byte) {
	t.Helper()
	ctx := context.Background()
	var leaves [][]byte
	rng := (&compact.RangeFactory{Hash: rfc6962.DefaultHasher.HashChildren}).NewEmptyRange(0)
	for i := range n {
		v := []byte(fmt.Sprintf("legacy leaf %d", i))
		leaves = append(leaves, v)
		if err := rng.Append(rfc6962.DefaultHasher.HashLeaf(v), nil); err != nil {
			t.Fatal(err)
		}
	}
	root, err := rng.GetRootHash(nil)
	if err != nil {
		t.Fatal(err)
	}
	target, err := OpenMigrationTarget(ctx, MigrationConfig{Storage: "posix:" + dir})
	if err != nil {
		t.Fatal(err)
	}
	defer target.Close()
	fetch := func(_ context.Context, idx uint64, p uint8) ([]byte, error) {
		w := uint64(layout.EntryBundleWidth)
		if p > 0 {
			w = uint64(p)
		}
		var b []byte
		for _, v := range leaves[idx*layout.EntryBundleWidth : idx*layout.EntryBundleWidth+w] {
			b = binary.BigEndian.AppendUint16(b, uint16(len(v)))
			b = append(b, v...)
		}
		return b, nil
	}
	if err := target.Migrate(ctx, 4, n, root, fetch); err != nil {
		t.Fatalf("Migrate: %v", err)
	}
	b := migration.Boundary{Source: migration.SourceTrillian, TreeID: 7, Size: n, Root: root}
	if err := target.WriteBoundary(ctx, b); err != nil {
		t.Fatal(err)
	}
	enc, _ := b.Encode()
	return leaves, root, enc
}

// TestMigratedStoragePublishesTheMigratedSizeFirstThenTheBoundary: a log
// served from migrated storage publishes its first checkpoint at exactly
// the migrated size and root, serves the boundary, appends it as record
// n (once, across restarts), then appends after it; the storage is then
// refused as a migration target.
func TestMigratedStoragePublishesTheMigratedSizeFirstThenTheBoundary(t *testing.T) {
	dir := t.TempDir()
	const n = 600
	_, root, enc := migrateLegacy(t, dir, n)
	skey, vkey := newKey(t, testOrigin)
	v, err := note.NewVerifier(vkey)
	if err != nil {
		t.Fatal(err)
	}
	published := func() (checkpoint.Checkpoint, error) {
		raw, err := os.ReadFile(filepath.Join(dir, layout.CheckpointPath))
		if err != nil {
			return checkpoint.Checkpoint{}, err
		}
		nt, err := note.Open(raw, note.VerifierList(v))
		if err != nil {
			return checkpoint.Checkpoint{}, err
		}
		return checkpoint.Parse([]byte(nt.Text))
	}
	// Child processes (the antispam index is released only at exit), with
	// the default one-second checkpoint interval: the checkpoint at n stays
	// published that long.
	tl := startChild(t, dir, skey, envChildDefaults+"=1")
	var first checkpoint.Checkpoint
	eventually(t, time.Minute, func() error {
		var err error
		first, err = published()
		return err
	})
	if first.Size != n || !bytes.Equal(first.Root[:], root) {
		t.Fatalf("first checkpoint: size %d root %x, want the migrated %d, %x", first.Size, first.Root, n, root)
	}
	if got := tl.get(t, "/"+migration.Path); !bytes.Equal(got, enc) {
		t.Fatalf("/%s = %q, want %q", migration.Path, got, enc)
	}
	tl.vkey = vkey
	tl.waitForSize(t, vkey, n+1)
	bundle := tl.get(t, "/"+layout.EntriesPath(n/layout.EntryBundleWidth, uint8((n+1)%layout.EntryBundleWidth)))
	rest := bundle
	for range n % layout.EntryBundleWidth {
		rest = rest[2+binary.BigEndian.Uint16(rest):]
	}
	r, err := record.Decode(rest[2 : 2+binary.BigEndian.Uint16(rest)])
	if err != nil || r.ContentType != migration.ContentType || r.Submitter != BoundarySubmitter || !bytes.Equal(r.Payload, enc) {
		t.Fatalf("record %d: %+v, %v; want the boundary record", n, r, err)
	}
	if code, body := postAdd(t, tl.base, []byte("after the boundary"), nil); code != 200 || strings.TrimSpace(body) != fmt.Sprint(n+1) {
		t.Fatalf("append after the boundary: %d %q, want index %d", code, body, n+1)
	}
	tl.waitForSize(t, vkey, n+2)
	tl.stop(t)
	// Restarted: the boundary record is the same leaf, so a duplicate.
	tl = startChild(t, dir, skey, envChildDefaults+"=1")
	if code, body := postAdd(t, tl.base, []byte("after the restart"), nil); code != 200 || strings.TrimSpace(body) != fmt.Sprint(n+2) {
		t.Fatalf("append after a restart: %d %q, want index %d (the boundary appended once)", code, body, n+2)
	}
	tl.waitForSize(t, vkey, n+3)
	tl.stop(t)
	_, err = OpenMigrationTarget(context.Background(), MigrationConfig{Storage: "posix:" + dir})
	if fe, ok := fielderr.As(err); !ok || fe.Field != "Config.Storage" || !errors.Is(err, errServed) {
		t.Fatalf("migrating into a served log: %v, want the Config.Storage refusal", err)
	}
}
