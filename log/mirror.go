package log

import (
	"context"
	"crypto/tls"
	"log/slog"
	"net/http"
	"net/url"
	"sync"
	"time"

	"github.com/cairnlog/cairn/client"
	"github.com/cairnlog/cairn/internal/fielderr"
	"github.com/prometheus/client_golang/prometheus"
	fnote "github.com/transparency-dev/formats/note"
	"golang.org/x/mod/sumdb/note"
)

// MirrorTarget is a tlog-mirror the log pushes its checkpoints and entries to.
type MirrorTarget struct {
	// URL is the mirror's submission prefix.
	URL string
	// VKey is the mirror's cosignature vkey; empty: its answers are not checked.
	VKey string
}

// Bounds of the push loop: how often it looks for a new checkpoint, and the
// backoff after a failed push.
const (
	mirrorPollInterval = 250 * time.Millisecond
	mirrorMinBackoff   = 500 * time.Millisecond
	mirrorMaxBackoff   = 30 * time.Second
	mirrorPushTimeout  = 5 * time.Minute
)

// validateMirrors checks Config.Mirrors.
func (c Config) validateMirrors() error {
	for _, m := range c.Mirrors {
		u, err := url.Parse(m.URL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return fielderr.Errorf("Config.Mirrors", "%q: want an http:// or https:// URL", m.URL)
		}
		if m.VKey != "" {
			if _, err := fnote.NewVerifierForCosignatureV1(m.VKey); err != nil {
				return fielderr.Errorf("Config.Mirrors", "mirror %s key %q: %v", m.URL, m.VKey, err)
			}
		}
	}
	return nil
}

// mirrorMetrics are the per-mirror push metrics.
type mirrorMetrics struct {
	entriesBehind *prometheus.GaugeVec
	secondsBehind *prometheus.GaugeVec
	errors        *prometheus.CounterVec
	pushed        *prometheus.CounterVec
}

func newMirrorMetrics(reg *prometheus.Registry) *mirrorMetrics {
	m := &mirrorMetrics{
		entriesBehind: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "cairn_log_mirror_behind_entries", Help: "Entries the mirror has not cosigned yet, behind the published checkpoint.",
		}, []string{"mirror"}),
		secondsBehind: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "cairn_log_mirror_behind_seconds", Help: "Age of the oldest published checkpoint the mirror has not cosigned yet (0: up to date).",
		}, []string{"mirror"}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "cairn_log_mirror_push_errors_total", Help: "Failed pushes to the mirror.",
		}, []string{"mirror"}),
		pushed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "cairn_log_mirror_pushed_entries_total", Help: "Entries uploaded to the mirror.",
		}, []string{"mirror"}),
	}
	reg.MustRegister(m.entriesBehind, m.secondsBehind, m.errors, m.pushed)
	return m
}

// mirrorPusher keeps one mirror up to date with the published checkpoint.
// It runs beside the append path and never blocks it: a slow or dead mirror
// only falls behind (cairn_log_mirror_behind_*).
type mirrorPusher struct {
	l       *Log
	m       *client.Mirror
	url     string
	metrics *mirrorMetrics
}

// startMirrors starts one pusher per configured mirror; wg is their owner.
func (l *Log) startMirrors(ctx context.Context, wg *sync.WaitGroup, tlsConfig *tls.Config) error {
	if len(l.cfg.Mirrors) == 0 {
		return nil
	}
	mm := newMirrorMetrics(l.metrics.registry)
	for _, t := range l.cfg.Mirrors {
		var vs []note.Verifier
		if t.VKey != "" {
			v, err := fnote.NewVerifierForCosignatureV1(t.VKey)
			if err != nil {
				return fielderr.Errorf("Config.Mirrors", "mirror %s key: %v", t.URL, err)
			}
			vs = append(vs, v)
		}
		m, err := client.NewMirror(t.URL, vs, tlsConfig, mirrorPushTimeout)
		if err != nil {
			return fielderr.New("Config.Mirrors", err)
		}
		p := &mirrorPusher{l: l, m: m, url: t.URL, metrics: mm}
		wg.Add(1)
		go func() {
			defer wg.Done()
			p.run(ctx)
		}()
	}
	return nil
}

func (p *mirrorPusher) run(ctx context.Context) {
	var pushed uint64
	done := false // a push succeeded, at size pushed
	var behindSince time.Time
	backoff := time.Duration(0)
	t := time.NewTimer(0)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		wait := mirrorPollInterval
		cp, err := p.l.reader.ReadCheckpoint(ctx)
		if err != nil {
			t.Reset(wait)
			continue
		}
		size, err := p.l.publishedSize(cp)
		if err != nil {
			t.Reset(wait)
			continue
		}
		if size > pushed && behindSince.IsZero() {
			behindSince = time.Now()
		}
		p.metrics.entriesBehind.WithLabelValues(p.url).Set(float64(size - min(size, pushed)))
		if !behindSince.IsZero() {
			p.metrics.secondsBehind.WithLabelValues(p.url).Set(time.Since(behindSince).Seconds())
		}
		if size > pushed || !done {
			pctx, cancel := context.WithTimeout(ctx, mirrorPushTimeout)
			res, err := p.m.Push(pctx, p.l.reader, p.l.verifier(), cp)
			cancel()
			if err != nil {
				if ctx.Err() != nil {
					return
				}
				p.metrics.errors.WithLabelValues(p.url).Inc()
				backoff = min(max(2*backoff, mirrorMinBackoff), mirrorMaxBackoff)
				wait = backoff
				p.l.logger.Warn("mirror push failed; retrying", slog.String("mirror", p.url), slog.Duration("backoff", backoff), slog.Any("error", err))
			} else {
				backoff = 0
				p.metrics.pushed.WithLabelValues(p.url).Add(float64(res.Entries))
				pushed, done = res.Size, true
				behindSince = time.Time{}
				p.metrics.entriesBehind.WithLabelValues(p.url).Set(0)
				p.metrics.secondsBehind.WithLabelValues(p.url).Set(0)
				wait = 0
			}
		}
		t.Reset(wait)
	}
}

// mirrorTLS is the TLS configuration of the log's outgoing connections.
func mirrorTLS(c *http.Client) *tls.Config {
	if tr, ok := c.Transport.(*http.Transport); ok && tr.TLSClientConfig != nil {
		return tr.TLSClientConfig.Clone()
	}
	return nil
}
