package log

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"log/slog"
	"time"

	"github.com/cairnlog/cairn/format/record"
	"github.com/transparency-dev/tessera"
)

// ErasureContentType is the content type of the erasure records the log
// appends itself (docs/erasure.md).
const ErasureContentType = "application/vnd.cairn.erasure+json"

// erasureKeyPrefix starts an erasure record's idempotency key; the rest is
// the hex subject hash, so a subject has exactly one erasure record and a
// retried erasure resolves to it.
const erasureKeyPrefix = "cairn-erasure-"

// MaxErasureReasonBytes bounds the reason of an erasure.
const MaxErasureReasonBytes = 1024

// ErasureRecord is the payload of an erasure record (JSON).
type ErasureRecord struct {
	Type string `json:"type"` // "erasure"
	// SubjectHash is the keyed subject hash, lowercase hex.
	SubjectHash string `json:"subject_hash"`
	// ErasedAt is when the key was destroyed, RFC 3339 UTC.
	ErasedAt string `json:"erased_at"`
	// ErasedBy is the authenticated principal that asked for it.
	ErasedBy string `json:"erased_by"`
	// Reason is the reason given.
	Reason string `json:"reason"`
}

// Erasure is the outcome of Erase.
type Erasure struct {
	SubjectHash record.SubjectHash
	// Index and Leaf are the erasure record's.
	Index uint64
	Leaf  []byte
	// AlreadyErased: the subject had been erased before; this is that erasure.
	AlreadyErased bool
	ErasedAt      time.Time
}

// Erase destroys subject's data key in the key store and appends an
// erasure record (who, when, which subject hash, why). Order makes it safe
// against a crash at any point: the key is destroyed (atomically, durably)
// before the record is appended, and the call is acknowledged only after
// both. A crash in between leaves the key destroyed and the erasure not
// acknowledged; the caller's retry finds the tombstone and appends the same
// erasure record (its leaf is built from the tombstone, so a retry that
// already appended it gets the same index). It is refused under a legal hold.
func (l *Log) Erase(ctx context.Context, subject, reason, who string) (Erasure, error) {
	if l.draining.Load() {
		return Erasure{}, ErrShuttingDown
	}
	if l.keys == nil {
		return Erasure{}, fmt.Errorf("%w: this log has no key-encryption key (--kek-file) and holds no subject keys", ErrFailedPrecondition)
	}
	if err := record.ValidateSubject(subject); err != nil {
		return Erasure{}, fmt.Errorf("%w: %v", ErrInvalidRequest, err)
	}
	if reason == "" {
		return Erasure{}, fmt.Errorf("%w: a reason is required (it is recorded in the log)", ErrInvalidRequest)
	}
	if err := record.ValidateText("reason", reason, MaxErasureReasonBytes); err != nil {
		return Erasure{}, fmt.Errorf("%w: %v", ErrInvalidRequest, err)
	}
	h := l.keys.hash(subject)
	if l.subjectHold != nil {
		if held, why := l.subjectHold(ctx, h[:]); held {
			return Erasure{}, fmt.Errorf("%w: subject %x is under a legal hold (%s); release the hold before erasing", ErrFailedPrecondition, h[:8], why)
		}
	}
	if l.eraseHook != nil {
		l.eraseHook("before-destroy")
	}
	now := time.Now().UTC()
	tomb, destroyed, err := l.keys.store.erase(ctx, subjectName(h), keyEntry{ErasedAt: max(now.UnixMilli(), 1), ErasedBy: who, Reason: reason})
	if err != nil {
		return Erasure{}, fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	l.keys.forget(h)
	if destroyed {
		l.metrics.erasures.Inc()
		l.logger.Info("subject key destroyed", slog.String("subject_hash", hex.EncodeToString(h[:])), slog.String("by", who))
	}
	if l.eraseHook != nil {
		l.eraseHook("after-destroy")
	}
	leaf, err := erasureLeaf(h, tomb)
	if err != nil {
		return Erasure{}, err
	}
	f := l.appender.Add(ctx, tessera.NewEntry(leaf))
	idx, err := f()
	if err != nil {
		return Erasure{}, classifyAppendError(err)
	}
	return Erasure{SubjectHash: h, Index: idx.Index, Leaf: leaf, AlreadyErased: !destroyed, ErasedAt: time.UnixMilli(tomb.ErasedAt).UTC()}, nil
}

// erasureLeaf is the erasure record for subject hash h, built only from
// its tombstone so that every retry produces the same leaf.
func erasureLeaf(h record.SubjectHash, tomb keyEntry) ([]byte, error) {
	p, err := json.Marshal(ErasureRecord{
		Type:        "erasure",
		SubjectHash: hex.EncodeToString(h[:]),
		ErasedAt:    erasedDate(tomb.ErasedAt),
		ErasedBy:    tomb.ErasedBy,
		Reason:      tomb.Reason,
	})
	if err != nil {
		return nil, err
	}
	leaf, err := record.Record{
		Submitter:      tomb.ErasedBy,
		Timestamp:      uint64(tomb.ErasedAt),
		IdempotencyKey: erasureKeyPrefix + hex.EncodeToString(h[:]),
		ContentType:    ErasureContentType,
		Payload:        p,
	}.Encode()
	if err != nil {
		return nil, fmt.Errorf("%w: the erasure record: %v", ErrInvalidRequest, err)
	}
	return leaf, nil
}
