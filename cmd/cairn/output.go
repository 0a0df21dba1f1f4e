package main

// The JSON that client commands print with --output json: one type per
// command, documented in docs/cli.md ("JSON output"). Hashes and byte
// strings are standard base64, as in checkpoints; times are RFC 3339.

import (
	"encoding/base64"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/cairnlog/cairn/format/policy"
	"github.com/cairnlog/cairn/format/record"
	"github.com/transparency-dev/merkle/rfc6962"
)

// checkpointJSON is a verified checkpoint.
type checkpointJSON struct {
	Origin string `json:"origin"`
	Size   uint64 `json:"size"`
	Root   string `json:"root"`
	// Cosignatures are the witnesses whose cosignatures verified, by name.
	Cosignatures []cosignatureJSON `json:"cosignatures"`
	// Note is the checkpoint as served (a signed note).
	Note string `json:"note"`
}

// cosignatureJSON is one verified witness cosignature.
type cosignatureJSON struct {
	Witness string `json:"witness"`
	// KeyType is the witness key's type: "ed25519" (0x04) or "ml-dsa-44" (0x06).
	KeyType string `json:"key_type"`
	// Timestamp is absent for a cosignature without one.
	Timestamp *time.Time `json:"timestamp,omitempty"`
}

// recordJSON is a leaf: decoded when it is a Cairn record envelope.
type recordJSON struct {
	LeafHash    string `json:"leaf_hash"`
	CairnRecord bool   `json:"cairn_record"`
	// Leaf is the raw leaf, only when it is not a Cairn record.
	Leaf                []byte `json:"leaf,omitempty"`
	Submitter           string `json:"submitter,omitempty"`
	TimestampUnixMillis uint64 `json:"timestamp_unix_millis,omitempty"`
	ContentType         string `json:"content_type,omitempty"`
	IdempotencyKey      string `json:"idempotency_key,omitempty"`
	Payload             []byte `json:"payload,omitempty"`
	// PayloadText is the payload when it is valid UTF-8.
	PayloadText *string `json:"payload_text,omitempty"`
}

// submitJSON is what cairn submit prints.
type submitJSON struct {
	Index     uint64 `json:"index"`
	Duplicate bool   `json:"duplicate"`
	Endpoint  string `json:"endpoint"`
	LeafHash  string `json:"leaf_hash"`
	// Receipt is the file the verified receipt was written to.
	Receipt string `json:"receipt,omitempty"`
}

// getJSON is what cairn get prints: the index and the record's fields.
type getJSON struct {
	Index uint64 `json:"index"`
	// Legacy says where a migrated leaf (below the migration boundary) came from.
	Legacy string `json:"legacy,omitempty"`
	recordJSON
}

// verifyReceiptJSON is what cairn verify receipt prints.
type verifyReceiptJSON struct {
	Verified   bool           `json:"verified"`
	Index      uint64         `json:"index"`
	Checkpoint checkpointJSON `json:"checkpoint"`
	Record     recordJSON     `json:"record"`
}

// verifyInclusionJSON is what cairn verify inclusion prints.
type verifyInclusionJSON struct {
	Verified   bool           `json:"verified"`
	Index      uint64         `json:"index"`
	LeafHash   string         `json:"leaf_hash"`
	Checkpoint checkpointJSON `json:"checkpoint"`
}

// verifyConsistencyJSON is what cairn verify consistency prints.
type verifyConsistencyJSON struct {
	Verified bool           `json:"verified"`
	From     checkpointJSON `json:"from"`
	To       checkpointJSON `json:"to"`
}

// auditJSON is what a passed cairn audit prints.
type auditJSON struct {
	Verified         bool           `json:"verified"`
	From             uint64         `json:"from"`
	Records          uint64         `json:"records"`
	Seconds          float64        `json:"seconds"`
	RecordsPerSecond float64        `json:"records_per_second"`
	Checkpoint       checkpointJSON `json:"checkpoint"`
	// MinimumIndex: records below it are pruned (their leaf hashes are
	// verified in the tree); ArchivedBundles of their bundles were verified
	// in --archive.
	MinimumIndex    uint64 `json:"minimum_index"`
	ArchivedBundles uint64 `json:"archived_bundles"`
	// LegacyLeaves is how many leaves lie below the migration boundary.
	LegacyLeaves uint64 `json:"legacy_leaves,omitempty"`
}

// monitorJSON is one line of cairn monitor: exactly one of OK, Alarm, Error.
type monitorJSON struct {
	Time       time.Time       `json:"time"`
	OK         bool            `json:"ok"`
	Advanced   bool            `json:"advanced,omitempty"`
	Alarm      string          `json:"alarm,omitempty"`
	Error      string          `json:"error,omitempty"`
	Checkpoint *checkpointJSON `json:"checkpoint,omitempty"`
}

func b64(b []byte) string { return base64.StdEncoding.EncodeToString(b) }

// witnesses returns the cosignatures of v sorted by witness name.
func witnesses(v *policy.Verified) []cosignatureJSON {
	out := make([]cosignatureJSON, 0, len(v.Cosigned))
	for w, t := range v.Cosigned {
		c := cosignatureJSON{Witness: w, KeyType: v.KeyTypes[w].String()}
		if !t.IsZero() {
			t := t.UTC()
			c.Timestamp = &t
		}
		out = append(out, c)
	}
	slices.SortFunc(out, func(a, b cosignatureJSON) int { return strings.Compare(a.Witness, b.Witness) })
	return out
}

// keyTypeSummary counts the verified cosignatures by key type:
// " (2 ed25519, 1 ml-dsa-44)", or "" when there are none.
func keyTypeSummary(v *policy.Verified) string {
	n := map[string]int{}
	for _, c := range witnesses(v) {
		n[c.KeyType]++
	}
	var parts []string
	for _, t := range slices.Sorted(maps.Keys(n)) {
		parts = append(parts, fmt.Sprintf("%d %s", n[t], t))
	}
	if len(parts) == 0 {
		return ""
	}
	return " (" + strings.Join(parts, ", ") + ")"
}

func cpJSON(v *policy.Verified) checkpointJSON {
	return checkpointJSON{v.Checkpoint.Origin, v.Checkpoint.Size, b64(v.Checkpoint.Root[:]), witnesses(v), string(v.Raw)}
}

func cpText(v *policy.Verified) string {
	var b strings.Builder
	fmt.Fprintf(&b, "origin   %s\nsize     %d\nroot     %s\n", safeText(v.Checkpoint.Origin), v.Checkpoint.Size, b64(v.Checkpoint.Root[:]))
	for _, c := range witnesses(v) {
		ts := "no timestamp"
		if c.Timestamp != nil {
			ts = c.Timestamp.Format(time.RFC3339)
		}
		fmt.Fprintf(&b, "witness  %s (%s, cosigned %s)\n", safeText(c.Witness), c.KeyType, ts)
	}
	return b.String()
}

// leafHash is the RFC 6962 leaf hash, in base64.
func leafHash(leaf []byte) string { return b64(rfc6962.DefaultHasher.HashLeaf(leaf)) }

func recordOf(leaf []byte) recordJSON {
	r, err := record.Decode(leaf)
	if err != nil {
		return recordJSON{LeafHash: leafHash(leaf), Leaf: leaf}
	}
	j := recordJSON{LeafHash: leafHash(leaf), CairnRecord: true, Submitter: r.Submitter, TimestampUnixMillis: r.Timestamp,
		ContentType: r.ContentType, IdempotencyKey: r.IdempotencyKey, Payload: r.Payload}
	if utf8.Valid(r.Payload) {
		s := string(r.Payload)
		j.PayloadText = &s
	}
	return j
}

// describeRecord prints a leaf decoded as a Cairn record envelope, or says
// it is not one (a leaf from another log). Every field goes through
// safeText: a record is untrusted input and must not drive the terminal.
func describeRecord(leaf []byte) string {
	if s, err := record.DecodeSealed(leaf); err == nil {
		return describeSealed(s)
	}
	r, err := record.Decode(leaf)
	if err != nil {
		return fmt.Sprintf("leaf          %d bytes, not a Cairn record envelope (%s)\nleaf (base64) %s\n", len(leaf), safeText(err.Error()), b64(leaf))
	}
	ts := "not supplied"
	if !r.Time().IsZero() {
		ts = r.Time().Format(time.RFC3339Nano)
	}
	payload := safeText(string(r.Payload))
	if !utf8.Valid(r.Payload) {
		payload = "(base64) " + b64(r.Payload)
	}
	return fmt.Sprintf("submitter     %s\ntime          %s\ncontent type  %s\nidempotency   %s\npayload       %s\n",
		safeText(r.Submitter), ts, safeText(r.ContentType), safeText(r.IdempotencyKey), payload)
}

// safeText makes untrusted text safe to print on a terminal: every
// character that is not printable is written as a Go escape (\r, \x1b,
// \u202e), like strconv.Quote but without quotes and leaving printable
// text, quotes and backslashes alone. Not printable (strconv.IsPrint) are
// the C0 and C1 controls (U+0000–U+001F, U+007F–U+009F; newline and tab
// included, so a value cannot start a line of its own), format characters
// such as the bidi overrides U+202A–U+202E and isolates U+2066–U+2069,
// separators other than the space, private-use and unassigned code points;
// invalid UTF-8 is written byte by byte as \xNN.
func safeText(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); {
		r, n := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && n == 1:
			fmt.Fprintf(&b, `\x%02x`, s[i])
		case strconv.IsPrint(r):
			b.WriteString(s[i : i+n])
		default:
			b.WriteString(escapeRune(r))
		}
		i += n
	}
	return b.String()
}

// escapeRune is r as strconv.QuoteRune writes it, without the quotes.
func escapeRune(r rune) string {
	q := strconv.QuoteRune(r)
	return q[1 : len(q)-1]
}

// describeSealed prints the clear header of a sealed record (envelope
// version 2); its body is ciphertext only the log can open.
func describeSealed(s record.Sealed) string {
	ts := "not supplied"
	if s.Timestamp != 0 {
		ts = time.UnixMilli(int64(s.Timestamp)).UTC().Format(time.RFC3339Nano)
	}
	hs := make([]string, len(s.Subjects))
	for i, h := range s.Subjects {
		hs[i] = fmt.Sprintf("%x", h[:])
	}
	return fmt.Sprintf("submitter     %s\ntime          %s\nsealed        %d bytes of ciphertext for subjects %s (read it with cairn get --token-file)\n",
		safeText(s.Submitter), ts, len(s.Body), strings.Join(hs, ", "))
}
