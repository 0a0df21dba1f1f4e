package index

import (
	"bytes"
	"context"
	"database/sql"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"sync"

	"github.com/cairnlog/cairn/format/checkpoint"
	"github.com/cairnlog/cairn/format/search"
)

func origin(cfg Config) string {
	if len(cfg.Policy.Logs) == 0 {
		return ""
	}
	return cfg.Policy.Logs[0].Origin
}

// cpCache remembers the size of the last checkpoint note read from the
// database (parsing it per query would be wasted work).
type cpCache struct {
	// mu guards raw and size.
	mu   sync.Mutex
	raw  []byte
	size uint64
}

// current returns the checkpoint the index serves proofs against: the
// newest one whose whole tree is indexed.
func (x *Index) current(ctx context.Context) ([]byte, uint64, error) {
	var raw []byte
	err := x.store.db.QueryRowContext(ctx, `SELECT checkpoint FROM state WHERE id = 1`).Scan(&raw)
	if err == sql.ErrNoRows || (err == nil && len(raw) == 0) {
		return nil, 0, errNotReady
	}
	if err != nil {
		return nil, 0, fmt.Errorf("reading the index state: %w", err)
	}
	x.cp.mu.Lock()
	defer x.cp.mu.Unlock()
	if bytes.Equal(raw, x.cp.raw) {
		return x.cp.raw, x.cp.size, nil
	}
	body, _, ok := bytes.Cut(raw, []byte("\n\n"))
	if !ok {
		return nil, 0, fmt.Errorf("the index's checkpoint is not a note")
	}
	c, err := checkpoint.Parse(append(body, '\n'))
	if err != nil {
		return nil, 0, fmt.Errorf("the index's checkpoint: %w", err)
	}
	x.cp.raw, x.cp.size = raw, c.Size
	return raw, c.Size, nil
}

// Search answers q: it calls emit for each hit, in log order, with its
// inclusion proof against the index's checkpoint, and returns the next
// page ("" when there is none).
func (x *Index) Search(ctx context.Context, q *search.Query, emit func(*search.Hit) error) (string, error) {
	cp, size, err := x.current(ctx)
	if err != nil {
		return "", err
	}
	limit := q.PageSize()
	// Records name their principal and content type by id (names): a
	// name no record has matches nothing.
	var principal, contentType int64
	for _, c := range []struct {
		name string
		id   *int64
	}{{q.Principal, &principal}, {q.ContentType, &contentType}} {
		if c.name == "" {
			continue
		}
		id, ok, err := x.store.nameID(ctx, c.name)
		if err != nil {
			return "", err
		}
		if !ok {
			return "", nil
		}
		*c.id = id
	}
	var b strings.Builder
	var args []any
	b.WriteString(`SELECT r.idx, ` + stateName + `, r.leaf, r.rec FROM `)
	names := make([]string, 0, len(q.Fields))
	for k := range q.Fields {
		names = append(names, k)
	}
	sort.Strings(names)
	// The driver is the most selective key the query has, read in log
	// order so that LIMIT stops early: the first field's (name, value,
	// idx) key, the subject's (hash, idx), the principal's (principal,
	// idx); a time range alone goes through (ts, idx) and sorts the
	// indices it finds (records are roughly in time order, so a narrow
	// range is a short sort; a very wide one is slow: narrow it or add a
	// field).
	order := "r.idx"
	timeOnly := false
	switch {
	case len(names) > 0:
		b.WriteString(`field_keys f0 JOIN records r ON r.idx = f0.idx`)
		for i, n := range names[1:] {
			fmt.Fprintf(&b, ` JOIN field_keys f%d ON f%d.idx = r.idx AND f%d.k = ?`, i+1, i+1, i+1)
			k := fieldKey(n, q.Fields[n])
			args = append(args, k[:])
		}
		if q.Subject != "" {
			b.WriteString(` JOIN subjects s ON s.idx = r.idx AND s.hash = ?`)
			args = append(args, q.Subject)
		}
		b.WriteString(` WHERE f0.k = ? AND f0.idx >= ? AND f0.idx < ?`)
		k := fieldKey(names[0], q.Fields[names[0]])
		args = append(args, k[:], q.Page, size)
		order = "f0.idx"
	case q.Subject != "":
		b.WriteString(`subjects s JOIN records r ON r.idx = s.idx WHERE s.hash = ? AND s.idx >= ? AND s.idx < ?`)
		args = append(args, q.Subject, q.Page, size)
		order = "s.idx"
	case q.Principal == "" && (!q.Since.IsZero() || !q.Until.IsZero()):
		timeOnly = true
		b.WriteString(`records r WHERE r.idx IN (SELECT idx FROM records ` + x.store.forceIndex("records_ts") + ` WHERE idx >= ? AND idx < ?`)
		args = append(args, q.Page, size)
	default:
		b.WriteString(`records r WHERE r.idx >= ? AND r.idx < ?`)
		args = append(args, q.Page, size)
	}
	col := "r."
	if timeOnly {
		col = ""
	}
	if q.Principal != "" {
		b.WriteString(` AND ` + col + `principal = ?`)
		args = append(args, principal)
	}
	if q.ContentType != "" {
		b.WriteString(` AND ` + col + `content_type = ?`)
		args = append(args, contentType)
	}
	if !q.Since.IsZero() {
		b.WriteString(` AND ` + col + `ts >= ?`)
		args = append(args, q.Since.UnixMilli())
	}
	if !q.Until.IsZero() {
		b.WriteString(` AND ` + col + `ts < ?`)
		args = append(args, q.Until.UnixMilli())
	}
	if timeOnly {
		// MySQL refuses LIMIT in an IN subquery: a derived table holds it.
		b.WriteString(` ORDER BY idx LIMIT ?)`)
		args = append(args, limit+1)
		if x.store.dialect == "mysql" {
			s := b.String()
			s = strings.Replace(s, "r.idx IN (SELECT idx FROM", "r.idx IN (SELECT idx FROM (SELECT idx FROM", 1) + " t)"
			b.Reset()
			b.WriteString(s)
		}
	}
	b.WriteString(` ORDER BY ` + order + ` LIMIT ?`)
	args = append(args, limit+1)

	rows, err := x.store.db.QueryContext(ctx, b.String(), args...)
	if err != nil {
		return "", fmt.Errorf("querying the index: %w", err)
	}
	type found struct {
		idx       uint64
		state     string
		leaf, rec []byte
	}
	var hits []found
	for rows.Next() {
		var f found
		if err := rows.Scan(&f.idx, &f.state, &f.leaf, &f.rec); err != nil {
			rows.Close()
			return "", err
		}
		hits = append(hits, f)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return "", err
	}
	next := ""
	if len(hits) > limit {
		next = strconv.FormatUint(hits[limit].idx, 10)
		hits = hits[:limit]
	}
	if len(hits) == 0 {
		return next, nil
	}
	pb := newProver(x.store, size)
	for _, f := range hits {
		h, err := search.Describe(f.idx, f.leaf, f.rec, f.state, x.cfg.Fields)
		if err != nil {
			// A row the index cannot describe is still answered: the
			// client decides what it proves.
			h = &search.Hit{Index: f.idx, Leaf: f.leaf, Record: f.rec, State: f.state}
		}
		if h.Proof, err = pb.inclusion(ctx, f.idx); err != nil {
			return "", fmt.Errorf("building the inclusion proof of %d: %w", f.idx, err)
		}
		h.Checkpoint = string(cp)
		if err := emit(h); err != nil {
			return "", err
		}
	}
	return next, nil
}
