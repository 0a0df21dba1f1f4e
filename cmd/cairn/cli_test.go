package main

import (
	"bufio"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cairnlog/cairn/internal/testport"
)

const testdata = "../../testdata"

func copyTree(t *testing.T, src string) string {
	t.Helper()
	dst := t.TempDir()
	filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		if d.IsDir() {
			return os.MkdirAll(filepath.Join(dst, rel), 0o755)
		}
		b, _ := os.ReadFile(p)
		return os.WriteFile(filepath.Join(dst, rel), b, 0o644)
	})
	return dst
}

func serveDir(t *testing.T, dir string) string {
	srv := httptest.NewServer(http.FileServer(http.Dir(dir)))
	t.Cleanup(srv.Close)
	return srv.URL
}

func TestVerifyReceiptExitCodes(t *testing.T) {
	pol, leaf, rc := testdata+"/tlog-proof.policy", testdata+"/interop/tlog-proof-index3.entry", testdata+"/interop/tlog-proof-index3.tlog-proof"
	if out, stderr, code := run(t, nil, "verify", "receipt", "--policy", pol, "--record", leaf, rc); code != 0 || !strings.Contains(out, "verified: record at index 3") {
		t.Fatalf("exit %d: %s %s", code, out, stderr)
	}
	other := filepath.Join(t.TempDir(), "other")
	os.WriteFile(other, []byte("hello 5"), 0o644)
	if _, stderr, code := run(t, nil, "verify", "receipt", "--policy", pol, "--record", other, rc); code != 1 || !strings.Contains(stderr, "the record does not match leaf 3") {
		t.Fatalf("another record: exit %d, %s", code, stderr)
	}
	if _, stderr, code := run(t, nil, "verify", "receipt", "--record", leaf, rc); code != 2 || !strings.Contains(stderr, "--policy is required") {
		t.Fatalf("no policy: exit %d, %s", code, stderr)
	}
	if _, _, code := run(t, nil, "verify", "receipt", "--policy", pol, "--record", leaf, "/nonexistent"); code != 2 {
		t.Fatalf("missing receipt: exit %d, want 2", code)
	}
	out, _, code := run(t, nil, "verify", "receipt", "--policy", pol, "--record", leaf, "--output", "json", rc)
	if code != 0 || !strings.Contains(out, `"verified": true`) {
		t.Fatalf("json: %d %s", code, out)
	}
}

func TestAuditAndMonitorExitOneOnTamperAndNameThePlace(t *testing.T) {
	pol := testdata + "/interop.policy"
	dir := copyTree(t, testdata+"/interop/tessera-log-360")
	url := serveDir(t, dir)
	if out, stderr, code := run(t, nil, "audit", "--quiet", "--log", url, "--policy", pol); code != 0 || !strings.Contains(out, "audit PASSED: 360 records") {
		t.Fatalf("clean audit: exit %d %s %s", code, out, stderr)
	}
	if out, stderr, code := run(t, nil, "audit", "--quiet", "--disable-compression", "--log", url, "--policy", pol); code != 0 || !strings.Contains(out, "audit PASSED: 360 records") {
		t.Fatalf("clean audit, --disable-compression: exit %d %s %s", code, out, stderr)
	}
	if out, stderr, code := run(t, nil, "audit", "--quiet", "--no-pipelining", "--log", url, "--policy", pol); code != 0 || !strings.Contains(out, "audit PASSED: 360 records") {
		t.Fatalf("clean audit, --no-pipelining: exit %d %s %s", code, out, stderr)
	}
	state := filepath.Join(t.TempDir(), "monitor.state")
	if out, stderr, code := run(t, nil, "monitor", "--once", "--log", url, "--policy", pol, "--state", state); code != 0 || !strings.Contains(out, "ok: size 360") {
		t.Fatalf("monitor: exit %d %s %s", code, out, stderr)
	}
	b, _ := os.ReadFile(dir + "/tile/entries/001.p/104")
	b[10] ^= 1
	os.WriteFile(dir+"/tile/entries/001.p/104", b, 0o644)
	for _, pipelining := range []string{"", "--no-pipelining"} {
		args := []string{"audit", "--quiet", "--log", url, "--policy", pol}
		if pipelining != "" {
			args = append(args, pipelining)
		}
		if _, stderr, code := run(t, nil, args...); code != 1 || !strings.Contains(stderr, "tile/entries/001.p/104") {
			t.Fatalf("tampered audit %s: exit %d, %s", pipelining, code, stderr)
		}
	}
	if _, stderr, code := run(t, nil, "get", "--log", url, "--policy", pol, "257"); code != 1 || !strings.Contains(stderr, "the record does not match leaf 257") || strings.Contains(stderr, "policy") {
		t.Fatalf("get of a tampered record: exit %d, %s", code, stderr)
	}
	// A checkpoint with a valid log signature but without the witness quorum.
	cp, _ := os.ReadFile(dir + "/checkpoint")
	lines := strings.Split(string(cp), "\n")
	os.WriteFile(dir+"/checkpoint", []byte(strings.Join(lines[:5], "\n")+"\n"), 0o644)
	if out, _, code := run(t, nil, "monitor", "--once", "--log", url, "--policy", pol, "--state", state); code != 1 || !strings.Contains(out, "ALARM") || !strings.Contains(out, "quorum") {
		t.Fatalf("monitor without quorum: exit %d %s", code, out)
	}
	if _, stderr, code := run(t, nil, "checkpoint", "--log", url, "--policy", pol); code != 1 || !strings.Contains(stderr, "quorum") {
		t.Fatalf("checkpoint without quorum: exit %d %s", code, stderr)
	}
	if _, _, code := run(t, nil, "checkpoint", "--log", "http://127.0.0.1:1", "--policy", pol); code != 2 {
		t.Fatalf("unreachable log: exit %d, want 2", code)
	}
}

// TestSubmitFailsOverAndItsReceiptVerifies runs the real log and the real
// CLI: two endpoints, the first closed; the receipt verifies offline.
func TestSubmitFailsOverAndItsReceiptVerifies(t *testing.T) {
	dir := t.TempDir()
	if _, stderr, code := run(t, nil, "keygen", "--name", "example.test/cli", "--out", dir+"/log"); code != 0 {
		t.Fatal(stderr)
	}
	vkey, _ := os.ReadFile(dir + "/log.vkey")
	os.WriteFile(dir+"/policy", []byte("log "+strings.TrimSpace(string(vkey))+"\nquorum none\n"), 0o644)
	httpAddr, grpcAddr, dead := testport.Addr(t), testport.Addr(t), testport.Addr(t)
	cmd := exec.Command(cairnBin, "log", "serve", "--origin", "example.test/cli", "--key", dir+"/log.key", "--storage", "posix:"+dir+"/st",
		"--http", httpAddr, "--grpc", grpcAddr, "--insecure-plaintext", "--checkpoint-interval", "200ms")
	stderr, _ := cmd.StderrPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	ready := make(chan bool, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			if strings.Contains(sc.Text(), "log serving") {
				ready <- true
			}
		}
	}()
	select {
	case <-ready:
	case <-time.After(60 * time.Second):
		t.Fatal("log did not start")
	}
	rec := filepath.Join(dir, "event.json")
	os.WriteFile(rec, []byte(`{"event":"login","user":"alice"}`), 0o644)
	out, errOut, code := run(t, nil, "submit", "--grpc", dead+","+grpcAddr, "--insecure-plaintext", "--content-type", "application/json",
		"--policy", dir+"/policy", "--receipt", dir+"/r.tlog-proof", "--record-out", dir+"/r.leaf", rec)
	if code != 0 || strings.TrimSpace(out) != "0" {
		t.Fatalf("submit: exit %d, %q %s", code, out, errOut)
	}
	out, errOut, code = run(t, nil, "verify", "receipt", "--policy", dir+"/policy", "--record", dir+"/r.leaf", dir+"/r.tlog-proof")
	if code != 0 || !strings.Contains(out, "submitter     anonymous") || !strings.Contains(out, `{"event":"login","user":"alice"}`) {
		t.Fatalf("verify: exit %d %s %s", code, out, errOut)
	}
	out, _, code = run(t, nil, "get", "--log", "http://"+httpAddr, "--policy", dir+"/policy", "--raw", "0")
	leaf, _ := os.ReadFile(dir + "/r.leaf")
	if code != 0 || out != string(leaf) {
		t.Fatalf("get --raw: exit %d, differs from the submitted leaf", code)
	}
	if out, errOut, code := run(t, nil, "audit", "--quiet", "--log", "http://"+httpAddr, "--policy", dir+"/policy"); code != 0 {
		t.Fatalf("audit: %d %s %s", code, out, errOut)
	}
	cmd.Process.Signal(syscall.SIGTERM)
	if err := cmd.Wait(); err != nil {
		t.Fatalf("log did not exit cleanly: %v", err)
	}
}
