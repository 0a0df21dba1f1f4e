package main

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/cairnlog/cairn/index"
)

// The demo's index file is named by the index schema version, and the
// files an earlier version left (which index serve would refuse) are
// removed, so make run rebuilds its index after an upgrade by itself.
func TestDevIndexFileCarriesTheSchemaVersionAndReplacesOlderOnes(t *testing.T) {
	dir := t.TempDir()
	old := []string{"dev-index.db", "dev-index.db-wal", "dev-index.db-shm"}
	for _, name := range old {
		if err := os.WriteFile(filepath.Join(dir, name), []byte("version 1"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	keep := filepath.Join(dir, "policy.txt")
	if err := os.WriteFile(keep, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	got := devIndexDB(dir)
	if want := filepath.Join(dir, fmt.Sprintf("dev-index-v%d.db", index.SchemaVersion)); got != want {
		t.Fatalf("devIndexDB = %s, want %s", got, want)
	}
	for _, name := range old {
		if _, err := os.Stat(filepath.Join(dir, name)); !os.IsNotExist(err) {
			t.Errorf("%s of an older schema is still there (%v)", name, err)
		}
	}
	if _, err := os.Stat(keep); err != nil {
		t.Errorf("an unrelated file was removed: %v", err)
	}
}
