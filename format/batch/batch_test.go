package batch

import (
	"bytes"
	"errors"
	"testing"
)

var examples = []Record{
	{ContentType: "application/json", IdempotencyKey: "order-1", Timestamp: 1700000000000, Payload: []byte(`{"a":1}`)},
	{Payload: []byte("x")},
	{IdempotencyKey: "k", Payload: bytes.Repeat([]byte{0xff}, 300)},
}

func TestRoundTripKeepsOrderAndFields(t *testing.T) {
	body, err := Encode(examples)
	if err != nil {
		t.Fatal(err)
	}
	got, err := Parse(body, 10, 1000)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(examples) {
		t.Fatalf("got %d records, want %d", len(got), len(examples))
	}
	for i, r := range got {
		w := examples[i]
		if r.ContentType != w.ContentType || r.IdempotencyKey != w.IdempotencyKey || r.Timestamp != w.Timestamp || !bytes.Equal(r.Payload, w.Payload) {
			t.Errorf("record %d: got %+v, want %+v", i, r, w)
		}
	}
}

func TestWorkedExampleIsByteExact(t *testing.T) {
	body, err := Encode([]Record{{ContentType: "text/plain", IdempotencyKey: "k1", Timestamp: 1, Payload: []byte("hi")}})
	if err != nil {
		t.Fatal(err)
	}
	want := []byte("\x0atext/plain\x02k1\x00\x00\x00\x00\x00\x00\x00\x01\x00\x00\x00\x02hi")
	if !bytes.Equal(body, want) {
		t.Fatalf("got %q, want %q", body, want)
	}
}

func TestParseRefusesNamingTheRecord(t *testing.T) {
	good, _ := Encode(examples[:2])
	for _, tc := range []struct {
		name string
		body []byte
		want string
	}{
		{"truncated payload", good[:len(good)-1], "record 1 at byte offset"},
		{"truncated header", append(good, 3, 'a'), "record 2 at byte offset"},
		{"too many records", append(good, good...), "more than 3 records"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse(tc.body, 3, 1000)
			if !errors.Is(err, ErrMalformed) || !bytes.Contains([]byte(err.Error()), []byte(tc.want)) {
				t.Fatalf("got %v, want ErrMalformed naming %q", err, tc.want)
			}
		})
	}
}

func TestParseRefusesPayloadOverTheLimit(t *testing.T) {
	body, _ := Encode(examples)
	_, err := Parse(body, 10, 100)
	var tl *TooLargeError
	if !errors.As(err, &tl) || tl.Record != 2 || tl.Bytes != 300 || tl.Limit != 100 {
		t.Fatalf("got %v, want record 2 too large (300 > 100)", err)
	}
}

func TestEncodeRefusesLongFields(t *testing.T) {
	if _, err := Encode([]Record{{}, {IdempotencyKey: string(bytes.Repeat([]byte("k"), 256))}}); err == nil {
		t.Fatal("a 256-byte idempotency key was encoded")
	}
}

// FuzzParse: Parse never panics, and what it accepts re-encodes to the same body.
func FuzzParse(f *testing.F) {
	body, _ := Encode(examples)
	f.Add(body)
	f.Add([]byte{})
	f.Add([]byte{0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 'x'})
	f.Fuzz(func(t *testing.T, b []byte) {
		rs, err := Parse(b, 64, 1<<16)
		if err != nil {
			return
		}
		again, err := Encode(rs)
		if err != nil {
			t.Fatalf("parsed records do not encode: %v", err)
		}
		if !bytes.Equal(again, b) {
			t.Fatalf("round trip changed the body: %x → %x", b, again)
		}
	})
}
