package log

import (
	"bytes"
	"testing"

	"github.com/cairnlog/cairn/format/record"
)

// FuzzParseKEK: a KEK file is operator input; anything but one valid line
// is refused, and what is accepted is exactly 32 bytes.
func FuzzParseKEK(f *testing.F) {
	k, _ := GenerateKEK()
	f.Add([]byte(k))
	f.Add([]byte(KEKPrefix))
	f.Add([]byte("cairn-kek-v1:AAAA\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		if kek, err := parseKEK(b); err == nil && len(kek) != 32 {
			t.Fatalf("accepted a %d-byte KEK", len(kek))
		}
	})
}

// FuzzUnwrap: a key-store entry is stored bytes, which an attacker with
// storage access may change; unwrap refuses anything it did not wrap for
// that name, without panicking.
func FuzzUnwrap(f *testing.F) {
	store, _ := newFileKeyStore(f.TempDir())
	kekFile := writeKEK(f, f.TempDir(), "fuzz.kek")
	k, err := openSubjectKeys(f.Context(), store, kekFile)
	if err != nil {
		f.Fatal(err)
	}
	dk := bytes.Repeat([]byte{7}, record.DataKeyBytes)
	w, _ := k.wrap("subject-x", dk)
	f.Add(w, "subject-x")
	f.Add(w[:10], "subject-x")
	f.Add(w, "subject-y")
	f.Fuzz(func(t *testing.T, b []byte, name string) {
		got, err := k.unwrap(name, b)
		if err != nil {
			return
		}
		if name != "subject-x" && name != hashKeyName {
			t.Fatalf("unwrapped a key for %q that was wrapped for another name", name)
		}
		if len(got) != record.DataKeyBytes {
			t.Fatalf("unwrapped %d bytes", len(got))
		}
	})
}
