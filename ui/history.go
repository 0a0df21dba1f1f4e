package ui

import (
	"sync"
	"time"
)

// HistoryMinutes is how many minutes of History are kept (six hours).
const HistoryMinutes = 360

// Minute is one point of the status charts.
type Minute struct {
	// Start is the minute's start, Unix seconds.
	Start int64 `json:"start"`
	// Records is how many entries the published tree grew by in the minute.
	Records uint64 `json:"records"`
	// CheckpointAgeSeconds is the largest checkpoint age seen in the minute.
	CheckpointAgeSeconds float64 `json:"checkpoint_age_seconds"`
}

// History is a bounded per-minute ring of the log's own metrics (published
// tree size and checkpoint age), fed by the log's checkpoint watcher and
// served with Status. It is in memory: a restarted frontend starts afresh.
type History struct {
	mu sync.Mutex // guards everything below
	// points is a ring of HistoryMinutes; next the slot the next minute takes.
	points []point
	next   int
	// age is the checkpoint age last observed, at; seen once there is one.
	age  time.Duration
	at   time.Time
	seen bool
}

type point struct {
	start       int64
	first, last uint64 // tree sizes seen first and last in the minute
	maxAge      float64
}

// NewHistory returns an empty History.
func NewHistory() *History { return &History{points: make([]point, 0, HistoryMinutes)} }

// Observe records the published tree size and checkpoint age at now.
func (h *History) Observe(now time.Time, size uint64, age time.Duration) {
	m := now.Unix() - now.Unix()%60
	h.mu.Lock()
	defer h.mu.Unlock()
	h.age, h.at, h.seen = age, now, true
	if n := len(h.points); n > 0 {
		cur := &h.points[(h.next-1+HistoryMinutes)%HistoryMinutes]
		if n < HistoryMinutes {
			cur = &h.points[n-1]
		}
		if cur.start == m {
			cur.last = max(cur.last, size)
			cur.maxAge = max(cur.maxAge, age.Seconds())
			return
		}
		if m < cur.start {
			return // the clock stepped back: keep the ring ordered
		}
	}
	p := point{start: m, first: size, last: size, maxAge: age.Seconds()}
	if len(h.points) < HistoryMinutes {
		h.points = append(h.points, p)
		h.next = len(h.points) % HistoryMinutes
		return
	}
	h.points[h.next] = p
	h.next = (h.next + 1) % HistoryMinutes
}

// Minutes returns the points, oldest first. A minute's records are its
// growth over the previous minute's last size (over its own first size for
// the oldest, or after a gap).
func (h *History) Minutes() []Minute {
	h.mu.Lock()
	defer h.mu.Unlock()
	n := len(h.points)
	out := make([]Minute, 0, n)
	start := 0
	if n == HistoryMinutes {
		start = h.next
	}
	var prev *point
	for i := range n {
		p := &h.points[(start+i)%n]
		base := p.first
		if prev != nil && prev.start == p.start-60 {
			base = min(prev.last, p.last)
		}
		out = append(out, Minute{Start: p.start, Records: p.last - min(base, p.last), CheckpointAgeSeconds: p.maxAge})
		prev = p
	}
	return out
}

// Age is the checkpoint age at now, from the last observation: 0 before any.
func (h *History) Age(now time.Time) time.Duration {
	h.mu.Lock()
	defer h.mu.Unlock()
	if !h.seen {
		return 0
	}
	return h.age + now.Sub(h.at)
}
