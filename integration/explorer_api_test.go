package integration

// The explorer's JSON API (/ui/api/…) against a real log with three
// witnesses: what it serves verifies with x/mod's sumdb/note and sumdb/tlog
// alone, bad requests get their status and a message, and every answer
// carries the explorer's security headers.

import (
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cairnlog/cairn/internal/testport"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

func getJSON(t *testing.T, url string, v any) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s %s", url, resp.Status, b)
	}
	if csp := resp.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "frame-ancestors 'none'") || resp.Header.Get("X-Content-Type-Options") != "nosniff" {
		t.Errorf("GET %s: security headers missing (CSP %q)", url, csp)
	}
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatalf("GET %s: %v\n%s", url, err, b)
	}
}

func TestExplorerAPIServesWhatXModVerifies(t *testing.T) {
	c := newClusterWith(t, clusterOpts{loopback: true})
	for i := range 5 {
		if _, err := c.add(t, fmt.Sprintf("explorer api record %d", i)); err != nil {
			t.Fatal(err)
		}
	}
	c.waitSize(t, 5, time.Minute)
	base := "http://" + c.httpAddr + "/ui/api/"

	var st struct {
		Origin    string `json:"origin"`
		TreeSize  uint64 `json:"tree_size"`
		Quorum    string `json:"quorum"`
		Policy    string `json:"policy"`
		Witnesses []struct {
			Name string `json:"name"`
		} `json:"witnesses"`
		History []struct {
			Records uint64 `json:"records"`
		} `json:"history"`
	}
	getJSON(t, base+"status", &st)
	if st.Origin != origin || st.TreeSize < 5 || st.Quorum != "regions" || len(st.Witnesses) != 3 {
		t.Errorf("status: %+v", st)
	}
	if !strings.Contains(st.Policy, "log "+c.logVKey) {
		t.Errorf("the served policy does not name the log key %s:\n%s", c.logVKey, st.Policy)
	}
	if len(st.History) == 0 {
		t.Error("no history points")
	}

	var rec struct {
		Index    uint64   `json:"index"`
		Leaf     []byte   `json:"leaf"`
		LeafHash string   `json:"leaf_hash"`
		TreeSize int64    `json:"tree_size"`
		Proof    [][]byte `json:"proof"`
		Receipt  string   `json:"receipt"`
	}
	getJSON(t, base+"record/3", &rec)
	// Independently: the leaf hash, the checkpoint signature, the proof.
	h := tlog.RecordHash(rec.Leaf)
	if rec.LeafHash != hex.EncodeToString(h[:]) {
		t.Errorf("leaf_hash %s, x/mod tlog.RecordHash %x", rec.LeafHash, h)
	}
	_, cp, ok := strings.Cut(rec.Receipt, "\n\n")
	if !ok {
		t.Fatalf("receipt without a checkpoint:\n%s", rec.Receipt)
	}
	v, err := note.NewVerifier(c.logVKey)
	if err != nil {
		t.Fatal(err)
	}
	n, err := note.Open([]byte(cp), note.VerifierList(v))
	if err != nil {
		t.Fatalf("the record's checkpoint does not verify with x/mod note: %v", err)
	}
	lines := strings.Split(n.Text, "\n")
	size, _ := strconv.ParseInt(lines[1], 10, 64)
	rootB, err := base64.StdEncoding.DecodeString(lines[2])
	if err != nil || size != rec.TreeSize {
		t.Fatalf("checkpoint %q: size %d (record says %d), root: %v", n.Text, size, rec.TreeSize, err)
	}
	var root tlog.Hash
	copy(root[:], rootB)
	proof := make(tlog.RecordProof, len(rec.Proof))
	for i, p := range rec.Proof {
		copy(proof[i][:], p)
	}
	if err := tlog.CheckRecord(proof, size, root, int64(rec.Index), h); err != nil {
		t.Errorf("x/mod tlog.CheckRecord: %v", err)
	}

	var list struct {
		Records []struct {
			Index uint64 `json:"index"`
			State string `json:"state"`
		} `json:"records"`
	}
	getJSON(t, base+"records?before=3&limit=2", &list)
	if len(list.Records) != 2 || list.Records[0].Index != 2 || list.Records[1].Index != 1 || list.Records[0].State != "plain" {
		t.Errorf("records before 3, limit 2: %+v", list.Records)
	}

	for _, tc := range []struct {
		path string
		code int
		want string
	}{
		{"record/x", http.StatusBadRequest, `"x" is not an entry index`},
		{"record/999", http.StatusNotFound, "999"},
		{"records?limit=0", http.StatusBadRequest, "limit"},
		{"records?limit=101", http.StatusBadRequest, "limit"},
		{"records?before=-1", http.StatusBadRequest, "before"},
	} {
		resp, err := http.Get(base + tc.path)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != tc.code || !strings.Contains(string(b), tc.want) {
			t.Errorf("GET /ui/api/%s: %s %q, want %d naming %q", tc.path, resp.Status, b, tc.code, tc.want)
		}
	}
}

// TestLogServeRefusesABadIndexURL: --index-url must be an http(s) URL; the
// error names the flag and nothing starts.
func TestLogServeRefusesABadIndexURL(t *testing.T) {
	dir := t.TempDir()
	if _, stderr, code := run(t, nil, "keygen", "--name", "bad.test/log", "--out", dir+"/log"); code != 0 {
		t.Fatal(stderr)
	}
	_, stderr, code := run(t, nil, "log", "serve", "--origin", "bad.test/log", "--key", dir+"/log.key", "--storage", "posix:"+dir+"/log",
		"--http", testport.Addr(t), "--grpc", testport.Addr(t), "--insecure-plaintext", "--index-url", "ftp://index.example/")
	if code != 2 || !strings.Contains(stderr, "--index-url") || !strings.Contains(stderr, "ftp://index.example/") {
		t.Errorf("exit %d, stderr %q; want 2 naming --index-url and the value", code, stderr)
	}
}
