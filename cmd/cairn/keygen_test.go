package main

import (
	"os"
	"strings"
	"testing"

	cairnlog "github.com/cairnlog/cairn/log"
)

// The quick start writes `keygen --out keys/log` into a fresh directory:
// keygen creates keys/, private to its owner.
func TestKeygenCreatesAMissingKeyDirectory(t *testing.T) {
	dir := t.TempDir() + "/keys"
	if _, stderr, code := run(t, nil, "keygen", "--name", "example.com/log", "--out", dir+"/log"); code != 0 {
		t.Fatalf("keygen into a missing directory: exit %d: %s", code, stderr)
	}
	st, err := os.Stat(dir)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o700 {
		t.Errorf("%s has mode %v, want 0700", dir, st.Mode().Perm())
	}
	for _, f := range []string{dir + "/log.key", dir + "/log.vkey"} {
		if _, err := os.Stat(f); err != nil {
			t.Error(err)
		}
	}
}

// keygen --kek writes a key-encryption key the log accepts, owner-only,
// and never over an existing file.
func TestKeygenKEKWritesAPrivateKeyOnce(t *testing.T) {
	p := t.TempDir() + "/keys/log.kek"
	if _, stderr, code := run(t, nil, "keygen", "--kek", "--out", p); code != 0 {
		t.Fatalf("keygen --kek: exit %d: %s", code, stderr)
	}
	st, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Errorf("%s has mode %v, want 0600", p, st.Mode().Perm())
	}
	b, _ := os.ReadFile(p)
	if !strings.HasPrefix(string(b), cairnlog.KEKPrefix) {
		t.Fatalf("KEK file holds %q", b)
	}
	if _, stderr, code := run(t, nil, "keygen", "--kek", "--out", p); code != 2 || !strings.Contains(stderr, "exists") {
		t.Fatalf("second keygen --kek over the file: exit %d: %s", code, stderr)
	}
	if after, _ := os.ReadFile(p); string(after) != string(b) {
		t.Fatal("the KEK was overwritten")
	}
	if _, stderr, code := run(t, nil, "keygen", "--kek", "--name", "x", "--out", p+"2"); code != 2 || !strings.Contains(stderr, "--kek takes only --out") {
		t.Fatalf("keygen --kek --name: exit %d: %s", code, stderr)
	}
}
