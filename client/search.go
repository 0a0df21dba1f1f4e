package client

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strings"

	"github.com/cairnlog/cairn/format/policy"
	"github.com/cairnlog/cairn/format/search"
	"github.com/cairnlog/cairn/internal/fielderr"
)

// Index queries a Cairn search index (docs/search.md) and verifies every
// hit it answers: the index is not trusted. Each hit's checkpoint must
// satisfy the policy, its leaf must be proven in that checkpoint's tree,
// and what the index says about the record (principal, timestamp, content
// type, subjects, field values) is recomputed from the proven leaf — and,
// for a sealed record, from the plaintext the log decrypted, which is the
// log's word — and must match, and match the query.
type Index struct {
	URL    string
	Policy *policy.Policy
	hc     *http.Client
	base   *url.URL
	token  string
	// fields are the index's field paths (GET /fields), read once.
	fields []search.Field
	// verified caches checkpoint notes that satisfied the policy.
	verified map[string]*policy.Verified
}

// NewIndex returns a client of the index at base (http:// or https://).
func NewIndex(base string, p *policy.Policy, o HTTPOptions) (*Index, error) {
	l, err := NewLog(base, p, o) // the same URL, TLS and token rules as a log
	if err != nil {
		var fe *fielderr.Error
		if errors.As(err, &fe) && fe.Field == "Log.URL" {
			return nil, fielderr.New("Index.URL", fe.Err)
		}
		return nil, err
	}
	return &Index{URL: base, Policy: p, hc: l.hc, base: l.base, token: o.Token, verified: map[string]*policy.Verified{}}, nil
}

func (x *Index) get(ctx context.Context, path string, v url.Values) (*http.Response, error) {
	u := strings.TrimSuffix(x.URL, "/") + path
	if len(v) > 0 {
		u += "?" + v.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	if x.token != "" {
		req.Header.Set("Authorization", "Bearer "+x.token)
	}
	resp, err := x.hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("asking the index %s: %w", u, asTLSError(err))
	}
	if resp.StatusCode != http.StatusOK {
		defer resp.Body.Close()
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		err := fmt.Errorf("the index answered %s: %s", resp.Status, strings.TrimSpace(string(body)))
		if resp.StatusCode == http.StatusBadRequest {
			return nil, fmt.Errorf("%w: %w", ErrBadQuery, err)
		}
		return nil, err
	}
	return resp, nil
}

// ErrBadQuery is wrapped when the index refused a query as malformed (400).
var ErrBadQuery = search.ErrBadQuery

// Fields returns the index's fields and their paths (GET /fields).
func (x *Index) Fields(ctx context.Context) ([]search.Field, error) {
	if x.fields != nil {
		return x.fields, nil
	}
	resp, err := x.get(ctx, "/fields", nil)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var ans struct {
		Fields map[string]string `json:"fields"`
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&ans); err != nil {
		return nil, fmt.Errorf("the index's /fields: %w", err)
	}
	out := []search.Field{}
	for _, name := range slices.Sorted(maps.Keys(ans.Fields)) {
		f, err := search.ParseField(name + "=" + ans.Fields[name])
		if err != nil {
			return nil, fmt.Errorf("the index's /fields: %w", err)
		}
		out = append(out, f)
	}
	x.fields = out
	return out, nil
}

// maxHitLine bounds one JSON line (a 64 KiB leaf, its record and JSON in
// base64 and a proof).
const maxHitLine = 1 << 20

// Search runs q over every page and calls each with every verified hit,
// in log order. The first hit that does not verify ends the search with an
// error wrapping ErrVerification that names its index.
func (x *Index) Search(ctx context.Context, q search.Query, each func(*search.Hit) error) error {
	fields, err := x.Fields(ctx)
	if err != nil {
		return err
	}
	next := q.Page
	first := true
	for {
		q.Page = next
		resp, err := x.get(ctx, "/search", q.Values())
		if err != nil {
			return err
		}
		page, more, err := x.readPage(resp.Body, &q, fields, next, first, each)
		resp.Body.Close()
		if err != nil {
			return err
		}
		if !more {
			return nil
		}
		if page <= next && !first {
			return verifyErr("the index's next page %d does not move forward from %d", page, next)
		}
		next, first = page, false
	}
}

func (x *Index) readPage(body io.Reader, q *search.Query, fields []search.Field, from uint64, first bool, each func(*search.Hit) error) (uint64, bool, error) {
	sc := bufio.NewScanner(body)
	sc.Buffer(make([]byte, 64<<10), maxHitLine)
	last := int64(-1)
	for sc.Scan() {
		var line search.Line
		if err := json.Unmarshal(sc.Bytes(), &line); err != nil {
			return 0, false, fmt.Errorf("the index answered a line that is not a hit: %w", err)
		}
		if line.NextPage != "" {
			var n uint64
			if _, err := fmt.Sscan(line.NextPage, &n); err != nil {
				return 0, false, fmt.Errorf("the index's next page %q: %w", line.NextPage, err)
			}
			if int64(n) <= last {
				return 0, false, verifyErr("the index's next page %d does not follow its last hit %d", n, last)
			}
			return n, true, nil
		}
		h := line.Hit
		if h.Index < from || int64(h.Index) <= last {
			return 0, false, verifyErr("hit %d is out of log order (after %d, page from %d)", h.Index, last, from)
		}
		last = int64(h.Index)
		v, err := x.VerifyHit(&h, q, fields)
		if err != nil {
			return 0, false, err
		}
		if err := each(v); err != nil {
			return 0, false, err
		}
	}
	if err := sc.Err(); err != nil {
		return 0, false, fmt.Errorf("reading the index's answer: %w", err)
	}
	return 0, false, nil
}

// VerifyHit checks one hit and returns it with every claim recomputed from
// the proven leaf: checkpoint → policy, leaf hash → inclusion proof →
// checkpoint root, then the index's claims against the record, then the
// record against q (nil: no query to match).
func (x *Index) VerifyHit(h *search.Hit, q *search.Query, fields []search.Field) (*search.Hit, error) {
	v, ok := x.verified[h.Checkpoint]
	if !ok {
		var err error
		if v, err = x.Policy.Verify([]byte(h.Checkpoint)); err != nil {
			return nil, verifyErr("hit %d: its checkpoint does not satisfy the policy: %v", h.Index, err)
		}
		x.verified[h.Checkpoint] = v
	}
	d, err := search.CheckHit(v, h, q, fields)
	if err != nil {
		return nil, verifyErr("%v", err)
	}
	return d, nil
}

// History returns every version of one key (field NAME = VALUE) in log
// order, each verified.
func (x *Index) History(ctx context.Context, name, value string) ([]*search.Hit, error) {
	var out []*search.Hit
	err := x.Search(ctx, search.Query{Fields: map[string]string{name: value}, Limit: search.MaxLimit}, func(h *search.Hit) error {
		out = append(out, h)
		return nil
	})
	return out, err
}

// Missing is a log record the index does not answer, or answers wrongly.
type Missing struct {
	Index  uint64 `json:"index"`
	Reason string `json:"reason"`
}

// IndexCheck is the outcome of CheckIndex.
type IndexCheck struct {
	// Size is how much of the log was compared: the index's checkpoint
	// size, or the log's when the index is ahead of it.
	Size    uint64    `json:"size"`
	Missing []Missing `json:"missing,omitempty"`
}

// maxReported bounds how many problems CheckIndex lists.
const maxReported = 100

// CheckIndex compares the index with the log l at its verified checkpoint v
// (which an audit has just verified): every record the index covers must
// be answered by an unconditioned search, with the log's leaf at that
// index. Each hit is verified as Search does; the index's checkpoint must
// be consistent with v. It returns the records missing or misattributed.
func (l *Log) CheckIndex(ctx context.Context, v *policy.Verified, x *Index) (*IndexCheck, error) {
	fields, err := x.Fields(ctx)
	if err != nil {
		return nil, err
	}
	out := &IndexCheck{}
	var want uint64 // the next index the index should answer
	var bundle [][]byte
	bundleK := ^uint64(0)
	leafAt := func(i uint64) ([]byte, error) {
		k := i / 256
		if k != bundleK {
			b, err := l.bundleLeaves(ctx, v, k)
			if err != nil {
				return nil, err
			}
			bundle, bundleK = b, k
		}
		return bundle[i%256], nil
	}
	report := func(i uint64, format string, a ...any) {
		if len(out.Missing) < maxReported {
			out.Missing = append(out.Missing, Missing{Index: i, Reason: fmt.Sprintf(format, a...)})
		}
	}
	checked := false
	size := v.Checkpoint.Size
	err = x.Search(ctx, search.Query{Limit: search.MaxLimit}, func(h *search.Hit) error {
		if !checked {
			iv := x.verified[h.Checkpoint]
			if iv.Checkpoint.Size <= size {
				if err := l.VerifyConsistency(ctx, iv.Checkpoint.Size, iv.Checkpoint.Root[:], v); err != nil {
					return fmt.Errorf("the index's checkpoint: %w", err)
				}
				size = iv.Checkpoint.Size
			}
			checked = true
		}
		if h.Index >= size {
			return errStop
		}
		for ; want < h.Index; want++ {
			report(want, "not in the index")
		}
		leaf, err := leafAt(h.Index)
		if err != nil {
			return err
		}
		if !bytes.Equal(leaf, h.Leaf) {
			report(h.Index, "the index answers another leaf")
		} else if d, err := search.Describe(h.Index, leaf, h.Record, h.State, fields); err != nil || search.SameClaims(h, d) != nil {
			report(h.Index, "misattributed")
		}
		want = h.Index + 1
		return nil
	})
	if err != nil && !errors.Is(err, errStop) {
		return nil, err
	}
	for ; want < size; want++ {
		report(want, "not in the index")
	}
	out.Size = size
	if len(out.Missing) > 0 {
		return out, verifyErr("the index is incomplete or wrong: %d problems, the first at index %d (%s)", len(out.Missing), out.Missing[0].Index, out.Missing[0].Reason)
	}
	return out, nil
}

var errStop = errors.New("stop")

// bundleLeaves returns the leaves of entry bundle k of v's tree, each
// proven in v's tree (Entry: one inclusion proof each).
func (l *Log) bundleLeaves(ctx context.Context, v *policy.Verified, k uint64) ([][]byte, error) {
	var out [][]byte
	first := k * 256
	for i := first; i < min(first+256, v.Checkpoint.Size); i++ {
		leaf, err := l.Entry(ctx, v, i)
		if err != nil {
			return nil, err
		}
		out = append(out, leaf)
	}
	return out, nil
}
