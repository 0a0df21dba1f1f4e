package main

import (
	"fmt"
	"os"
	"strings"
	"testing"

	cairnlog "github.com/cairnlog/cairn/log"
	fnote "github.com/transparency-dev/formats/note"
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

// TestKeygenMLDSAWitnessKey: --alg ml-dsa-44 writes a 0x06 seed key and a
// vkey that formats' independent verifier accepts, with matching key IDs; a
// log key cannot be ML-DSA.
func TestKeygenMLDSAWitnessKey(t *testing.T) {
	dir := t.TempDir()
	stdout, stderr, code := run(t, nil, "keygen", "--witness", "--alg", "ml-dsa-44", "--name", "w.example", "--out", dir+"/w")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	skey, _ := os.ReadFile(dir + "/w.key")
	vkey, _ := os.ReadFile(dir + "/w.vkey")
	if strings.TrimSpace(stdout) != strings.TrimSpace(string(vkey)) {
		t.Errorf("printed %q, wrote %q", stdout, vkey)
	}
	// 0x06 || 32-byte seed: the 91-byte file formats' generate_keys --mldsa writes (+ newline).
	if len(strings.TrimSpace(string(skey))) != len("PRIVATE+KEY+w.example+00000000+")+44 {
		t.Errorf("private key is %d bytes: %q", len(skey), skey)
	}
	v, err := fnote.NewVerifierForCosignatureV1(strings.TrimSpace(string(vkey)))
	if err != nil {
		t.Fatal(err)
	}
	s, err := fnote.NewSignerForCosignatureV1(strings.TrimSpace(string(skey)))
	if err != nil {
		t.Fatal(err)
	}
	if s.KeyHash() != v.KeyHash() || !strings.Contains(string(skey), fmt.Sprintf("+%08x+", v.KeyHash())) {
		t.Errorf("key IDs differ: signer %08x, verifier %08x, file %q", s.KeyHash(), v.KeyHash(), skey)
	}
	if _, stderr, code := run(t, nil, "keygen", "--alg", "ml-dsa-44", "--name", "example.com/log", "--out", dir+"/log"); code == 0 || !strings.Contains(stderr, "--alg") {
		t.Errorf("an ML-DSA log key: exit %d, %s", code, stderr)
	}
	if _, stderr, code := run(t, nil, "keygen", "--witness", "--alg", "rsa", "--name", "w", "--out", dir+"/x"); code == 0 || !strings.Contains(stderr, "--alg") {
		t.Errorf("--alg rsa: exit %d, %s", code, stderr)
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
