package client

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
)

// connCounter is a request counter per connection, for handlers.
type connCounter struct{ n atomic.Int64 }

type connKey struct{}

// countingServer serves dir as a static log through wrap, counting the
// connections it accepts.
func countingServer(t *testing.T, dir string, wrap func(files http.Handler) http.HandlerFunc) (string, *atomic.Int64) {
	t.Helper()
	conns := new(atomic.Int64)
	srv := httptest.NewUnstartedServer(wrap(http.FileServer(http.Dir(dir))))
	srv.Config.ConnContext = func(ctx context.Context, _ net.Conn) context.Context {
		conns.Add(1)
		return context.WithValue(ctx, connKey{}, &connCounter{})
	}
	srv.Start()
	t.Cleanup(srv.Close)
	return srv.URL, conns
}

func auditLog(t *testing.T, url string, o AuditOptions) (*AuditResult, *httpTiles, error) {
	t.Helper()
	_, p := buildLog(t, 70000)
	l, err := NewLog(url, p, HTTPOptions{})
	if err != nil {
		t.Fatal(err)
	}
	res, err := l.Audit(context.Background(), nil, o)
	return res, l.fetcher.(*httpTiles), err
}

// TestAuditPipelinesItsReads: an audit reads every bundle and tile of a
// 70,000-record log (274 bundles) on a few pipelined connections, not one
// request at a time, in rounds of new connections; with NoPipelining it
// reads them one at a time.
func TestAuditPipelinesItsReads(t *testing.T) {
	dir, _ := buildLog(t, 70000)
	for _, off := range []bool{false, true} {
		url, conns := countingServer(t, dir, func(files http.Handler) http.HandlerFunc { return files.ServeHTTP })
		res, h, err := auditLog(t, url, AuditOptions{NoPipelining: off})
		if err != nil || res.Records != 70000 {
			t.Fatalf("NoPipelining %v: %v, %+v", off, err, res)
		}
		want := uint64(274)
		if off {
			want = 0
		}
		if got := h.pipelined.Load(); got != want {
			t.Errorf("NoPipelining %v: %d bundles read pipelined, want %d", off, got, want)
		}
		// The pipelined connections and the client's pool (checkpoint,
		// minimum index, upper tiles).
		if n := conns.Load(); !off && n > pipelineConns+4 {
			t.Errorf("%d connections for a pipelined audit", n)
		}
	}
	// Rounds of pipelineConns × 10 bundles, each on new connections (the
	// last round has at least pipelineConns bundles).
	url, conns := countingServer(t, dir, func(files http.Handler) http.HandlerFunc { return files.ServeHTTP })
	res, h, err := auditLog(t, url, AuditOptions{pipelineChunk: 10})
	if err != nil || res.Records != 70000 || h.pipelined.Load() != 274 {
		t.Fatalf("small rounds: %v, %+v, %d bundles read pipelined", err, res, h.pipelined.Load())
	}
	rounds := (274 + pipelineConns*10 - 1) / (pipelineConns * 10)
	if n := conns.Load(); n < int64(rounds*pipelineConns) {
		t.Errorf("small rounds: %d connections, want one per connection and round (%d)", n, rounds*pipelineConns)
	}
}

// TestPipelinedAuditCarriesOnWhereTheServerStops: a server that closes
// each connection after a few requests (as proxies limit requests per
// connection), or answers a bundle with an error once, still gets a whole
// audit: the pipeline reconnects, or reads the rest one request at a time.
func TestPipelinedAuditCarriesOnWhereTheServerStops(t *testing.T) {
	dir, _ := buildLog(t, 70000)
	closeEvery := func(files http.Handler) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			if r.Context().Value(connKey{}).(*connCounter).n.Add(1)%7 == 0 {
				w.Header().Set("Connection", "close")
			}
			files.ServeHTTP(w, r)
		}
	}
	var once sync.Once
	failOnce := func(files http.Handler) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			failed := false
			if r.URL.Path == "/tile/entries/010" {
				once.Do(func() { failed = true })
			}
			if failed {
				http.Error(w, "try again", http.StatusServiceUnavailable)
				return
			}
			files.ServeHTTP(w, r)
		}
	}
	for name, c := range map[string]struct {
		wrap          func(http.Handler) http.HandlerFunc
		minPipelined  uint64
		minConns      int64
		fullyPipeline bool
	}{
		"closes every 7th request": {closeEvery, 274, 2 * 274 / 7, true},
		"a 503 once":               {failOnce, 273, 2, false},
	} {
		url, conns := countingServer(t, dir, c.wrap)
		res, h, err := auditLog(t, url, AuditOptions{})
		if err != nil || res.Records != 70000 {
			t.Fatalf("%s: %v", name, err)
		}
		if got := h.pipelined.Load(); got < c.minPipelined || (!c.fullyPipeline && got == 274) {
			t.Errorf("%s: %d bundles read pipelined", name, got)
		}
		if n := conns.Load(); n < c.minConns {
			t.Errorf("%s: %d connections, want at least %d", name, n, c.minConns)
		}
	}
}

// TestPipelinedAuditSendsTheToken: a log that serves entry bundles only
// with the bearer token gets it on every pipelined request.
func TestPipelinedAuditSendsTheToken(t *testing.T) {
	dir, p := buildLog(t, 70000)
	url, _ := countingServer(t, dir, func(files http.Handler) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			if strings.HasPrefix(r.URL.Path, "/tile/entries/") && r.Header.Get("Authorization") != "Bearer s3cret-token" {
				http.Error(w, "no token", http.StatusUnauthorized)
				return
			}
			files.ServeHTTP(w, r)
		}
	})
	l, err := NewLog(url, p, HTTPOptions{Token: "s3cret-token"})
	if err != nil {
		t.Fatal(err)
	}
	res, err := l.Audit(context.Background(), nil, AuditOptions{})
	if err != nil || res.Records != 70000 {
		t.Fatalf("%v, %+v", err, res)
	}
	if n := l.fetcher.(*httpTiles).pipelined.Load(); n != 274 {
		t.Fatalf("%d of 274 bundles read pipelined", n)
	}
}
