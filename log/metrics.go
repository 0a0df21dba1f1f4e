package log

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// metrics are the log's Prometheus metrics, on a registry of its own.
type metrics struct {
	registry      *prometheus.Registry
	requests      *prometheus.CounterVec
	appends       *prometheus.CounterVec
	rejected      prometheus.Counter
	appendErrors  prometheus.Counter
	appendLatency prometheus.Histogram
	treeSize      prometheus.Gauge
	integration   prometheus.Histogram
	checkpointAt  prometheus.Gauge

	authFailures         *prometheus.CounterVec
	accessReloadFailures prometheus.Counter
	accessReloadSuccess  prometheus.Gauge

	minIndex           prometheus.Gauge
	holds              prometheus.Gauge
	archivedBundles    prometheus.Counter
	deletedBundles     prometheus.Counter
	retentionFailures  prometheus.Counter
	retentionEvaluated prometheus.Gauge
	erasures           prometheus.Counter
}

func newMetrics() *metrics {
	m := &metrics{
		registry: prometheus.NewRegistry(),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "cairn_log_append_requests_total",
			Help: "Append requests received, by API (grpc, stream, http; batch and http-batch count records).",
		}, []string{"api"}),
		appends: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "cairn_log_appends_total",
			Help: "Records durably sequenced, by whether they were duplicates of an earlier record.",
		}, []string{"duplicate"}),
		rejected: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "cairn_log_append_rejected_total",
			Help: "Append requests rejected as invalid (nothing sequenced).",
		}),
		appendErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "cairn_log_append_errors_total",
			Help: "Append requests that failed in storage or on pushback (nothing acknowledged).",
		}),
		appendLatency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "cairn_log_append_duration_seconds",
			Help:    "Time from receiving a record to its durable index.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 14),
		}),
		treeSize: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "cairn_log_tree_size_entries",
			Help: "Size of the latest published checkpoint.",
		}),
		integration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "cairn_log_integration_latency_seconds",
			Help:    "Time from receiving a record to a published checkpoint committing to it (sampled).",
			Buckets: prometheus.ExponentialBuckets(0.01, 2, 12),
		}),
		checkpointAt: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "cairn_log_checkpoint_timestamp_seconds",
			Help: "Unix time at which the published checkpoint last changed; checkpoint age is time() minus this.",
		}),
		authFailures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "cairn_log_auth_failures_total",
			Help: "Presented credentials refused, by kind (token, certificate, malformed); counts the failures the log rate-limits out of its output too.",
		}, []string{"credential"}),
		accessReloadFailures: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "cairn_access_reload_failures_total",
			Help: "Access file loads that failed (the previous file stayed in force).",
		}),
		accessReloadSuccess: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "cairn_access_last_reload_success_timestamp_seconds",
			Help: "Unix time of the last successful access file load (0: no access file).",
		}),
		minIndex: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "cairn_log_minimum_index_entries",
			Help: "The tlog-tiles minimum index: entry bundles below it are no longer served (410 Gone).",
		}),
		holds: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "cairn_log_retention_holds",
			Help: "Legal holds in force.",
		}),
		archivedBundles: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "cairn_log_retention_archived_bundles_total",
			Help: "Entry bundles copied to the archive and verified there.",
		}),
		deletedBundles: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "cairn_log_retention_deleted_bundles_total",
			Help: "Entry bundles physically deleted after their grace period.",
		}),
		retentionFailures: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "cairn_log_retention_evaluation_failures_total",
			Help: "Retention policy evaluations that failed (the next one retries).",
		}),
		retentionEvaluated: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "cairn_log_retention_last_evaluation_timestamp_seconds",
			Help: "Unix time of the last retention policy evaluation.",
		}),
		erasures: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "cairn_log_subject_erasures_total",
			Help: "Data subject keys destroyed by this frontend (cairn erase).",
		}),
	}
	m.registry.MustRegister(m.minIndex, m.holds, m.archivedBundles, m.deletedBundles, m.retentionFailures, m.retentionEvaluated, m.erasures)
	m.registry.MustRegister(m.requests, m.appends, m.rejected, m.appendErrors, m.appendLatency,
		m.treeSize, m.integration, m.checkpointAt, m.authFailures, m.accessReloadFailures, m.accessReloadSuccess,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

func (m *metrics) observeAppend(_ uint64, dup bool, start time.Time) {
	if dup {
		m.appends.WithLabelValues("true").Inc()
	} else {
		m.appends.WithLabelValues("false").Inc()
	}
	m.appendLatency.Observe(time.Since(start).Seconds())
}
