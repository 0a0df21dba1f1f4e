package record

import (
	"bytes"
	"crypto/rand"
	"errors"
	"testing"
)

func testKey(b byte) []byte { return bytes.Repeat([]byte{b}, DataKeyBytes) }

var sealExample = Record{Submitter: "crm", Timestamp: 1700000000000, IdempotencyKey: "k1", ContentType: "application/json", Payload: []byte(`{"name":"Alice Example"}`)}

func TestSealOpensOnlyWithEveryKeyAndIsDeterministic(t *testing.T) {
	hk := []byte("hash key")
	a, b := HashSubject(hk, "alice"), HashSubject(hk, "bob")
	s1, err := Seal(sealExample, []SubjectHash{a, b}, [][]byte{testKey(1), testKey(2)})
	if err != nil {
		t.Fatal(err)
	}
	// The order of the pairs does not matter; the leaf is the same.
	s2, err := Seal(sealExample, []SubjectHash{b, a}, [][]byte{testKey(2), testKey(1)})
	if err != nil {
		t.Fatal(err)
	}
	l1, _ := s1.Encode()
	l2, _ := s2.Encode()
	if !bytes.Equal(l1, l2) {
		t.Fatal("sealing the same record twice gave two leaves (retries would get new indices)")
	}
	if bytes.Contains(l1, []byte("Alice")) || bytes.Contains(l1, []byte("alice")) {
		t.Fatal("the leaf holds the plaintext or the subject identifier")
	}
	d, err := DecodeSealed(l1)
	if err != nil {
		t.Fatal(err)
	}
	keys := make([][]byte, 2)
	for i, h := range d.Subjects {
		keys[i] = map[SubjectHash][]byte{a: testKey(1), b: testKey(2)}[h]
	}
	r, err := d.Open(keys)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(r.Payload, sealExample.Payload) || r.IdempotencyKey != "k1" || r.ContentType != "application/json" {
		t.Fatalf("opened %+v", r)
	}
	// Without one subject's key (destroyed: any other key) it stays shut.
	wrong := [][]byte{keys[0], testKey(9)}
	if _, err := d.Open(wrong); !errors.Is(err, ErrAuthentication) {
		t.Fatalf("opened with a wrong key: %v", err)
	}
	// Another payload gives another siv.
	other := sealExample
	other.Payload = []byte(`{"name":"Bob"}`)
	s3, _ := Seal(other, []SubjectHash{a, b}, [][]byte{testKey(1), testKey(2)})
	if s3.SIV == s1.SIV {
		t.Fatal("two records share a siv")
	}
}

func TestSealedDetectsEveryFlippedByte(t *testing.T) {
	h := HashSubject([]byte("k"), "alice")
	s, err := Seal(sealExample, []SubjectHash{h}, [][]byte{testKey(1)})
	if err != nil {
		t.Fatal(err)
	}
	leaf, _ := s.Encode()
	for i := range leaf {
		b := bytes.Clone(leaf)
		b[i] ^= 0x01
		d, err := DecodeSealed(b)
		if err != nil {
			continue // refused by the parser
		}
		if d.Subjects[0] != h {
			continue // another subject: its key would be looked up, not ours
		}
		if _, err := d.Open([][]byte{testKey(1)}); !errors.Is(err, ErrAuthentication) {
			t.Fatalf("byte %d flipped: opened (%v)", i, err)
		}
	}
}

func TestSealRefusesBadSubjects(t *testing.T) {
	h := HashSubject([]byte("k"), "alice")
	for name, tc := range map[string]struct {
		hs   []SubjectHash
		keys [][]byte
	}{
		"none":      {nil, nil},
		"duplicate": {[]SubjectHash{h, h}, [][]byte{testKey(1), testKey(1)}},
		"short key": {[]SubjectHash{h}, [][]byte{make([]byte, 16)}},
		"too many":  {make([]SubjectHash, MaxSubjects+1), make([][]byte, MaxSubjects+1)},
	} {
		if _, err := Seal(sealExample, tc.hs, tc.keys); !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: %v", name, err)
		}
	}
	for _, s := range []string{"", "a\u202eb", string(bytes.Repeat([]byte("x"), 256))} {
		if ValidateSubject(s) == nil {
			t.Errorf("subject %q accepted", s)
		}
	}
}

func TestDecodeRefusesAVersion2LeafAsPlain(t *testing.T) {
	s, _ := Seal(sealExample, []SubjectHash{{1}}, [][]byte{testKey(1)})
	leaf, _ := s.Encode()
	if _, err := Decode(leaf); !errors.Is(err, ErrMalformed) {
		t.Fatalf("Decode took a sealed leaf: %v", err)
	}
	if LeafVersion(leaf) != SealedVersion {
		t.Fatal("LeafVersion")
	}
}

func FuzzDecodeSealed(f *testing.F) {
	key := make([]byte, DataKeyBytes)
	_, _ = rand.Read(key)
	s, _ := Seal(sealExample, []SubjectHash{{7}}, [][]byte{testKey(1)})
	leaf, _ := s.Encode()
	f.Add(leaf)
	f.Add([]byte{2})
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		d, err := DecodeSealed(b)
		if err != nil {
			return
		}
		again, err := d.Encode()
		if err != nil {
			t.Fatalf("decoded sealed record does not encode: %v", err)
		}
		if !bytes.Equal(again, b) {
			t.Fatalf("re-encoding differs:\n%x\n%x", b, again)
		}
		// Opening untrusted bytes fails cleanly or yields a valid record.
		keys := make([][]byte, len(d.Subjects))
		for i := range keys {
			keys[i] = testKey(1)
		}
		if r, err := d.Open(keys); err == nil {
			if err := r.Validate(); err != nil {
				t.Fatalf("opened an invalid record: %v", err)
			}
		}
	})
}
