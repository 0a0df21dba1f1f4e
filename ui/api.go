package ui

// The JSON answers of the explorer's API, which the log serves under
// Prefix+"api/" (docs/explorer.md lists them).

// Status is GET /ui/api/status: the log's health, public like the
// checkpoint (it shows no record content).
type Status struct {
	Origin string `json:"origin"`
	// TreeSize is the latest published checkpoint's size; Checkpoint its note.
	TreeSize   uint64 `json:"tree_size"`
	Checkpoint string `json:"checkpoint"`
	// CheckpointAgeSeconds is how long ago the published checkpoint last
	// changed, as this frontend saw it (cairn_log_checkpoint_timestamp_seconds).
	CheckpointAgeSeconds float64 `json:"checkpoint_age_seconds"`
	// MinimumIndex is the tlog-tiles minimum index (0: nothing pruned);
	// Retention says whether a retention policy is on.
	MinimumIndex uint64 `json:"minimum_index"`
	Retention    bool   `json:"retention"`
	// Quorum is the policy's quorum line's name ("none" without witnesses).
	Quorum    string     `json:"quorum"`
	Witnesses []Cosigner `json:"witnesses"`
	Mirrors   []Cosigner `json:"mirrors"`
	// Policy is the tlog-policy the page trusts by default: this log's key
	// and the witness policy it publishes under. It comes from the log
	// itself; the verify page says so and takes the auditor's own instead.
	Policy string `json:"policy"`
	// ReadAccess is "public" or "authenticated" (record contents need a token).
	ReadAccess string `json:"read_access"`
	// IndexURL is the search index's base URL; empty: no search pages.
	IndexURL string `json:"index_url,omitempty"`
	// History is one point per minute, oldest first.
	History []Minute `json:"history"`
}

// Cosigner is a witness or mirror of the policy as the log last saw it.
type Cosigner struct {
	Name string `json:"name"`
	URL  string `json:"url,omitempty"`
	// Known is false until the log has learnt a size for it.
	Known bool `json:"known"`
	// Size is the largest tree size it cosigned (or, for a pushed mirror,
	// acknowledged); Behind how many entries that is short of TreeSize.
	Size   uint64 `json:"size"`
	Behind uint64 `json:"behind"`
	// CosignedLatest: its cosignature is on the published checkpoint, made
	// at CosignedAt (RFC 3339, from the cosignature's timestamp).
	CosignedLatest bool   `json:"cosigned_latest"`
	CosignedAt     string `json:"cosigned_at,omitempty"`
}

// RecordSummary is one row of GET /ui/api/records.
type RecordSummary struct {
	Index uint64 `json:"index"`
	// State is a format/record Decoded state, "pruned" (below the minimum
	// index), or "sealed" (names a data subject; the caller lacks the read role).
	State       string `json:"state"`
	Submitter   string `json:"submitter,omitempty"`
	Timestamp   uint64 `json:"timestamp_unix_millis,omitempty"`
	ContentType string `json:"content_type,omitempty"`
	Bytes       int    `json:"payload_bytes"`
	Detail      string `json:"detail,omitempty"`
}

// RecordList is GET /ui/api/records?before=N&limit=M: the records
// [max(0,N-M), N), newest first.
type RecordList struct {
	TreeSize     uint64          `json:"tree_size"`
	MinimumIndex uint64          `json:"minimum_index"`
	Records      []RecordSummary `json:"records"`
}

// RecordView is GET /ui/api/record/{index}: one record with its envelope,
// leaf hash and inclusion proof (a tlog-proof receipt against the
// published checkpoint).
type RecordView struct {
	RecordSummary
	IdempotencyKey string   `json:"idempotency_key,omitempty"`
	Payload        []byte   `json:"payload,omitempty"` // base64 in JSON
	SubjectHashes  []string `json:"subject_hashes,omitempty"`
	ErasedAt       int64    `json:"erased_at_unix_millis,omitempty"`
	// Leaf is the exact leaf (base64), LeafHash its RFC 6962 hash (hex).
	Leaf     []byte `json:"leaf"`
	LeafHash string `json:"leaf_hash"`
	// TreeSize is the checkpoint the proof is for; Proof its hashes (base64),
	// Receipt the whole tlog-proof.
	TreeSize uint64   `json:"tree_size"`
	Proof    [][]byte `json:"proof"`
	Receipt  string   `json:"receipt"`
}
