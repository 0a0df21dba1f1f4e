// Package record defines Cairn's record envelope: the exact bytes of a log leaf.
//
// A leaf binds the submitter as authenticated by the log, the submitter's
// timestamp, an idempotency key, a content type and the payload. Encoding is
// deterministic: one Record has exactly one encoding and Decode(Encode(r)) == r,
// so a retried request produces the same leaf and therefore, through Tessera's
// antispam, the same index. docs/record-format.md documents the layout byte for
// byte.
//
// Layout (version 1), all integers big-endian:
//
//	u8   version (= 1)
//	u8   len(submitter)        1..255
//	     submitter             UTF-8, no C0/C1 control or bidi control
//	u64  timestamp             Unix milliseconds; 0 = not supplied
//	u8   len(idempotency key)  0..255
//	     idempotency key       UTF-8, no C0/C1 control or bidi control
//	u8   len(content type)     0..255
//	     content type          RFC 2045 type/subtype, printable ASCII
//	u16  len(payload)
//	     payload
package record

import (
	"encoding/binary"
	"errors"
	"fmt"
	"time"
	"unicode/utf8"
)

// Version is the only envelope version this package writes and reads.
const Version = 1

// MaxLeafBytes is the largest leaf tlog-tiles can carry: entry bundles prefix
// every entry with a uint16 length.
const MaxLeafBytes = 1<<16 - 1

// Field limits. The fixed overhead of an envelope is at most MaxOverhead bytes,
// so a payload of MaxPayloadBytes always fits in MaxLeafBytes.
const (
	MaxSubmitterBytes      = 255
	MaxIdempotencyKeyBytes = 255
	MaxContentTypeBytes    = 255
	MaxOverhead            = 1 + 1 + MaxSubmitterBytes + 8 + 1 + MaxIdempotencyKeyBytes + 1 + MaxContentTypeBytes + 2
	MaxPayloadBytes        = MaxLeafBytes - MaxOverhead
)

// Anonymous is the submitter recorded when the log authenticates nobody.
const Anonymous = "anonymous"

// ErrMalformed is wrapped by every decoding error.
var ErrMalformed = errors.New("malformed record")

// ErrInvalid is wrapped by every error about a Record that cannot be encoded.
var ErrInvalid = errors.New("invalid record")

// Record is one audit record as the log stores it.
type Record struct {
	// Submitter is the principal the log authenticated (Anonymous without authentication).
	Submitter string
	// Timestamp is the submitter's clock in Unix milliseconds, 0 if not supplied.
	// The trusted "logged no later than" time comes from witness cosignatures.
	Timestamp uint64
	// IdempotencyKey distinguishes records that would otherwise be identical.
	IdempotencyKey string
	// ContentType is the media type of Payload, e.g. "application/json".
	ContentType string
	// Payload is the record's content.
	Payload []byte
}

// Time returns the submitter's timestamp as a time.Time (the zero Time if not supplied).
func (r Record) Time() time.Time {
	if r.Timestamp == 0 {
		return time.Time{}
	}
	return time.UnixMilli(int64(r.Timestamp)).UTC()
}

// Validate reports why r cannot be encoded, or nil.
func (r Record) Validate() error {
	if r.Submitter == "" {
		return fmt.Errorf("%w: submitter is empty", ErrInvalid)
	}
	if err := checkText("submitter", r.Submitter, MaxSubmitterBytes); err != nil {
		return err
	}
	if err := checkText("idempotency key", r.IdempotencyKey, MaxIdempotencyKeyBytes); err != nil {
		return err
	}
	if err := checkContentType(r.ContentType); err != nil {
		return err
	}
	if r.Timestamp > 1<<63-1 {
		return fmt.Errorf("%w: timestamp %d exceeds 2^63-1", ErrInvalid, r.Timestamp)
	}
	if len(r.Payload) > MaxPayloadBytes {
		return fmt.Errorf("%w: payload is %d bytes, the limit is %d", ErrInvalid, len(r.Payload), MaxPayloadBytes)
	}
	return nil
}

func checkText(field, s string, max int) error {
	if len(s) > max {
		return fmt.Errorf("%w: %s is %d bytes, the limit is %d", ErrInvalid, field, len(s), max)
	}
	for i, c := range s {
		if c == utf8.RuneError {
			if _, n := utf8.DecodeRuneInString(s[i:]); n == 1 {
				return fmt.Errorf("%w: %s is not valid UTF-8 at byte offset %d", ErrInvalid, field, i)
			}
		}
		if forbidden(c) {
			return fmt.Errorf("%w: %s contains %s %U at byte offset %d", ErrInvalid, field, kind(c), c, i)
		}
	}
	return nil
}

// forbidden reports the code points no text field may hold: C0 and C1
// controls and DEL (they rewrite terminals and logs), and the bidirectional
// controls that reorder how text displays (Unicode TR #9: embeddings and
// overrides U+202A–U+202E, isolates U+2066–U+2069, the marks U+200E, U+200F
// and U+061C), with which "alice" could be shown as someone else's name.
func forbidden(c rune) bool {
	switch {
	case c < 0x20, c >= 0x7f && c <= 0x9f:
		return true
	case c >= 0x202a && c <= 0x202e, c >= 0x2066 && c <= 0x2069:
		return true
	case c == 0x200e, c == 0x200f, c == 0x061c:
		return true
	}
	return false
}

func kind(c rune) string {
	if c < 0xa0 {
		return "control character"
	}
	return "bidirectional control"
}

func checkContentType(s string) error {
	if len(s) > MaxContentTypeBytes {
		return fmt.Errorf("%w: content type is %d bytes, the limit is %d", ErrInvalid, len(s), MaxContentTypeBytes)
	}
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] > 0x7e {
			return fmt.Errorf("%w: content type contains byte 0x%02x at byte offset %d (printable ASCII only)", ErrInvalid, s[i], i)
		}
	}
	return nil
}

// Size returns the length of r's encoding.
func (r Record) Size() int {
	return 1 + 1 + len(r.Submitter) + 8 + 1 + len(r.IdempotencyKey) + 1 + len(r.ContentType) + 2 + len(r.Payload)
}

// Encode returns the leaf bytes for r.
func (r Record) Encode() ([]byte, error) {
	if err := r.Validate(); err != nil {
		return nil, err
	}
	return r.AppendTo(make([]byte, 0, r.Size())), nil
}

// AppendTo appends the encoding of r, which must be valid, to b.
func (r Record) AppendTo(b []byte) []byte {
	b = append(b, Version, byte(len(r.Submitter)))
	b = append(b, r.Submitter...)
	b = binary.BigEndian.AppendUint64(b, r.Timestamp)
	b = append(b, byte(len(r.IdempotencyKey)))
	b = append(b, r.IdempotencyKey...)
	b = append(b, byte(len(r.ContentType)))
	b = append(b, r.ContentType...)
	b = binary.BigEndian.AppendUint16(b, uint16(len(r.Payload)))
	return append(b, r.Payload...)
}

// Decode parses leaf bytes. It accepts exactly what Encode produces: any
// trailing byte, short field or invalid field is an error wrapping
// ErrMalformed. That includes the C1 and bidirectional controls that
// encoders before they were refused could write: such a leaf stays in the
// tree and verifies, but does not decode as a record (read it raw).
func Decode(leaf []byte) (Record, error) {
	d := decoder{b: leaf}
	v := d.u8("version")
	if d.err == nil && v != Version {
		return Record{}, fmt.Errorf("%w: unknown version %d (this reader knows %d)", ErrMalformed, v, Version)
	}
	var r Record
	r.Submitter = string(d.bytes("submitter", int(d.u8("submitter length"))))
	r.Timestamp = d.u64("timestamp")
	r.IdempotencyKey = string(d.bytes("idempotency key", int(d.u8("idempotency key length"))))
	r.ContentType = string(d.bytes("content type", int(d.u8("content type length"))))
	r.Payload = d.bytes("payload", int(d.u16("payload length")))
	if d.err != nil {
		return Record{}, d.err
	}
	if len(d.b) != 0 {
		return Record{}, fmt.Errorf("%w: %d trailing bytes after the payload", ErrMalformed, len(d.b))
	}
	if err := r.Validate(); err != nil {
		return Record{}, fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	return r, nil
}

type decoder struct {
	b   []byte
	err error
}

func (d *decoder) take(field string, n int) []byte {
	if d.err != nil {
		return nil
	}
	if len(d.b) < n {
		d.err = fmt.Errorf("%w: truncated in %s (need %d bytes, have %d)", ErrMalformed, field, n, len(d.b))
		return nil
	}
	out := d.b[:n:n]
	d.b = d.b[n:]
	return out
}

func (d *decoder) u8(field string) uint8 {
	if b := d.take(field, 1); b != nil {
		return b[0]
	}
	return 0
}

func (d *decoder) u16(field string) uint16 {
	if b := d.take(field, 2); b != nil {
		return binary.BigEndian.Uint16(b)
	}
	return 0
}

func (d *decoder) u64(field string) uint64 {
	if b := d.take(field, 8); b != nil {
		return binary.BigEndian.Uint64(b)
	}
	return 0
}

func (d *decoder) bytes(field string, n int) []byte {
	b := d.take(field, n)
	if b == nil {
		return nil
	}
	return append([]byte(nil), b...)
}
