package integration

import (
	"bufio"
	"context"
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

	"github.com/cairnlog/cairn/client"
	"github.com/cairnlog/cairn/format/policy"
	"github.com/cairnlog/cairn/format/record"
	"github.com/cairnlog/cairn/format/search"
	"github.com/cairnlog/cairn/internal/hastack"
	"github.com/cairnlog/cairn/internal/lockedbuf"
	cairnv1 "github.com/cairnlog/cairn/proto/cairn/v1"
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

func newSearchCluster(t *testing.T) *searchCluster {
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
		return []string{"--storage", "posix:" + dir + "/log", "--kek-file", kek, "--access", sc.access, "--read-access", "authenticated"}
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
		ts := base + int64(i)*1000
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
	addr := freeAddr(t)
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
	db, err := hastack.NewMariaDB(t.TempDir(), freePort(t), out)
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
	my := startIndex(t, sc, "index-mysql", "mysql:"+startMariaDB(t), "--grpc", freeAddr(t))
	lite.waitIndexed(t, size)
	my.waitIndexed(t, size)

	truth, _ := replay(t, sc)
	subject := ""
	for _, h := range truth {
		if len(h.SubjectHashes) > 0 {
			subject = h.SubjectHashes[0]
		}
	}
	since, until := time.UnixMilli(base+10_000).UTC(), time.UnixMilli(base+31_000).UTC()
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

var _ = sql.ErrNoRows
