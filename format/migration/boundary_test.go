package migration

import (
	"bytes"
	"errors"
	"strings"
	"testing"
)

func TestBoundaryRoundTrips(t *testing.T) {
	b := Boundary{Source: SourceTrillian, TreeID: 1234, Size: 3737, Root: bytes.Repeat([]byte{7}, 32)}
	enc, err := b.Encode()
	if err != nil {
		t.Fatal(err)
	}
	want := `{"source":"trillian","tree_id":1234,"size":3737,"root":"BwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc="}` + "\n"
	if string(enc) != want {
		t.Fatalf("encoding:\n%s\nwant\n%s", enc, want)
	}
	got, err := Parse(enc)
	if err != nil || got.Size != b.Size || got.TreeID != b.TreeID || !bytes.Equal(got.Root, b.Root) {
		t.Fatalf("Parse: %+v, %v", got, err)
	}
	if !got.IsLegacy(3736) || got.IsLegacy(3737) {
		t.Fatalf("IsLegacy: the boundary is at 3737")
	}
	var none *Boundary
	if none.IsLegacy(0) {
		t.Fatalf("no boundary: nothing is legacy")
	}
}

func TestParseRefusesMalformedBoundaries(t *testing.T) {
	root := `"BwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc="`
	for name, in := range map[string]string{
		"unknown source": `{"source":"ct","tree_id":1,"size":1,"root":` + root + `}`,
		"size 0":         `{"source":"trillian","tree_id":1,"size":0,"root":` + root + `}`,
		"short root":     `{"source":"trillian","tree_id":1,"size":1,"root":"AAAA"}`,
		"unknown field":  `{"source":"trillian","tree_id":1,"size":1,"root":` + root + `,"x":1}`,
		"trailing data":  `{"source":"trillian","tree_id":1,"size":1,"root":` + root + `} {}`,
		"not JSON":       `size 1`,
		"too large":      strings.Repeat(" ", MaxSize+1),
	} {
		if _, err := Parse([]byte(in)); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: Parse = %v, want ErrMalformed", name, err)
		}
	}
}

func FuzzParse(f *testing.F) {
	f.Add([]byte(`{"source":"trillian","tree_id":1234,"size":3737,"root":"BwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc="}`))
	f.Add([]byte(`{}`))
	f.Fuzz(func(t *testing.T, in []byte) {
		b, err := Parse(in)
		if err != nil {
			return
		}
		enc, err := b.Encode()
		if err != nil {
			t.Fatalf("a parsed boundary does not encode: %v", err)
		}
		again, err := Parse(enc)
		if err != nil || again.Size != b.Size || !bytes.Equal(again.Root, b.Root) {
			t.Fatalf("round trip: %+v, %v", again, err)
		}
	})
}
