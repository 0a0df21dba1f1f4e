package search

import (
	"encoding/hex"
	"encoding/json"
	"fmt"

	"github.com/cairnlog/cairn/format/record"
)

// StateSealed is the state of a sealed record an index without a read
// token could not have decrypted: only its clear header is indexed.
const StateSealed = "sealed"

// Describe computes what a hit says about a leaf: principal, timestamp,
// content type, subjects, fields and state. The index calls it to build
// its rows, the client to recompute a hit's claims from the proven leaf, so
// the two cannot disagree about what a record means.
//
// state is the log's word for a sealed (version-2) leaf: decrypted, with
// rec the version-1 envelope the log decrypted, or erased, no-key or
// tampered, with rec nil. For a version-1 leaf state and rec are ignored.
// A leaf that is neither (a migrated source log's leaf) is malformed: it
// has an index and nothing else.
func Describe(index uint64, leaf, rec []byte, state string, fields []Field) (*Hit, error) {
	h := &Hit{Index: index, Leaf: leaf}
	switch record.LeafVersion(leaf) {
	case 1:
		r, err := record.Decode(leaf)
		if err != nil {
			h.State = record.StateMalformed
			return h, nil
		}
		h.State = record.StatePlain
		h.setRecord(r, fields)
	case 2:
		s, err := record.DecodeSealed(leaf)
		if err != nil {
			h.State = record.StateMalformed
			return h, nil
		}
		h.Principal = s.Submitter
		h.TimestampUnixMillis = int64(s.Timestamp)
		h.Timestamp = FormatTime(h.TimestampUnixMillis)
		for _, sh := range s.Subjects {
			h.SubjectHashes = append(h.SubjectHashes, hex.EncodeToString(sh[:]))
		}
		h.State = state
		switch state {
		case record.StateDecrypted:
			r, err := record.Decode(rec)
			if err != nil {
				return nil, fmt.Errorf("entry %d: the decrypted record is malformed: %v", index, err)
			}
			if r.Submitter != s.Submitter || r.Timestamp != s.Timestamp {
				return nil, fmt.Errorf("entry %d: the decrypted record's submitter or timestamp differ from the sealed leaf's", index)
			}
			h.Record = rec
			h.setRecord(r, fields)
		case record.StateErased, record.StateNoKey, record.StateTampered, StateSealed:
		default:
			return nil, fmt.Errorf("entry %d: sealed record in state %q", index, state)
		}
	default:
		h.State = record.StateMalformed
	}
	return h, nil
}

func (h *Hit) setRecord(r record.Record, fields []Field) {
	h.Principal = r.Submitter
	h.TimestampUnixMillis = int64(r.Timestamp)
	h.Timestamp = FormatTime(h.TimestampUnixMillis)
	h.ContentType = r.ContentType
	valid := false
	if len(fields) > 0 {
		h.Fields, valid = extract(r.Payload, fields)
	} else {
		valid = scanValid(r.Payload) || json.Valid(r.Payload)
	}
	if valid {
		h.JSON = json.RawMessage(r.Payload)
	}
}

// Payload returns the record's payload of a described hit: the leaf's for
// a plain record, the decrypted record's for a decrypted one, else nil.
func (h *Hit) Payload() []byte {
	src := h.Leaf
	if h.State == record.StateDecrypted {
		src = h.Record
	} else if h.State != record.StatePlain {
		return nil
	}
	r, err := record.Decode(src)
	if err != nil {
		return nil
	}
	return r.Payload
}
