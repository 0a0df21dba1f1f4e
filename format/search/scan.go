package search

import (
	"encoding/json"
	"math/bits"
	"unicode/utf8"
)

// The field extractor's single pass. Decoding a whole record into
// map[string]any (extractDecoded) to read three values from it was about
// half of the index's per-record work outside the database (~3 µs a
// record, most of it allocations the garbage collector then scans). A
// scanner reads the payload once, checks that it is one JSON document
// (the grammar of RFC 8259, as json.Valid checks it), and keeps the text
// of the values the fields' paths lead to, without building the document.
//
// It gives what extractDecoded gives for every valid document (the last
// of duplicate members wins, as in a decoded map; a string's text is
// decoded by encoding/json whenever it has an escape or is not plain
// UTF-8); whatever it does not accept — invalid JSON, nesting deeper than
// maxScanDepth, more than 64 fields — is handed to extractDecoded,
// which then decides. FuzzExtractMatchesDecoder holds the two to it.

// maxScanDepth bounds the scanner's nesting (encoding/json allows 10 000;
// deeper documents go to extractDecoded).
const maxScanDepth = 512

// scanResult is what the scan found for one field: the raw text of a
// scalar (a string with its quotes), or nothing.
type scanResult struct {
	start, end int
	found      bool
}

// scanner reads one payload. results[i] is field i's value so far.
type scanner struct {
	data    []byte
	pos     int
	fields  []Field
	results []scanResult
}

// scanExtract returns the fields' values and true when payload is valid
// JSON the scanner could read; false means "ask extractDecoded".
func scanExtract(payload []byte, fields []Field) (map[string]string, bool) {
	if len(fields) > 64 {
		return nil, false
	}
	var buf [8]scanResult
	s := scanner{data: payload, fields: fields, results: buf[:0]}
	if len(fields) > len(buf) {
		s.results = make([]scanResult, 0, len(fields))
	}
	s.results = s.results[:len(fields)]
	mask := uint64(1)<<len(fields) - 1
	if len(fields) == 64 {
		mask = ^uint64(0)
	}
	s.skipSpace()
	if !s.value(mask, 0) {
		return nil, false
	}
	s.skipSpace()
	if s.pos != len(s.data) {
		return nil, false
	}
	var out map[string]string
	for i, r := range s.results {
		if !r.found {
			continue
		}
		v, ok := s.text(r)
		if !ok {
			return nil, false
		}
		if len(v) > MaxValueBytes {
			continue
		}
		if out == nil {
			out = make(map[string]string, len(fields))
		}
		out[fields[i].Name] = v
	}
	return out, true
}

// scanValid reports whether payload is valid JSON by the scanner, or
// false when it cannot tell (then json.Valid decides).
func scanValid(payload []byte) bool {
	s := scanner{data: payload}
	s.skipSpace()
	if !s.value(0, 0) {
		return false
	}
	s.skipSpace()
	return s.pos == len(s.data)
}

// text is the indexed text of a found scalar: a string's decoded text, a
// number's text as written, true or false.
func (s *scanner) text(r scanResult) (string, bool) {
	raw := s.data[r.start:r.end]
	if raw[0] != '"' {
		return string(raw), true
	}
	if inner := raw[1 : len(raw)-1]; plainText(inner) {
		return string(inner), true
	}
	return decodeString(raw)
}

// plainText reports whether a string's text between its quotes is its
// value: ASCII without escapes.
func plainText(inner []byte) bool {
	for _, c := range inner {
		if c == '\\' || c >= utf8.RuneSelf {
			return false
		}
	}
	return true
}

// decodeString decodes a string with escapes or non-ASCII text as
// encoding/json decodes it (invalid UTF-8 and lone surrogates become
// U+FFFD).
func decodeString(raw []byte) (string, bool) {
	var v string
	if err := json.Unmarshal(raw, &v); err != nil {
		return "", false
	}
	return v, true
}

func (s *scanner) skipSpace() {
	for s.pos < len(s.data) {
		switch s.data[s.pos] {
		case ' ', '\t', '\n', '\r':
			s.pos++
		default:
			return
		}
	}
}

// value reads one value at depth. mask holds the fields whose path's
// first depth steps lead here: a field whose path ends here takes this
// value (or nothing, if it is not a scalar); the others look inside it,
// and forget what an earlier member of the same name gave them (the last
// duplicate wins, as in a decoded map).
func (s *scanner) value(mask uint64, depth int) bool {
	if depth > maxScanDepth || s.pos >= len(s.data) {
		return false
	}
	var here uint64
	for m := mask; m != 0; m &= m - 1 {
		i := bits.TrailingZeros64(m)
		s.results[i].found = false
		if len(s.fields[i].Path.steps) == depth {
			here |= 1 << i
		}
	}
	inner := mask &^ here
	start := s.pos
	scalar := true
	switch c := s.data[s.pos]; {
	case c == '{':
		scalar = false
		if !s.object(inner, depth) {
			return false
		}
	case c == '[':
		scalar = false
		if !s.array(inner, depth) {
			return false
		}
	case c == '"':
		if !s.str() {
			return false
		}
	case c == '-' || (c >= '0' && c <= '9'):
		if !s.number() {
			return false
		}
	case c == 't':
		if !s.literal("true") {
			return false
		}
	case c == 'f':
		if !s.literal("false") {
			return false
		}
	case c == 'n':
		scalar = false
		if !s.literal("null") {
			return false
		}
	default:
		return false
	}
	if scalar {
		for m := here; m != 0; m &= m - 1 {
			s.results[bits.TrailingZeros64(m)] = scanResult{start: start, end: s.pos, found: true}
		}
	}
	return true
}

func (s *scanner) object(mask uint64, depth int) bool {
	s.pos++ // {
	s.skipSpace()
	if s.pos < len(s.data) && s.data[s.pos] == '}' {
		s.pos++
		return true
	}
	for {
		if s.pos >= len(s.data) || s.data[s.pos] != '"' {
			return false
		}
		kstart := s.pos
		if !s.str() {
			return false
		}
		var child uint64
		if mask != 0 {
			key := s.data[kstart+1 : s.pos-1]
			var decoded string
			needDecode := !plainText(key)
			if needDecode {
				var ok bool
				if decoded, ok = decodeString(s.data[kstart:s.pos]); !ok {
					return false
				}
			}
			for m := mask; m != 0; m &= m - 1 {
				i := bits.TrailingZeros64(m)
				st := s.fields[i].Path.steps[depth]
				if st.index >= 0 {
					continue
				}
				if (needDecode && st.key == decoded) || (!needDecode && st.key == string(key)) {
					child |= 1 << i
				}
			}
		}
		s.skipSpace()
		if s.pos >= len(s.data) || s.data[s.pos] != ':' {
			return false
		}
		s.pos++
		s.skipSpace()
		if !s.value(child, depth+1) {
			return false
		}
		s.skipSpace()
		if s.pos >= len(s.data) {
			return false
		}
		switch s.data[s.pos] {
		case ',':
			s.pos++
			s.skipSpace()
		case '}':
			s.pos++
			return true
		default:
			return false
		}
	}
}

func (s *scanner) array(mask uint64, depth int) bool {
	s.pos++ // [
	s.skipSpace()
	if s.pos < len(s.data) && s.data[s.pos] == ']' {
		s.pos++
		return true
	}
	for n := 0; ; n++ {
		var child uint64
		for m := mask; m != 0; m &= m - 1 {
			i := bits.TrailingZeros64(m)
			if s.fields[i].Path.steps[depth].index == n {
				child |= 1 << i
			}
		}
		if !s.value(child, depth+1) {
			return false
		}
		s.skipSpace()
		if s.pos >= len(s.data) {
			return false
		}
		switch s.data[s.pos] {
		case ',':
			s.pos++
			s.skipSpace()
		case ']':
			s.pos++
			return true
		default:
			return false
		}
	}
}

// str reads a string (RFC 8259 section 7): no control characters, only
// the defined escapes. Bytes that are not UTF-8 are accepted, as
// json.Valid accepts them.
func (s *scanner) str() bool {
	s.pos++ // "
	for s.pos < len(s.data) {
		c := s.data[s.pos]
		switch {
		case c == '"':
			s.pos++
			return true
		case c == '\\':
			if s.pos+1 >= len(s.data) {
				return false
			}
			switch s.data[s.pos+1] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				s.pos += 2
			case 'u':
				if s.pos+6 > len(s.data) {
					return false
				}
				for _, h := range s.data[s.pos+2 : s.pos+6] {
					if !isHex(h) {
						return false
					}
				}
				s.pos += 6
			default:
				return false
			}
		case c < 0x20:
			return false
		default:
			s.pos++
		}
	}
	return false
}

func isHex(c byte) bool {
	return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F')
}

// number reads a number (RFC 8259 section 6).
func (s *scanner) number() bool {
	d := s.data
	if d[s.pos] == '-' {
		s.pos++
	}
	switch {
	case s.pos < len(d) && d[s.pos] == '0':
		s.pos++
	case s.pos < len(d) && d[s.pos] >= '1' && d[s.pos] <= '9':
		for s.pos < len(d) && d[s.pos] >= '0' && d[s.pos] <= '9' {
			s.pos++
		}
	default:
		return false
	}
	if s.pos < len(d) && d[s.pos] == '.' {
		s.pos++
		if !s.digits() {
			return false
		}
	}
	if s.pos < len(d) && (d[s.pos] == 'e' || d[s.pos] == 'E') {
		s.pos++
		if s.pos < len(d) && (d[s.pos] == '+' || d[s.pos] == '-') {
			s.pos++
		}
		if !s.digits() {
			return false
		}
	}
	return true
}

// digits reads one or more decimal digits.
func (s *scanner) digits() bool {
	n := s.pos
	for s.pos < len(s.data) && s.data[s.pos] >= '0' && s.data[s.pos] <= '9' {
		s.pos++
	}
	return s.pos > n
}

func (s *scanner) literal(word string) bool {
	if len(s.data)-s.pos < len(word) || string(s.data[s.pos:s.pos+len(word)]) != word {
		return false
	}
	s.pos += len(word)
	return true
}
