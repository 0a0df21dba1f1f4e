package search

import (
	"errors"
	"fmt"
	"net/url"
	"regexp"
	"sort"
	"strconv"
	"time"
)

// Query limits.
const (
	// DefaultLimit is the page size when a query names none.
	DefaultLimit = 100
	// MaxLimit is the largest page a query may ask for.
	MaxLimit = 1000
	// MaxValueBytes bounds a field value (longer values are not indexed).
	MaxValueBytes = 256
)

// The query parameters besides field names; no field may take one of these names.
const (
	ParamSince       = "since"
	ParamUntil       = "until"
	ParamPrincipal   = "principal"
	ParamSubject     = "subject"
	ParamContentType = "content_type"
	ParamLimit       = "limit"
	ParamPage        = "page"
)

var reserved = map[string]bool{ParamSince: true, ParamUntil: true, ParamPrincipal: true, ParamSubject: true,
	ParamContentType: true, ParamLimit: true, ParamPage: true}

// ErrBadQuery is wrapped by every error of a query that cannot be answered
// as asked (HTTP 400, gRPC InvalidArgument); ParamError names the parameter.
var ErrBadQuery = errors.New("bad query")

// ParamError is a bad query parameter.
type ParamError struct {
	Param  string
	Reason string
}

func (e *ParamError) Error() string { return fmt.Sprintf("query parameter %q: %s", e.Param, e.Reason) }

// Is makes errors.Is(err, ErrBadQuery) hold.
func (e *ParamError) Is(target error) bool { return target == ErrBadQuery }

func bad(param, format string, a ...any) error {
	return &ParamError{Param: param, Reason: fmt.Sprintf(format, a...)}
}

// Query is a search: every condition set must hold. Hits come in log order.
type Query struct {
	// Fields are NAME = VALUE conditions on extracted fields.
	Fields map[string]string
	// Subject is a keyed subject hash, lowercase hex.
	Subject     string
	Principal   string
	ContentType string
	// Since (inclusive) and Until (exclusive) bound the record timestamp;
	// zero values are unbounded.
	Since, Until time.Time
	// Limit is the page size (0: DefaultLimit).
	Limit int
	// Page is the first index to answer (from a previous NextPage).
	Page uint64
}

var (
	fieldName = regexp.MustCompile(`^[a-z][a-z0-9_]{0,63}$`)
	hexHash   = regexp.MustCompile(`^[0-9a-f]{64}$`)
)

// CheckFieldName reports whether name may name an indexed field.
func CheckFieldName(name string) error {
	if !fieldName.MatchString(name) {
		return fmt.Errorf("field name %q: want a lowercase letter, then up to 63 of a-z, 0-9, _", name)
	}
	if reserved[name] {
		return fmt.Errorf("field name %q is a query parameter", name)
	}
	return nil
}

// ParseQuery parses the parameters of GET /search. known reports whether
// a field name is indexed; any other parameter is an error naming it.
func ParseQuery(v url.Values, known func(string) bool) (*Query, error) {
	q := &Query{Fields: map[string]string{}}
	for name, vals := range v {
		if len(vals) != 1 {
			return nil, bad(name, "given %d times, want once", len(vals))
		}
		val := vals[0]
		var err error
		switch name {
		case ParamSince:
			q.Since, err = parseTime(name, val)
		case ParamUntil:
			q.Until, err = parseTime(name, val)
		case ParamPrincipal:
			q.Principal = val
		case ParamContentType:
			q.ContentType = val
		case ParamSubject:
			if !hexHash.MatchString(val) {
				return nil, bad(name, "%q is not a keyed subject hash (64 lowercase hex digits)", trim(val))
			}
			q.Subject = val
		case ParamLimit:
			n, perr := strconv.Atoi(val)
			if perr != nil || n < 1 || n > MaxLimit {
				return nil, bad(name, "%q: want 1..%d", trim(val), MaxLimit)
			}
			q.Limit = n
		case ParamPage:
			n, perr := strconv.ParseUint(val, 10, 64)
			if perr != nil {
				return nil, bad(name, "%q is not a page this index handed out", trim(val))
			}
			q.Page = n
		default:
			if !known(name) {
				return nil, bad(name, "not an indexed field (GET /fields lists them)")
			}
			if len(val) > MaxValueBytes {
				return nil, bad(name, "value is %d bytes, at most %d are indexed", len(val), MaxValueBytes)
			}
			q.Fields[name] = val
		}
		if err != nil {
			return nil, err
		}
	}
	if !q.Since.IsZero() && !q.Until.IsZero() && !q.Since.Before(q.Until) {
		return nil, bad(ParamUntil, "%s is not after since %s", q.Until.Format(time.RFC3339Nano), q.Since.Format(time.RFC3339Nano))
	}
	return q, nil
}

func parseTime(param, s string) (time.Time, error) {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return time.Time{}, bad(param, "%q is not an RFC 3339 time (2026-11-24T12:50:00Z)", trim(s))
	}
	return t, nil
}

func trim(s string) string {
	if len(s) > 80 {
		return s[:80] + "…"
	}
	return s
}

// PageSize is the effective limit.
func (q *Query) PageSize() int {
	if q.Limit <= 0 {
		return DefaultLimit
	}
	return q.Limit
}

// Values encodes q as GET /search parameters.
func (q *Query) Values() url.Values {
	v := url.Values{}
	for k, val := range q.Fields {
		v.Set(k, val)
	}
	if q.Subject != "" {
		v.Set(ParamSubject, q.Subject)
	}
	if q.Principal != "" {
		v.Set(ParamPrincipal, q.Principal)
	}
	if q.ContentType != "" {
		v.Set(ParamContentType, q.ContentType)
	}
	if !q.Since.IsZero() {
		v.Set(ParamSince, q.Since.Format(time.RFC3339Nano))
	}
	if !q.Until.IsZero() {
		v.Set(ParamUntil, q.Until.Format(time.RFC3339Nano))
	}
	if q.Limit > 0 {
		v.Set(ParamLimit, strconv.Itoa(q.Limit))
	}
	if q.Page > 0 {
		v.Set(ParamPage, strconv.FormatUint(q.Page, 10))
	}
	return v
}

// Matches reports whether a hit's claims satisfy q (the client checks
// this after recomputing the claims from the proven leaf).
func (q *Query) Matches(h *Hit) error {
	if q.Principal != "" && h.Principal != q.Principal {
		return fmt.Errorf("principal is %q, the query asked for %q", h.Principal, q.Principal)
	}
	if q.ContentType != "" && h.ContentType != q.ContentType {
		return fmt.Errorf("content type is %q, the query asked for %q", h.ContentType, q.ContentType)
	}
	if q.Subject != "" && !contains(h.SubjectHashes, q.Subject) {
		return fmt.Errorf("the record is not about subject %s", q.Subject)
	}
	if !q.Since.IsZero() && h.TimestampUnixMillis < q.Since.UnixMilli() {
		return fmt.Errorf("timestamp %s is before since %s", FormatTime(h.TimestampUnixMillis), q.Since.Format(time.RFC3339))
	}
	if !q.Until.IsZero() && h.TimestampUnixMillis >= q.Until.UnixMilli() {
		return fmt.Errorf("timestamp %s is not before until %s", FormatTime(h.TimestampUnixMillis), q.Until.Format(time.RFC3339))
	}
	names := make([]string, 0, len(q.Fields))
	for k := range q.Fields {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, k := range names {
		got, ok := h.Fields[k]
		if !ok || got != q.Fields[k] {
			return fmt.Errorf("field %s is %q, the query asked for %q", k, got, q.Fields[k])
		}
	}
	return nil
}

func contains(ss []string, s string) bool {
	for _, x := range ss {
		if x == s {
			return true
		}
	}
	return false
}
