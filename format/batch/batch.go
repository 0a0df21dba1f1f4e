// Package batch is the body of a batched POST /add: many records in one
// HTTP request, each length-prefixed (docs/log.md, "Batched appends").
//
// A body is a sequence of records, each encoded as
//
//	u8  content type length   ‖ content type   (≤ 255 bytes)
//	u8  idempotency key length ‖ idempotency key (≤ 255 bytes)
//	u64 timestamp, Unix milliseconds (0: not supplied)
//	u32 payload length          ‖ payload
//
// with every integer big-endian, and nothing after the last record. The
// fields are those of cairn.v1.AppendRequest; the log validates them as it
// does a single append.
package batch

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// ContentType is the media type of a batch body.
const ContentType = "application/vnd.cairn.batch"

// Record is one record of a batch.
type Record struct {
	ContentType    string
	IdempotencyKey string
	// Timestamp is Unix milliseconds; 0 means not supplied.
	Timestamp uint64
	Payload   []byte
}

// MaxTextBytes bounds the content type and the idempotency key (a u8 length).
const MaxTextBytes = 255

// headerBytes is a record's fixed part: two u8 lengths, u64, u32.
const headerBytes = 1 + 1 + 8 + 4

// ErrMalformed is wrapped by every Parse error.
var ErrMalformed = errors.New("malformed batch")

// Append appends r's encoding to b.
func Append(b []byte, r Record) ([]byte, error) {
	if len(r.ContentType) > MaxTextBytes {
		return b, fmt.Errorf("content type is %d bytes, over %d", len(r.ContentType), MaxTextBytes)
	}
	if len(r.IdempotencyKey) > MaxTextBytes {
		return b, fmt.Errorf("idempotency key is %d bytes, over %d", len(r.IdempotencyKey), MaxTextBytes)
	}
	if uint64(len(r.Payload)) > 1<<32-1 {
		return b, fmt.Errorf("payload is %d bytes, over 4 GiB", len(r.Payload))
	}
	b = append(b, byte(len(r.ContentType)))
	b = append(b, r.ContentType...)
	b = append(b, byte(len(r.IdempotencyKey)))
	b = append(b, r.IdempotencyKey...)
	b = binary.BigEndian.AppendUint64(b, r.Timestamp)
	b = binary.BigEndian.AppendUint32(b, uint32(len(r.Payload)))
	return append(b, r.Payload...), nil
}

// Encode returns the body carrying records in order.
func Encode(records []Record) ([]byte, error) {
	n := 0
	for _, r := range records {
		n += headerBytes + len(r.ContentType) + len(r.IdempotencyKey) + len(r.Payload)
	}
	b := make([]byte, 0, n)
	for i, r := range records {
		var err error
		if b, err = Append(b, r); err != nil {
			return nil, fmt.Errorf("record %d: %w", i, err)
		}
	}
	return b, nil
}

// TooLargeError reports a record whose payload is over Parse's limit.
type TooLargeError struct {
	// Record is the record's position in the batch (from 0).
	Record int
	// Bytes is the payload's declared length; Limit the limit.
	Bytes, Limit int
}

func (e *TooLargeError) Error() string {
	return fmt.Sprintf("record %d: the payload is %d bytes, over the limit of %d bytes", e.Record, e.Bytes, e.Limit)
}

// Parse decodes a batch body of at most maxRecords records whose payloads are
// at most maxPayload bytes. Payloads alias body. An error names the record
// (from 0) and the byte offset at fault and wraps ErrMalformed, except a
// payload over maxPayload, which is a *TooLargeError. An empty body is an
// empty batch.
func Parse(body []byte, maxRecords, maxPayload int) ([]Record, error) {
	var out []Record
	off := 0
	for i := 0; off < len(body); i++ {
		if i >= maxRecords {
			return nil, fmt.Errorf("%w: more than %d records", ErrMalformed, maxRecords)
		}
		r, n, err := parseOne(body[off:], maxPayload)
		if err != nil {
			var tl *TooLargeError
			if errors.As(err, &tl) {
				tl.Record = i
				return nil, tl
			}
			return nil, fmt.Errorf("%w: record %d at byte offset %d: %v", ErrMalformed, i, off, err)
		}
		out = append(out, r)
		off += n
	}
	return out, nil
}

// parseOne decodes the record at the start of b and returns its length.
func parseOne(b []byte, maxPayload int) (Record, int, error) {
	var r Record
	off := 0
	text := func(field string) (string, error) {
		if off >= len(b) {
			return "", fmt.Errorf("truncated before the %s length", field)
		}
		n := int(b[off])
		off++
		if len(b)-off < n {
			return "", fmt.Errorf("the %s is %d bytes but only %d remain", field, n, len(b)-off)
		}
		s := string(b[off : off+n])
		off += n
		return s, nil
	}
	var err error
	if r.ContentType, err = text("content type"); err != nil {
		return r, 0, err
	}
	if r.IdempotencyKey, err = text("idempotency key"); err != nil {
		return r, 0, err
	}
	if len(b)-off < 12 {
		return r, 0, fmt.Errorf("truncated in the timestamp and payload length (%d bytes remain, 12 needed)", len(b)-off)
	}
	r.Timestamp = binary.BigEndian.Uint64(b[off:])
	n := binary.BigEndian.Uint32(b[off+8:])
	off += 12
	if uint64(n) > uint64(maxPayload) {
		return r, 0, &TooLargeError{Bytes: int(n), Limit: maxPayload}
	}
	if len(b)-off < int(n) {
		return r, 0, fmt.Errorf("the payload is %d bytes but only %d remain", n, len(b)-off)
	}
	r.Payload = b[off : off+int(n) : off+int(n)]
	return r, off + int(n), nil
}
