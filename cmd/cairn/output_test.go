package main

import (
	"crypto/rand"
	"crypto/tls"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/cairnlog/cairn/internal/testport"

	"github.com/cairnlog/cairn/format/record"
	"github.com/cairnlog/cairn/internal/devpki"
	"github.com/transparency-dev/merkle/compact"
	"github.com/transparency-dev/merkle/rfc6962"
	"golang.org/x/mod/sumdb/note"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
)

// staticLog writes a tlog-tiles log of leaves (fewer than 256) with a
// checkpoint signed by a fresh key, serves it, and returns its URL and the
// path of a policy trusting that key (no witnesses).
func staticLog(t *testing.T, leaves ...[]byte) (string, string) {
	t.Helper()
	dir := t.TempDir()
	write := func(path string, b []byte) {
		p := filepath.Join(dir, path)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	var bundle, tile []byte
	rng := (&compact.RangeFactory{Hash: rfc6962.DefaultHasher.HashChildren}).NewEmptyRange(0)
	for _, l := range leaves {
		bundle = append(binary.BigEndian.AppendUint16(bundle, uint16(len(l))), l...)
		h := rfc6962.DefaultHasher.HashLeaf(l)
		tile = append(tile, h...)
		if err := rng.Append(h, nil); err != nil {
			t.Fatal(err)
		}
	}
	n := len(leaves)
	write(fmt.Sprintf("tile/entries/000.p/%d", n), bundle)
	write(fmt.Sprintf("tile/0/000.p/%d", n), tile)
	root, err := rng.GetRootHash(nil)
	if err != nil {
		t.Fatal(err)
	}
	skey, vkey, err := note.GenerateKey(rand.Reader, "example.test/static")
	if err != nil {
		t.Fatal(err)
	}
	signer, _ := note.NewSigner(skey)
	cp, err := note.Sign(&note.Note{Text: fmt.Sprintf("example.test/static\n%d\n%s\n", n, base64.StdEncoding.EncodeToString(root))}, signer)
	if err != nil {
		t.Fatal(err)
	}
	write("checkpoint", cp)
	pol := filepath.Join(t.TempDir(), "policy")
	os.WriteFile(pol, []byte("log "+vkey+"\nquorum none\n"), 0o644)
	return serveDir(t, dir), pol
}

func mustEncode(t *testing.T, r record.Record) []byte {
	t.Helper()
	b, err := r.Encode()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestGetQuotesTerminalControlsInRecords: a payload with \r, ANSI escapes,
// a newline, C1 controls and bidi overrides cannot redraw or fake a line of
// cairn get's text output; the JSON output keeps it exactly.
func TestGetQuotesTerminalControlsInRecords(t *testing.T) {
	payload := "ok\r\x1b[2K\x1b[1Asubmitter     admin\n\u202eevil\u2066\u0085\u009b31m"
	// The envelope refuses controls in its text fields (format/record), so the
	// payload is where hostile bytes can be.
	leaf := mustEncode(t, record.Record{Submitter: "mallory", IdempotencyKey: "k", ContentType: "text/plain", Payload: []byte(payload)})
	url, pol := staticLog(t, leaf)

	out, stderr, code := run(t, nil, "get", "--log", url, "--policy", pol, "0")
	if code != 0 {
		t.Fatalf("get: exit %d, %s", code, stderr)
	}
	for _, bad := range []string{"\r", "\x1b", "\u202e", "\u2066", "\u0085", "\u009b"} {
		if strings.Contains(out, bad) {
			t.Errorf("the text output contains %q raw:\n%s", bad, out)
		}
	}
	if n := strings.Count(out, "\nsubmitter"); n != 1 {
		t.Errorf("%d lines start with submitter, want 1:\n%s", n, out)
	}
	for _, want := range []string{
		`submitter     mallory`,
		`idempotency   k`,
		`payload       ok\r\x1b[2K\x1b[1Asubmitter     admin\n\u202eevil\u2066\u0085\u009b31m`,
	} {
		if !strings.Contains(out, want+"\n") {
			t.Errorf("the text output lacks the line %q:\n%s", want, out)
		}
	}

	out, _, code = run(t, nil, "get", "--log", url, "--policy", pol, "--output", "json", "0")
	var j getJSON
	if err := json.Unmarshal([]byte(out), &j); err != nil || code != 0 {
		t.Fatalf("json: exit %d, %v: %s", code, err, out)
	}
	if j.PayloadText == nil || *j.PayloadText != payload || string(j.Payload) != payload || j.Submitter != "mallory" {
		t.Fatalf("the JSON output changed the record: %+v", j)
	}
}

func TestSafeTextEscapesOnlyWhatIsNotPrintable(t *testing.T) {
	for in, want := range map[string]string{
		`{"a":"b \"c\" \\"}`: `{"a":"b \"c\" \\"}`,
		"héllo wörld ✓ 日本":   "héllo wörld ✓ 日本",
		"tab\there":          `tab\there`,
		"\x00\x7f\xff":       `\x00\x7f\xff`,
		"\u200b\u2028\u202a": `\u200b\u2028\u202a`,
	} {
		if got := safeText(in); got != want {
			t.Errorf("safeText(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestOneRuleForIndicesAndExitCodes: an index that is not a number names the
// argument; an index at or beyond the tree size is "not in the log at this
// size" (exit 2) in get and verify inclusion alike; a changed record is
// "the record does not match leaf N" (exit 1).
func TestOneRuleForIndicesAndExitCodes(t *testing.T) {
	a := mustEncode(t, record.Record{Submitter: "alice", Payload: []byte("a")})
	b := mustEncode(t, record.Record{Submitter: "bob", Payload: []byte("b")})
	url, pol := staticLog(t, a, b)

	for _, arg := range []string{"12abc", "1e3", "0x1", " 1", ""} {
		_, stderr, code := run(t, nil, "get", "--log", url, "--policy", pol, arg)
		if code != 2 || !strings.Contains(stderr, fmt.Sprintf("INDEX %q is not a record index", arg)) {
			t.Errorf("get %q: exit %d, %s", arg, code, stderr)
		}
	}
	for _, args := range [][]string{
		{"get", "--log", url, "--policy", pol, "2"},
		{"verify", "inclusion", "--log", url, "--policy", pol, "--index", "2"},
	} {
		_, stderr, code := run(t, nil, args...)
		if code != 2 || !strings.Contains(stderr, "index 2 is not in the log at this size 2") {
			t.Errorf("%s beyond the tree: exit %d, %s", args[0], code, stderr)
		}
	}
	changed := filepath.Join(t.TempDir(), "changed.leaf")
	os.WriteFile(changed, mustEncode(t, record.Record{Submitter: "bob", Payload: []byte("B")}), 0o644)
	_, stderr, code := run(t, nil, "verify", "inclusion", "--log", url, "--policy", pol, "--index", "1", "--record", changed)
	if code != 1 || !strings.Contains(stderr, "the record does not match leaf 1") || strings.Contains(stderr, "policy") {
		t.Errorf("a changed record: exit %d, %s", code, stderr)
	}
	ok := filepath.Join(t.TempDir(), "b.leaf")
	os.WriteFile(ok, b, 0o644)
	out, stderr, code := run(t, nil, "verify", "inclusion", "--log", url, "--policy", pol, "--index", "1", "--record", ok, "--output", "json")
	var j verifyInclusionJSON
	if err := json.Unmarshal([]byte(out), &j); code != 0 || err != nil || !j.Verified || j.LeafHash != b64(rfc6962.DefaultHasher.HashLeaf(b)) {
		t.Errorf("the right record: exit %d, %s %s", code, out, stderr)
	}
}

// TestAuditFailsOnlyWhenTheDataIsWrong: an audit that cannot reach the log,
// or reaches it with the wrong scheme, exits 2 and says why (with a hint);
// "audit FAILED" and exit 1 are for wrong data.
func TestAuditFailsOnlyWhenTheDataIsWrong(t *testing.T) {
	url, pol := staticLog(t, mustEncode(t, record.Record{Submitter: "alice", Payload: []byte("a")}))
	for name, c := range map[string]struct {
		url, want string
	}{
		"refused connection":      {"http://" + testport.Addr(t), "connection refused"},
		"https to an HTTP server": {strings.Replace(url, "http://", "https://", 1), "hint: the log serves plain HTTP"},
	} {
		_, stderr, code := run(t, nil, "audit", "--quiet", "--log", c.url, "--policy", pol)
		if code != 2 || strings.Contains(stderr, "audit FAILED") || !strings.Contains(stderr, c.want) {
			t.Errorf("%s: exit %d, %s", name, code, stderr)
		}
	}
	if _, stderr, code := run(t, nil, "audit", "--quiet", "--log", url, "--policy", pol, "--output", "yaml"); code != 2 || strings.Contains(stderr, "FAILED") {
		t.Errorf("a bad --output: exit %d, %s", code, stderr)
	}
}

// TestCheckpointJSONListsWitnessesInOrder: the typed JSON lists the
// cosignatures sorted by witness name, every run.
func TestCheckpointJSONListsWitnessesInOrder(t *testing.T) {
	url := serveDir(t, testdata+"/interop/tessera-log-360")
	var first string
	for range 3 {
		out, stderr, code := run(t, nil, "checkpoint", "--log", url, "--policy", testdata+"/interop.policy", "--output", "json")
		var j checkpointJSON
		if err := json.Unmarshal([]byte(out), &j); code != 0 || err != nil {
			t.Fatalf("exit %d, %v: %s %s", code, err, out, stderr)
		}
		if len(j.Cosignatures) < 2 || j.Size != 360 {
			t.Fatalf("%+v", j)
		}
		for i := 1; i < len(j.Cosignatures); i++ {
			if j.Cosignatures[i-1].Witness >= j.Cosignatures[i].Witness {
				t.Fatalf("cosignatures out of order: %+v", j.Cosignatures)
			}
		}
		text, _, _ := run(t, nil, "checkpoint", "--log", url, "--policy", testdata+"/interop.policy")
		if first == "" {
			first = text
		} else if text != first {
			t.Fatalf("the text output changed between runs:\n%s\n%s", first, text)
		}
	}
}

// TestSubmitToAnUntrustedServerFailsAtOnceWithAHint: a TLS endpoint whose CA
// the client does not trust is one connection and a hint, not 8 attempts.
func TestSubmitToAnUntrustedServerFailsAtOnceWithAHint(t *testing.T) {
	ca, err := devpki.NewCA("test CA")
	if err != nil {
		t.Fatal(err)
	}
	iss, err := ca.Loopback("test server")
	if err != nil {
		t.Fatal(err)
	}
	cert, err := iss.TLSCertificate()
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var conns atomic.Int64
	srv := grpc.NewServer(grpc.Creds(credentials.NewTLS(&tls.Config{Certificates: []tls.Certificate{cert}})))
	go srv.Serve(countConns{ln, &conns})
	t.Cleanup(srv.Stop)

	rec := filepath.Join(t.TempDir(), "r")
	os.WriteFile(rec, []byte("x"), 0o644)
	_, stderr, code := run(t, nil, "submit", "--grpc", ln.Addr().String(), rec)
	if code != 2 || !strings.Contains(stderr, "not trusted") || !strings.Contains(stderr, "hint: pass the CA that signed the server's certificate, e.g. --ca data/tls/ca.pem") {
		t.Fatalf("exit %d, %s", code, stderr)
	}
	if n := conns.Load(); n != 1 {
		t.Fatalf("the server saw %d connections, want 1", n)
	}
}

// countConns counts accepted connections.
type countConns struct {
	net.Listener
	n *atomic.Int64
}

func (l countConns) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		l.n.Add(1)
	}
	return c, err
}
