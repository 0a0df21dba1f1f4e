package witness

import (
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"golang.org/x/time/rate"
)

// MaxBodyBytes bounds an add-checkpoint body: an ML-DSA-signed checkpoint
// (~3.3 KB) with 63 proof lines (~2.8 KB) fits many times over.
const MaxBodyBytes = 64 << 10

// Handler serves the witness over HTTP:
//
//	POST /add-checkpoint             tlog-witness
//	GET  /<hex sha256(origin)>/checkpoint   the latest cosigned checkpoint
//	GET  /healthz, /metrics
func (w *Witness) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /add-checkpoint", w.handleAdd)
	mux.HandleFunc("GET /{id}/checkpoint", w.handleLatest)
	mux.HandleFunc("GET /healthz", func(rw http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(rw, "ok\n") })
	mux.Handle("GET /metrics", promhttp.HandlerFor(w.metrics.registry, promhttp.HandlerOpts{}))
	return mux
}

func (w *Witness) handleAdd(rw http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(http.MaxBytesReader(rw, r.Body, MaxBodyBytes))
	var tooBig *http.MaxBytesError
	if errors.As(err, &tooBig) {
		w.answer(rw, http.StatusRequestEntityTooLarge, fmt.Sprintf("request body over %d bytes\n", MaxBodyBytes), "")
		return
	}
	if err != nil {
		w.answer(rw, http.StatusBadRequest, "reading the request body: "+err.Error()+"\n", "")
		return
	}
	req, err := ParseAddCheckpoint(body)
	if err == nil {
		var cosig []byte
		if cosig, err = w.AddCheckpoint(r.Context(), req); err == nil {
			w.answer(rw, http.StatusOK, string(cosig), "")
			return
		}
	}
	var conflict ConflictError
	if errors.As(err, &conflict) {
		// tlog-witness: exactly this content type, body "<size>\n".
		w.answer(rw, http.StatusConflict, strconv.FormatUint(conflict.Size, 10)+"\n", "text/x.tlog.size")
		return
	}
	code := statusOf(err)
	switch code {
	case http.StatusInternalServerError:
		w.logger.Error("add-checkpoint failed", "error", err)
	case http.StatusForbidden, http.StatusTooManyRequests:
		// A forged or mis-keyed checkpoint, or a log over its budget. The
		// request carries no secret (a checkpoint is public), so the reason
		// is logged as is, but at a bounded rate.
		w.refusals.log(r.RemoteAddr, code, err)
	}
	w.answer(rw, code, err.Error()+"\n", "")
}

// statusOf is the one mapping from witness outcomes to HTTP status codes.
func statusOf(err error) int {
	switch {
	case errors.Is(err, ErrMalformed), errors.Is(err, ErrOldTooLarge):
		return http.StatusBadRequest
	case errors.Is(err, ErrUnknownOrigin):
		return http.StatusNotFound
	case errors.Is(err, ErrBadSignature):
		return http.StatusForbidden
	case errors.Is(err, ErrInconsistent):
		return http.StatusUnprocessableEntity
	case errors.Is(err, ErrRateLimited):
		return http.StatusTooManyRequests
	default:
		return http.StatusInternalServerError
	}
}

func (w *Witness) answer(rw http.ResponseWriter, code int, body, ctype string) {
	if ctype == "" {
		ctype = "text/plain; charset=utf-8"
	}
	rw.Header().Set("Content-Type", ctype)
	if code == http.StatusTooManyRequests {
		rw.Header().Set("Retry-After", "60")
	}
	rw.WriteHeader(code)
	_, _ = io.WriteString(rw, body)
	w.metrics.requests.WithLabelValues(strconv.Itoa(code)).Inc()
}

func (w *Witness) handleLatest(rw http.ResponseWriter, r *http.Request) {
	cp, ok, err := w.LatestByID(r.PathValue("id"))
	switch {
	case err != nil:
		w.logger.Error("reading state", "error", err)
		http.Error(rw, "internal error", http.StatusInternalServerError)
	case !ok:
		http.Error(rw, "no checkpoint cosigned for this origin", http.StatusNotFound)
	default:
		rw.Header().Set("Content-Type", "text/plain; charset=utf-8")
		rw.Header().Set("Cache-Control", "no-cache")
		_, _ = rw.Write(cp)
	}
}

// metrics are the witness's Prometheus metrics, on a registry of its own.
type metrics struct {
	registry     *prometheus.Registry
	requests     *prometheus.CounterVec
	cosignatures *prometheus.CounterVec
	evidence     prometheus.Counter
	size         *prometheus.GaugeVec
	rateLimited  *prometheus.CounterVec
}

func newMetrics() *metrics {
	m := &metrics{
		registry: prometheus.NewRegistry(),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "cairn_witness_requests_total", Help: "add-checkpoint requests by HTTP status.",
		}, []string{"status"}),
		cosignatures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "cairn_witness_cosignatures_total", Help: "Cosignatures issued, by key type (ed25519, ml-dsa-44).",
		}, []string{"key_type"}),
		evidence: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "cairn_witness_evidence_total", Help: "Inconsistent checkpoints refused and kept as evidence.",
		}),
		size: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "cairn_witness_log_size_entries", Help: "Size of the latest cosigned checkpoint, per log.",
		}, []string{"origin"}),
		rateLimited: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "cairn_witness_rate_limited_requests_total",
			Help: "add-checkpoint requests refused (429) because the log spent its qpd budget, per listed origin.",
		}, []string{"origin"}),
	}
	m.registry.MustRegister(m.requests, m.cosignatures, m.evidence, m.size, m.rateLimited)
	return m
}

// refusalLog logs refused requests at most refusalBurst at once and then one
// every refusalEvery, counting the lines it dropped in between.
type refusalLog struct {
	logger  *slog.Logger
	limiter *rate.Limiter
	dropped atomic.Uint64
}

const (
	refusalEvery = 10 * time.Second
	refusalBurst = 5
)

func newRefusalLog(logger *slog.Logger) *refusalLog {
	return &refusalLog{logger: logger, limiter: rate.NewLimiter(rate.Every(refusalEvery), refusalBurst)}
}

func (l *refusalLog) log(remote string, code int, err error) {
	if !l.limiter.Allow() {
		l.dropped.Add(1)
		return
	}
	l.logger.Warn("add-checkpoint refused",
		slog.Int("status", code), slog.String("remote", remote),
		slog.String("reason", truncate(err.Error())), slog.Uint64("unlogged_refusals", l.dropped.Swap(0)))
}

func b64(b []byte) string { return base64.StdEncoding.EncodeToString(b) }
