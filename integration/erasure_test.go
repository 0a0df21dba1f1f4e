package integration

import (
	"bytes"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Issue #13 through the real binary: records of three subjects, erase one
// with cairn erase; cairn get shows the others byte for byte and the erased
// ones as erased, cairn audit passes, an old receipt verifies, the data
// directory holds neither the subject identifiers nor any subject's
// plaintext, and the log does not start without its KEK.
func TestEraseASubjectThroughTheCLI(t *testing.T) {
	kek := t.TempDir() + "/log.kek"
	if _, stderr, code := run(t, nil, "keygen", "--kek", "--out", kek); code != 0 {
		t.Fatalf("keygen --kek: %s", stderr)
	}
	c := newClusterWith(t, clusterOpts{storage: func(dir string) []string {
		return []string{"--storage", "posix:" + dir + "/log", "--kek-file", kek}
	}})
	subjects := []string{"cli-alice-31f0", "cli-bob-8e2d", "cli-carol-44a7"}
	payload := func(s string, i int) string { return fmt.Sprintf(`{"who":"MARKER-%s","i":%d}`, s, i) }
	type sent struct {
		subject string
		body    string
		index   uint64
	}
	var recs []sent
	rdir := t.TempDir()
	for _, s := range subjects {
		for i := range 2 {
			args := []string{"submit", "--grpc", c.grpcAddr, "--insecure-plaintext", "--content-type", "application/json", "--subject", s, "-"}
			if s == subjects[0] && i == 0 {
				args = append(args[:len(args)-1], "--policy", c.policy, "--receipt", rdir+"/r", "--record-out", rdir+"/leaf", "-")
			}
			out, stderr, code := run(t, []byte(payload(s, i)), args...)
			if code != 0 {
				t.Fatalf("submit --subject %s: %d %s", s, code, stderr)
			}
			idx, err := strconv.ParseUint(strings.TrimSpace(out), 10, 64)
			if err != nil {
				t.Fatalf("submit printed %q", out)
			}
			recs = append(recs, sent{s, payload(s, i), idx})
		}
	}
	if _, err := c.add(t, "PLAIN-CLI-CONTROL"); err != nil {
		t.Fatal(err)
	}
	c.waitSize(t, uint64(len(recs)+1), 60*time.Second)
	get := func(index uint64) (string, string, int) {
		return run(t, nil, "get", "--log", "http://"+c.httpAddr, "--policy", c.policy, strconv.FormatUint(index, 10))
	}
	for _, r := range recs {
		if out, stderr, code := get(r.index); code != 0 || !strings.Contains(out, r.body) {
			t.Fatalf("get %d before erasure: %d %s %s", r.index, code, out, stderr)
		}
	}

	erase := []string{"erase", "--grpc", c.grpcAddr, "--insecure-plaintext", "--subject", subjects[0], "--reason", "GDPR art. 17 request 7"}
	out, stderr, code := run(t, nil, erase...)
	if code != 0 || !strings.Contains(out, "erased subject") {
		t.Fatalf("erase: %d %s %s", code, out, stderr)
	}
	if out, stderr, code := run(t, nil, erase...); code != 0 || !strings.Contains(out, "already erased") {
		t.Fatalf("erase again: %d %s %s", code, out, stderr)
	}
	if _, stderr, code := run(t, nil, "erase", "--grpc", c.grpcAddr, "--insecure-plaintext", "--subject", subjects[1]); code != 2 || !strings.Contains(stderr, "--reason is required") {
		t.Fatalf("erase without a reason: %d %s", code, stderr)
	}
	var erasureIndex uint64
	fmt.Sscanf(out[strings.LastIndex(out, "index ")+len("index "):], "%d", &erasureIndex)
	c.waitSize(t, erasureIndex+1, 60*time.Second)

	for _, r := range recs {
		out, stderr, code := get(r.index)
		if r.subject == subjects[0] {
			if code != 0 || !strings.Contains(out, "erased on") || strings.Contains(out, "MARKER") {
				t.Fatalf("get %d after erasure: %d %s %s", r.index, code, out, stderr)
			}
			continue
		}
		if code != 0 || !strings.Contains(out, r.body) {
			t.Fatalf("get %d (%s) after erasure: %d %s %s", r.index, r.subject, code, out, stderr)
		}
	}
	if out, stderr, code := get(erasureIndex); code != 0 || !strings.Contains(out, "application/vnd.cairn.erasure+json") || !strings.Contains(out, "GDPR art. 17 request 7") {
		t.Fatalf("the erasure record: %d %s %s", code, out, stderr)
	}
	if out, stderr, code := run(t, nil, "audit", "--quiet", "--log", "http://"+c.httpAddr, "--policy", c.policy); code != 0 {
		t.Fatalf("audit after erasure: %d %s %s", code, out, stderr)
	}
	if out, stderr, code := run(t, nil, "verify", "receipt", "--policy", c.policy, "--record", rdir+"/leaf", rdir+"/r"); code != 0 {
		t.Fatalf("the old receipt: %d %s %s", code, out, stderr)
	}

	// Nothing of any subject in clear in the data directory; the plain
	// control record is there, so the search looks in the right place.
	found := func(needle string) []string {
		var hits []string
		filepath.WalkDir(c.dir+"/log", func(p string, d fs.DirEntry, err error) error {
			if err == nil && d.Type().IsRegular() {
				if b, err := os.ReadFile(p); err == nil && bytes.Contains(b, []byte(needle)) {
					hits = append(hits, p)
				}
			}
			return nil
		})
		return hits
	}
	if len(found("PLAIN-CLI-CONTROL")) == 0 {
		t.Fatal("the plain control record is not in the data directory")
	}
	for _, s := range subjects {
		for _, needle := range []string{s, "MARKER-" + s} {
			if hits := found(needle); len(hits) > 0 {
				t.Errorf("%q stored in clear: %v", needle, hits)
			}
		}
	}

	// Without its KEK, or with another, the log refuses to start.
	other := t.TempDir() + "/other.kek"
	run(t, nil, "keygen", "--kek", "--out", other)
	base := []string{"log", "serve", "--origin", origin, "--key", c.dir + "/log.key", "--insecure-plaintext",
		"--http", "127.0.0.1:0", "--grpc", "127.0.0.1:0", "--storage", "posix:" + c.dir + "/log"}
	if _, stderr, code := run(t, nil, base...); code != 2 || !strings.Contains(stderr, "--kek-file: required") {
		t.Fatalf("log serve without its KEK: exit %d: %s", code, stderr)
	}
	if _, stderr, code := run(t, nil, append(base, "--kek-file", other)...); code != 2 || !strings.Contains(stderr, "--kek-file") || !strings.Contains(stderr, "does not unwrap") {
		t.Fatalf("log serve with another KEK: exit %d: %s", code, stderr)
	}
}
