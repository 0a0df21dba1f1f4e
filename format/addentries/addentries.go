// Package addentries is the wire format of tlog-mirror's add-entries
// (c2sp.org/tlog-mirror): the binary request body (a header, then entry
// packages aligned at multiples of 256, each with a subtree consistency
// proof), the text/x.tlog.mirror-info answer, and the subtree consistency
// proofs (draft-ietf-plants-merkle-tree-certs §4.4) that authenticate each
// package. The mirror parses and verifies it; the push client builds it.
package addentries

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"iter"
	"strconv"
	"strings"
)

// PackageWidth is the alignment of entry packages: one entry bundle.
const PackageWidth = 256

// MaxProofHashes is the most hashes a package's proof may carry (tlog-mirror).
const MaxProofHashes = 63

// MaxEntrySize is the largest entry a uint16 length prefix can carry.
const MaxEntrySize = 1<<16 - 1

// MediaTypeMirrorInfo is the content type of 202 and 409 answers.
const MediaTypeMirrorInfo = "text/x.tlog.mirror-info"

// ErrMalformed is wrapped by every parsing error of untrusted input.
var ErrMalformed = errors.New("malformed add-entries body")

// Header is the fixed part of an add-entries body.
type Header struct {
	// Origin is the log's checkpoint origin.
	Origin string
	// UploadStart and UploadEnd bound the uploaded entries [start, end).
	UploadStart, UploadEnd uint64
	// Ticket is the opaque value the mirror last returned, or empty.
	Ticket []byte
}

// Marshal encodes h as the start of an add-entries body.
func (h Header) Marshal() []byte {
	b := make([]byte, 0, 2+len(h.Origin)+8+8+2+len(h.Ticket))
	b = binary.BigEndian.AppendUint16(b, uint16(len(h.Origin)))
	b = append(b, h.Origin...)
	b = binary.BigEndian.AppendUint64(b, h.UploadStart)
	b = binary.BigEndian.AppendUint64(b, h.UploadEnd)
	b = binary.BigEndian.AppendUint16(b, uint16(len(h.Ticket)))
	return append(b, h.Ticket...)
}

// ReadHeader reads the header from r. Errors wrap ErrMalformed.
func ReadHeader(r io.Reader) (Header, error) {
	var h Header
	origin, err := readLenPrefixed(r, "log_origin")
	if err != nil {
		return h, err
	}
	if len(origin) == 0 {
		return h, fmt.Errorf("%w: empty log_origin", ErrMalformed)
	}
	var n [16]byte
	if _, err := io.ReadFull(r, n[:]); err != nil {
		return h, fmt.Errorf("%w: upload_start/upload_end: %v", ErrMalformed, eof(err))
	}
	ticket, err := readLenPrefixed(r, "ticket")
	if err != nil {
		return h, err
	}
	h.Origin = string(origin)
	h.UploadStart = binary.BigEndian.Uint64(n[:8])
	h.UploadEnd = binary.BigEndian.Uint64(n[8:])
	h.Ticket = ticket
	if h.UploadStart > h.UploadEnd {
		return h, fmt.Errorf("%w: upload_start %d > upload_end %d", ErrMalformed, h.UploadStart, h.UploadEnd)
	}
	return h, nil
}

func readLenPrefixed(r io.Reader, what string) ([]byte, error) {
	var l [2]byte
	if _, err := io.ReadFull(r, l[:]); err != nil {
		return nil, fmt.Errorf("%w: %s length: %v", ErrMalformed, what, eof(err))
	}
	b := make([]byte, binary.BigEndian.Uint16(l[:]))
	if _, err := io.ReadFull(r, b); err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrMalformed, what, eof(err))
	}
	return b, nil
}

func eof(err error) error {
	if errors.Is(err, io.EOF) {
		return io.ErrUnexpectedEOF
	}
	return err
}

// Span is one package of the canonical sequence: it carries the entries
// [Start, End) and proves the subtree [SubtreeStart, End).
type Span struct {
	SubtreeStart, Start, End uint64
}

// Spans yields the canonical sequence of packages for [start, end), lazily:
// the range comes from an untrusted header and may be huge.
func Spans(start, end uint64) iter.Seq[Span] {
	return func(yield func(Span) bool) {
		if start >= end {
			return
		}
		for s := start - start%PackageWidth; s < end; s += PackageWidth {
			if !yield(Span{SubtreeStart: s, Start: max(start, s), End: min(end, s+PackageWidth)}) {
				return
			}
		}
	}
}

// Package is one parsed entry package.
type Package struct {
	Span
	Entries [][]byte
	Proof   [][]byte
}

// ReadPackage reads the package for span from r. It returns io.EOF, and
// nothing else, when r ends before the package's first byte; a package cut
// short or malformed is an error wrapping ErrMalformed.
func ReadPackage(r *bufio.Reader, span Span) (Package, error) {
	p := Package{Span: span, Entries: make([][]byte, 0, span.End-span.Start)}
	if _, err := r.Peek(1); err == io.EOF {
		return p, io.EOF
	}
	var l [2]byte
	for i := span.Start; i < span.End; i++ {
		if _, err := io.ReadFull(r, l[:]); err != nil {
			return p, fmt.Errorf("%w: entry %d length: %v", ErrMalformed, i, eof(err))
		}
		e := make([]byte, binary.BigEndian.Uint16(l[:]))
		if _, err := io.ReadFull(r, e); err != nil {
			return p, fmt.Errorf("%w: entry %d: %v", ErrMalformed, i, eof(err))
		}
		p.Entries = append(p.Entries, e)
	}
	n, err := r.ReadByte()
	if err != nil {
		return p, fmt.Errorf("%w: num_hashes of package [%d, %d): %v", ErrMalformed, span.Start, span.End, eof(err))
	}
	if n > MaxProofHashes {
		return p, fmt.Errorf("%w: package [%d, %d) has %d proof hashes, at most %d allowed", ErrMalformed, span.Start, span.End, n, MaxProofHashes)
	}
	for i := range int(n) {
		h := make([]byte, 32)
		if _, err := io.ReadFull(r, h); err != nil {
			return p, fmt.Errorf("%w: proof hash %d of package [%d, %d): %v", ErrMalformed, i, span.Start, span.End, eof(err))
		}
		p.Proof = append(p.Proof, h)
	}
	return p, nil
}

// AppendPackage appends the encoding of one package to b.
func AppendPackage(b []byte, entries [][]byte, proof [][]byte) ([]byte, error) {
	if len(proof) > MaxProofHashes {
		return nil, fmt.Errorf("%d proof hashes, at most %d allowed", len(proof), MaxProofHashes)
	}
	for i, e := range entries {
		if len(e) > MaxEntrySize {
			return nil, fmt.Errorf("entry %d is %d bytes, at most %d fit", i, len(e), MaxEntrySize)
		}
		b = binary.BigEndian.AppendUint16(b, uint16(len(e)))
		b = append(b, e...)
	}
	b = append(b, byte(len(proof)))
	for _, h := range proof {
		b = append(b, h...)
	}
	return b, nil
}

// MirrorInfo is the body of a 202 or 409 answer.
type MirrorInfo struct {
	// Size is the tree size of a valid pending checkpoint.
	Size uint64
	// Next is the mirror's next entry.
	Next uint64
	// Ticket is an opaque value to send back.
	Ticket []byte
}

// Marshal encodes m as three lines.
func (m MirrorInfo) Marshal() []byte {
	return fmt.Appendf(nil, "%d\n%d\n%s\n", m.Size, m.Next, base64.StdEncoding.EncodeToString(m.Ticket))
}

// ParseMirrorInfo parses a text/x.tlog.mirror-info body.
func ParseMirrorInfo(b []byte) (MirrorInfo, error) {
	var m MirrorInfo
	if !bytes.HasSuffix(b, []byte("\n")) {
		return m, fmt.Errorf("%w: mirror-info does not end in a newline", ErrMalformed)
	}
	lines := strings.Split(string(b[:len(b)-1]), "\n")
	if len(lines) != 3 {
		return m, fmt.Errorf("%w: mirror-info has %d lines, want 3", ErrMalformed, len(lines))
	}
	var err error
	if m.Size, err = decimal(lines[0]); err != nil {
		return m, fmt.Errorf("%w: mirror-info size: %v", ErrMalformed, err)
	}
	if m.Next, err = decimal(lines[1]); err != nil {
		return m, fmt.Errorf("%w: mirror-info next entry: %v", ErrMalformed, err)
	}
	if m.Ticket, err = base64.StdEncoding.DecodeString(lines[2]); err != nil {
		return m, fmt.Errorf("%w: mirror-info ticket: %v", ErrMalformed, err)
	}
	return m, nil
}

func decimal(s string) (uint64, error) {
	n, err := strconv.ParseUint(s, 10, 64)
	if err != nil || strconv.FormatUint(n, 10) != s {
		return 0, fmt.Errorf("%q is not a decimal without leading zeros", s)
	}
	return n, nil
}
