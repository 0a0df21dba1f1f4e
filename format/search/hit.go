// Package search is the wire format of Cairn's search index
// (docs/search.md): the hit the index answers with — one JSON line of
// GET /search, one cairn.v1.SearchHit of the gRPC Search stream — the query
// both sides encode and parse, and the field paths (--field NAME=PATH) that
// say which JSON values of a record are indexed. The index (index/) and the
// client (client/search.go) both import it; nothing here is trusted by the
// client except as a claim it then checks against the proven leaf.
package search

import (
	"encoding/json"
	"time"
)

// Hit is one search result. Index, Leaf, Proof and Checkpoint are what a
// client verifies (leaf hash → inclusion proof → checkpoint → policy); the
// other fields are the index's claims about the leaf, which the client
// recomputes from the proven leaf (and, for sealed records, from Record,
// the plaintext the log decrypted) and compares.
type Hit struct {
	// Index is the leaf's index in the log.
	Index uint64 `json:"index"`
	// Timestamp is the record's timestamp (the submitter's clock), RFC 3339
	// with milliseconds, UTC; empty when the record carries none.
	Timestamp string `json:"timestamp,omitempty"`
	// TimestampUnixMillis is the same instant as Unix milliseconds (0: none).
	TimestampUnixMillis int64 `json:"timestamp_unix_millis"`
	// Principal is the submitter the log authenticated.
	Principal string `json:"principal"`
	// ContentType is the record's content type ("" for an erased record,
	// whose content type is inside the ciphertext).
	ContentType string `json:"content_type"`
	// SubjectHashes are a sealed record's keyed subject hashes (lowercase hex).
	SubjectHashes []string `json:"subject_hashes,omitempty"`
	// Fields are the values the index extracted (--field NAME=PATH).
	Fields map[string]string `json:"fields,omitempty"`
	// State is the record's state (format/record: plain, decrypted, erased,
	// no-key, tampered, malformed).
	State string `json:"state"`
	// Leaf is the leaf in the log (base64 in JSON).
	Leaf []byte `json:"leaf"`
	// Record is the version-1 envelope the log decrypted (state decrypted).
	Record []byte `json:"record,omitempty"`
	// JSON is the record's payload when it is JSON: a convenience for
	// browsers, never trusted by the Go client (it decodes Leaf or Record).
	JSON json.RawMessage `json:"json,omitempty"`
	// Proof is the RFC 6962 inclusion proof of Index in Checkpoint's tree.
	Proof [][]byte `json:"proof"`
	// Checkpoint is the signed (cosigned) checkpoint note.
	Checkpoint string `json:"checkpoint"`
}

// Page is the last JSON line of an answer that has more results: the value
// to pass as page= to continue.
type Page struct {
	NextPage string `json:"next_page"`
}

// Line is any line of a GET /search answer: a hit, or (last) a Page. Decode
// into it and check NextPage.
type Line struct {
	Hit
	NextPage string `json:"next_page,omitempty"`
}

// FormatTime renders a record timestamp as hits carry it: RFC 3339, UTC,
// milliseconds; "" for 0 (no timestamp).
func FormatTime(ms int64) string {
	if ms == 0 {
		return ""
	}
	return time.UnixMilli(ms).UTC().Format("2006-01-02T15:04:05.000Z07:00")
}
