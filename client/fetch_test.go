package client

import (
	"compress/gzip"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
)

// gzipServer serves dir as a Cairn log does: entry bundles gzipped for a
// client that accepts gzip. It counts the bundles sent each way.
func gzipServer(t *testing.T, dir string) (url string, gzipped, plain *atomic.Int64) {
	gzipped, plain = new(atomic.Int64), new(atomic.Int64)
	files := http.FileServer(http.Dir(dir))
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !strings.HasPrefix(r.URL.Path, "/tile/entries/") {
			files.ServeHTTP(w, r)
			return
		}
		b, err := os.ReadFile(filepath.Join(dir, filepath.FromSlash(r.URL.Path)))
		if err != nil {
			http.NotFound(w, r)
			return
		}
		if !strings.Contains(r.Header.Get("Accept-Encoding"), "gzip") {
			plain.Add(1)
			w.Header().Set("Content-Length", strconv.Itoa(len(b)))
			_, _ = w.Write(b)
			return
		}
		gzipped.Add(1)
		w.Header().Set("Content-Encoding", "gzip")
		gz := gzip.NewWriter(w)
		_, _ = gz.Write(b)
		_ = gz.Close()
	}))
	t.Cleanup(srv.Close)
	return srv.URL, gzipped, plain
}

func TestAuditReadsGzippedBundlesOrAsksForNone(t *testing.T) {
	url, gzipped, plain := gzipServer(t, fixture)
	p := loadPolicy(t, "../testdata/interop.policy")
	for _, uncompressed := range []bool{false, true} {
		gzipped.Store(0)
		plain.Store(0)
		l, err := NewLog(url, p, HTTPOptions{DisableCompression: uncompressed})
		if err != nil {
			t.Fatal(err)
		}
		res, err := l.Audit(context.Background(), nil, AuditOptions{})
		if err != nil {
			t.Fatalf("DisableCompression %v: %v", uncompressed, err)
		}
		if res.Records != 360 {
			t.Fatalf("DisableCompression %v: audited %d records", uncompressed, res.Records)
		}
		// 360 records: one full bundle and one partial.
		want := [2]int64{2, 0} // gzipped, plain
		if uncompressed {
			want = [2]int64{0, 2}
		}
		if got := [2]int64{gzipped.Load(), plain.Load()}; got != want {
			t.Errorf("DisableCompression %v: bundles sent gzipped, plain = %v, want %v", uncompressed, got, want)
		}
	}
}

// A body cut short of its Content-Length is an error that names the
// resource, and not a verification failure: the log's data was not seen.
func TestAuditRejectsATruncatedBody(t *testing.T) {
	files := http.FileServer(http.Dir(fixture))
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/tile/entries/000" {
			files.ServeHTTP(w, r)
			return
		}
		b, err := os.ReadFile(filepath.Join(fixture, "tile/entries/000"))
		if err != nil {
			t.Error(err)
			return
		}
		w.Header().Set("Content-Length", strconv.Itoa(len(b)))
		_, _ = w.Write(b[:len(b)/2])
		// The handler returns short of Content-Length: the server closes
		// the connection.
	}))
	defer srv.Close()
	l, err := NewLog(srv.URL, loadPolicy(t, "../testdata/interop.policy"), HTTPOptions{})
	if err != nil {
		t.Fatal(err)
	}
	_, err = l.Audit(context.Background(), nil, AuditOptions{})
	if err == nil || errors.Is(err, ErrVerification) || !strings.Contains(err.Error(), "tile/entries/000") {
		t.Fatalf("audit of a truncated bundle: %v; want an error naming tile/entries/000 that is not a verification failure", err)
	}
	t.Log(err)
}

// Over TLS the client reads with HTTP/1.1 even from a server that offers
// HTTP/2 (cheaper per tile for both sides), and the audit passes.
func TestAuditOverTLSUsesHTTP1(t *testing.T) {
	var h2 atomic.Int64
	files := http.FileServer(http.Dir(fixture))
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.ProtoMajor != 1 {
			h2.Add(1)
		}
		files.ServeHTTP(w, r)
	}))
	srv.EnableHTTP2 = true
	srv.StartTLS()
	defer srv.Close()
	pool := x509.NewCertPool()
	pool.AddCert(srv.Certificate())
	l, err := NewLog(srv.URL, loadPolicy(t, "../testdata/interop.policy"), HTTPOptions{TLS: &tls.Config{RootCAs: pool}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := l.Audit(context.Background(), nil, AuditOptions{}); err != nil {
		t.Fatal(err)
	}
	if n := h2.Load(); n != 0 {
		t.Fatalf("%d requests over HTTP/2", n)
	}
	// Its bundles and tiles pipelined, over TLS.
	if n := l.fetcher.(*httpTiles).pipelined.Load(); n != 2 {
		t.Fatalf("%d of 2 bundles read pipelined over TLS", n)
	}
}
