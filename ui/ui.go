// Package ui is the explorer: the web page a log serves at /ui/ for auditors
// who are not CLI users. It shows the log's health (tree size, checkpoint
// age, each witness and mirror of the policy and how far behind it is, the
// minimum index, per-minute charts), its records, and verifies receipts in
// the browser with Cairn's own Go verification code compiled to WebAssembly
// (ui/wasm). Every asset is embedded: no CDN, no external font, it works
// offline. docs/explorer.md is the user's guide.
//
// The package never imports the log: the log mounts Handler for the assets
// and serves the small JSON API (Status, RecordList, RecordView) itself,
// feeding a History of its own metrics.
package ui

import (
	"bytes"
	"compress/gzip"
	"embed"
	"io/fs"
	"net/http"
	"net/url"
	"path"
	"strconv"
	"strings"
	"sync"
)

//go:embed assets
var assets embed.FS

// Prefix is where the log mounts the explorer.
const Prefix = "/ui/"

// Options configure the explorer's page.
type Options struct {
	// IndexURL is the search index's base URL (issue #14's API); empty: no
	// search or history pages. The page fetches it, so the content security
	// policy allows connecting to its origin.
	IndexURL string
}

// Handler serves the embedded assets under Prefix with the explorer's
// security headers. The log serves the JSON API under Prefix+"api/".
type Handler struct {
	csp    string
	files  fs.FS
	gzOnce sync.Once
	gz     map[string][]byte // precompressed large assets (the .wasm), built once
}

// NewHandler returns the asset handler.
func NewHandler(o Options) *Handler {
	sub, err := fs.Sub(assets, "assets")
	if err != nil {
		panic(err) // the embed pattern names the directory: cannot happen
	}
	return &Handler{csp: ContentSecurityPolicy(o.IndexURL), files: sub}
}

// ContentSecurityPolicy is the explorer's CSP: scripts, styles and data only
// from the log itself (plus the index's origin for search), no inline script
// or style, WebAssembly compilation allowed ('wasm-unsafe-eval', which the
// verifier needs), no framing.
func ContentSecurityPolicy(indexURL string) string {
	connect := "'self'"
	if u, err := url.Parse(indexURL); err == nil && u.Host != "" && (u.Scheme == "https" || u.Scheme == "http") {
		connect += " " + u.Scheme + "://" + u.Host
	}
	return "default-src 'none'; script-src 'self' 'wasm-unsafe-eval'; style-src 'self'; img-src 'self' data:; " +
		"connect-src " + connect + "; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
}

// SetSecurityHeaders sets the headers every explorer answer carries, the
// JSON API's included.
func (h *Handler) SetSecurityHeaders(w http.ResponseWriter) {
	hd := w.Header()
	hd.Set("Content-Security-Policy", h.csp)
	hd.Set("X-Frame-Options", "DENY")
	hd.Set("X-Content-Type-Options", "nosniff")
	hd.Set("Referrer-Policy", "no-referrer")
	hd.Set("Cross-Origin-Opener-Policy", "same-origin")
}

// contentType is the media type of an asset by its extension; ok is false
// for anything else, which is not served.
func contentType(ext string) (ct string, ok bool) {
	switch ext {
	case ".html":
		return "text/html; charset=utf-8", true
	case ".js":
		return "text/javascript; charset=utf-8", true
	case ".css":
		return "text/css; charset=utf-8", true
	case ".wasm":
		return "application/wasm", true
	}
	return "", false
}

// ServeHTTP serves GET Prefix+name; Prefix itself is index.html.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h.SetSecurityHeaders(w)
	name := strings.TrimPrefix(r.URL.Path, Prefix)
	if name == "" {
		name = "index.html"
	}
	ct, ok := contentType(path.Ext(name))
	if !ok || strings.Contains(name, "/") {
		http.Error(w, "not found: "+r.URL.Path, http.StatusNotFound)
		return
	}
	body, err := fs.ReadFile(h.files, name)
	if err != nil {
		http.Error(w, "not found: "+r.URL.Path, http.StatusNotFound)
		return
	}
	w.Header().Set("Content-Type", ct)
	// Assets change only with the binary; revalidate so an upgrade shows.
	w.Header().Set("Cache-Control", "no-cache")
	if gz := h.compressed(name); gz != nil && acceptsGzip(r) {
		w.Header().Set("Content-Encoding", "gzip")
		w.Header().Add("Vary", "Accept-Encoding")
		body = gz
	}
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	_, _ = w.Write(body)
}

// compressed returns the gzipped form of the large assets, nil for others.
func (h *Handler) compressed(name string) []byte {
	h.gzOnce.Do(func() {
		h.gz = map[string][]byte{}
		for _, n := range []string{"verify.wasm", "wasm_exec.js"} {
			raw, err := fs.ReadFile(h.files, n)
			if err != nil {
				continue
			}
			var b bytes.Buffer
			zw, _ := gzip.NewWriterLevel(&b, gzip.BestCompression)
			_, _ = zw.Write(raw)
			_ = zw.Close()
			h.gz[n] = b.Bytes()
		}
	})
	return h.gz[name]
}

func acceptsGzip(r *http.Request) bool {
	for _, part := range strings.Split(r.Header.Get("Accept-Encoding"), ",") {
		coding, q, _ := strings.Cut(strings.TrimSpace(part), ";")
		if strings.EqualFold(strings.TrimSpace(coding), "gzip") {
			return strings.ReplaceAll(strings.TrimSpace(q), " ", "") != "q=0"
		}
	}
	return false
}
