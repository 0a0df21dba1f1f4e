package main

import (
	"bufio"
	"bytes"
	"io"
	"io/fs"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cairnlog/cairn/internal/testport"

	"github.com/cairnlog/cairn/internal/devpki"
	"github.com/spf13/pflag"
)

// logServeArgs are the flags of a plaintext loopback log on dir's key.
func logServeArgs(t *testing.T, dir string) []string {
	t.Helper()
	if _, stderr, code := run(t, nil, "keygen", "--name", "example.com/log", "--out", dir+"/log"); code != 0 {
		t.Fatal(stderr)
	}
	return []string{"log", "serve", "--origin", "example.com/log", "--key", dir + "/log.key", "--storage", "posix:" + dir + "/st",
		"--http", "127.0.0.1:0", "--grpc", "127.0.0.1:0"}
}

// A client CA without an access file would verify certificates and then let
// every caller append anonymously (#20): the log refuses to start.
func TestLogServeRefusesClientCAWithoutAccess(t *testing.T) {
	dir := t.TempDir()
	args := logServeArgs(t, dir)
	ca, err := devpki.NewCA("test CA")
	if err != nil {
		t.Fatal(err)
	}
	srv, _ := ca.Loopback("log")
	if err := srv.WriteFiles(dir+"/server.pem", dir+"/server.key"); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(dir+"/ca.pem", ca.PEM, 0o644)
	_, stderr, code := run(t, nil, append(args, "--tls-cert", dir+"/server.pem", "--tls-key", dir+"/server.key", "--tls-client-ca", dir+"/ca.pem")...)
	if code != 2 || !strings.Contains(stderr, "--tls-client-ca: needs --access") {
		t.Fatalf("exit %d, stderr %q; want exit 2 naming --tls-client-ca and --access", code, stderr)
	}
	if _, err := os.Stat(dir + "/st/checkpoint"); err == nil {
		t.Error("a log was created despite the start-up error")
	}
}

// Secret key files other users can read are refused, and the message says
// how to fix them; an access file others can write is refused too.
func TestLogServeRefusesSecretFilesOthersCanRead(t *testing.T) {
	dir := t.TempDir()
	args := logServeArgs(t, dir)
	ca, err := devpki.NewCA("test CA")
	if err != nil {
		t.Fatal(err)
	}
	srv, _ := ca.Loopback("log")
	if err := srv.WriteFiles(dir+"/server.pem", dir+"/server.key"); err != nil {
		t.Fatal(err)
	}
	loose := func(name string, b []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
		os.Chmod(p, 0o644) // whatever the test's umask
		return p
	}
	key, _ := os.ReadFile(dir + "/log.key")
	serverKey, _ := os.ReadFile(dir + "/server.key")
	s3ID, s3Secret := loose("s3.id", []byte("minio\n")), loose("s3.secret", []byte("minio123\n"))
	access := loose("access.txt", []byte("# cairn access file v1\n"))
	os.Chmod(access, 0o666)
	aws := []string{"--storage", "mysql+s3", "--mysql-dsn", "u:p@tcp(127.0.0.1:1)/x", "--s3-bucket", "b", "--s3-region", "r",
		"--s3-access-key-file", s3ID, "--s3-secret-key-file", s3Secret, "--insecure-plaintext"}
	for _, c := range []struct {
		name  string
		extra []string
		want  string
	}{
		{"log key", []string{"--key", loose("log-loose.key", key), "--insecure-plaintext"}, "--key: " + dir + "/log-loose.key is accessible by other users (mode 0644); a secret key must be private: chmod 600 " + dir + "/log-loose.key"},
		{"TLS key", []string{"--tls-cert", dir + "/server.pem", "--tls-key", loose("server-loose.key", serverKey)}, "--tls-key: " + dir + "/server-loose.key is accessible by other users (mode 0644); a secret key must be private: chmod 600"},
		{"S3 secret", aws, "--s3-secret-key-file: " + s3Secret + " is accessible by other users (mode 0644); a secret key must be private: chmod 600"},
		{"access file", []string{"--access", access, "--insecure-plaintext"}, "--access: " + access + " is writable by other users (mode 0666), who could grant themselves any role: chmod 600"},
	} {
		_, stderr, code := run(t, nil, append(append([]string{}, args...), c.extra...)...)
		if code != 2 || !strings.Contains(stderr, c.want) {
			t.Errorf("%s: exit %d, stderr %q; want exit 2 with %q", c.name, code, stderr, c.want)
		}
	}
}

// A served POSIX log's files and directories are the log user's alone (#20):
// Tessera creates tiles 0644 in 0755 directories, so cairn log serve runs
// with umask 0077 and creates its storage directory 0700.
func TestServedLogFilesAreOwnerOnly(t *testing.T) {
	dir := t.TempDir()
	httpAddr, grpcAddr := testport.Addr(t), testport.Addr(t)
	args := logServeArgs(t, dir)
	args = append(args[:len(args)-4], "--http", httpAddr, "--grpc", grpcAddr, "--insecure-plaintext", "--checkpoint-interval", "200ms")
	cmd := exec.Command(cairnBin, args...)
	stderr, _ := cmd.StderrPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	go io.Copy(io.Discard, bufio.NewReader(stderr))

	base := "http://" + httpAddr
	deadline := time.Now().Add(60 * time.Second)
	var added bool
	for time.Now().Before(deadline) {
		if !added {
			if resp, err := http.Post(base+"/add", "text/plain", strings.NewReader("private record")); err == nil {
				resp.Body.Close()
				added = resp.StatusCode == http.StatusOK
			}
		} else if resp, err := http.Get(base + "/checkpoint"); err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if lines := strings.Split(string(b), "\n"); len(lines) > 1 && lines[1] == "1" {
				break
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	if time.Now().After(deadline) {
		t.Fatal("the record was not published within 60s")
	}
	cmd.Process.Signal(syscall.SIGTERM)
	if err := cmd.Wait(); err != nil {
		t.Fatalf("log did not exit cleanly: %v", err)
	}

	var files int
	err := filepath.WalkDir(dir+"/st", func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		if perm := info.Mode().Perm(); perm&0o077 != 0 {
			t.Errorf("%s: mode %#o, want no access for group or others", path, perm)
		}
		if !d.IsDir() {
			files++
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"checkpoint", "tile/entries/000.p/1"} {
		if _, err := os.Stat(filepath.Join(dir, "st", want)); err != nil {
			t.Errorf("the walk did not cover %s: %v", want, err)
		}
	}
	if files < 3 {
		t.Fatalf("only %d files under the storage directory", files)
	}
}

// docs/log.md lists every flag of cairn log serve with its variable.
func TestLogDocsListEveryServeFlag(t *testing.T) {
	doc, err := os.ReadFile("../../docs/log.md")
	if err != nil {
		t.Fatal(err)
	}
	newLogServeCmd().Flags().VisitAll(func(f *pflag.Flag) {
		if f.Name == "help" {
			return
		}
		row := "| `--" + f.Name + "` | `" + envName(f.Name) + "` |"
		if !bytes.Contains(doc, []byte(row)) {
			t.Errorf("docs/log.md has no row %q", row)
		}
	})
}
