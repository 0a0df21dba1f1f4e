// Package addcheckpoint parses and encodes the body of a tlog-witness
// add-checkpoint request (c2sp.org/tlog-witness), which the witness and the
// mirror (c2sp.org/tlog-mirror) both accept.
package addcheckpoint

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/cairnlog/cairn/format/checkpoint"
)

// MaxProofHashes is the most consistency-proof lines a request may carry (tlog-witness).
const MaxProofHashes = 63

// ErrMalformed is wrapped by every parsing error.
var ErrMalformed = errors.New("malformed request")

// Request is a parsed POST /add-checkpoint body.
type Request struct {
	// Old is the size the client believes the witness last cosigned.
	Old uint64
	// Proof is the consistency proof from Old to the checkpoint's size.
	Proof [][]byte
	// Checkpoint is the signed checkpoint note, with all its signatures.
	Checkpoint []byte
}

// Parse parses a tlog-witness add-checkpoint body:
//
//	old <N>\n
//	<base64 hash>\n  (0..63)
//	\n
//	<checkpoint note>
//
// Errors wrap ErrMalformed and say what is wrong.
func Parse(body []byte) (Request, error) {
	var r Request
	bad := func(format string, a ...any) error {
		return fmt.Errorf("%w: %s", ErrMalformed, fmt.Sprintf(format, a...))
	}
	head, cp, ok := bytes.Cut(body, []byte("\n\n"))
	if !ok {
		return r, bad("no empty line between the proof and the checkpoint")
	}
	if len(cp) == 0 {
		return r, bad("the checkpoint is missing")
	}
	lines := strings.Split(string(head), "\n")
	first, ok := strings.CutPrefix(lines[0], "old ")
	if !ok {
		return r, bad("first line must be \"old <size>\", got %q", truncate(lines[0]))
	}
	old, err := strconv.ParseUint(first, 10, 64)
	if err != nil || strconv.FormatUint(old, 10) != first {
		return r, bad("old size %q is not a decimal without leading zeros", truncate(first))
	}
	r.Old = old
	hashes := lines[1:]
	if len(hashes) > MaxProofHashes {
		return r, bad("%d consistency proof lines, at most %d allowed", len(hashes), MaxProofHashes)
	}
	for i, l := range hashes {
		h, err := checkpoint.ParseHash(l)
		if err != nil {
			return r, bad("proof line %d: %v", i+1, err)
		}
		r.Proof = append(r.Proof, h[:])
	}
	r.Checkpoint = cp
	return r, nil
}

// Marshal encodes r as an add-checkpoint body.
func (r Request) Marshal() []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "old %d\n", r.Old)
	for _, h := range r.Proof {
		b.WriteString(base64.StdEncoding.EncodeToString(h) + "\n")
	}
	b.WriteString("\n")
	b.Write(r.Checkpoint)
	return b.Bytes()
}

func truncate(s string) string {
	if len(s) > 80 {
		return s[:80] + "…"
	}
	return s
}
