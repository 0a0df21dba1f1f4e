package client

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/transparency-dev/tessera/api/layout"
)

// ErrPruned is wrapped by the error for a record below the log's minimum
// index (C2SP tlog-tiles Pruning): the log no longer serves it, though its
// leaf hash is still in the tree and every proof still verifies. The
// archive, if any, is named in the error. `cairn get` exits 3 for it.
var ErrPruned = errors.New("pruned")

// maxSmallBody bounds the answers of /minimum-index, /holds and a 410 body.
const maxSmallBody = 1 << 20

// get performs a GET on the log and returns status and body.
func (l *Log) do(ctx context.Context, method, path string, body any) (int, []byte, error) {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return 0, nil, err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, l.base.JoinPath(path).String(), rd)
	if err != nil {
		return 0, nil, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if l.token != "" {
		req.Header.Set("Authorization", "Bearer "+l.token)
	}
	resp, err := l.hc.Do(req)
	if err != nil {
		return 0, nil, asTLSError(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxSmallBody))
	return resp.StatusCode, b, err
}

// MinimumIndex returns the log's minimum index (GET /minimum-index): the
// records below it are pruned. A log that does not serve the endpoint (404)
// has never pruned: 0.
func (l *Log) MinimumIndex(ctx context.Context) (uint64, error) {
	if l.sources != nil {
		// Read from several URLs: the first copy that answers.
		var errs []error
		for _, s := range l.sources.logs {
			n, err := s.MinimumIndex(ctx)
			if err == nil {
				return n, nil
			}
			errs = append(errs, err)
		}
		return 0, errors.Join(errs...)
	}
	code, b, err := l.do(ctx, http.MethodGet, "minimum-index", nil)
	if err != nil {
		return 0, fmt.Errorf("fetching the minimum index: %w", err)
	}
	switch code {
	case http.StatusOK:
	case http.StatusNotFound:
		return 0, nil
	default:
		return 0, fmt.Errorf("fetching the minimum index: %d %s", code, strings.TrimSpace(string(b)))
	}
	s := strings.TrimSpace(string(b))
	n, err := strconv.ParseUint(s, 10, 64)
	if err != nil || strconv.FormatUint(n, 10) != s {
		return 0, verifyErr("the log's minimum index %q is not a decimal number", s)
	}
	if n%layout.EntryBundleWidth != 0 {
		return 0, verifyErr("the log's minimum index %d is not at an entry bundle boundary (a multiple of %d)", n, layout.EntryBundleWidth)
	}
	return n, nil
}

// prunedError returns an error wrapping ErrPruned when index is below the
// minimum index, quoting the log's 410 answer (which names the archive);
// nil when it is not, or the minimum index cannot be read.
func (l *Log) prunedError(ctx context.Context, index, size uint64) error {
	m, err := l.MinimumIndex(ctx)
	if err != nil || index >= m {
		return nil
	}
	k := index / layout.EntryBundleWidth
	// The log's 410 answer ends with where the bundle went ("; archived at
	// s3://…" or "; purged (no archive)").
	where := "not served"
	if code, b, err := l.do(ctx, http.MethodGet, layout.EntriesPath(k, layout.PartialTileSize(0, k, size)), nil); err == nil && code == http.StatusGone {
		body := strings.TrimSpace(string(b))
		if i := strings.LastIndex(body, "; "); i >= 0 {
			where = body[i+2:]
		} else {
			where = "the log says: " + body
		}
	}
	return fmt.Errorf("record %d: %w: below minimum index %d, %s", index, ErrPruned, m, safeLine(where))
}

// safeLine keeps one line of printable text from what a server said.
func safeLine(s string) string {
	s, _, _ = strings.Cut(s, "\n")
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return '?'
		}
		return r
	}, s)
}

// Hold is a legal hold as the log reports it (log.Hold's JSON).
type Hold struct {
	ID        string `json:"id"`
	From      uint64 `json:"from,omitempty"`
	To        uint64 `json:"to,omitempty"`
	Principal string `json:"principal,omitempty"`
	// SubjectHash is the keyed hash (hex) of a held data subject.
	SubjectHash string    `json:"subject_hash,omitempty"`
	Reason      string    `json:"reason"`
	By          string    `json:"by"`
	Created     time.Time `json:"created"`
}

// Holds lists the log's legal holds and its minimum index (admin role).
func (l *Log) Holds(ctx context.Context) (uint64, []Hold, error) {
	var out struct {
		MinimumIndex uint64 `json:"minimum_index"`
		Holds        []Hold `json:"holds"`
	}
	err := l.admin(ctx, http.MethodGet, "holds", nil, &out)
	return out.MinimumIndex, out.Holds, err
}

// AddHold places a hold on records [from, to) or, with principal, on every
// record of that submitter (admin role).
func (l *Log) AddHold(ctx context.Context, from, to uint64, principal, reason string) (Hold, error) {
	var h Hold
	err := l.admin(ctx, http.MethodPost, "holds", map[string]any{"from": from, "to": to, "principal": principal, "reason": reason}, &h)
	return h, err
}

// AddSubjectHold places a hold on every record naming data subject (the log
// stores only its keyed hash), which also refuses the subject's erasure
// (admin role).
func (l *Log) AddSubjectHold(ctx context.Context, subject, reason string) (Hold, error) {
	var h Hold
	err := l.admin(ctx, http.MethodPost, "holds", map[string]any{"subject": subject, "reason": reason}, &h)
	return h, err
}

// ReleaseHold releases hold id (admin role). Nothing is pruned at once.
func (l *Log) ReleaseHold(ctx context.Context, id, reason string) (Hold, error) {
	var h Hold
	err := l.admin(ctx, http.MethodPost, "holds/"+id+"/release", map[string]any{"reason": reason}, &h)
	return h, err
}

func (l *Log) admin(ctx context.Context, method, path string, body, out any) error {
	code, b, err := l.do(ctx, method, path, body)
	if err != nil {
		return err
	}
	if code != http.StatusOK {
		return fmt.Errorf("%s /%s: %d %s: %s", method, path, code, http.StatusText(code), strings.TrimSpace(string(b)))
	}
	if err := json.Unmarshal(b, out); err != nil {
		return fmt.Errorf("%s /%s: the answer is not JSON: %w", method, path, err)
	}
	return nil
}
