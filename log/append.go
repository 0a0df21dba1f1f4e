package log

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
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
	Payload     []byte
	ContentType string
	// IdempotencyKey "" means a new record: the log picks a random key.
	IdempotencyKey string
	// Timestamp is the submitter's clock in Unix milliseconds; 0 = not
	// supplied (the log stamps its receive time when it also picks the key).
	Timestamp uint64
	// Subjects name the data subjects the record is about; with any, the
	// record is sealed (envelope version 2) under their data keys.
	Subjects []string
}

// Appended is the outcome of a durable append.
type Appended struct {
	Index     uint64
	Duplicate bool
	Leaf      []byte
}

// autoKeyPrefix starts every idempotency key the log picks itself; the rest
// is 32 lowercase hex digits of 128 random bits.
const autoKeyPrefix = "cairn-auto-"

// envelope validates s and returns the leaf bytes the log sequences.
//
// A submission without an idempotency key is its own record: the log picks a
// fresh random key (autoKeyPrefix + 128 random bits in hex) and, unless the
// submitter gave a timestamp, stamps its own receive time. A submission with
// a key but no timestamp keeps timestamp 0 ("not supplied"): its retries must
// produce the same leaf, and a receive time would differ on every try.
func (l *Log) envelope(ctx context.Context, s Submission, submitter string, now time.Time) ([]byte, error) {
	if len(s.Payload) == 0 {
		return nil, fmt.Errorf("%w: the payload is empty", ErrInvalidRecord)
	}
	if len(s.Payload) > l.cfg.MaxRecordBytes {
		return nil, tooLarge(int64(len(s.Payload)), l.cfg.MaxRecordBytes)
	}
	if s.ContentType != "" {
		mt, _, err := mime.ParseMediaType(s.ContentType)
		if err != nil {
			return nil, fmt.Errorf("%w: content type %q is not a media type: %v", ErrInvalidRecord, s.ContentType, err)
		}
		if mt == "application/json" && !json.Valid(s.Payload) {
			return nil, invalidJSON(s.Payload)
		}
	}
	if s.Timestamp != 0 {
		if err := checkClockSkew(s.Timestamp, now, l.cfg.MaxClockSkew); err != nil {
			return nil, err
		}
	}
	if s.IdempotencyKey == "" {
		key, err := autoKey()
		if err != nil {
			return nil, fmt.Errorf("%w: picking an idempotency key: %v", ErrUnavailable, err)
		}
		s.IdempotencyKey = key
		if s.Timestamp == 0 {
			s.Timestamp = uint64(max(now.UnixMilli(), 1))
		}
	}
	r := record.Record{
		Submitter:      submitter,
		Timestamp:      s.Timestamp,
		IdempotencyKey: s.IdempotencyKey,
		ContentType:    s.ContentType,
		Payload:        s.Payload,
	}
	if len(s.Subjects) > 0 {
		return l.seal(ctx, r, s.Subjects)
	}
	leaf, err := r.Encode()
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalidRecord, err)
	}
	return leaf, nil
}

// autoKey returns a fresh idempotency key for a submission that has none.
func autoKey() (string, error) {
	var b [len(autoKeyPrefix) + 32]byte
	copy(b[:], autoKeyPrefix)
	var r [16]byte
	if _, err := rand.Read(r[:]); err != nil {
		return "", err
	}
	hex.Encode(b[len(autoKeyPrefix):], r[:])
	return string(b[:]), nil
}

// tooLarge is the error for a payload of n bytes (n < 0: unknown, over the
// limit) against the log's limit.
func tooLarge(n int64, limit int) error {
	if n < 0 {
		return fmt.Errorf("%w: the payload is over this log's limit of %d bytes", ErrRecordTooLarge, limit)
	}
	return fmt.Errorf("%w: the payload is %d bytes, over this log's limit of %d bytes", ErrRecordTooLarge, n, limit)
}

// invalidJSON explains why a payload declared application/json is not JSON,
// naming the byte offset of the first error. It runs only on the error path.
func invalidJSON(payload []byte) error {
	var syn *json.SyntaxError
	if err := json.Unmarshal(payload, new(json.RawMessage)); errors.As(err, &syn) {
		return fmt.Errorf("%w: the payload is declared application/json but is not valid JSON at byte offset %d: %v", ErrInvalidRecord, syn.Offset, syn)
	}
	return fmt.Errorf("%w: the payload is declared application/json but is not valid JSON", ErrInvalidRecord)
}

// checkClockSkew reports whether a submitter's timestamp ts (Unix
// milliseconds) is within maxSkew of now. It compares unsigned integer
// milliseconds, so no timestamp overflows: a time.Duration holds only ±292
// years, and now.Sub saturates there (so the negation of a far-future skew
// overflowed and the year 2350 passed as "in the window").
func checkClockSkew(ts uint64, now time.Time, maxSkew time.Duration) error {
	nowMs := uint64(max(now.UnixMilli(), 0))
	limit := uint64(max(maxSkew.Milliseconds(), 0))
	var diff uint64
	dir := "ahead of"
	if ts >= nowMs {
		diff = ts - nowMs
	} else {
		diff, dir = nowMs-ts, "behind"
	}
	if diff <= limit {
		return nil
	}
	return fmt.Errorf("%w: timestamp %d is %s %s the log's clock, more than the allowed skew of %v", ErrInvalidRecord, ts, millisText(diff), dir, maxSkew)
}

// millisText formats a span of milliseconds without overflowing a Duration.
func millisText(ms uint64) string {
	const maxDurationMs = uint64(1<<63-1) / uint64(time.Millisecond)
	if ms > maxDurationMs {
		return fmt.Sprintf("%d ms", ms)
	}
	return (time.Duration(ms) * time.Millisecond).Round(time.Second).String()
}

// add validates and enqueues a record, returning a future for its durable
// index. The future's error is already classified for errorCode.
func (l *Log) add(ctx context.Context, s Submission, submitter string) (leaf []byte, future func() (Appended, error)) {
	if l.draining.Load() {
		return nil, func() (Appended, error) { return Appended{}, ErrShuttingDown }
	}
	leaf, err := l.envelope(ctx, s, submitter, time.Now())
	if err != nil {
		l.metrics.rejected.Inc()
		return nil, func() (Appended, error) { return Appended{}, err }
	}
	start := time.Now()
	f := l.appender.Add(withFresh(ctx, s), tessera.NewEntry(leaf))
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
