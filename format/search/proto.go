//go:build !(js && wasm)

// The gRPC mappings live apart so that the explorer's WebAssembly verifier
// (ui/wasm), which checks hits with CheckHit, does not carry gRPC in its
// download (it never speaks gRPC).

package search

import (
	"fmt"
	"net/url"
	"strconv"
	"time"

	cairnv1 "github.com/cairnlog/cairn/proto/cairn/v1"
)

// ToProto maps a hit to its gRPC message.
func (h *Hit) ToProto() *cairnv1.SearchHit {
	return &cairnv1.SearchHit{
		Index:               h.Index,
		TimestampUnixMillis: h.TimestampUnixMillis,
		Principal:           h.Principal,
		ContentType:         h.ContentType,
		SubjectHashes:       h.SubjectHashes,
		Fields:              h.Fields,
		State:               h.State,
		Leaf:                h.Leaf,
		Record:              h.Record,
		Proof:               h.Proof,
		Checkpoint:          h.Checkpoint,
	}
}

// FromProto maps a gRPC hit back; JSON is recomputed from the record by
// whoever needs it.
func FromProto(p *cairnv1.SearchHit) (*Hit, error) {
	if p == nil {
		return nil, fmt.Errorf("empty hit")
	}
	return &Hit{
		Index:               p.Index,
		Timestamp:           FormatTime(p.TimestampUnixMillis),
		TimestampUnixMillis: p.TimestampUnixMillis,
		Principal:           p.Principal,
		ContentType:         p.ContentType,
		SubjectHashes:       p.SubjectHashes,
		Fields:              p.Fields,
		State:               p.State,
		Leaf:                p.Leaf,
		Record:              p.Record,
		Proof:               p.Proof,
		Checkpoint:          p.Checkpoint,
	}, nil
}

// Request maps q to the gRPC request.
func (q *Query) Request() *cairnv1.SearchRequest {
	r := &cairnv1.SearchRequest{Fields: q.Fields, Subject: q.Subject, Principal: q.Principal, ContentType: q.ContentType, Limit: uint32(q.Limit)}
	if !q.Since.IsZero() {
		r.Since = q.Since.Format(time.RFC3339Nano)
	}
	if !q.Until.IsZero() {
		r.Until = q.Until.Format(time.RFC3339Nano)
	}
	if q.Page > 0 {
		r.Page = strconv.FormatUint(q.Page, 10)
	}
	return r
}

// QueryFromRequest parses a gRPC request with the same rules as ParseQuery.
func QueryFromRequest(r *cairnv1.SearchRequest, known func(string) bool) (*Query, error) {
	v := url.Values{}
	for k, val := range r.Fields {
		if reserved[k] {
			return nil, bad(k, "not an indexed field (GET /fields lists them)")
		}
		v.Set(k, val)
	}
	set := func(k, val string) {
		if val != "" {
			v.Set(k, val)
		}
	}
	set(ParamSubject, r.Subject)
	set(ParamPrincipal, r.Principal)
	set(ParamContentType, r.ContentType)
	set(ParamSince, r.Since)
	set(ParamUntil, r.Until)
	set(ParamPage, r.Page)
	if r.Limit != 0 {
		set(ParamLimit, strconv.FormatUint(uint64(r.Limit), 10))
	}
	return ParseQuery(v, known)
}
