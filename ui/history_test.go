package ui

import (
	"testing"
	"time"
)

func TestHistoryCountsRecordsPerMinuteAndKeepsTheNewest(t *testing.T) {
	h := NewHistory()
	t0 := time.Unix(1_800_000_000, 0).Truncate(time.Minute)
	h.Observe(t0, 10, time.Second)
	h.Observe(t0.Add(30*time.Second), 15, 3*time.Second)
	h.Observe(t0.Add(61*time.Second), 40, time.Second)  // next minute: +25
	h.Observe(t0.Add(5*time.Minute), 41, 2*time.Second) // after a gap: own growth only
	got := h.Minutes()
	want := []Minute{
		{Start: t0.Unix(), Records: 5, CheckpointAgeSeconds: 3},
		{Start: t0.Unix() + 60, Records: 25, CheckpointAgeSeconds: 1},
		{Start: t0.Unix() + 300, Records: 0, CheckpointAgeSeconds: 2},
	}
	if len(got) != len(want) {
		t.Fatalf("Minutes() = %+v, want %+v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("minute %d = %+v, want %+v", i, got[i], want[i])
		}
	}

	// The ring holds HistoryMinutes, oldest first, and drops the oldest.
	h = NewHistory()
	for i := range HistoryMinutes + 5 {
		h.Observe(t0.Add(time.Duration(i)*time.Minute), uint64(2*i), 0)
	}
	got = h.Minutes()
	if len(got) != HistoryMinutes {
		t.Fatalf("%d minutes kept, want %d", len(got), HistoryMinutes)
	}
	if got[0].Start != t0.Unix()+5*60 || got[len(got)-1].Start != t0.Unix()+int64(HistoryMinutes+4)*60 {
		t.Errorf("ring spans %d..%d, want the newest %d minutes", got[0].Start, got[len(got)-1].Start, HistoryMinutes)
	}
	for i, m := range got[1:] {
		if m.Records != 2 {
			t.Fatalf("minute %d records %d, want 2", i+1, m.Records)
		}
	}
}
