package integration

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestRetentionPrunesWhileReceiptsAndWitnessesKeepWorking runs the real
// binary with --retention on both drivers, with three witnesses: the minimum
// index moves to the bundle boundary, pruned bundles answer 410 on every
// frontend, old receipts verify offline, cairn get exits 3, cairn audit
// --archive passes, witnesses keep cosigning, and a flipped byte in the
// archive is reported at its index.
func TestRetentionPrunesWhileReceiptsAndWitnessesKeepWorking(t *testing.T) {
	t.Run("posix", func(t *testing.T) {
		dir := t.TempDir()
		arch := "posix:" + filepath.Join(dir, "archive")
		pol := writePolicy(t, dir, arch)
		c := newClusterWith(t, clusterOpts{storage: func(d string) []string {
			return []string{"--storage", "posix:" + d + "/log", "--retention", pol, "--retention-interval", "500ms"}
		}})
		testRetention(t, c, arch, nil, func(key string) string { return filepath.Join(dir, "archive", key) })
	})
	t.Run("mysql+s3", func(t *testing.T) {
		dir := t.TempDir()
		arch := "s3://cairn-it-archive/log1"
		pol := writePolicy(t, dir, arch)
		c, e := newHACluster(t, "--retention", pol, "--retention-interval", "500ms")
		testRetention(t, c, arch, []string{"--archive-s3-endpoint", e.s3.Endpoint, "--archive-s3-region", "us-east-1", "--archive-s3-path-style",
			"--archive-s3-access-key-file", e.s3.AccessKeyFile, "--archive-s3-secret-key-file", e.s3.SecretKeyFile}, nil)
	})
}

func writePolicy(t *testing.T, dir, arch string) string {
	p := filepath.Join(dir, "retention.txt")
	mustWrite(t, p, []byte("# integration: records expire seconds after integration\nkeep 3s\ngrace 1s\nthen archive "+arch+"\n"))
	return p
}

func testRetention(t *testing.T, c *cluster, arch string, archFlags []string, archFile func(key string) string) {
	// A receipt issued before anything is pruned.
	rdir := t.TempDir()
	if out, stderr, code := run(t, []byte("the first record"), "submit", "--grpc", c.grpcAddr, "--insecure-plaintext",
		"--policy", c.policy, "--receipt", rdir+"/r", "--record-out", rdir+"/leaf", "-"); code != 0 {
		t.Fatalf("submit: %d %s %s", code, out, stderr)
	}
	var wg sync.WaitGroup
	sem := make(chan struct{}, 16)
	for i := range 600 {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			if _, err := c.add(t, fmt.Sprintf("record %d", i)); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	c.waitSize(t, 601, 60*time.Second)

	// Two full bundles expire: the minimum index is 512 on every frontend,
	// their bundles answer 410 and the hash tiles 200 (cairn get 520 below
	// reads the retained bundle).
	for _, addr := range c.httpAddrs {
		base := "http://" + addr
		eventually(t, 60*time.Second, func() error {
			if m := get(t, base+"/minimum-index"); m != "512\n" {
				return fmt.Errorf("%s/minimum-index = %q, want 512", base, m)
			}
			return answers(base+"/tile/entries/001", http.StatusGone)
		})
		if err := answers(base+"/tile/0/000", http.StatusOK); err != nil {
			t.Fatal(err)
		}
	}
	// Once the grace is over both bundles are in the archive and verify.
	auditArgs := append([]string{"audit", "--quiet", "--log", "http://" + c.httpAddr, "--policy", c.policy, "--archive", arch}, archFlags...)
	eventually(t, 60*time.Second, func() error {
		out, stderr, code := run(t, nil, auditArgs...)
		if code != 0 || !strings.Contains(out, "pruned: records 0-511 are below the minimum index 512") || !strings.Contains(out, "2 of their bundles verified in the archive") {
			return fmt.Errorf("audit: %d %s %s", code, out, stderr)
		}
		return nil
	})
	if out, stderr, code := run(t, nil, "verify", "receipt", "--policy", c.policy, "--record", rdir+"/leaf", rdir+"/r"); code != 0 {
		t.Fatalf("an old receipt no longer verifies after the prune: %d %s %s", code, out, stderr)
	}
	if _, stderr, code := run(t, nil, "get", "--log", "http://"+c.httpAddr, "--policy", c.policy, "5"); code != 3 ||
		!strings.Contains(stderr, "pruned: below minimum index 512, archived at "+arch) {
		t.Fatalf("get of a pruned record: exit %d, %s", code, stderr)
	}
	if _, stderr, code := run(t, nil, "get", "--log", "http://"+c.httpAddr, "--policy", c.policy, "520"); code != 0 {
		t.Fatalf("get of a retained record: exit %d, %s", code, stderr)
	}
	// Witnesses keep cosigning across the prune.
	_, size, _ := c.checkpoint(t)
	if _, err := c.add(t, "after the prune"); err != nil {
		t.Fatal(err)
	}
	if _, ws := c.waitSize(t, size+1, 60*time.Second); len(ws) < 2 {
		t.Fatalf("checkpoint after the prune carries %d cosignatures, the policy needs 2", len(ws))
	}
	if archFile == nil {
		return // the s3:// archive's tamper detection is proven in log/ (TestRetentionPrunesArchivesAndKeepsEveryProof)
	}
	// One flipped byte in the archive is reported at its index.
	path := archFile("tile/entries/001")
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)-1] ^= 1 // the last byte of entry 511
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	if out, stderr, code := run(t, nil, auditArgs...); code != 1 || !strings.Contains(stderr, "entry 511 ") {
		t.Fatalf("audit of a tampered archive: exit %d %s %s, want 1 naming entry 511", code, out, stderr)
	}
}

func get(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		return err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}
