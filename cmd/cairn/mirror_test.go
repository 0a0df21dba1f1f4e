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

// TestMirrorServeRefusesBadStartUps: a key file other users can read, a key
// that is not a cosigner key, a storage that is not posix: and a storage
// directory that cannot be created each stop the mirror at start-up, naming
// the flag (never the library's Config field).
func TestMirrorServeRefusesBadStartUps(t *testing.T) {
	dir := t.TempDir()
	for _, args := range [][]string{
		{"keygen", "--witness", "--name", "mirror.test/m", "--out", dir + "/m"},
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
	serve := func(key, storage string, extra ...string) (string, int) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		cmd := exec.CommandContext(ctx, cairnBin, append([]string{"mirror", "serve", "--key", key, "--logs", dir + "/logs.txt", "--storage", storage,
			"--http", "127.0.0.1:0", "--insecure-plaintext"}, extra...)...)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		err := cmd.Run()
		if ctx.Err() != nil {
			t.Fatalf("the mirror started (killed after 60s): %s", stderr.String())
		}
		var ee *exec.ExitError
		if err != nil && !errors.As(err, &ee) {
			t.Fatal(err)
		}
		return stderr.String(), cmd.ProcessState.ExitCode()
	}
	key := dir + "/m.key"
	os.Chmod(key, 0o644)
	if stderr, code := serve(key, "posix:"+dir+"/st"); code != 2 || !strings.Contains(stderr, "--key: ") {
		t.Fatalf("a world-readable key: exit %d, stderr %q", code, stderr)
	}
	os.Chmod(key, 0o600)
	for _, c := range []struct {
		name, key, storage, want string
	}{
		{"a storage directory that is a file", key, "posix:" + filepath.Join(dir, "logs.txt"), "--storage: "},
		{"not a cosigner key", dir + "/garbage.key", "posix:" + dir + "/st", "--key: "},
		{"mysql+s3 without its flags", key, "mysql+s3", "--storage mysql+s3 needs --mysql-dsn"},
		{"an unknown driver", key, "s3:bucket", "--storage \"s3:bucket\": want posix:DIR or mysql+s3"},
	} {
		stderr, code := serve(c.key, c.storage)
		if code != 2 || !strings.Contains(stderr, c.want) || strings.Contains(stderr, "Config.") {
			t.Errorf("%s: exit %d, stderr %q, want %q and no Config field", c.name, code, stderr, c.want)
		}
	}
	// mysql+s3 with every flag goes as far as the object store (nothing
	// listens here): the error names the bucket flag.
	os.WriteFile(dir+"/s3.id", []byte("id\n"), 0o600)
	os.WriteFile(dir+"/s3.secret", []byte("secret\n"), 0o600)
	stderr, code := serve(key, "mysql+s3", "--mysql-dsn", "u:p@tcp(127.0.0.1:1)/db", "--s3-endpoint", "http://127.0.0.1:1",
		"--s3-bucket", "b", "--s3-region", "us-east-1", "--s3-path-style", "--s3-access-key-file", dir+"/s3.id", "--s3-secret-key-file", dir+"/s3.secret")
	if code != 2 || !strings.Contains(stderr, "--s3-bucket: b: ") || strings.Contains(stderr, "Config.") {
		t.Errorf("mysql+s3 on an unreachable store: exit %d, stderr %q", code, stderr)
	}
}
