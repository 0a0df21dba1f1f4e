// Package receipt reads and writes C2SP tlog-proof files (c2sp.org/tlog-proof@v1),
// Cairn's receipts: a self-contained inclusion proof that verifies offline.
//
//	c2sp.org/tlog-proof@v1\n
//	[extra <base64>\n]
//	index <decimal>\n
//	<base64 hash>\n ...        RFC 6962 inclusion proof, leaf side first
//	\n
//	<checkpoint note, verbatim, with every signature>
//
// Verify checks one against a policy (log key, witness quorum, inclusion);
// client.VerifyReceipt and the explorer's WebAssembly verifier both call it.
package receipt

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/cairnlog/cairn/format/checkpoint"
)

// Header is the first line of every tlog-proof file, without its newline.
const Header = "c2sp.org/tlog-proof@v1"

// MaxProofHashes bounds the inclusion proof: a tree of 2^64 leaves needs 64.
const MaxProofHashes = 64

// MaxSize bounds a receipt's encoding. A checkpoint with many cosignatures
// (including ML-DSA ones of ~2.4 KB each) fits comfortably.
const MaxSize = 1 << 20

// ErrMalformed is wrapped by every parsing error.
var ErrMalformed = errors.New("malformed tlog-proof")

// Receipt is a parsed tlog-proof.
type Receipt struct {
	// Extra is optional, unauthenticated application data (nil if absent).
	Extra []byte
	// Index is the leaf index the proof is for.
	Index uint64
	// Proof is the RFC 6962 inclusion proof, leaf side first.
	Proof [][]byte
	// Checkpoint is the signed checkpoint note, verbatim.
	Checkpoint []byte
}

// Marshal returns the tlog-proof encoding of r.
func (r Receipt) Marshal() []byte {
	var b bytes.Buffer
	b.WriteString(Header + "\n")
	if r.Extra != nil {
		b.WriteString("extra " + base64.StdEncoding.EncodeToString(r.Extra) + "\n")
	}
	b.WriteString("index " + strconv.FormatUint(r.Index, 10) + "\n")
	for _, h := range r.Proof {
		b.WriteString(base64.StdEncoding.EncodeToString(h) + "\n")
	}
	b.WriteString("\n")
	b.Write(r.Checkpoint)
	return b.Bytes()
}

// Parse parses a tlog-proof. It checks the syntax only; the caller verifies.
func Parse(b []byte) (Receipt, error) {
	var r Receipt
	if len(b) > MaxSize {
		return r, fmt.Errorf("%w: %d bytes exceeds the %d-byte limit", ErrMalformed, len(b), MaxSize)
	}
	head, cp, ok := bytes.Cut(b, []byte("\n\n"))
	if !ok {
		return r, fmt.Errorf("%w: no blank line before the checkpoint", ErrMalformed)
	}
	if len(cp) == 0 {
		return r, fmt.Errorf("%w: checkpoint is missing", ErrMalformed)
	}
	lines := strings.Split(string(head), "\n")
	if lines[0] != Header {
		return r, fmt.Errorf("%w: first line is %q, want %q", ErrMalformed, truncate(lines[0]), Header)
	}
	lines = lines[1:]
	if len(lines) > 0 && strings.HasPrefix(lines[0], "extra ") {
		extra, err := decodeBase64(strings.TrimPrefix(lines[0], "extra "))
		if err != nil {
			return r, fmt.Errorf("%w: extra line: %v", ErrMalformed, err)
		}
		r.Extra = extra
		lines = lines[1:]
	}
	if len(lines) == 0 || !strings.HasPrefix(lines[0], "index ") {
		return r, fmt.Errorf("%w: missing \"index N\" line", ErrMalformed)
	}
	idx, err := ParseDecimal(strings.TrimPrefix(lines[0], "index "))
	if err != nil {
		return r, fmt.Errorf("%w: index line: %v", ErrMalformed, err)
	}
	r.Index = idx
	lines = lines[1:]
	if len(lines) > MaxProofHashes {
		return r, fmt.Errorf("%w: %d proof hashes, at most %d allowed", ErrMalformed, len(lines), MaxProofHashes)
	}
	for i, l := range lines {
		h, err := checkpoint.ParseHash(l)
		if err != nil {
			return r, fmt.Errorf("%w: proof line %d: %v", ErrMalformed, i+1, err)
		}
		r.Proof = append(r.Proof, h[:])
	}
	r.Checkpoint = append([]byte(nil), cp...)
	return r, nil
}

// ParseDecimal parses a C2SP decimal: ASCII digits, no sign, no leading zeros.
func ParseDecimal(s string) (uint64, error) {
	if s == "" || (len(s) > 1 && s[0] == '0') || s[0] == '+' {
		return 0, fmt.Errorf("%q is not a decimal without leading zeros", truncate(s))
	}
	n, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%q is not a decimal number", truncate(s))
	}
	return n, nil
}

// decodeBase64 decodes standard, padded base64 strictly (no newlines, no
// non-canonical trailing bits).
func decodeBase64(s string) ([]byte, error) {
	if strings.ContainsAny(s, "\r\n") {
		return nil, fmt.Errorf("invalid base64 %q", truncate(s))
	}
	b, err := base64.StdEncoding.Strict().DecodeString(s)
	if err != nil {
		return nil, fmt.Errorf("invalid base64 %q", truncate(s))
	}
	return b, nil
}

func truncate(s string) string {
	if len(s) > 64 {
		return s[:64] + "…"
	}
	return s
}
