package index

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"time"

	"github.com/cairnlog/cairn/format/search"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// httpStatus maps a domain error to its HTTP status: the one place.
func httpStatus(err error) int {
	switch {
	case errors.Is(err, search.ErrBadQuery):
		return http.StatusBadRequest
	case errors.Is(err, ErrUnauthenticated):
		return http.StatusUnauthorized
	case errors.Is(err, ErrPermissionDenied):
		return http.StatusForbidden
	case errors.Is(err, errNotReady):
		return http.StatusServiceUnavailable
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return http.StatusServiceUnavailable
	}
	return http.StatusInternalServerError
}

func writeError(w http.ResponseWriter, err error) {
	http.Error(w, err.Error(), httpStatus(err))
}

// Handler serves the index's HTTP API (docs/search.md).
func (x *Index) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /search", func(w http.ResponseWriter, r *http.Request) { x.handleSearch(w, r, false) })
	mux.HandleFunc("GET /history", func(w http.ResponseWriter, r *http.Request) { x.handleSearch(w, r, true) })
	mux.HandleFunc("GET /fields", x.handleFields)
	mux.HandleFunc("GET /status", x.handleStatus)
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok\n")) })
	mux.HandleFunc("GET /readyz", x.handleReady)
	mux.Handle("GET /metrics", promhttp.HandlerFor(x.m.registry, promhttp.HandlerOpts{}))
	return mux
}

func (x *Index) handleSearch(w http.ResponseWriter, r *http.Request, history bool) {
	start := time.Now()
	if err := x.guard.check(r.Header.Get("Authorization"), r.TLS); err != nil {
		writeError(w, err)
		return
	}
	q, err := search.ParseQuery(r.URL.Query(), x.known)
	if err != nil {
		writeError(w, err)
		return
	}
	if history {
		if len(q.Fields) != 1 || q.Principal != "" || q.Subject != "" || q.ContentType != "" || !q.Since.IsZero() || !q.Until.IsZero() {
			writeError(w, &search.ParamError{Param: "history", Reason: "want exactly one field condition NAME=VALUE (and limit, page)"})
			return
		}
	}
	bw := bufio.NewWriterSize(w, 64<<10)
	enc := json.NewEncoder(bw)
	started := false
	next, err := x.Search(r.Context(), q, func(h *search.Hit) error {
		if !started {
			w.Header().Set("Content-Type", "application/jsonl")
			started = true
		}
		return enc.Encode(h)
	})
	if err != nil {
		if !started {
			writeError(w, err)
			return
		}
		// Mid-stream: the status is sent; cut the answer short so the
		// client sees a truncated line, not a complete-looking answer.
		x.f.cfg.Logger.Warn("search failed mid-answer", "error", err)
		panic(http.ErrAbortHandler)
	}
	if !started {
		w.Header().Set("Content-Type", "application/jsonl")
	}
	if next != "" {
		_ = enc.Encode(search.Page{NextPage: next})
	}
	_ = bw.Flush()
	x.m.queries.WithLabelValues("http").Observe(time.Since(start).Seconds())
}

func (x *Index) handleFields(w http.ResponseWriter, r *http.Request) {
	if err := x.guard.check(r.Header.Get("Authorization"), r.TLS); err != nil {
		writeError(w, err)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]any{"fields": x.fields})
}

func (x *Index) handleStatus(w http.ResponseWriter, _ *http.Request) {
	s := x.st.get()
	w.Header().Set("Content-Type", "application/json")
	if s.State == "fork" {
		w.WriteHeader(http.StatusServiceUnavailable)
	}
	_ = json.NewEncoder(w).Encode(s)
}

func (x *Index) handleReady(w http.ResponseWriter, _ *http.Request) {
	s := x.st.get()
	if s.State == "fork" || s.Checkpoint == "" {
		http.Error(w, "not ready: "+s.State+" "+s.Error, http.StatusServiceUnavailable)
		return
	}
	_, _ = w.Write([]byte("ok\n"))
}
