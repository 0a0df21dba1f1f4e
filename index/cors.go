package index

import (
	"fmt"
	"net/http"
	"net/url"
	"strings"
)

// ParseOrigin checks a CORS origin as a browser sends it in its Origin
// header — scheme://host[:port], http or https, nothing else — and returns
// it in that form (lowercase, default port dropped). "*" and "null" are
// refused: the answers carry records, so every origin is named.
func ParseOrigin(s string) (string, error) {
	if s == "*" || s == "null" {
		return "", fmt.Errorf("%q: name the exact origin (e.g. https://audit.example), not a wildcard", s)
	}
	u, err := url.Parse(s)
	if err != nil {
		return "", fmt.Errorf("%q: %w", s, err)
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.User != nil ||
		(u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" || strings.Contains(u.Host, "*") {
		return "", fmt.Errorf("%q: want an origin, scheme://host[:port] (e.g. https://audit.example:8443), no path", s)
	}
	host := strings.ToLower(u.Host)
	if p := u.Port(); (u.Scheme == "https" && p == "443") || (u.Scheme == "http" && p == "80") {
		host = strings.TrimSuffix(host, ":"+p)
	}
	return strings.ToLower(u.Scheme) + "://" + host, nil
}

// AllowOrigins wraps the index's handler so that pages on the given origins
// (the explorer of a log on another origin) may query it from a browser.
// Answers to an allowed Origin carry Access-Control-Allow-Origin naming it
// (never "*", never credentials: the page sends its token in the
// Authorization header, not a cookie); a preflight (OPTIONS) from an allowed
// origin may send GET with Authorization. Any other origin gets no CORS
// headers, so the browser keeps the answer from its page, and its preflight
// is refused with 403. No origins: h itself (same origin only).
func AllowOrigins(origins []string, h http.Handler) (http.Handler, error) {
	if len(origins) == 0 {
		return h, nil
	}
	allowed := map[string]bool{}
	for _, o := range origins {
		n, err := ParseOrigin(o)
		if err != nil {
			return nil, err
		}
		allowed[n] = true
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		origin := r.Header.Get("Origin")
		w.Header().Add("Vary", "Origin")
		preflight := r.Method == http.MethodOptions && r.Header.Get("Access-Control-Request-Method") != ""
		if origin == "" || !allowed[origin] {
			if preflight {
				http.Error(w, fmt.Sprintf("origin %q may not query this index (cairn index serve --cors-origin)", origin), http.StatusForbidden)
				return
			}
			h.ServeHTTP(w, r)
			return
		}
		w.Header().Set("Access-Control-Allow-Origin", origin)
		if preflight {
			w.Header().Set("Access-Control-Allow-Methods", "GET")
			w.Header().Set("Access-Control-Allow-Headers", "Authorization")
			w.Header().Set("Access-Control-Max-Age", "600")
			w.WriteHeader(http.StatusNoContent)
			return
		}
		h.ServeHTTP(w, r)
	}), nil
}
