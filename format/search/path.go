package search

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"
)

// Path says where a field's value sits in a JSON record: a sequence of
// steps from the top-level value, written
//
//	.name        the member "name" of an object (name: letters, digits, _ and -)
//	["any key"]  a member whose name needs quoting (a JSON string)
//	[N]          element N (from 0) of an array
//
// e.g. .actor, .resource.id, .targets[0].id, .labels["app.kubernetes.io/name"].
// A value is indexed when the path leads to a string (its text), a number
// (its JSON text, as written) or a boolean (true/false); a path that leads
// nowhere, to null, an object or an array indexes nothing for that record.
type Path struct {
	text  string
	steps []step
}

type step struct {
	key   string
	index int // ≥ 0: an array index; -1: an object key
}

// String returns the path as written.
func (p Path) String() string { return p.text }

// MaxPathSteps bounds a path's length.
const MaxPathSteps = 32

// ParsePath parses a field path.
func ParsePath(s string) (Path, error) {
	p := Path{text: s}
	rest := s
	if rest == "" {
		return Path{}, fmt.Errorf("empty path: want e.g. .actor or .resource.id")
	}
	for rest != "" {
		if len(p.steps) == MaxPathSteps {
			return Path{}, fmt.Errorf("path %q: more than %d steps", s, MaxPathSteps)
		}
		switch rest[0] {
		case '.':
			n := 1
			for n < len(rest) && isNameByte(rest[n]) {
				n++
			}
			if n == 1 {
				return Path{}, fmt.Errorf("path %q: a member name must follow '.' at byte %d (quote other names: [\"a.b\"])", s, len(s)-len(rest))
			}
			p.steps = append(p.steps, step{key: rest[1:n], index: -1})
			rest = rest[n:]
		case '[':
			end := strings.IndexByte(rest, ']')
			if len(rest) > 1 && rest[1] == '"' {
				// A JSON string may contain ']': decode it with a decoder.
				dec := json.NewDecoder(strings.NewReader(rest[1:]))
				var key string
				if err := dec.Decode(&key); err != nil {
					return Path{}, fmt.Errorf("path %q: bad quoted name at byte %d: %v", s, len(s)-len(rest), err)
				}
				after := rest[1+int(dec.InputOffset()):]
				if !strings.HasPrefix(after, "]") {
					return Path{}, fmt.Errorf("path %q: want ']' after the quoted name at byte %d", s, len(s)-len(after))
				}
				p.steps = append(p.steps, step{key: key, index: -1})
				rest = after[1:]
				continue
			}
			if end < 0 {
				return Path{}, fmt.Errorf("path %q: '[' at byte %d is not closed", s, len(s)-len(rest))
			}
			n, err := strconv.ParseUint(rest[1:end], 10, 31)
			if err != nil || (end > 2 && rest[1] == '0') {
				return Path{}, fmt.Errorf("path %q: [%s] is not an array index (0, 1, …) or a quoted name", s, rest[1:end])
			}
			p.steps = append(p.steps, step{index: int(n)})
			rest = rest[end+1:]
		default:
			return Path{}, fmt.Errorf("path %q: want '.' or '[' at byte %d", s, len(s)-len(rest))
		}
	}
	return p, nil
}

func isNameByte(c byte) bool {
	return c == '_' || c == '-' || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')
}

// Field is one indexed field: NAME=PATH.
type Field struct {
	Name string
	Path Path
}

// ParseField parses NAME=PATH (the --field flag of cairn index serve).
func ParseField(s string) (Field, error) {
	name, path, ok := strings.Cut(s, "=")
	if !ok {
		return Field{}, fmt.Errorf("%q: want NAME=PATH, e.g. actor=.actor", s)
	}
	if err := CheckFieldName(name); err != nil {
		return Field{}, err
	}
	p, err := ParsePath(path)
	if err != nil {
		return Field{}, err
	}
	return Field{Name: name, Path: p}, nil
}

// Lookup returns the indexed text of the value at p in doc (a value
// decoded with json.Decoder.UseNumber), or false.
func (p Path) Lookup(doc any) (string, bool) {
	v := doc
	for _, s := range p.steps {
		if s.index >= 0 {
			a, ok := v.([]any)
			if !ok || s.index >= len(a) {
				return "", false
			}
			v = a[s.index]
			continue
		}
		m, ok := v.(map[string]any)
		if !ok {
			return "", false
		}
		if v, ok = m[s.key]; !ok {
			return "", false
		}
	}
	var out string
	switch x := v.(type) {
	case string:
		out = x
	case json.Number:
		out = x.String()
	case bool:
		out = strconv.FormatBool(x)
	default:
		return "", false
	}
	if len(out) > MaxValueBytes {
		return "", false
	}
	return out, true
}

// Extract returns the values of fields in a JSON payload; a payload that
// is not JSON has none (nil).
func Extract(payload []byte, fields []Field) map[string]string {
	if len(fields) == 0 {
		return nil
	}
	out, _ := extract(payload, fields)
	return out
}

// extract is Extract (fields not empty), and whether the payload is one
// JSON document, as json.Valid says. Describe asks both of one pass: the
// scanner's (scan.go), or for what it does not read, extractDecoded's.
func extract(payload []byte, fields []Field) (map[string]string, bool) {
	if out, ok := scanExtract(payload, fields); ok {
		return out, true
	}
	return extractDecoded(payload, fields)
}

// extractDecoded is extract by decoding the whole payload with
// encoding/json: the document decoded and only white space after it is
// valid.
func extractDecoded(payload []byte, fields []Field) (map[string]string, bool) {
	dec := json.NewDecoder(bytes.NewReader(payload))
	dec.UseNumber()
	var doc any
	if err := dec.Decode(&doc); err != nil {
		return nil, false
	}
	_, err := dec.Token()
	if err == nil {
		return nil, false // more than one value: not a JSON document
	}
	valid := err == io.EOF
	var out map[string]string
	for _, f := range fields {
		if v, ok := f.Path.Lookup(doc); ok {
			if out == nil {
				out = map[string]string{}
			}
			out[f.Name] = v
		}
	}
	return out, valid
}
