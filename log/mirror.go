package log

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cairnlog/cairn/client"
	"github.com/cairnlog/cairn/format/addcheckpoint"
	"github.com/cairnlog/cairn/internal/fielderr"
	"github.com/prometheus/client_golang/prometheus"
	fnote "github.com/transparency-dev/formats/note"
	"github.com/transparency-dev/tessera"
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
	// ack is the size the mirror last acknowledged, for the explorer.
	ack *mirrorAck
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
		p := &mirrorPusher{l: l, m: m, url: t.URL, metrics: mm, ack: l.explorer.addMirror(t.URL)}
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
			if errors.Is(err, client.ErrMirrorAhead) {
				// The publishing path (a policy naming the mirror) got
				// there first: the mirror holds a newer checkpoint.
				err, res = nil, &client.PushResult{Size: size}
			}
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
				p.ack.set(res.Size)
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

// mirrorTransport lets a publishing policy (Config.WitnessPolicy) name a
// mirror as one of its cosigners. Tessera asks every cosigner of the policy
// for a cosignature with a tlog-witness add-checkpoint request; a mirror
// cosigns only once it stores the entries, which add-checkpoint does not
// carry. So a request to a URL of Config.Mirrors is answered here: the
// checkpoint and its entries (integrated in storage before publishing) are
// pushed to the mirror (add-checkpoint, add-entries) and the answer is the
// mirror's cosignature, as a witness's would be. Publishing then waits for
// the mirror as it waits for witnesses: a checkpoint is published only once
// it is stored in the mirror's region.
type mirrorTransport struct {
	base     http.RoundTripper
	mirrors  map[string]*client.Mirror // by URL, without a trailing slash
	verifier note.Verifier
	reader   atomic.Pointer[tessera.LogReader]
}

func newMirrorTransport(base http.RoundTripper, targets []MirrorTarget, tlsConfig *tls.Config, verifier note.Verifier) (*mirrorTransport, error) {
	t := &mirrorTransport{base: base, mirrors: map[string]*client.Mirror{}, verifier: verifier}
	for _, mt := range targets {
		var vs []note.Verifier
		if mt.VKey != "" {
			v, err := fnote.NewVerifierForCosignatureV1(mt.VKey)
			if err != nil {
				return nil, fielderr.Errorf("Config.Mirrors", "mirror %s key: %v", mt.URL, err)
			}
			vs = append(vs, v)
		}
		m, err := client.NewMirror(mt.URL, vs, tlsConfig, mirrorPushTimeout)
		if err != nil {
			return nil, fielderr.New("Config.Mirrors", err)
		}
		t.mirrors[strings.TrimSuffix(mt.URL, "/")] = m
	}
	return t, nil
}

func (t *mirrorTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.Method != http.MethodPost || !strings.HasSuffix(r.URL.Path, "/add-checkpoint") {
		return t.base.RoundTrip(r)
	}
	u := *r.URL
	u.Path = strings.TrimSuffix(strings.TrimSuffix(u.Path, "add-checkpoint"), "/")
	m, ok := t.mirrors[strings.TrimSuffix(u.String(), "/")]
	if !ok {
		return t.base.RoundTrip(r)
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	r.Body.Close()
	if err != nil {
		return nil, err
	}
	req, err := addcheckpoint.Parse(body)
	if err != nil {
		return nil, fmt.Errorf("mirror %s: the publisher's request: %w", m.URL, err)
	}
	answer := func(code int, b []byte) *http.Response {
		return &http.Response{StatusCode: code, Status: http.StatusText(code), Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
			Header: http.Header{"Content-Type": {"text/plain; charset=utf-8"}}, Body: io.NopCloser(bytes.NewReader(b)),
			ContentLength: int64(len(b)), Request: r}
	}
	res, err := m.Push(r.Context(), t, t.verifier, req.Checkpoint)
	if err != nil {
		return answer(http.StatusServiceUnavailable, []byte(err.Error()+"\n")), nil
	}
	return answer(http.StatusOK, res.Cosignatures), nil
}

// errStarting is a read before Tessera's appender returned its reader (the
// first checkpoint, of size 0, is published before that and reads nothing).
var errStarting = errors.New("the log is starting")

// ReadCheckpoint, ReadTile and ReadEntryBundle read the log's storage.
func (t *mirrorTransport) ReadCheckpoint(ctx context.Context) ([]byte, error) {
	if rd := t.reader.Load(); rd != nil {
		return (*rd).ReadCheckpoint(ctx)
	}
	return nil, errStarting
}

func (t *mirrorTransport) ReadTile(ctx context.Context, level, index uint64, p uint8) ([]byte, error) {
	if rd := t.reader.Load(); rd != nil {
		return (*rd).ReadTile(ctx, level, index, p)
	}
	return nil, errStarting
}

func (t *mirrorTransport) ReadEntryBundle(ctx context.Context, index uint64, p uint8) ([]byte, error) {
	if rd := t.reader.Load(); rd != nil {
		return (*rd).ReadEntryBundle(ctx, index, p)
	}
	return nil, errStarting
}
