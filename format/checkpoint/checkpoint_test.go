package checkpoint

import (
	"bytes"
	"errors"
	"strings"
	"testing"
)

const root = "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU="

func TestParse(t *testing.T) {
	c, err := Parse([]byte("example.com/log\n0\n" + root + "\n"))
	if err != nil || c.Origin != "example.com/log" || c.Size != 0 || c.Root != EmptyRoot {
		t.Fatalf("%+v %v", c, err)
	}
	c, err = Parse([]byte("o\n18446744073709551615\n" + root + "\next a\n"))
	if err != nil || c.Size != 1<<64-1 || len(c.Extensions) != 1 {
		t.Fatalf("%+v %v", c, err)
	}
	for in, want := range map[string]string{
		"o\n1\n" + root:                           "newline",
		"o\n1\n":                                  "lines",
		"\n1\n" + root + "\n":                     "origin",
		"o\n01\n" + root + "\n":                   "leading zeros",
		"o\n+1\n" + root + "\n":                   "leading zeros",
		"o\n1\n" + root[:43] + "\n":               "base64",
		"o\n1\nAAAA\n":                            "base64",
		"o\n1\n" + root + "\n\n":                  "extension line 1 is empty",
		"o\n18446744073709551616\n" + root + "\n": "decimal",
	} {
		if _, err := Parse([]byte(in)); !errors.Is(err, ErrMalformed) || !strings.Contains(err.Error(), want) {
			t.Errorf("Parse(%q) = %v, want an error mentioning %q", in, err, want)
		}
	}
}

func FuzzParse(f *testing.F) {
	f.Add([]byte("example.com/log\n5\n" + root + "\n"))
	f.Add([]byte("o\n1\n" + root + "\nextension\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := Parse(b)
		if err != nil {
			return
		}
		if !bytes.Equal(c.Marshal(), b) {
			t.Fatalf("accepted a non-canonical checkpoint:\n%q\n%q", b, c.Marshal())
		}
	})
}
