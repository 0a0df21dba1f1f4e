package main

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestWitnessServeRefusesBadStartUps: a key file other users can read, a
// state directory that cannot be created and a key that is not a witness
// key each stop the witness at start-up, naming the flag (never the
// library's Config field).
func TestWitnessServeRefusesBadStartUps(t *testing.T) {
	dir := t.TempDir()
	for _, args := range [][]string{
		{"keygen", "--witness", "--name", "witness.test/w", "--out", dir + "/w"},
		{"keygen", "--name", "example.test/log", "--out", dir + "/log"},
	} {
		if _, stderr, code := run(t, nil, args...); code != 0 {
			t.Fatalf("%v: exit %d: %s", args, code, stderr)
		}
	}
	vkey, err := os.ReadFile(dir + "/log.vkey")
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(dir+"/logs.txt", []byte("logs/v0\nvkey "+string(vkey)), 0o644)
	os.WriteFile(dir+"/garbage.key", []byte("PRIVATE+KEY+not-a-key\n"), 0o600)
	// serve runs a witness that must refuse to start; one that starts
	// anyway is killed at the deadline and reported.
	serve := func(key, db string) (string, int) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		cmd := exec.CommandContext(ctx, cairnBin, "witness", "serve", "--key", key, "--logs", dir+"/logs.txt", "--db", db,
			"--http", "127.0.0.1:0", "--insecure-plaintext")
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		err := cmd.Run()
		if ctx.Err() != nil {
			t.Fatalf("the witness started (killed after 60s): %s", stderr.String())
		}
		var ee *exec.ExitError
		if err != nil && !errors.As(err, &ee) {
			t.Fatal(err)
		}
		return stderr.String(), cmd.ProcessState.ExitCode()
	}

	key := dir + "/w.key"
	if err := os.Chmod(key, 0o644); err != nil {
		t.Fatal(err)
	}
	if stderr, code := serve(key, dir+"/st"); code != 2 || !strings.Contains(stderr, "--key: ") || !strings.Contains(stderr, "chmod 600 "+key) {
		t.Fatalf("a world-readable key: exit %d, stderr %q", code, stderr)
	}
	if _, err := os.Stat(dir + "/st"); err == nil {
		t.Error("the state directory was created despite the refused key")
	}
	os.Chmod(key, 0o600)

	for _, c := range []struct {
		name, key, db, want string
	}{
		{"a state directory that is a file", key, filepath.Join(dir, "logs.txt"), "--db: creating "},
		{"not a witness key", dir + "/garbage.key", dir + "/st", "--key: not a witness private key"},
	} {
		stderr, code := serve(c.key, c.db)
		if code != 2 || !strings.Contains(stderr, c.want) || strings.Contains(stderr, "Config.") {
			t.Errorf("%s: exit %d, stderr %q, want %q and no Config field", c.name, code, stderr, c.want)
		}
	}
}
