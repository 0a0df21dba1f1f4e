package archive

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestDirectoryArchiveStoresOwnerOnlyAndReadsBack(t *testing.T) {
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "a")
	st, err := Open("posix:"+dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := Probe(ctx, st); err != nil {
		t.Fatal(err)
	}
	if err := st.Put(ctx, "tile/entries/x001/234", []byte("bundle")); err != nil {
		t.Fatal(err)
	}
	b, err := st.Get(ctx, "tile/entries/x001/234")
	if err != nil || string(b) != "bundle" {
		t.Fatalf("Get = %q, %v", b, err)
	}
	fi, err := os.Stat(filepath.Join(dir, "tile", "entries", "x001", "234"))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("archived file mode %v, %v; want 0600", fi.Mode().Perm(), err)
	}
	if _, err := st.Get(ctx, "tile/entries/000"); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("missing key: %v, want os.ErrNotExist", err)
	}
	for _, key := range []string{"../escape", "/abs", "tile/../../x"} {
		if err := st.Put(ctx, key, nil); err == nil {
			t.Errorf("Put(%q) outside the archive was accepted", key)
		}
	}
}

func TestOpenRefusesBadSpecs(t *testing.T) {
	for _, tc := range []struct{ spec, want string }{
		{"ftp://x", "want posix:DIR or s3://"},
		{"posix:", "needs a directory"},
		{"s3://bucket/p", "region and credentials"},
	} {
		if _, err := Open(tc.spec, nil); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Open(%q) = %v, want an error naming %q", tc.spec, err, tc.want)
		}
	}
}

func TestProbeRefusesAnUnwritableArchive(t *testing.T) {
	// A file where the archive directory should be: nothing can be written.
	f := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(f, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	st, err := Open("posix:"+f, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := Probe(context.Background(), st); err == nil || !strings.Contains(err.Error(), "not writable") {
		t.Fatalf("Probe = %v, want not writable", err)
	}
}
