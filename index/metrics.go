package index

import (
	"encoding/base64"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
)

func b64(h []byte) string { return base64.StdEncoding.EncodeToString(h) }

// metrics are the index's Prometheus metrics (cairn_index_*).
type metrics struct {
	registry *prometheus.Registry
	logSize  prometheus.Gauge
	indexed  prometheus.Gauge
	lag      prometheus.Gauge
	fork     prometheus.Gauge
	ingested prometheus.Counter
	errors   prometheus.Counter
	queries  *prometheus.HistogramVec
}

func newMetrics() *metrics {
	m := &metrics{
		registry: prometheus.NewRegistry(),
		logSize: prometheus.NewGauge(prometheus.GaugeOpts{Name: "cairn_index_log_size_entries",
			Help: "Size of the latest checkpoint of the log that verified against the policy."}),
		indexed: prometheus.NewGauge(prometheus.GaugeOpts{Name: "cairn_index_indexed_entries",
			Help: "Entries indexed (verified and committed)."}),
		lag: prometheus.NewGauge(prometheus.GaugeOpts{Name: "cairn_index_lag_entries",
			Help: "Entries in the log's latest checkpoint not yet indexed."}),
		fork: prometheus.NewGauge(prometheus.GaugeOpts{Name: "cairn_index_fork_detected",
			Help: "1 once the log served a checkpoint inconsistent with one the index verified: ingestion stopped."}),
		ingested: prometheus.NewCounter(prometheus.CounterOpts{Name: "cairn_index_ingested_records_total",
			Help: "Records indexed since start."}),
		errors: prometheus.NewCounter(prometheus.CounterOpts{Name: "cairn_index_ingest_errors_total",
			Help: "Failed indexing attempts (retried)."}),
		queries: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "cairn_index_query_duration_seconds",
			Help: "Query latency including proofs.", Buckets: prometheus.ExponentialBuckets(0.0005, 2, 14)}, []string{"api"}),
	}
	m.registry.MustRegister(m.logSize, m.indexed, m.lag, m.fork, m.ingested, m.errors, m.queries)
	return m
}

// status is what GET /status answers.
type status struct {
	// mu guards every field below.
	mu         sync.Mutex
	origin     string
	logSize    uint64
	indexed    uint64
	checkpoint []byte
	state      string // following, error, fork
	err        string
}

// Status is the JSON of GET /status.
type Status struct {
	Origin      string `json:"origin"`
	LogSize     uint64 `json:"log_size"`
	IndexedSize uint64 `json:"indexed_size"`
	Lag         uint64 `json:"lag"`
	State       string `json:"state"`
	Checkpoint  string `json:"checkpoint,omitempty"`
	Error       string `json:"error,omitempty"`
}

func (s *status) setLogSize(n uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.logSize = n
}

func (s *status) setIndexed(n uint64, cp []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.indexed, s.checkpoint = n, cp
}

func (s *status) setError(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.state == "fork" {
		return
	}
	if err == nil {
		s.state, s.err = "following", ""
		return
	}
	s.state, s.err = "error", err.Error()
}

func (s *status) setFork(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.state, s.err = "fork", err.Error()
}

func (s *status) get() Status {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := Status{Origin: s.origin, LogSize: s.logSize, IndexedSize: s.indexed, State: s.state, Checkpoint: string(s.checkpoint), Error: s.err}
	if s.logSize > s.indexed {
		out.Lag = s.logSize - s.indexed
	}
	if out.State == "" {
		out.State = "starting"
	}
	return out
}
