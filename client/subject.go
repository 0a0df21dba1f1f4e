package client

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/cairnlog/cairn/format/record"
	cairnv1 "github.com/cairnlog/cairn/proto/cairn/v1"
)

// maxRecordResponseBytes bounds a GET /record/N answer (a 64 KiB record in base64 JSON).
const maxRecordResponseBytes = 256 << 10

// Record asks the log for entry index as a reader with the read role sees
// it (GET /record/N): a sealed record decrypted, or why it cannot be read
// (erased, tampered). It needs a token with the read role.
//
// The plaintext is the log's word: only the log holds the keys. Check the
// leaf with Entry first; CheckDecoded then ties the answer to that leaf.
func (l *Log) Record(ctx context.Context, index uint64) (*record.Decoded, error) {
	u := strings.TrimSuffix(l.URL, "/") + fmt.Sprintf("/record/%d", index)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	if l.token != "" {
		req.Header.Set("Authorization", "Bearer "+l.token)
	}
	resp, err := l.hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("fetching %s: %w", u, l.diagnose(ctx, err))
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxRecordResponseBytes))
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", u, err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%s: %s: %s", u, resp.Status, strings.TrimSpace(string(body)))
	}
	var d record.Decoded
	if err := json.Unmarshal(body, &d); err != nil {
		return nil, fmt.Errorf("%s: not a decoded record: %w", u, err)
	}
	if d.Index != index {
		return nil, verifyErr("%s answered entry %d", u, d.Index)
	}
	return &d, nil
}

// CheckDecoded checks that a decoded record belongs to leaf, a leaf proved
// to be in the log: a plain record must be the leaf itself, a decrypted
// one must carry the sealed leaf's submitter, timestamp and subjects. A
// record reported tampered is a verification failure naming its index.
func CheckDecoded(leaf []byte, d *record.Decoded) error {
	switch d.State {
	case record.StatePlain:
		if !bytes.Equal(d.Record, leaf) {
			return verifyErr("entry %d: the decoded record is not the leaf in the log", d.Index)
		}
	case record.StateDecrypted:
		s, err := record.DecodeSealed(leaf)
		if err != nil {
			return verifyErr("entry %d: the log decrypted a leaf that is not a sealed record: %v", d.Index, err)
		}
		r, err := record.Decode(d.Record)
		if err != nil {
			return verifyErr("entry %d: the decrypted record is malformed: %v", d.Index, err)
		}
		if r.Submitter != s.Submitter || r.Timestamp != s.Timestamp {
			return verifyErr("entry %d: the decrypted record's submitter or timestamp differ from the sealed leaf's", d.Index)
		}
		return sameSubjects(s, d)
	case record.StateErased:
		s, err := record.DecodeSealed(leaf)
		if err != nil {
			return verifyErr("entry %d: the log calls a leaf erased that is not a sealed record: %v", d.Index, err)
		}
		return sameSubjects(s, d)
	case record.StateTampered:
		return verifyErr("entry %d: %s", d.Index, d.Detail)
	}
	return nil
}

// sameSubjects checks that the log's answer names the sealed leaf's subjects.
func sameSubjects(s record.Sealed, d *record.Decoded) error {
	if len(d.SubjectHashes) != len(s.Subjects) {
		return verifyErr("entry %d: the log's answer names %d subjects, the leaf %d", d.Index, len(d.SubjectHashes), len(s.Subjects))
	}
	for i, h := range s.Subjects {
		if d.SubjectHashes[i] != fmt.Sprintf("%x", h[:]) {
			return verifyErr("entry %d: subject hash %d differs from the leaf's", d.Index, i)
		}
	}
	return nil
}

// Erased is the outcome of an erasure.
type Erased struct {
	// SubjectHash is the keyed hash the log stores for the subject.
	SubjectHash []byte
	// Index and Leaf are the erasure record's.
	Index uint64
	Leaf  []byte
	// AlreadyErased: the subject had been erased before; this is that erasure.
	AlreadyErased bool
	ErasedAt      time.Time
	Endpoint      string
}

// Erase asks the log to destroy subject's data key and log the erasure
// (admin role). It is idempotent, so it tries the endpoints in order and
// retries on an unavailable one like Submit.
func (s *Submitter) Erase(ctx context.Context, subject, reason string) (*Erased, error) {
	if subject == "" {
		return nil, errors.New("the subject is empty")
	}
	req := &cairnv1.EraseRequest{Subject: subject, Reason: reason}
	var last error
	backoff := s.opts.Backoff
	for attempt := 0; attempt < s.opts.Attempts; attempt++ {
		i := attempt % len(s.conns)
		if attempt > 0 && i == 0 {
			select {
			case <-ctx.Done():
				return nil, ctx.Err()
			case <-time.After(backoff):
			}
			backoff = min(2*backoff, s.opts.MaxBackoff)
		}
		cctx, cancel := context.WithTimeout(s.ctx(ctx, false), s.opts.CallTimeout)
		resp, err := cairnv1.NewLogClient(s.conns[i]).Erase(cctx, req)
		cancel()
		if err == nil {
			return &Erased{SubjectHash: resp.SubjectHash, Index: resp.Index, Leaf: resp.Leaf, AlreadyErased: resp.AlreadyErased,
				ErasedAt: time.UnixMilli(resp.ErasedAtUnixMillis).UTC(), Endpoint: s.endpoints[i]}, nil
		}
		err = s.diagnose(ctx, i, err)
		last = fmt.Errorf("%s: %w", s.endpoints[i], asTLSError(err))
		if !retryable(err) || ctx.Err() != nil {
			return nil, last
		}
	}
	return nil, fmt.Errorf("no endpoint answered the erasure after %d attempts: %w", s.opts.Attempts, last)
}
