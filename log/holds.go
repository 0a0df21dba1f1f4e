package log

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"time"

	"github.com/cairnlog/cairn/format/record"
	"github.com/cairnlog/cairn/log/access"
	"github.com/transparency-dev/tessera/api/layout"
)

// Hold is a legal hold: it keeps the records of an index range, or every
// record of a principal, from being pruned, whatever the retention policy
// says. Releasing a hold prunes nothing at once; the next evaluation does.
type Hold struct {
	// ID names the hold (32 hex digits).
	ID string `json:"id"`
	// From and To hold the records [From, To); zero with Principal.
	From uint64 `json:"from,omitempty"`
	To   uint64 `json:"to,omitempty"`
	// Principal holds every record this submitter appended.
	Principal string `json:"principal,omitempty"`
	// SubjectHash (hex) holds every record naming this data subject, by
	// the keyed hash sealed records carry (the identifier itself is never
	// stored); it also refuses the subject's erasure.
	SubjectHash string `json:"subject_hash,omitempty"`
	// Reason says why (a case number, a regulator's request).
	Reason string `json:"reason"`
	// By is the admin principal who placed it; Created when (log clock).
	By      string    `json:"by"`
	Created time.Time `json:"created"`
}

// maxReasonBytes bounds a hold's reason.
const maxReasonBytes = 1024

// ErrUnknownHold: no hold has the ID given.
var ErrUnknownHold = fmt.Errorf("%w: no such hold", ErrNotFound)

// holdEvent is the audit record of a hold placed or released.
type holdEvent struct {
	Type   string `json:"type"`
	Hold   Hold   `json:"hold"`
	By     string `json:"by"`
	Reason string `json:"reason"`
}

// validate checks a requested hold: a range or a principal, with a reason.
func (h Hold) validate(minIndex uint64) error {
	switch {
	case h.Reason == "":
		return fmt.Errorf("%w: a hold needs a reason", ErrInvalidRequest)
	case len(h.Reason) > maxReasonBytes:
		return fmt.Errorf("%w: the reason is over %d bytes", ErrInvalidRequest, maxReasonBytes)
	case (h.Principal != "" || h.SubjectHash != "") && (h.From != 0 || h.To != 0), h.Principal != "" && h.SubjectHash != "":
		return fmt.Errorf("%w: a hold is on an index range, a principal or a subject, one of them", ErrInvalidRequest)
	case h.byRange() && h.To <= h.From:
		return fmt.Errorf("%w: index range [%d, %d) is empty (want from < to, a principal or a subject)", ErrInvalidRequest, h.From, h.To)
	case h.byRange() && h.From < minIndex:
		return fmt.Errorf("%w: records from %d are already below the minimum index %d and cannot be held", ErrPruned, h.From, minIndex)
	}
	return nil
}

// byRange reports whether h holds an index range (not a principal or a
// subject).
func (h Hold) byRange() bool { return h.Principal == "" && h.SubjectHash == "" }

// AddHold places a hold, first logging it (by is the admin principal).
func (l *Log) AddHold(ctx context.Context, h Hold, by string) (Hold, error) {
	r := l.retainer
	if err := r.refresh(ctx); err != nil {
		return Hold{}, err
	}
	if err := h.validate(r.minIndex.Load()); err != nil {
		return Hold{}, err
	}
	var id [16]byte
	if _, err := rand.Read(id[:]); err != nil {
		return Hold{}, fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	h.ID, h.By, h.Created = hex.EncodeToString(id[:]), by, r.now().UTC().Truncate(time.Millisecond)
	if err := r.logEvent(ctx, "hold-add-"+h.ID, holdEvent{Type: eventHoldAdd, Hold: h, By: by, Reason: h.Reason}); err != nil {
		return Hold{}, err
	}
	err := r.store.update(ctx, func(s *retentionState) error {
		if h.byRange() && h.From < s.MinIndex {
			return fmt.Errorf("%w: records from %d are already below the minimum index %d and cannot be held", ErrPruned, h.From, s.MinIndex)
		}
		s.Holds = append(s.Holds, h)
		s.HoldsVersion++
		return nil
	})
	if err != nil {
		return Hold{}, classifyStoreError(err)
	}
	l.metrics.holds.Inc()
	return h, nil
}

// ReleaseHold removes a hold, first logging the release and its reason.
func (l *Log) ReleaseHold(ctx context.Context, id, reason, by string) (Hold, error) {
	r := l.retainer
	if reason == "" {
		return Hold{}, fmt.Errorf("%w: releasing a hold needs a reason", ErrInvalidRequest)
	}
	holds, err := l.Holds(ctx)
	if err != nil {
		return Hold{}, err
	}
	i := slices.IndexFunc(holds, func(h Hold) bool { return h.ID == id })
	if i < 0 {
		return Hold{}, fmt.Errorf("%w: %q", ErrUnknownHold, id)
	}
	h := holds[i]
	if err := r.logEvent(ctx, "hold-release-"+id, holdEvent{Type: eventHoldRelease, Hold: h, By: by, Reason: reason}); err != nil {
		return Hold{}, err
	}
	err = r.store.update(ctx, func(s *retentionState) error {
		s.Holds = slices.DeleteFunc(s.Holds, func(h Hold) bool { return h.ID == id })
		s.HoldsVersion++
		return nil
	})
	if err != nil {
		return Hold{}, classifyStoreError(err)
	}
	return h, r.refresh(ctx)
}

// Holds lists the holds in force.
func (l *Log) Holds(ctx context.Context) ([]Hold, error) {
	st, err := l.retainer.store.load(ctx)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	return st.Holds, nil
}

// covers reports whether a hold covers record index: a range hold over it,
// or a principal hold on its submitter (given, since only the caller has
// the record). Erasure (#13) refuses held records with it.
func (r *retainer) covers(ctx context.Context, index uint64, submitter string) (bool, error) {
	st, err := r.store.load(ctx)
	if err != nil {
		return false, err
	}
	for _, h := range st.Holds {
		if (h.byRange() && h.From <= index && index < h.To) || (h.Principal != "" && h.Principal == submitter) {
			return true, nil
		}
	}
	return false, nil
}

// heldPrincipal reports whether every record of principal name is held.
func (r *retainer) heldPrincipal(ctx context.Context, name string) (bool, error) {
	st, err := r.store.load(ctx)
	if err != nil {
		return false, err
	}
	return slices.ContainsFunc(st.Holds, func(h Hold) bool { return h.Principal == name }), nil
}

// heldSubject reports whether a hold names the data subject with keyed hash
// hash, and its reason. A hold store that cannot be read holds everything:
// erasure is final, so it waits for an answer.
func (l *Log) heldSubject(ctx context.Context, hash []byte) (bool, string) {
	holds, err := l.Holds(ctx)
	if err != nil {
		return true, fmt.Sprintf("the legal holds cannot be read: %v", err)
	}
	want := hex.EncodeToString(hash)
	for _, h := range holds {
		if h.SubjectHash == want {
			return true, fmt.Sprintf("hold %s: %s", h.ID, h.Reason)
		}
	}
	return false, ""
}

func classifyStoreError(err error) error {
	if errors.Is(err, ErrPruned) || errors.Is(err, ErrInvalidRequest) {
		return err
	}
	return fmt.Errorf("%w: %v", ErrUnavailable, err)
}

// Hold requests over HTTP (admin role): GET /holds lists them, POST /holds
// places one ({"from","to"}, {"principal"} or {"subject"}, and "reason"), POST
// /holds/{id}/release releases one ({"reason"}). Each answers JSON.
const maxHoldRequestBytes = 8 << 10

// holdRequest is the body of POST /holds and POST /holds/{id}/release.
type holdRequest struct {
	From      uint64 `json:"from"`
	To        uint64 `json:"to"`
	Principal string `json:"principal"`
	// Subject is a data subject's identifier; the log stores only its keyed
	// hash.
	Subject string `json:"subject"`
	Reason  string `json:"reason"`
}

func (l *Log) adminPrincipal(r *http.Request) (string, error) {
	p, err := l.guard.fromHTTP(r)
	if err != nil {
		return "", err
	}
	return p.name, l.guard.authorize(p, access.RoleAdmin)
}

func readHoldRequest(r *http.Request) (holdRequest, error) {
	var req holdRequest
	b, err := io.ReadAll(io.LimitReader(r.Body, maxHoldRequestBytes+1))
	if err != nil || len(b) > maxHoldRequestBytes {
		return req, fmt.Errorf("%w: the request body is unreadable or over %d bytes", ErrInvalidRequest, maxHoldRequestBytes)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		return req, fmt.Errorf("%w: the request body is not a hold request: %v", ErrInvalidRequest, err)
	}
	return req, nil
}

func (l *Log) handleHolds(w http.ResponseWriter, r *http.Request) {
	if _, err := l.adminPrincipal(r); err != nil {
		writeHTTPError(w, err)
		return
	}
	holds, err := l.Holds(r.Context())
	if err != nil {
		writeHTTPError(w, err)
		return
	}
	writeJSON(w, struct {
		MinimumIndex uint64 `json:"minimum_index"`
		Holds        []Hold `json:"holds"`
	}{l.MinimumIndex(), append([]Hold{}, holds...)})
}

func (l *Log) handleAddHold(w http.ResponseWriter, r *http.Request) {
	by, err := l.adminPrincipal(r)
	if err != nil {
		writeHTTPError(w, err)
		return
	}
	req, err := readHoldRequest(r)
	if err != nil {
		writeHTTPError(w, err)
		return
	}
	hold := Hold{From: req.From, To: req.To, Principal: req.Principal, Reason: req.Reason}
	if req.Subject != "" {
		if l.keys == nil {
			writeHTTPError(w, fmt.Errorf("%w: this log has no key-encryption key (--kek-file), so it holds no records about data subjects", ErrFailedPrecondition))
			return
		}
		if err := record.ValidateSubject(req.Subject); err != nil {
			writeHTTPError(w, fmt.Errorf("%w: %v", ErrInvalidRequest, err))
			return
		}
		sh := l.keys.hash(req.Subject)
		hold.SubjectHash = hex.EncodeToString(sh[:])
	}
	h, err := l.AddHold(r.Context(), hold, by)
	if err != nil {
		writeHTTPError(w, err)
		return
	}
	writeJSON(w, h)
}

func (l *Log) handleReleaseHold(w http.ResponseWriter, r *http.Request) {
	by, err := l.adminPrincipal(r)
	if err != nil {
		writeHTTPError(w, err)
		return
	}
	req, err := readHoldRequest(r)
	if err != nil {
		writeHTTPError(w, err)
		return
	}
	h, err := l.ReleaseHold(r.Context(), r.PathValue("id"), req.Reason, by)
	if err != nil {
		writeHTTPError(w, err)
		return
	}
	writeJSON(w, h)
}

// handleMinimumIndex serves the tlog-tiles minimum index as a decimal:
// 0 for a log that never pruned. Mirrors follow it.
func (l *Log) handleMinimumIndex(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", cacheCheckpoint)
	_, _ = fmt.Fprintf(w, "%d\n", l.MinimumIndex())
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

// bundleOf is the entry bundle holding index.
func bundleOf(index uint64) uint64 { return index / layout.EntryBundleWidth }
