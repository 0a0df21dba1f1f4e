package ui

import (
	"bytes"
	"compress/gzip"
	"io"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"testing"
)

// TestCommittedWasmIsFresh fails when ui/assets/verify.wasm or wasm_exec.js
// is not what `make wasm` builds from this tree with this toolchain, the way
// committed generated code must match its generator.
func TestCommittedWasmIsFresh(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the WebAssembly verifier (~20 s)")
	}
	// Another toolchain builds other bytes: the check holds only with the
	// one that built the committed file.
	built, err := os.ReadFile("wasm/toolchain.txt")
	if err != nil {
		t.Fatal(err)
	}
	if v := strings.TrimSpace(string(built)); v != runtime.Version() {
		t.Skipf("the committed verifier was built by %s, this is %s: run make wasm with %s to check it", v, runtime.Version(), v)
	}
	out := filepath.Join(t.TempDir(), "verify.wasm")
	cmd := exec.Command("go", "build", "-trimpath", "-ldflags=-s -w", "-o", out, "./wasm")
	cmd.Env = append(os.Environ(), "GOOS=js", "GOARCH=wasm")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("building the verifier: %v\n%s", err, b)
	}
	fresh, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	committed, err := os.ReadFile("assets/verify.wasm")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(fresh, committed) {
		t.Errorf("ui/assets/verify.wasm is stale (%d bytes committed, %d built): run make wasm and commit it", len(committed), len(fresh))
	}
	goroot, err := exec.Command("go", "env", "GOROOT").Output()
	if err != nil {
		t.Fatal(err)
	}
	execJS, err := os.ReadFile(filepath.Join(strings.TrimSpace(string(goroot)), "lib", "wasm", "wasm_exec.js"))
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile("assets/wasm_exec.js"); !bytes.Equal(got, execJS) {
		t.Errorf("ui/assets/wasm_exec.js differs from the toolchain's: run make wasm and commit it")
	}
}

func TestHandlerServesAssetsWithSecurityHeaders(t *testing.T) {
	h := NewHandler(Options{IndexURL: "https://index.example:8443/base/"})
	for _, tc := range []struct {
		path, contentType string
		code              int
	}{
		{"/ui/", "text/html; charset=utf-8", 200},
		{"/ui/app.js", "text/javascript; charset=utf-8", 200},
		{"/ui/app.css", "text/css; charset=utf-8", 200},
		{"/ui/verify.wasm", "application/wasm", 200},
		{"/ui/missing.js", "", 404},
		{"/ui/../go.mod", "", 404},
		{"/ui/wasm/main.go", "", 404},
	} {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, tc.path, nil))
		if rec.Code != tc.code {
			t.Errorf("GET %s: %d, want %d", tc.path, rec.Code, tc.code)
			continue
		}
		hd := rec.Header()
		csp := hd.Get("Content-Security-Policy")
		for _, want := range []string{"default-src 'none'", "script-src 'self' 'wasm-unsafe-eval'", "frame-ancestors 'none'", "connect-src 'self' https://index.example:8443;"} {
			if !strings.Contains(csp, want) {
				t.Errorf("GET %s: CSP %q lacks %q", tc.path, csp, want)
			}
		}
		if strings.Contains(csp, "unsafe-inline") || strings.Contains(csp, "'unsafe-eval'") {
			t.Errorf("GET %s: CSP %q allows inline code", tc.path, csp)
		}
		if hd.Get("X-Frame-Options") != "DENY" || hd.Get("X-Content-Type-Options") != "nosniff" {
			t.Errorf("GET %s: X-Frame-Options %q, X-Content-Type-Options %q", tc.path, hd.Get("X-Frame-Options"), hd.Get("X-Content-Type-Options"))
		}
		if tc.code == 200 && hd.Get("Content-Type") != tc.contentType {
			t.Errorf("GET %s: Content-Type %q, want %q", tc.path, hd.Get("Content-Type"), tc.contentType)
		}
	}

	// The verifier travels gzipped to browsers that accept it.
	req := httptest.NewRequest(http.MethodGet, "/ui/verify.wasm", nil)
	req.Header.Set("Accept-Encoding", "gzip, br")
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	if rec.Header().Get("Content-Encoding") != "gzip" {
		t.Fatalf("verify.wasm with Accept-Encoding gzip: Content-Encoding %q", rec.Header().Get("Content-Encoding"))
	}
	zr, err := gzip.NewReader(rec.Body)
	if err != nil {
		t.Fatal(err)
	}
	plain, _ := io.ReadAll(zr)
	if want, _ := fs.ReadFile(assets, "assets/verify.wasm"); !bytes.Equal(plain, want) {
		t.Error("gzipped verify.wasm does not inflate to the asset")
	}
}

// TestAssetsAreSelfContained: no inline script or style, no handler
// attributes, nothing fetched from another origin (no CDN, no web font), and
// no innerHTML: record content only ever reaches the page as text.
func TestAssetsAreSelfContained(t *testing.T) {
	for _, name := range []string{"assets/index.html", "assets/app.js", "assets/app.css"} {
		b, err := fs.ReadFile(assets, name)
		if err != nil {
			t.Fatal(err)
		}
		s := string(b)
		for _, bad := range []*regexp.Regexp{
			regexp.MustCompile(`<script>|<script [^>]*>[^<]`), // inline script
			regexp.MustCompile(`<style`), regexp.MustCompile(` style=`),
			regexp.MustCompile(` on[a-z]+=`), // handler attributes
			regexp.MustCompile(`innerHTML|outerHTML|insertAdjacentHTML|document\.write`),
			regexp.MustCompile(`@import|@font-face|url\(`),
			regexp.MustCompile(`https?://[^"'\s]*`),
		} {
			for _, m := range bad.FindAllString(s, -1) {
				if m == "http://www.w3.org/2000/svg" { // the SVG namespace name, never fetched
					continue
				}
				t.Errorf("%s contains %q", name, m)
			}
		}
	}
}
