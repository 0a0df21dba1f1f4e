package integration

import (
	"bufio"
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cairnlog/cairn/internal/testport"

	"github.com/cairnlog/cairn/client"
	"github.com/cairnlog/cairn/format/policy"
	"github.com/cairnlog/cairn/format/record"
	"github.com/cairnlog/cairn/format/search"
	"github.com/cairnlog/cairn/internal/hastack"
	"github.com/cairnlog/cairn/internal/lockedbuf"
	cairnv1 "github.com/cairnlog/cairn/proto/cairn/v1"
	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	_ "modernc.org/sqlite"
)

// searchFields are the --field flags every index of these tests gets.
var searchFields = []string{"actor=.actor", "action=.action", "resource=.resource.id"}

// searchCluster is a log with authentication, sealed records and an
// access file, and the tokens of its principals.
type searchCluster struct {
	*cluster
	access string
	tokens map[string]string // principal → token file
}

// newSearchCluster starts the log with logArgs added to its flags.
func newSearchCluster(t *testing.T, logArgs ...string) *searchCluster {
	t.Helper()
	dir := t.TempDir()
	kek := dir + "/log.kek"
	if _, stderr, code := run(t, nil, "keygen", "--kek", "--out", kek); code != 0 {
		t.Fatalf("keygen --kek: %s", stderr)
	}
	sc := &searchCluster{access: dir + "/access.txt", tokens: map[string]string{}}
	for _, p := range []struct{ name, roles string }{{"alice", "append"}, {"bob", "append"}, {"reader", "read"}, {"indexer", "read"}, {"ops", "admin"}} {
		out, stderr, code := run(t, nil, "access", "add", "--file", sc.access, "--role", p.roles, p.name)
		if code != 0 {
			t.Fatalf("access add %s: %s", p.name, stderr)
		}
		f := dir + "/" + p.name + ".token"
		mustWrite(t, f, []byte(strings.TrimSpace(out)+"\n"))
		if err := os.Chmod(f, 0o600); err != nil {
			t.Fatal(err)
		}
		sc.tokens[p.name] = f
	}
	if err := os.Chmod(sc.access, 0o600); err != nil {
		t.Fatal(err)
	}
	sc.cluster = newClusterWith(t, clusterOpts{loopback: true, storage: func(dir string) []string {
		return append([]string{"--storage", "posix:" + dir + "/log", "--kek-file", kek, "--access", sc.access, "--read-access", "authenticated"}, logArgs...)
	}})
	return sc
}

func (sc *searchCluster) token(t *testing.T, name string) string {
	return strings.TrimSpace(string(mustRead(t, sc.tokens[name])))
}

// post appends one record as principal, with a timestamp and subjects.
func (sc *searchCluster) post(t *testing.T, principal, contentType, body string, ts int64, subjects ...string) uint64 {
	t.Helper()
	req, err := http.NewRequest("POST", "http://"+sc.httpAddr+"/add", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+sc.token(t, principal))
	req.Header.Set("Content-Type", contentType)
	req.Header.Set("Cairn-Timestamp", strconv.FormatInt(ts, 10))
	for _, s := range subjects {
		req.Header.Add("Cairn-Subject", s)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		t.Fatalf("/add as %s: %s: %s", principal, resp.Status, b)
	}
	n, err := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64)
	if err != nil {
		t.Fatalf("/add answered %q", b)
	}
	return n
}

// fill appends n mixed records from base: JSON from alice and bob about
// three resources, plain text, and sealed JSON records about a patient.
func (sc *searchCluster) fill(t *testing.T, from, n int, base int64) {
	t.Helper()
	resources := []string{"fw-policy", "patient-4711", "db"}
	actions := []string{"read", "write", "delete"}
	for i := from; i < from+n; i++ {
		who := []string{"alice", "bob"}[i%2]
		ts := base + int64(i)*500
		switch i % 5 {
		case 3:
			sc.post(t, who, "text/plain", fmt.Sprintf("plain record %d by %s", i, who), ts)
		case 4:
			sc.post(t, who, "application/json", fmt.Sprintf(`{"actor":%q,"action":"view","resource":{"id":"patient-4711"},"n":%d}`, who, i), ts, "patient-4711")
		default:
			actor := who
			if i%7 == 0 {
				actor = "carol" // the record's actor is not its submitter
			}
			sc.post(t, who, "application/json", fmt.Sprintf(`{"actor":%q,"action":%q,"resource":{"id":%q,"rules":[%d,%d]},"n":%d}`,
				actor, actions[i%3], resources[i%3], i%4, i, i), ts)
		}
	}
}

// indexProc is a running cairn index serve.
type indexProc struct {
	*proc
	url string
}

func startIndex(t *testing.T, sc *searchCluster, name, db string, extra ...string) *indexProc {
	t.Helper()
	return startIndexAt(t, sc, name, db, testport.Addr(t), extra...)
}

// startIndexAt starts an index serving HTTP on addr.
func startIndexAt(t *testing.T, sc *searchCluster, name, db, addr string, extra ...string) *indexProc {
	t.Helper()
	args := []string{"index", "serve", "--log", "http://" + sc.httpAddr, "--policy", sc.policy, "--token-file", sc.tokens["indexer"],
		"--db", db, "--http", addr, "--insecure-plaintext", "--poll-interval", "200ms", "--access", sc.access, "--read-access", "authenticated"}
	for _, f := range searchFields {
		args = append(args, "--field", f)
	}
	p := &indexProc{proc: &proc{name: name, args: append(args, extra...)}, url: "http://" + addr}
	p.start(t)
	t.Cleanup(func() {
		p.kill9()
		if t.Failed() {
			t.Logf("%s output:\n%s", name, tail(p.output()))
		}
	})
	p.waitServing(t, p.url+"/healthz")
	return p
}

// status reads GET /status.
func (p *indexProc) status(t *testing.T) map[string]any {
	t.Helper()
	resp, err := http.Get(p.url + "/status")
	if err != nil {
		return nil
	}
	defer resp.Body.Close()
	var s map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&s)
	return s
}

// waitIndexed waits until the index has indexed size entries and serves a checkpoint of that size.
func (p *indexProc) waitIndexed(t *testing.T, size uint64) {
	t.Helper()
	eventually(t, 90*time.Second, func() error {
		if !p.running() {
			t.Fatalf("%s exited: %s", p.name, tail(p.output()))
		}
		s := p.status(t)
		if s == nil {
			return fmt.Errorf("no status")
		}
		n, _ := s["indexed_size"].(float64)
		if uint64(n) < size || !strings.Contains(fmt.Sprint(s["checkpoint"]), "\n"+strconv.FormatUint(size, 10)+"\n") {
			return fmt.Errorf("%s status %v, want %d indexed", p.name, s, size)
		}
		return nil
	})
}

// replay reads every record of the log as a reader with the read role
// does and describes it as a hit would: the ground truth.
func replay(t *testing.T, sc *searchCluster) ([]*search.Hit, []search.Field) {
	t.Helper()
	p, err := policy.Parse(mustRead(t, sc.policy))
	if err != nil {
		t.Fatal(err)
	}
	l, err := client.NewLog("http://"+sc.httpAddr, p, client.HTTPOptions{Token: sc.token(t, "reader")})
	if err != nil {
		t.Fatal(err)
	}
	var fields []search.Field
	for _, s := range searchFields {
		f, err := search.ParseField(s)
		if err != nil {
			t.Fatal(err)
		}
		fields = append(fields, f)
	}
	ctx := context.Background()
	v, err := l.Checkpoint(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var out []*search.Hit
	for i := range v.Checkpoint.Size {
		leaf, err := l.Entry(ctx, v, i)
		if err != nil {
			t.Fatal(err)
		}
		var rec []byte
		state := ""
		if record.LeafVersion(leaf) == 2 {
			d, err := l.Record(ctx, i)
			if err != nil {
				t.Fatal(err)
			}
			rec, state = d.Record, d.State
		}
		h, err := search.Describe(i, leaf, rec, state, fields)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, h)
	}
	return out, fields
}

// searchIndices runs cairn search and returns the indices it printed.
func searchIndices(t *testing.T, sc *searchCluster, x *indexProc, args ...string) []uint64 {
	t.Helper()
	out, stderr, code := run(t, nil, append([]string{"search", "--index", x.url, "--policy", sc.policy, "--token-file", sc.tokens["reader"], "--output", "json", "--page-size", "7"}, args...)...)
	if code != 0 {
		t.Fatalf("search %v on %s: exit %d %s", args, x.name, code, stderr)
	}
	var got []uint64
	sc2 := bufio.NewScanner(strings.NewReader(out))
	for sc2.Scan() {
		var h struct {
			Index     uint64          `json:"index"`
			Timestamp string          `json:"timestamp"`
			Principal string          `json:"principal"`
			Record    json.RawMessage `json:"record"`
		}
		if err := json.Unmarshal(sc2.Bytes(), &h); err != nil {
			t.Fatalf("search printed %q: %v", sc2.Text(), err)
		}
		if h.Principal == "" || h.Timestamp == "" {
			t.Fatalf("search printed a hit without principal or timestamp: %s", sc2.Text())
		}
		got = append(got, h.Index)
	}
	return got
}

// startMariaDB starts a MariaDB for the test's MySQL index (skipped
// without one unless CAIRN_REQUIRE_HA is set).
func startMariaDB(t *testing.T) string {
	t.Helper()
	out := &lockedbuf.Buffer{}
	db, err := hastack.NewMariaDB(t.TempDir(), testport.Port(t), out)
	if err != nil {
		if os.Getenv("CAIRN_REQUIRE_HA") == "" {
			t.Skipf("MariaDB unavailable (install with scripts/ha-deps.sh): %v", err)
		}
		t.Fatal(err)
	}
	if err := db.Start(context.Background()); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	t.Cleanup(db.Kill)
	dsn, err := db.Database(context.Background(), "cairn_index")
	if err != nil {
		t.Fatal(err)
	}
	return dsn
}

// Issue #14 on both databases: a log of mixed JSON, plain and sealed
// records from several principals; every query answers exactly what a full
// replay of the log computes, through the CLI (HTTP) and gRPC.
func TestSearchAnswersWhatAFullReplayComputesOnBothDatabases(t *testing.T) {
	sc := newSearchCluster(t)
	base := time.Now().Add(-3 * time.Minute).UnixMilli()
	sc.fill(t, 0, 60, base)
	sc.waitSize(t, 60, 60*time.Second)
	_, size, _ := sc.checkpoint(t)

	lite := startIndex(t, sc, "index-sqlite", "sqlite:"+t.TempDir()+"/index.db")
	my := startIndex(t, sc, "index-mysql", "mysql:"+startMariaDB(t), "--grpc", testport.Addr(t))
	lite.waitIndexed(t, size)
	my.waitIndexed(t, size)

	truth, _ := replay(t, sc)
	subject := ""
	for _, h := range truth {
		if len(h.SubjectHashes) > 0 {
			subject = h.SubjectHashes[0]
		}
	}
	since, until := time.UnixMilli(base+5_000).UTC(), time.UnixMilli(base+15_500).UTC()
	queries := []struct {
		args []string
		q    search.Query
	}{
		{[]string{"--field", "actor=alice"}, search.Query{Fields: map[string]string{"actor": "alice"}}},
		{[]string{"--field", "resource=fw-policy", "--field", "action=read"}, search.Query{Fields: map[string]string{"resource": "fw-policy", "action": "read"}}},
		{[]string{"--field", "resource=patient-4711"}, search.Query{Fields: map[string]string{"resource": "patient-4711"}}},
		{[]string{"--principal", "bob"}, search.Query{Principal: "bob"}},
		{[]string{"--principal", "alice", "--field", "actor=carol"}, search.Query{Principal: "alice", Fields: map[string]string{"actor": "carol"}}},
		{[]string{"--since", since.Format(time.RFC3339Nano), "--until", until.Format(time.RFC3339Nano)}, search.Query{Since: since, Until: until}},
		{[]string{"--subject", subject}, search.Query{Subject: subject}},
		{[]string{"--content-type", "text/plain"}, search.Query{ContentType: "text/plain"}},
		{nil, search.Query{}},
	}
	for _, x := range []*indexProc{lite, my} {
		for _, qc := range queries {
			var want []uint64
			for _, h := range truth {
				if qc.q.Matches(h) == nil {
					want = append(want, h.Index)
				}
			}
			if len(want) == 0 && len(qc.args) > 0 {
				t.Fatalf("query %v matches nothing in the log: a useless test", qc.args)
			}
			got := searchIndices(t, sc, x, qc.args...)
			t.Logf("%s: search %v: %d hits", x.name, qc.args, len(got))
			if !slices.Equal(got, want) {
				t.Errorf("%s: search %v = %v, the replay says %v", x.name, qc.args, got, want)
			}
		}
	}

	// gRPC answers the same, and refuses a bad query naming the parameter.
	conn, err := grpc.NewClient(my.args[slices.Index(my.args, "--grpc")+1], grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx := metadata.AppendToOutgoingContext(context.Background(), "authorization", "Bearer "+sc.token(t, "reader"))
	ic := cairnv1.NewIndexClient(conn)
	stream, err := ic.Search(ctx, &cairnv1.SearchRequest{Principal: "bob", Limit: 1000})
	if err != nil {
		t.Fatal(err)
	}
	var got []uint64
	for {
		m, err := stream.Recv()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, m.Hit.Index)
	}
	if want := searchIndices(t, sc, my, "--principal", "bob"); !slices.Equal(got, want) {
		t.Errorf("gRPC Search principal=bob = %v, HTTP %v", got, want)
	}
	bad, err := ic.Search(ctx, &cairnv1.SearchRequest{Since: "yesterday"})
	if err == nil {
		_, err = bad.Recv()
	}
	if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), `"since"`) {
		t.Errorf("gRPC Search since=yesterday: %v", err)
	}

	// Bad HTTP queries: 400 naming the parameter; no token: 401; a token without read: 403.
	for q, param := range map[string]string{"nosuch=1": "nosuch", "limit=5000": "limit", "since=monday": "since", "subject=xyz": "subject"} {
		code, body := getWith(t, lite.url+"/search?"+q, sc.token(t, "reader"))
		if code != 400 || !strings.Contains(body, `"`+param+`"`) {
			t.Errorf("GET /search?%s: %d %s", q, code, body)
		}
	}
	if code, body := getWith(t, lite.url+"/search?actor=alice", ""); code != 401 {
		t.Errorf("GET /search without a token: %d %s", code, body)
	}
	if code, body := getWith(t, lite.url+"/search?actor=alice", sc.token(t, "alice")); code != 403 {
		t.Errorf("GET /search with an append-only token: %d %s", code, body)
	}
	if out, stderr, code := run(t, nil, "search", "--index", lite.url, "--policy", sc.policy, "--token-file", sc.tokens["reader"], "--field", "colour=red"); code != 2 || !strings.Contains(stderr, "colour") {
		t.Errorf("search on an unknown field: %d %s %s", code, out, stderr)
	}

	// Every hit verifies with independent code: x/mod's sumdb/note for the
	// checkpoint, sumdb/tlog for the inclusion proof.
	code, body := getWith(t, lite.url+"/search?limit=1000", sc.token(t, "reader"))
	if code != 200 {
		t.Fatalf("GET /search: %d %s", code, body)
	}
	lines := strings.Split(strings.TrimSpace(body), "\n")
	if uint64(len(lines)) != size {
		t.Fatalf("GET /search answered %d lines, want %d", len(lines), size)
	}
	for _, line := range lines {
		var h search.Hit
		if err := json.Unmarshal([]byte(line), &h); err != nil {
			t.Fatal(err)
		}
		checkHitIndependently(t, sc.logVKey, &h)
	}

	// History: every version of fw-policy in log order, with diffs.
	out, stderr, code := run(t, nil, "history", "--index", lite.url, "--policy", sc.policy, "--token-file", sc.tokens["reader"], "--key", "resource=fw-policy")
	if code != 0 || !strings.Contains(out, "~ .n: ") || !strings.Contains(out, "+ .actor: ") {
		t.Errorf("history: %d %s %s", code, out, stderr)
	}

	// Completeness: audit --index passes against both.
	for _, x := range []*indexProc{lite, my} {
		if out, stderr, code := run(t, nil, "audit", "--quiet", "--log", "http://"+sc.httpAddr, "--policy", sc.policy, "--token-file", sc.tokens["reader"], "--index", x.url); code != 0 || !strings.Contains(stderr, "present and correctly attributed") {
			t.Errorf("audit --index %s: %d %s %s", x.name, code, out, stderr)
		}
	}

	// Erasure: the patient's records become erased in the index too.
	if out, stderr, code := run(t, nil, "erase", "--grpc", sc.grpcAddr, "--insecure-plaintext", "--token-file", sc.tokens["ops"], "--subject", "patient-4711", "--reason", "test"); code != 0 {
		t.Fatalf("erase: %d %s %s", code, out, stderr)
	}
	eventually(t, 60*time.Second, func() error {
		out, stderr, code := run(t, nil, "search", "--index", lite.url, "--policy", sc.policy, "--token-file", sc.tokens["reader"], "--subject", subject, "--output", "json")
		if code != 0 {
			t.Fatalf("search after erasure: %d %s", code, stderr)
		}
		if strings.Count(out, `"state":"erased"`) != strings.Count(out, "\n") || strings.Contains(out, "patient-4711") {
			return fmt.Errorf("not erased in the index yet: %s", out)
		}
		return nil
	})
}

// checkHitIndependently verifies a hit with golang.org/x/mod only.
func checkHitIndependently(t *testing.T, vkey string, h *search.Hit) {
	t.Helper()
	v, err := note.NewVerifier(vkey)
	if err != nil {
		t.Fatal(err)
	}
	n, err := note.Open([]byte(h.Checkpoint), note.VerifierList(v))
	if err != nil {
		t.Fatalf("hit %d: checkpoint does not verify with sumdb/note: %v", h.Index, err)
	}
	lines := strings.Split(n.Text, "\n")
	size, err := strconv.ParseInt(lines[1], 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	root, err := tlog.ParseHash(lines[2])
	if err != nil {
		t.Fatal(err)
	}
	var rp tlog.RecordProof
	for _, p := range h.Proof {
		rp = append(rp, tlog.Hash(p))
	}
	if err := tlog.CheckRecord(rp, size, root, int64(h.Index), tlog.RecordHash(h.Leaf)); err != nil {
		t.Fatalf("hit %d: sumdb/tlog rejects its proof: %v", h.Index, err)
	}
}

func getWith(t *testing.T, url, token string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest("GET", url, nil)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// A tampered index row — a changed record, a record moved to another
// index, a row attributed to another principal — is caught by the client:
// search exits 1 naming the index, and audit --index reports it.
func TestSearchCatchesATamperedIndex(t *testing.T) {
	sc := newSearchCluster(t)
	sc.fill(t, 0, 30, time.Now().Add(-time.Minute).UnixMilli())
	sc.waitSize(t, 30, 60*time.Second)
	_, size, _ := sc.checkpoint(t)
	path := t.TempDir() + "/index.db"
	x := startIndex(t, sc, "index-sqlite", "sqlite:"+path)
	x.waitIndexed(t, size)
	db, err := sql.Open("sqlite", "file:"+path+"?_pragma=busy_timeout(10000)")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	exec := func(q string, args ...any) {
		t.Helper()
		if _, err := db.Exec(q, args...); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	var alice []uint64 // plain JSON records whose actor is alice
	var bob uint64     // one whose actor is bob
	rows, err := db.Query(`SELECT idx, leaf FROM records WHERE state = (SELECT id FROM names WHERE name = 'plain') ORDER BY idx`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var i uint64
		var leaf []byte
		rows.Scan(&i, &leaf)
		h, err := search.Describe(i, leaf, nil, "", []search.Field{actorField(t)})
		if err == nil && h.Fields["actor"] == "alice" {
			alice = append(alice, i)
		}
		if err == nil && h.Fields["actor"] == "bob" {
			bob = i
		}
	}
	rows.Close()
	if len(alice) < 3 {
		t.Fatalf("alice has %d records", len(alice))
	}
	x1, x2 := alice[1], alice[2]
	var leaf1, leaf2 []byte
	db.QueryRow(`SELECT leaf FROM records WHERE idx = ?`, x1).Scan(&leaf1)
	db.QueryRow(`SELECT leaf FROM records WHERE idx = ?`, x2).Scan(&leaf2)
	search := func(args ...string) (string, string, int) {
		return run(t, nil, append([]string{"search", "--index", x.url, "--policy", sc.policy, "--token-file", sc.tokens["reader"]}, args...)...)
	}
	audit := func() (string, string, int) {
		return run(t, nil, "audit", "--quiet", "--log", "http://"+sc.httpAddr, "--policy", sc.policy, "--token-file", sc.tokens["reader"], "--index", x.url)
	}
	if _, stderr, code := search("--field", "actor=alice"); code != 0 {
		t.Fatalf("search before tampering: %d %s", code, stderr)
	}

	// A changed record: one byte of the stored leaf.
	changed := strings.Replace(string(leaf1), `"n":`, `"n":1`, 1)
	exec(`UPDATE records SET leaf = ? WHERE idx = ?`, []byte(changed), x1)
	if out, stderr, code := search("--field", "actor=alice"); code != 1 || !strings.Contains(stderr, fmt.Sprintf("hit %d", x1)) {
		t.Errorf("search over a changed record: %d %s %s", code, out, stderr)
	}
	if _, stderr, code := audit(); code != 1 || !strings.Contains(stderr, fmt.Sprintf("hit %d", x1)) {
		t.Errorf("audit --index over a changed record: %d %s", code, stderr)
	}
	exec(`UPDATE records SET leaf = ? WHERE idx = ?`, leaf1, x1)

	// A wrong index: two records swap places.
	exec(`UPDATE records SET leaf = ? WHERE idx = ?`, leaf2, x1)
	exec(`UPDATE records SET leaf = ? WHERE idx = ?`, leaf1, x2)
	if out, stderr, code := search("--field", "actor=alice"); code != 1 || !strings.Contains(stderr, fmt.Sprintf("hit %d", x1)) {
		t.Errorf("search over swapped records: %d %s %s", code, out, stderr)
	}
	exec(`UPDATE records SET leaf = ? WHERE idx = ?`, leaf1, x1)
	exec(`UPDATE records SET leaf = ? WHERE idx = ?`, leaf2, x2)

	// A misattributed row: the leaf is intact, the principal column lies
	// (it names principals by their id in the names table).
	var principal string
	db.QueryRow(`SELECT n.name FROM records r JOIN names n ON n.id = r.principal WHERE r.idx = ?`, x1).Scan(&principal)
	other := map[string]string{"alice": "bob", "bob": "alice"}[principal]
	exec(`UPDATE records SET principal = (SELECT id FROM names WHERE name = ?) WHERE idx = ?`, other, x1)
	if out, stderr, code := search("--principal", other); code != 1 || !strings.Contains(stderr, fmt.Sprintf("hit %d does not match the query", x1)) {
		t.Errorf("search over a misattributed row: %d %s %s", code, out, stderr)
	}
	exec(`UPDATE records SET principal = (SELECT id FROM names WHERE name = ?) WHERE idx = ?`, principal, x1)

	// A record filed under another value's field key.
	exec(`INSERT INTO field_keys (k, idx) VALUES (?, ?)`, fieldKey("actor", "alice"), bob)
	if out, stderr, code := search("--field", "actor=alice"); code != 1 || !strings.Contains(stderr, fmt.Sprintf("hit %d does not match the query", bob)) {
		t.Errorf("search over a record filed under another value: %d %s %s", code, out, stderr)
	}
	exec(`DELETE FROM field_keys WHERE k = ? AND idx = ?`, fieldKey("actor", "alice"), bob)

	// A deleted row: search cannot see it, audit --index does.
	exec(`DELETE FROM records WHERE idx = ?`, x2)
	if _, stderr, code := audit(); code != 1 || !strings.Contains(stderr, fmt.Sprintf("record %d: not in the index", x2)) {
		t.Errorf("audit --index with a row deleted: %d %s", code, stderr)
	}

	// The index is derived data: dropped, it is rebuilt from the log.
	x.kill9()
	db.Close()
	for _, suffix := range []string{"", "-wal", "-shm"} {
		os.Remove(path + suffix)
	}
	x = startIndex(t, sc, "index-rebuilt", "sqlite:"+path)
	x.waitIndexed(t, size)
	if out, stderr, code := audit(); code != 0 {
		t.Errorf("audit --index after a rebuild: %d %s %s", code, out, stderr)
	}
}

// fieldKey is the index's key of a field value (index/store.go: the
// first 16 bytes of SHA-256(name, 0, value)), for tests that tamper
// with the field_keys table.
func fieldKey(name, value string) []byte {
	sum := sha256.Sum256([]byte(name + "\x00" + value))
	return sum[:16]
}

func actorField(t *testing.T) search.Field {
	f, err := search.ParseField("actor=.actor")
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// kill -9 an index (SQLite and MySQL) again and again while the log grows:
// each resumes from its last commit, without gaps or duplicates.
func TestIndexResumesAfterKill9WithoutGapsOrDuplicates(t *testing.T) {
	sc := newSearchCluster(t)
	base := time.Now().Add(-5 * time.Minute).UnixMilli()
	path := t.TempDir() + "/index.db"
	dsn := startMariaDB(t)
	lite := startIndex(t, sc, "index-sqlite", "sqlite:"+path, "--poll-interval", "20ms")
	my := startIndex(t, sc, "index-mysql", "mysql:"+dsn, "--poll-interval", "20ms")
	n := 0
	for round := range 4 {
		sc.fill(t, n, 150, base)
		n += 150
		// Kill while they are (very likely) ingesting the new records.
		x := []*indexProc{lite, my}[round%2]
		x.kill9()
		x.p.Wait()
		sc.fill(t, n, 50, base)
		n += 50
		x.start(t)
		x.waitServing(t, x.url+"/healthz")
	}
	sc.waitSize(t, uint64(n), 60*time.Second)
	_, size, _ := sc.checkpoint(t)
	for _, x := range []*indexProc{lite, my} {
		x.waitIndexed(t, size)
		if out, stderr, code := run(t, nil, "audit", "--quiet", "--log", "http://"+sc.httpAddr, "--policy", sc.policy, "--token-file", sc.tokens["reader"], "--index", x.url); code != 0 {
			t.Errorf("audit --index %s after kill -9: %d %s %s", x.name, code, out, stderr)
		}
	}
	for name, spec := range map[string][2]string{"sqlite": {"sqlite", "file:" + path}, "mysql": {"mysql", dsn}} {
		db, err := sql.Open(spec[0], spec[1])
		if err != nil {
			t.Fatal(err)
		}
		var count, distinct, maxIdx uint64
		if err := db.QueryRow(`SELECT COUNT(*), COUNT(DISTINCT idx), MAX(idx) FROM records`).Scan(&count, &distinct, &maxIdx); err != nil {
			t.Fatal(err)
		}
		db.Close()
		if count != size || distinct != size || maxIdx != size-1 {
			t.Errorf("%s: %d rows, %d distinct indices, max %d; want %d", name, count, distinct, maxIdx, size)
		}
	}
}

// A log that forks (same key, another history) stops the index with an
// alarm — log line, metric, /status — instead of indexing the fork; the
// verified prefix stays searchable.
func TestIndexStopsWithAnAlarmWhenTheLogForks(t *testing.T) {
	c := newClusterWith(t, clusterOpts{loopback: true})
	for i := range 20 {
		if _, err := c.add(t, fmt.Sprintf(`{"actor":"honest","n":%d}`, i)); err != nil {
			t.Fatal(err)
		}
	}
	c.waitSize(t, 20, 60*time.Second)
	logOnly := c.dir + "/log-only.txt"
	mustWrite(t, logOnly, []byte("log "+c.logVKey+"\nquorum none\n"))
	addr := testport.Addr(t)
	x := &indexProc{proc: &proc{name: "index", args: []string{"index", "serve", "--log", "http://" + c.httpAddr, "--policy", logOnly,
		"--db", "sqlite:" + t.TempDir() + "/index.db", "--http", addr, "--insecure-plaintext", "--poll-interval", "100ms", "--field", "actor=.actor"}}, url: "http://" + addr}
	x.start(t)
	t.Cleanup(x.kill9)
	x.waitServing(t, x.url+"/healthz")
	x.waitIndexed(t, 20)
	c.log.stop(t)

	// The fork: same key and address, another history of 30 records.
	fork := &proc{name: "fork", args: []string{"log", "serve", "--origin", origin, "--key", c.dir + "/log.key", "--storage", "posix:" + c.dir + "/fork",
		"--http", c.httpAddr, "--grpc", c.grpcAddr, "--insecure-plaintext", "--checkpoint-interval", "200ms", "--batch-max-age", "20ms"}}
	fork.start(t)
	t.Cleanup(fork.kill9)
	fork.waitServing(t, "http://"+c.httpAddr+"/readyz")
	for i := range 30 {
		if _, err := c.add(t, fmt.Sprintf(`{"actor":"forger","n":%d}`, i)); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, 60*time.Second, func() error {
		s := x.status(t)
		if s["state"] != "fork" {
			return fmt.Errorf("status %v", s)
		}
		return nil
	})
	if s := x.status(t); s["indexed_size"].(float64) != 20 || !strings.Contains(fmt.Sprint(s["error"]), "fork") {
		t.Errorf("status after the fork: %v", s)
	}
	if code, body := getWith(t, x.url+"/metrics", ""); code != 200 || !strings.Contains(body, "cairn_index_fork_detected 1") {
		t.Errorf("metrics after the fork: %d %s", code, body)
	}
	if code, _ := getWith(t, x.url+"/readyz", ""); code != 503 {
		t.Errorf("readyz after the fork: %d", code)
	}
	if !strings.Contains(x.output(), "ALARM") {
		t.Errorf("no alarm in the index's log:\n%s", tail(x.output()))
	}
	out, stderr, code := run(t, nil, "search", "--index", x.url, "--policy", logOnly, "--output", "json")
	if code != 0 || strings.Count(out, "\n") != 20 || strings.Contains(out, "forger") {
		t.Errorf("search after the fork: %d %s %s", code, out, stderr)
	}
}
