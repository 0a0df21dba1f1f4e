package log

import (
	"context"
	"errors"
	"fmt"
	"mime"
	"time"

	"github.com/cairnlog/cairn/format/record"
	"github.com/transparency-dev/tessera"
)

// Submission is one record as a submitter hands it to the log, before the
// log binds the authenticated submitter into the envelope.
type Submission struct {
	Payload        []byte
	ContentType    string
	IdempotencyKey string
	// Timestamp is the submitter's clock in Unix milliseconds; 0 = not supplied.
	Timestamp uint64
}

// Appended is the outcome of a durable append.
type Appended struct {
	Index     uint64
	Duplicate bool
	Leaf      []byte
}

// envelope validates s and returns the leaf bytes the log sequences.
func (l *Log) envelope(s Submission, submitter string, now time.Time) ([]byte, error) {
	if len(s.Payload) == 0 {
		return nil, fmt.Errorf("%w: the payload is empty", ErrInvalidRecord)
	}
	if len(s.Payload) > l.cfg.MaxRecordBytes {
		return nil, fmt.Errorf("%w: the payload is %d bytes, over this log's limit of %d bytes (--max-record-bytes)", ErrInvalidRecord, len(s.Payload), l.cfg.MaxRecordBytes)
	}
	if s.ContentType != "" {
		if _, _, err := mime.ParseMediaType(s.ContentType); err != nil {
			return nil, fmt.Errorf("%w: content type %q is not a media type: %v", ErrInvalidRecord, s.ContentType, err)
		}
	}
	if s.Timestamp != 0 {
		skew := now.Sub(time.UnixMilli(int64(min(s.Timestamp, 1<<62))))
		if skew > l.cfg.MaxClockSkew || -skew > l.cfg.MaxClockSkew {
			return nil, fmt.Errorf("%w: timestamp %d is %v away from the log's clock, more than the allowed %v (--max-clock-skew)", ErrInvalidRecord, s.Timestamp, skew.Round(time.Second), l.cfg.MaxClockSkew)
		}
	}
	r := record.Record{
		Submitter:      submitter,
		Timestamp:      s.Timestamp,
		IdempotencyKey: s.IdempotencyKey,
		ContentType:    s.ContentType,
		Payload:        s.Payload,
	}
	leaf, err := r.Encode()
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalidRecord, err)
	}
	return leaf, nil
}

// add validates and enqueues a record, returning a future for its durable
// index. The future's error is already classified for errorCode.
func (l *Log) add(ctx context.Context, s Submission, submitter string) (leaf []byte, future func() (Appended, error)) {
	if l.draining.Load() {
		return nil, func() (Appended, error) { return Appended{}, ErrShuttingDown }
	}
	leaf, err := l.envelope(s, submitter, time.Now())
	if err != nil {
		l.metrics.rejected.Inc()
		return nil, func() (Appended, error) { return Appended{}, err }
	}
	start := time.Now()
	f := l.appender.Add(ctx, tessera.NewEntry(leaf))
	return leaf, func() (Appended, error) {
		idx, err := f()
		if err != nil {
			l.metrics.appendErrors.Inc()
			return Appended{}, classifyAppendError(err)
		}
		l.metrics.observeAppend(idx.Index, idx.IsDup, start)
		if !idx.IsDup {
			l.watcher.sample(idx.Index, start)
		}
		return Appended{Index: idx.Index, Duplicate: idx.IsDup, Leaf: leaf}, nil
	}
}

// Append durably sequences one record and returns its index.
func (l *Log) Append(ctx context.Context, s Submission, submitter string) (Appended, error) {
	_, f := l.add(ctx, s, submitter)
	return f()
}

// AppendAndWait appends one record and waits until a published checkpoint
// commits to it, returning the record's receipt (a tlog-proof).
func (l *Log) AppendAndWait(ctx context.Context, s Submission, submitter string) (Appended, []byte, error) {
	a, err := l.Append(ctx, s, submitter)
	if err != nil {
		return a, nil, err
	}
	_, cp, err := l.awaiter.Await(ctx, func() (tessera.Index, error) {
		return tessera.Index{Index: a.Index, IsDup: a.Duplicate}, nil
	})
	if err != nil {
		return a, nil, fmt.Errorf("%w: waiting for a checkpoint covering index %d: %v", ErrUnavailable, a.Index, err)
	}
	rc, err := l.receiptAt(ctx, a.Index, cp)
	return a, rc, err
}

func classifyAppendError(err error) error {
	switch {
	case errors.Is(err, tessera.ErrPushback):
		return fmt.Errorf("%w: %v", ErrPushback, err)
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return err
	default:
		return fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
}
