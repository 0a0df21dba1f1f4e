package log

import (
	"bytes"
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/cairnlog/cairn/ui"
)

// checkpointWatcher follows the published checkpoint to keep the tree size,
// checkpoint age and integration latency metrics current.
type checkpointWatcher struct {
	read    func(context.Context) ([]byte, error)
	size    func([]byte) (uint64, error)
	metrics *metrics
	logger  *slog.Logger
	// history feeds the explorer's charts (ui.History); nil: none.
	history *ui.History

	mu      sync.Mutex
	samples []sample // appends waiting to be covered by a checkpoint, index-ordered
}

type sample struct {
	index uint64
	at    time.Time
}

// maxSamples bounds the samples held; one in sampleEvery appends is taken.
const (
	maxSamples  = 1024
	sampleEvery = 64
)

func newCheckpointWatcher(l *Log) *checkpointWatcher {
	return &checkpointWatcher{read: l.reader.ReadCheckpoint, size: l.publishedSize, metrics: l.metrics, logger: l.logger, history: l.explorer.history}
}

// sample remembers when index was appended, for the integration latency metric.
func (w *checkpointWatcher) sample(index uint64, at time.Time) {
	if index%sampleEvery != 0 {
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.samples) < maxSamples {
		w.samples = append(w.samples, sample{index, at})
	}
}

func (w *checkpointWatcher) run(ctx context.Context) {
	var prev []byte
	var prevSize uint64
	var changedAt time.Time
	every(ctx, checkpointWatchInterval, func() {
		cp, err := w.read(ctx)
		if err == nil && w.history != nil && !changedAt.IsZero() && bytes.Equal(cp, prev) {
			w.history.Observe(time.Now(), prevSize, time.Since(changedAt))
		}
		if err != nil || bytes.Equal(cp, prev) {
			return
		}
		prev = cp
		size, err := w.size(cp)
		if err != nil {
			w.logger.Error("published checkpoint does not parse", slog.Any("error", err))
			return
		}
		now := time.Now()
		prevSize, changedAt = size, now
		if w.history != nil {
			w.history.Observe(now, size, 0)
		}
		w.metrics.treeSize.Set(float64(size))
		w.metrics.checkpointAt.Set(float64(now.Unix()))
		w.mu.Lock()
		kept := w.samples[:0]
		for _, s := range w.samples {
			if s.index < size {
				w.metrics.integration.Observe(now.Sub(s.at).Seconds())
			} else {
				kept = append(kept, s)
			}
		}
		w.samples = kept
		w.mu.Unlock()
	})
}

// every calls f every d until ctx ends.
func every(ctx context.Context, d time.Duration, f func()) {
	t := time.NewTicker(d)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		f()
	}
}
