package client

import (
	"bytes"
	"context"
	"fmt"
	"time"

	"github.com/cairnlog/cairn/format/policy"
)

// MonitorEvent is what one monitoring check found.
type MonitorEvent struct {
	Time       time.Time
	Checkpoint *policy.Verified // nil when the check failed before verifying one
	// Advanced is true when the log grew consistently since the last check.
	Advanced bool
	// Err is an alarm (wraps ErrVerification) or a failure to check.
	Err error
}

// Monitor follows a log: at every interval it fetches the checkpoint,
// verifies it against the policy, and checks it is consistent with the last
// verified one, which it keeps in the state file. It raises an alarm (an
// event whose Err wraps ErrVerification) on a checkpoint that fails the
// policy, on two roots for one size (a split view), on a smaller tree that is
// not a prefix of the known one, and on a larger tree that does not extend
// it. The state advances only past verified checkpoints. It returns when ctx
// is cancelled or, with once, after one check.
func (l *Log) Monitor(ctx context.Context, statePath string, interval time.Duration, once bool, events func(MonitorEvent)) error {
	for {
		ev := l.monitorOnce(ctx, statePath)
		events(ev)
		if once {
			return ev.Err
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(interval):
		}
	}
}

func (l *Log) monitorOnce(ctx context.Context, statePath string) MonitorEvent {
	ev := MonitorEvent{Time: time.Now()}
	st, err := LoadState(statePath)
	if err != nil {
		ev.Err = err
		return ev
	}
	v, err := l.Checkpoint(ctx)
	if err != nil {
		ev.Err = err
		return ev
	}
	ev.Checkpoint = v
	size := v.Checkpoint.Size
	if st != nil {
		switch {
		case size == st.Size:
			if !bytes.Equal(v.Checkpoint.Root[:], st.Root) {
				ev.Err = verifyErr("split view: size %d has root %s, but %s was verified before", size, b64(v.Checkpoint.Root[:]), b64(st.Root))
			}
			return ev
		case size < st.Size:
			// An older checkpoint (a stale cache) is fine if it is a prefix
			// of the known tree; prove it from the known size's tiles.
			known, err := l.Policy.Verify([]byte(st.Checkpoint))
			if err != nil {
				ev.Err = fmt.Errorf("the state's checkpoint no longer verifies: %w", err)
				return ev
			}
			if err := l.VerifyConsistency(ctx, size, v.Checkpoint.Root[:], known); err != nil {
				ev.Err = fmt.Errorf("the log serves a smaller tree that is not a prefix of the verified one: %w", err)
			}
			return ev
		default:
			if err := l.VerifyConsistency(ctx, st.Size, st.Root, v); err != nil {
				ev.Err = err
				return ev
			}
		}
	}
	ns := &State{Size: size, Root: v.Checkpoint.Root[:], Checkpoint: string(v.Raw)}
	if err := ns.Save(statePath); err != nil {
		ev.Err = fmt.Errorf("saving state: %w", err)
		return ev
	}
	ev.Advanced = st == nil || size > st.Size
	return ev
}
