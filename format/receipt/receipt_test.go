package receipt

import (
	"bytes"
	"errors"
	"os"
	"strings"
	"testing"
)

func TestParsesTorchwoodReceipt(t *testing.T) {
	b, err := os.ReadFile("../../testdata/interop/tlog-proof-index3.tlog-proof")
	if err != nil {
		t.Fatal(err)
	}
	r, err := Parse(b)
	if err != nil {
		t.Fatal(err)
	}
	if r.Index != 3 || len(r.Proof) != 3 || !bytes.HasPrefix(r.Checkpoint, []byte("example.test/peerlog\n5\n")) || r.Extra != nil {
		t.Fatalf("parsed %+v", r)
	}
	if !bytes.Equal(r.Marshal(), b) {
		t.Fatal("Marshal does not reproduce the file byte for byte")
	}
}

func TestRoundTripWithExtra(t *testing.T) {
	r := Receipt{Extra: []byte{1, 2, 3}, Index: 0, Checkpoint: []byte("o\n1\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n\n— o AAAA\n")}
	got, err := Parse(r.Marshal())
	if err != nil || !bytes.Equal(got.Extra, r.Extra) || got.Index != 0 || len(got.Proof) != 0 {
		t.Fatalf("%+v %v", got, err)
	}
}

func TestParseErrors(t *testing.T) {
	h := "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="
	for in, want := range map[string]string{
		"": "no blank line",
		"c2sp.org/tlog-proof@v2\nindex 1\n\ncp\n":                      "first line",
		Header + "\n\ncp\n":                                            "index",
		Header + "\nindex 01\n\ncp\n":                                  "leading zeros",
		Header + "\nindex 1\nxyz\n\ncp\n":                              "proof line 1",
		Header + "\nindex 1\n" + h[:40] + "\n\ncp\n":                   "proof line 1",
		Header + "\nextra !!\nindex 1\n\ncp\n":                         "extra",
		Header + "\nindex 1\n\n":                                       "checkpoint is missing",
		Header + "\nindex 1\n" + strings.Repeat(h+"\n", 65) + "\ncp\n": "at most 64",
	} {
		if _, err := Parse([]byte(in)); !errors.Is(err, ErrMalformed) || !strings.Contains(err.Error(), want) {
			t.Errorf("Parse(%q) = %v, want an error mentioning %q", in, err, want)
		}
	}
}

func FuzzParse(f *testing.F) {
	if b, err := os.ReadFile("../../testdata/interop/tlog-proof-index3.tlog-proof"); err == nil {
		f.Add(b)
	}
	f.Add([]byte(Header + "\nextra AQID\nindex 0\n\nx\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := Parse(b)
		if err != nil {
			return
		}
		again, err := Parse(r.Marshal())
		if err != nil || again.Index != r.Index || len(again.Proof) != len(r.Proof) || !bytes.Equal(again.Checkpoint, r.Checkpoint) {
			t.Fatalf("round trip changed the receipt: %v", err)
		}
	})
}
