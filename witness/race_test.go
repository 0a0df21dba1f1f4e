package witness

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"testing"
)

// TestConcurrentAddsFromTheSameOldSizeCannotBothSucceed stalls one
// add-checkpoint between its consistency check and the store of its new
// state, lets a second request from the same old size complete in that gap,
// then releases the first: it must get a 409 with the second's size, and the
// state must stay at the second's checkpoint (no rollback).
func TestConcurrentAddsFromTheSameOldSizeCannotBothSucceed(t *testing.T) {
	for _, c := range []struct {
		name            string
		stalled, racing int64 // sizes of the two checkpoints
	}{
		{name: "the stalled one is smaller", stalled: 5, racing: 7},
		{name: "the stalled one is larger", stalled: 7, racing: 5},
		{name: "the same checkpoint twice", stalled: 5, racing: 5},
	} {
		t.Run(c.name, func(t *testing.T) {
			m := newMemLog(t, "example.test/log")
			w := newTestWitness(t, m)
			m.add(t, "a", "b", "c")
			if code, _, b := w.post(t, m.request(t, 0)); code != 200 {
				t.Fatalf("first cosignature: %d %s", code, b)
			}
			reqs := map[int64]AddCheckpointRequest{}
			for m.n < 7 {
				m.add(t, fmt.Sprintf("r%d", m.n))
				reqs[m.n] = AddCheckpointRequest{Old: 3, Proof: m.proof(t, 3), Checkpoint: m.checkpoint(t)}
			}

			stalled, release := make(chan struct{}), make(chan struct{})
			first := true
			w.stallBeforeSave = func(string) {
				// Only the first request reaches here before the test
				// receives from stalled, so first needs no lock.
				if first {
					first = false
					close(stalled)
					<-release
				}
			}
			type result struct {
				cosig []byte
				err   error
			}
			done := make(chan result, 1)
			go func() {
				cosig, err := w.AddCheckpoint(context.Background(), reqs[c.stalled])
				done <- result{cosig, err}
			}()
			<-stalled
			if _, err := w.AddCheckpoint(context.Background(), reqs[c.racing]); err != nil {
				close(release)
				<-done
				t.Fatalf("the racing request (old 3 → %d) failed while the other was stalled: %v", c.racing, err)
			}
			close(release)
			r := <-done
			var conflict ConflictError
			if !errors.As(r.err, &conflict) || conflict.Size != uint64(c.racing) || r.cosig != nil {
				t.Fatalf("the stalled request (old 3 → %d): cosignature %q, error %v; want a 409 with size %d", c.stalled, r.cosig, r.err, c.racing)
			}
			st, _, err := w.Latest(m.origin)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Contains(st, []byte(fmt.Sprintf("\n%d\n", c.racing))) {
				t.Fatalf("the state is not the racing request's size %d:\n%s", c.racing, st)
			}
			// The durable state agrees after a restart.
			w.Close()
			w2 := startWitness(t, w.skey, w.vkey, w.db, m)
			defer w2.Close()
			if code, _, body := w2.post(t, AddCheckpointRequest{Old: 0, Checkpoint: m.checkpoint(t)}.Marshal()); code != 409 || string(body) != fmt.Sprintf("%d\n", c.racing) {
				t.Fatalf("after a restart: %d %q, want 409 %d", code, body, c.racing)
			}
		})
	}
}
