package record

import (
	"bytes"
	"encoding/hex"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite golden files")

// example is the worked example of docs/record-format.md.
var example = Record{
	Submitter:      "billing-service",
	Timestamp:      1795527000000, // 2026-11-24T12:50:00Z
	IdempotencyKey: "req-42",
	ContentType:    "application/json",
	Payload:        []byte(`{"event":"refund","amount":12}`),
}

func TestWorkedExampleIsByteExact(t *testing.T) {
	leaf, err := example.Encode()
	if err != nil {
		t.Fatal(err)
	}
	golden := filepath.Join("testdata", "example.hex")
	got := hex.Dump(leaf)
	if *update {
		if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatal(err)
	}
	if got != string(want) {
		t.Fatalf("encoding changed (run with -update only if the format version changed too):\n%s", got)
	}
	if len(leaf) != example.Size() {
		t.Fatalf("Size() = %d, encoding is %d bytes", example.Size(), len(leaf))
	}
}

func TestRoundTrip(t *testing.T) {
	for _, r := range []Record{
		example,
		{Submitter: Anonymous, Payload: []byte("x")},
		{Submitter: Anonymous, Payload: nil},
		{Submitter: strings.Repeat("s", MaxSubmitterBytes), IdempotencyKey: strings.Repeat("k", MaxIdempotencyKeyBytes), ContentType: strings.Repeat("c", MaxContentTypeBytes), Timestamp: 1<<63 - 1, Payload: make([]byte, MaxPayloadBytes)},
	} {
		leaf, err := r.Encode()
		if err != nil {
			t.Fatal(err)
		}
		if len(leaf) > MaxLeafBytes {
			t.Fatalf("leaf of %d bytes exceeds %d", len(leaf), MaxLeafBytes)
		}
		got, err := Decode(leaf)
		if err != nil {
			t.Fatal(err)
		}
		if got.Submitter != r.Submitter || got.Timestamp != r.Timestamp || got.IdempotencyKey != r.IdempotencyKey || got.ContentType != r.ContentType || !bytes.Equal(got.Payload, r.Payload) {
			t.Fatalf("round trip changed the record: %+v → %+v", r, got)
		}
	}
}

func TestEncodeRejectsInvalidRecords(t *testing.T) {
	for name, r := range map[string]Record{
		"no submitter":          {Payload: []byte("x")},
		"submitter too long":    {Submitter: strings.Repeat("s", 256)},
		"control in submitter":  {Submitter: "a\x00b"},
		"invalid UTF-8 key":     {Submitter: "a", IdempotencyKey: "\xff"},
		"non-ASCII type":        {Submitter: "a", ContentType: "text/plain; charset=é"},
		"timestamp over 2^63-1": {Submitter: "a", Timestamp: 1 << 63},
		"payload too large":     {Submitter: "a", Payload: make([]byte, MaxPayloadBytes+1)},
	} {
		if _, err := r.Encode(); !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: Encode = %v, want ErrInvalid", name, err)
		}
	}
}

// C1 and bidirectional controls would let a record display as something it
// is not; every text field refuses them, naming the field and the offset.
func TestTextFieldsRefuseC1AndBidiControls(t *testing.T) {
	for _, c := range []struct {
		r     Record
		field string
		off   string
	}{
		{Record{Submitter: "ali\u0085ce"}, "submitter", "offset 3"},
		{Record{Submitter: "a\u009f"}, "submitter", "offset 1"},
		{Record{Submitter: "a\u0080"}, "submitter", "offset 1"},
		{Record{Submitter: "\u202eecila"}, "submitter", "offset 0"},
		{Record{Submitter: "x\u202a"}, "submitter", "offset 1"},
		{Record{Submitter: "é\u2066"}, "submitter", "offset 2"},
		{Record{Submitter: "a", IdempotencyKey: "k\u2069"}, "idempotency key", "offset 1"},
		{Record{Submitter: "a", IdempotencyKey: "kk\u200e"}, "idempotency key", "offset 2"},
		{Record{Submitter: "a", IdempotencyKey: "\u200f"}, "idempotency key", "offset 0"},
		{Record{Submitter: "a", IdempotencyKey: "k\u061c"}, "idempotency key", "offset 1"},
		{Record{Submitter: "a", IdempotencyKey: "ab\xff"}, "idempotency key", "offset 2"},
		{Record{Submitter: "a", ContentType: "text/plain\u202e"}, "content type", "offset 10"},
		{Record{Submitter: "a", ContentType: "text/\u0085"}, "content type", "offset 5"},
	} {
		_, err := c.r.Encode()
		if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), c.field) || !strings.Contains(err.Error(), c.off) {
			t.Errorf("%+q: Encode = %v, want ErrInvalid naming %s at %s", c.r.Submitter+"|"+c.r.IdempotencyKey+"|"+c.r.ContentType, err, c.field, c.off)
		}
		// A leaf an older encoder wrote with these bytes does not decode.
		leaf := c.r.AppendTo(nil)
		if _, err := Decode(leaf); !errors.Is(err, ErrMalformed) {
			t.Errorf("%+q: Decode = %v, want ErrMalformed", c.r.Submitter, err)
		}
	}
	// Neighbours of the refused ranges stay allowed.
	for _, s := range []string{"\u00a0x", "\u2029", "\u202f", "\u2065", "\u206a", "\u200d", "\u061b", "\u061d", "عربي", "\U0001F600"} {
		if _, err := (Record{Submitter: s, IdempotencyKey: s}).Encode(); err != nil {
			t.Errorf("%+q: %v", s, err)
		}
	}
}

func TestDecodeRejectsMalformedLeaves(t *testing.T) {
	leaf, _ := example.Encode()
	cases := map[string][]byte{
		"empty":           {},
		"unknown version": append([]byte{2}, leaf[1:]...),
		"truncated":       leaf[:len(leaf)-1],
		"trailing byte":   append(append([]byte{}, leaf...), 0),
		"empty submitter": {1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0},
	}
	for name, b := range cases {
		if _, err := Decode(b); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: Decode = %v, want ErrMalformed", name, err)
		}
	}
}

// FuzzDecode checks that Decode never panics and that whatever it accepts
// re-encodes to exactly the same bytes (one record, one encoding).
func FuzzDecode(f *testing.F) {
	leaf, _ := example.Encode()
	f.Add(leaf)
	f.Add([]byte{})
	f.Add([]byte{1, 9, 'a', 'n', 'o', 'n', 'y', 'm', 'o', 'u', 's', 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 'x'})
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := Decode(b)
		if err != nil {
			return
		}
		again, err := r.Encode()
		if err != nil {
			t.Fatalf("decoded record does not encode: %v", err)
		}
		if !bytes.Equal(again, b) {
			t.Fatalf("re-encoding differs:\n%x\n%x", b, again)
		}
	})
}
