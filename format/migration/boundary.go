// Package migration is the migration boundary: the document that says which
// leaves of a Cairn log were imported from another log (cairn migrate) and
// are that log's raw leaves rather than Cairn record envelopes. The log
// serves it at /migration-boundary and appends it as a record right after
// the cut-over; clients read it to show legacy leaves as such.
//
// It is one line of JSON:
//
//	{"source":"trillian","tree_id":1234,"size":3737,"root":"<base64 RFC 6962 root>"}
//
// Leaves with index < size are legacy leaves; root is the source log's root
// at size, which the migration proved equal to the Cairn tree's.
package migration

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
)

// Path is where the boundary is stored beside the tiles, and the HTTP path
// (under the log's URL) it is served at.
const Path = "migration-boundary"

// ContentType is the content type of the boundary record the log appends.
const ContentType = "application/vnd.cairn.migration-boundary+json"

// SourceTrillian is the Source of a Trillian v1 migration.
const SourceTrillian = "trillian"

// MaxSize bounds an encoded boundary.
const MaxSize = 1 << 10

// ErrMalformed is wrapped by every parsing error.
var ErrMalformed = errors.New("malformed migration boundary")

// Boundary says which prefix of the log was migrated, and from where.
type Boundary struct {
	// Source names the source log's kind ("trillian").
	Source string `json:"source"`
	// TreeID is the source's tree (Trillian's tree ID).
	TreeID int64 `json:"tree_id"`
	// Size is the number of migrated leaves: indices [0, Size).
	Size uint64 `json:"size"`
	// Root is the RFC 6962 root hash of both trees at Size.
	Root []byte `json:"root"`
}

// IsLegacy reports whether the leaf at index was migrated.
func (b *Boundary) IsLegacy(index uint64) bool { return b != nil && index < b.Size }

// Encode returns the boundary's one-line JSON encoding.
func (b Boundary) Encode() ([]byte, error) {
	if err := b.validate(); err != nil {
		return nil, err
	}
	out, err := json.Marshal(b)
	if err != nil {
		return nil, err
	}
	return append(out, '\n'), nil
}

// Parse parses an encoded boundary, refusing unknown fields.
func Parse(data []byte) (Boundary, error) {
	var b Boundary
	if len(data) > MaxSize {
		return b, fmt.Errorf("%w: %d bytes (at most %d)", ErrMalformed, len(data), MaxSize)
	}
	d := json.NewDecoder(bytes.NewReader(data))
	d.DisallowUnknownFields()
	if err := d.Decode(&b); err != nil {
		return Boundary{}, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	if d.More() {
		return Boundary{}, fmt.Errorf("%w: trailing data", ErrMalformed)
	}
	if err := b.validate(); err != nil {
		return Boundary{}, err
	}
	return b, nil
}

func (b Boundary) validate() error {
	switch {
	case b.Source != SourceTrillian:
		return fmt.Errorf("%w: source %q (want %q)", ErrMalformed, b.Source, SourceTrillian)
	case b.Size == 0:
		return fmt.Errorf("%w: size 0 (nothing migrated)", ErrMalformed)
	case len(b.Root) != 32:
		return fmt.Errorf("%w: root is %d bytes, want 32", ErrMalformed, len(b.Root))
	}
	return nil
}
