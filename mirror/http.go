package mirror

import (
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"strconv"
	"strings"

	"github.com/cairnlog/cairn/format/addcheckpoint"
	"github.com/cairnlog/cairn/format/addentries"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/transparency-dev/tessera/api/layout"
)

// MaxCheckpointBodyBytes bounds an add-checkpoint body (as the witness).
const MaxCheckpointBodyBytes = 64 << 10

// Cache-Control values of tlog-tiles, as the log serves them.
const (
	cacheCheckpoint = "no-cache"
	cacheImmutable  = "max-age=31536000, immutable"
)

// Handler serves the mirror over HTTP:
//
//	POST /add-checkpoint                       tlog-mirror (witness semantics, pending only)
//	POST /add-entries                          tlog-mirror
//	GET  /<hex sha256(origin)>/checkpoint      the mirror checkpoint (log signature + mirror cosignature)
//	GET  /<hex sha256(origin)>/tile/...        tlog-tiles hash tiles and entry bundles
//	GET  /<hex sha256(origin)>/minimum-index   the mirror's minimum index, as the log serves its own (404: 0)
//	GET  /healthz, /metrics
func (m *Mirror) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /add-checkpoint", m.handleAddCheckpoint)
	mux.HandleFunc("POST /add-entries", m.handleAddEntries)
	mux.HandleFunc("GET /{id}/checkpoint", m.handleCheckpoint)
	mux.HandleFunc("GET /{id}/minimum-index", m.handleMinimumIndex)
	mux.HandleFunc("GET /{id}/tile/entries/{path...}", m.handleEntryBundle)
	mux.HandleFunc("GET /{id}/tile/{level}/{path...}", m.handleTile)
	mux.HandleFunc("GET /healthz", func(rw http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(rw, "ok\n") })
	mux.Handle("GET /metrics", promhttp.HandlerFor(m.metrics.registry, promhttp.HandlerOpts{}))
	return mux
}

func (m *Mirror) handleAddCheckpoint(rw http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(http.MaxBytesReader(rw, r.Body, MaxCheckpointBodyBytes))
	var tooBig *http.MaxBytesError
	if errors.As(err, &tooBig) {
		m.answer(rw, "add-checkpoint", http.StatusRequestEntityTooLarge, fmt.Sprintf("request body over %d bytes\n", MaxCheckpointBodyBytes), "")
		return
	}
	if err != nil {
		m.answer(rw, "add-checkpoint", http.StatusBadRequest, "reading the request body: "+err.Error()+"\n", "")
		return
	}
	req, err := addcheckpoint.Parse(body)
	if err != nil {
		err = fmt.Errorf("%w: %v", ErrMalformed, err)
	} else if err = m.AddCheckpoint(r.Context(), req); err == nil {
		// tlog-mirror: the mirror key does not sign here; an empty body.
		m.answer(rw, "add-checkpoint", http.StatusOK, "", "")
		return
	}
	var conflict ConflictError
	if errors.As(err, &conflict) {
		// tlog-witness: exactly this content type, body "<size>\n".
		m.answer(rw, "add-checkpoint", http.StatusConflict, strconv.FormatUint(conflict.Size, 10)+"\n", "text/x.tlog.size")
		return
	}
	m.answerErr(rw, "add-checkpoint", err)
}

func (m *Mirror) handleAddEntries(rw http.ResponseWriter, r *http.Request) {
	rw.Header().Set("Accept-Encoding", "gzip")
	var body io.Reader = r.Body
	switch enc := strings.ToLower(strings.TrimSpace(r.Header.Get("Content-Encoding"))); enc {
	case "", "identity":
	case "gzip":
		gz, err := gzip.NewReader(r.Body)
		if err != nil {
			m.answerErr(rw, "add-entries", fmt.Errorf("%w: gzip body: %v", ErrMalformed, err))
			return
		}
		defer gz.Close()
		body = gz
	default:
		m.answer(rw, "add-entries", http.StatusUnsupportedMediaType, fmt.Sprintf("Content-Encoding %q: only gzip is supported\n", enc), "")
		return
	}
	cosigs, err := m.AddEntries(r.Context(), body)
	if err == nil {
		m.answer(rw, "add-entries", http.StatusOK, string(cosigs), "")
		return
	}
	var info *InfoError
	if errors.As(err, &info) {
		code := http.StatusConflict
		if info.Accepted {
			code = http.StatusAccepted
		}
		m.answer(rw, "add-entries", code, string(info.Info.Marshal()), addentries.MediaTypeMirrorInfo)
		return
	}
	m.answerErr(rw, "add-entries", err)
}

// statusOf is the one mapping from mirror outcomes to HTTP status codes.
func statusOf(err error) int {
	switch {
	case errors.Is(err, ErrMalformed), errors.Is(err, ErrOldTooLarge):
		return http.StatusBadRequest
	case errors.Is(err, ErrUnknownOrigin):
		return http.StatusNotFound
	case errors.Is(err, ErrBadSignature):
		return http.StatusForbidden
	case errors.Is(err, ErrInconsistent), errors.Is(err, ErrNoPending), errors.Is(err, ErrBadProof):
		return http.StatusUnprocessableEntity
	default:
		return http.StatusInternalServerError
	}
}

func (m *Mirror) answerErr(rw http.ResponseWriter, endpoint string, err error) {
	code := statusOf(err)
	if code == http.StatusInternalServerError {
		m.logger.Error(endpoint+" failed", slog.Any("error", err))
	}
	m.answer(rw, endpoint, code, err.Error()+"\n", "")
}

func (m *Mirror) answer(rw http.ResponseWriter, endpoint string, code int, body, ctype string) {
	if ctype == "" {
		ctype = "text/plain; charset=utf-8"
	}
	rw.Header().Set("Content-Type", ctype)
	rw.WriteHeader(code)
	_, _ = io.WriteString(rw, body)
	m.metrics.requests.WithLabelValues(endpoint, strconv.Itoa(code)).Inc()
}

func (m *Mirror) handleCheckpoint(rw http.ResponseWriter, r *http.Request) {
	lm, ok := m.lookupID(r.PathValue("id"))
	if !ok {
		http.Error(rw, "this mirror does not store that log", http.StatusNotFound)
		return
	}
	lm.mu.Lock()
	cp := lm.mirrorNote
	lm.mu.Unlock()
	if cp == nil {
		http.Error(rw, "no mirror checkpoint yet for this log", http.StatusNotFound)
		return
	}
	rw.Header().Set("Content-Type", "text/plain; charset=utf-8")
	rw.Header().Set("Cache-Control", cacheCheckpoint)
	_, _ = rw.Write(cp)
}

// handleMinimumIndex answers like the log's GET /minimum-index: the index
// below which this copy holds nothing, or 404 when it holds everything.
func (m *Mirror) handleMinimumIndex(rw http.ResponseWriter, r *http.Request) {
	lm, ok := m.lookupID(r.PathValue("id"))
	if !ok || lm.minIndex == 0 {
		http.Error(rw, "no minimum index: every entry is kept", http.StatusNotFound)
		return
	}
	rw.Header().Set("Content-Type", "text/plain; charset=utf-8")
	rw.Header().Set("Cache-Control", cacheCheckpoint)
	_, _ = fmt.Fprintf(rw, "%d\n", lm.minIndex)
}

func (m *Mirror) handleTile(rw http.ResponseWriter, r *http.Request) {
	lm, ok := m.lookupID(r.PathValue("id"))
	if !ok {
		http.Error(rw, "this mirror does not store that log", http.StatusNotFound)
		return
	}
	level, index, p, err := layout.ParseTileLevelIndexPartial(r.PathValue("level"), r.PathValue("path"))
	if err != nil {
		http.Error(rw, fmt.Sprintf("malformed tile path %q: %v", r.URL.Path, err), http.StatusBadRequest)
		return
	}
	t, err := lm.obj.Get(r.Context(), logPath(layout.TilePath(level, index, p)))
	writeStatic(rw, r, t, err)
}

func (m *Mirror) handleEntryBundle(rw http.ResponseWriter, r *http.Request) {
	lm, ok := m.lookupID(r.PathValue("id"))
	if !ok {
		http.Error(rw, "this mirror does not store that log", http.StatusNotFound)
		return
	}
	index, p, err := layout.ParseTileIndexPartial(r.PathValue("path"))
	if err != nil {
		http.Error(rw, fmt.Sprintf("malformed entry bundle path %q: %v", r.URL.Path, err), http.StatusBadRequest)
		return
	}
	b, err := lm.obj.Get(r.Context(), logPath(layout.EntriesPath(index, p)))
	writeStatic(rw, r, b, err)
}

// writeStatic answers with an immutable tile or bundle.
func writeStatic(rw http.ResponseWriter, r *http.Request, body []byte, err error) {
	if errors.Is(err, os.ErrNotExist) {
		http.Error(rw, "not found: "+r.URL.Path, http.StatusNotFound)
		return
	}
	if err != nil {
		http.Error(rw, "reading "+r.URL.Path+": "+err.Error(), http.StatusServiceUnavailable)
		return
	}
	h := rw.Header()
	h.Set("Content-Type", "application/octet-stream")
	h.Set("Cache-Control", cacheImmutable)
	h.Set("Content-Length", strconv.Itoa(len(body)))
	_, _ = rw.Write(body)
}

// metrics are the mirror's Prometheus metrics, on a registry of its own.
type metrics struct {
	registry    *prometheus.Registry
	requests    *prometheus.CounterVec
	entries     *prometheus.CounterVec
	evidence    prometheus.Counter
	dropped     *prometheus.CounterVec
	pendingSize *prometheus.GaugeVec
	mirrorSize  *prometheus.GaugeVec
}

func newMetrics() *metrics {
	m := &metrics{
		registry: prometheus.NewRegistry(),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "cairn_mirror_requests_total", Help: "add-checkpoint and add-entries requests by endpoint and HTTP status.",
		}, []string{"endpoint", "status"}),
		entries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "cairn_mirror_stored_entries_total", Help: "Entries authenticated and stored, per log.",
		}, []string{"origin"}),
		evidence: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "cairn_mirror_evidence_total", Help: "Inconsistent checkpoints refused and kept as evidence.",
		}),
		dropped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "cairn_mirror_dropped_cosignatures_total", Help: "Signature lines on received checkpoints not relayed: unknown key, or a known key's cosignature that does not verify, per log.",
		}, []string{"origin"}),
		pendingSize: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "cairn_mirror_pending_size_entries", Help: "Size of the pending checkpoint, per log.",
		}, []string{"origin"}),
		mirrorSize: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "cairn_mirror_checkpoint_size_entries", Help: "Size of the cosigned mirror checkpoint, per log.",
		}, []string{"origin"}),
	}
	m.registry.MustRegister(m.requests, m.entries, m.evidence, m.dropped, m.pendingSize, m.mirrorSize)
	return m
}
