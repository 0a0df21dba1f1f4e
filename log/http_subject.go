package log

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"time"
)

// maxEraseRequestBytes bounds the body of POST /erase.
const maxEraseRequestBytes = 8 << 10

// EraseHTTPRequest is the JSON body of POST /erase.
type EraseHTTPRequest struct {
	Subject string `json:"subject"`
	Reason  string `json:"reason"`
}

// EraseHTTPResponse is the JSON answer of POST /erase.
type EraseHTTPResponse struct {
	SubjectHash   string `json:"subject_hash"`
	Index         uint64 `json:"index"`
	AlreadyErased bool   `json:"already_erased"`
	ErasedAt      string `json:"erased_at"`
}

// handleRecord answers GET /record/N: entry N as a reader with the read
// role sees it (record.Decoded as JSON), a sealed record decrypted.
func (l *Log) handleRecord(w http.ResponseWriter, r *http.Request) {
	if err := l.guard.canDecrypt(l.guard.fromHTTP(r)); err != nil {
		writeHTTPError(w, err)
		return
	}
	index, err := strconv.ParseUint(r.PathValue("index"), 10, 64)
	if err != nil {
		writeHTTPError(w, fmt.Errorf("%w: %q is not an entry index", ErrInvalidRequest, r.PathValue("index")))
		return
	}
	leaves, _, err := l.entries(r.Context(), index, 1)
	if err != nil {
		writeHTTPError(w, err)
		return
	}
	d, err := l.decode(r.Context(), index, leaves[0])
	if err != nil {
		writeHTTPError(w, err)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	_ = json.NewEncoder(w).Encode(d)
}

// handleErase answers POST /erase (admin role): the HTTP form of Erase.
func (l *Log) handleErase(w http.ResponseWriter, r *http.Request) {
	who, err := l.guard.admin(l.guard.fromHTTP(r))
	if err != nil {
		writeHTTPError(w, err)
		return
	}
	var req EraseHTTPRequest
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxEraseRequestBytes))
	var tooBig *http.MaxBytesError
	switch {
	case errors.As(err, &tooBig):
		writeHTTPError(w, fmt.Errorf("%w: the request body is over %d bytes", ErrInvalidRequest, maxEraseRequestBytes))
		return
	case err != nil:
		writeHTTPError(w, fmt.Errorf("%w: reading the request body: %v", ErrInvalidRequest, err))
		return
	}
	if err := json.Unmarshal(body, &req); err != nil {
		writeHTTPError(w, fmt.Errorf("%w: the body must be JSON {\"subject\": ..., \"reason\": ...}: %v", ErrInvalidRequest, err))
		return
	}
	e, err := l.Erase(r.Context(), req.Subject, req.Reason, who)
	if err != nil {
		writeHTTPError(w, err)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(EraseHTTPResponse{
		SubjectHash:   fmt.Sprintf("%x", e.SubjectHash[:]),
		Index:         e.Index,
		AlreadyErased: e.AlreadyErased,
		ErasedAt:      e.ErasedAt.Format(time.RFC3339),
	})
}
