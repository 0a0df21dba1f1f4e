package index

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestParseOrigin(t *testing.T) {
	for in, want := range map[string]string{
		"https://audit.example":      "https://audit.example",
		"https://Audit.Example:443/": "https://audit.example",
		"http://127.0.0.1:8080":      "http://127.0.0.1:8080",
		"http://[::1]:80":            "http://[::1]",
	} {
		if got, err := ParseOrigin(in); err != nil || got != want {
			t.Errorf("ParseOrigin(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, bad := range []string{"*", "null", "", "audit.example", "ftp://audit.example", "https://audit.example/ui/",
		"https://user@audit.example", "https://audit.example?x=1", "https://*.example"} {
		if got, err := ParseOrigin(bad); err == nil {
			t.Errorf("ParseOrigin(%q) = %q, want an error", bad, got)
		}
	}
}

func TestAllowOrigins(t *testing.T) {
	inner := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = w.Write([]byte("hits")) })
	h, err := AllowOrigins([]string{"https://audit.example:443"}, inner)
	if err != nil {
		t.Fatal(err)
	}
	do := func(method, origin string, preflight bool) *httptest.ResponseRecorder {
		r := httptest.NewRequest(method, "/search?actor=alice", nil)
		if origin != "" {
			r.Header.Set("Origin", origin)
		}
		if preflight {
			r.Header.Set("Access-Control-Request-Method", "GET")
			r.Header.Set("Access-Control-Request-Headers", "authorization")
		}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		return w
	}

	w := do("GET", "https://audit.example", false)
	if w.Header().Get("Access-Control-Allow-Origin") != "https://audit.example" || w.Body.String() != "hits" {
		t.Errorf("allowed origin: %v %q", w.Header(), w.Body)
	}
	if w.Header().Get("Access-Control-Allow-Credentials") != "" {
		t.Errorf("credentials allowed: %v", w.Header())
	}
	w = do("OPTIONS", "https://audit.example", true)
	if w.Code != http.StatusNoContent || w.Header().Get("Access-Control-Allow-Headers") != "Authorization" ||
		w.Header().Get("Access-Control-Allow-Methods") != "GET" || w.Header().Get("Access-Control-Allow-Origin") != "https://audit.example" {
		t.Errorf("preflight of an allowed origin: %d %v", w.Code, w.Header())
	}

	for _, other := range []string{"https://evil.example", "https://audit.example.evil", "http://audit.example", "null"} {
		w = do("GET", other, false)
		if w.Header().Get("Access-Control-Allow-Origin") != "" {
			t.Errorf("origin %s allowed: %v", other, w.Header())
		}
		w = do("OPTIONS", other, true)
		if w.Code != http.StatusForbidden || !strings.Contains(w.Body.String(), "--cors-origin") || w.Header().Get("Access-Control-Allow-Origin") != "" {
			t.Errorf("preflight of %s: %d %v %q", other, w.Code, w.Header(), w.Body)
		}
	}
	// Same origin (no Origin header): answered as before.
	if w = do("GET", "", false); w.Body.String() != "hits" || w.Header().Get("Access-Control-Allow-Origin") != "" {
		t.Errorf("no origin: %v %q", w.Header(), w.Body)
	}

	if _, err := AllowOrigins([]string{"*"}, inner); err == nil {
		t.Error("AllowOrigins accepted *")
	}
	if same, _ := AllowOrigins(nil, inner); same == nil {
		t.Error("AllowOrigins(nil) returned nil")
	}
}

// FuzzParseOrigin: whatever it accepts is a canonical origin (parsing it
// again gives it back) that a browser's Origin header can equal.
func FuzzParseOrigin(f *testing.F) {
	for _, s := range []string{"https://audit.example", "http://127.0.0.1:8080", "https://A.example:443/", "*", "null", "https://x/y", "http://[::1]:80"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		o, err := ParseOrigin(s)
		if err != nil {
			return
		}
		again, err := ParseOrigin(o)
		if err != nil || again != o {
			t.Fatalf("ParseOrigin(%q) = %q, which parses to %q, %v", s, o, again, err)
		}
		if strings.Count(o, "/") != 2 || strings.ContainsAny(o, "*?#@ ") {
			t.Fatalf("ParseOrigin(%q) = %q: not an origin", s, o)
		}
	})
}
