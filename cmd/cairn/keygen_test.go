package main

import (
	"os"
	"testing"
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
