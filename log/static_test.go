package log

import (
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"
)

// TestStaticFileReadsTheStoredBytes: a tile or bundle opened for writeFile
// reads as the file (the path of writers that cannot sendfile, such as
// TLS connections), knows its size, and a missing file or a directory is
// refused (the caller falls back to Tessera's reader, which answers 404).
func TestStaticFileReadsTheStoredBytes(t *testing.T) {
	dir := t.TempDir()
	want := bytes.Repeat([]byte("0123456789abcdef"), 4096) // larger than one read
	if err := os.MkdirAll(filepath.Join(dir, "tile", "0"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "tile", "0", "000"), want, 0o644); err != nil {
		t.Fatal(err)
	}
	o := staticOpener{dir: dir}
	f, err := o.open("tile/0/000")
	if err != nil {
		t.Fatal(err)
	}
	if f.Size() != int64(len(want)) {
		t.Errorf("Size %d, want %d", f.Size(), len(want))
	}
	got, err := io.ReadAll(f)
	if err != nil || !bytes.Equal(got, want) {
		t.Fatalf("read %d bytes (%v), want the %d stored", len(got), err, len(want))
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := o.open("tile/0/001"); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a missing tile: %v, want os.ErrNotExist", err)
	}
	if f, err := o.open("tile/0"); err == nil {
		f.Close()
		t.Error("a directory was opened as a tile")
	}
}
