// Package checkpoint parses and formats C2SP tlog-checkpoint note text
// (c2sp.org/tlog-checkpoint) strictly: the same rules on the log, the
// witness and the client side.
//
//	<origin>\n
//	<size, decimal, no leading zeros>\n
//	<base64 of the 32-byte root hash>\n
//	[<extension line>\n ...]
package checkpoint

import (
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// MaxTextBytes bounds the checkpoint text.
const MaxTextBytes = 1_000_000

// EmptyRoot is the root hash of the empty tree, SHA-256("").
var EmptyRoot = sha256.Sum256(nil)

// ErrMalformed is wrapped by every parsing error.
var ErrMalformed = errors.New("malformed checkpoint")

// Checkpoint is the parsed text of a checkpoint note.
type Checkpoint struct {
	Origin     string
	Size       uint64
	Root       [32]byte
	Extensions []string
}

// Parse parses checkpoint note text (the signed text, without signatures).
func Parse(text []byte) (Checkpoint, error) {
	var c Checkpoint
	if len(text) > MaxTextBytes {
		return c, fmt.Errorf("%w: text is %d bytes, over %d", ErrMalformed, len(text), MaxTextBytes)
	}
	s := string(text)
	if !strings.HasSuffix(s, "\n") {
		return c, fmt.Errorf("%w: text does not end in a newline", ErrMalformed)
	}
	lines := strings.Split(strings.TrimSuffix(s, "\n"), "\n")
	if len(lines) < 3 {
		return c, fmt.Errorf("%w: %d lines, want origin, size and root hash", ErrMalformed, len(lines))
	}
	if lines[0] == "" {
		return c, fmt.Errorf("%w: empty origin line", ErrMalformed)
	}
	c.Origin = lines[0]
	size, err := strconv.ParseUint(lines[1], 10, 64)
	if err != nil || strconv.FormatUint(size, 10) != lines[1] {
		return c, fmt.Errorf("%w: size line %q is not a decimal without leading zeros", ErrMalformed, trunc(lines[1]))
	}
	c.Size = size
	root, err := ParseHash(lines[2])
	if err != nil {
		return c, fmt.Errorf("%w: root line: %v", ErrMalformed, err)
	}
	c.Root = root
	for i, ext := range lines[3:] {
		if ext == "" {
			return c, fmt.Errorf("%w: extension line %d is empty", ErrMalformed, i+1)
		}
		c.Extensions = append(c.Extensions, ext)
	}
	return c, nil
}

// ParseHash decodes a SHA-256 hash in standard, padded base64 — exactly 44
// characters of the base64 alphabet (Go's decoder alone would skip \r and \n).
func ParseHash(s string) ([32]byte, error) {
	var h [32]byte
	if len(s) != 44 || strings.IndexFunc(s, func(r rune) bool {
		return !(r >= 'A' && r <= 'Z' || r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '+' || r == '/' || r == '=')
	}) >= 0 {
		return h, fmt.Errorf("%q is not a base64 SHA-256 hash", trunc(s))
	}
	b, err := base64.StdEncoding.Strict().DecodeString(s)
	if err != nil || len(b) != 32 {
		return h, fmt.Errorf("%q is not a base64 SHA-256 hash", trunc(s))
	}
	copy(h[:], b)
	return h, nil
}

// Marshal returns the checkpoint text.
func (c Checkpoint) Marshal() []byte {
	var b strings.Builder
	b.WriteString(c.Origin + "\n")
	b.WriteString(strconv.FormatUint(c.Size, 10) + "\n")
	b.WriteString(base64.StdEncoding.EncodeToString(c.Root[:]) + "\n")
	for _, e := range c.Extensions {
		b.WriteString(e + "\n")
	}
	return []byte(b.String())
}

func trunc(s string) string {
	if len(s) > 64 {
		return s[:64] + "…"
	}
	return s
}
