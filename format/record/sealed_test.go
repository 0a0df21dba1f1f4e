package record

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
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

// sealedExample is the worked example of a sealed record in
// docs/record-format.md: the version-1 example, about subject
// "customer-4711", under hash key 32×0x11 and data key 32×0x22.
var (
	exampleHashKey = bytes.Repeat([]byte{0x11}, 32)
	exampleDataKey = bytes.Repeat([]byte{0x22}, DataKeyBytes)
)

func TestSealedWorkedExampleIsByteExact(t *testing.T) {
	h := HashSubject(exampleHashKey, "customer-4711")
	s, err := Seal(example, []SubjectHash{h}, [][]byte{exampleDataKey})
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := s.Encode()
	if err != nil {
		t.Fatal(err)
	}
	golden := filepath.Join("testdata", "sealed-example.hex")
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
		t.Fatalf("sealed encoding changed (run with -update only if the format version changed too):\n%s", got)
	}

	// The same bytes from the documented steps, with HKDF (RFC 5869)
	// written out here instead of crypto/hkdf.
	hkdf := func(ikm, salt []byte, info string) []byte {
		if salt == nil {
			salt = make([]byte, sha256.Size)
		}
		ex := hmac.New(sha256.New, salt)
		ex.Write(ikm)
		prk := ex.Sum(nil)
		ep := hmac.New(sha256.New, prk)
		ep.Write([]byte(info))
		ep.Write([]byte{1})
		return ep.Sum(nil)
	}
	m := hmac.New(sha256.New, exampleHashKey)
	m.Write([]byte("customer-4711"))
	if !bytes.Equal(m.Sum(nil), h[:]) {
		t.Fatal("subject hash is not HMAC-SHA256(hash key, subject)")
	}
	inner, _ := example.Encode()
	aad := leaf[:1+1+len(example.Submitter)+8+1+32]
	mac := hmac.New(sha256.New, hkdf(exampleDataKey, nil, "cairn record v2 siv"))
	mac.Write(aad)
	mac.Write(inner)
	siv := mac.Sum(nil)[:SIVBytes]
	if !bytes.Equal(siv, s.SIV[:]) {
		t.Fatal("siv differs from the documented derivation")
	}
	block, _ := aes.NewCipher(hkdf(exampleDataKey, siv, "cairn record v2 aes-256-gcm"))
	gcm, _ := cipher.NewGCM(block)
	body := gcm.Seal(nil, make([]byte, 12), inner, aad)
	wantLeaf := append(append(append(bytes.Clone(aad), siv...), byte(len(body)>>8), byte(len(body))), body...)
	if !bytes.Equal(wantLeaf, leaf) {
		t.Fatal("leaf differs from the documented layout")
	}
	t.Logf("subject hash %x\nsiv %x\nleaf hash %s", h[:], siv, base64.StdEncoding.EncodeToString(leafHash(leaf)))
}

func leafHash(leaf []byte) []byte {
	h := sha256.Sum256(append([]byte{0}, leaf...))
	return h[:]
}

// BenchmarkSeal is the CPU cost of sealing one 250-byte record.
func BenchmarkSeal(b *testing.B) {
	r := sealExample
	r.Payload = bytes.Repeat([]byte("x"), 250)
	h := []SubjectHash{HashSubject(exampleHashKey, "customer-4711")}
	keys := [][]byte{exampleDataKey}
	for b.Loop() {
		s, err := Seal(r, h, keys)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := s.Encode(); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkSealerLeaf is the log's path: one Sealer per subject set,
// reused for every record.
func BenchmarkSealerLeaf(b *testing.B) {
	r := sealExample
	r.Payload = bytes.Repeat([]byte("x"), 250)
	s, err := NewSealer([]SubjectHash{HashSubject(exampleHashKey, "customer-4711")}, [][]byte{exampleDataKey})
	if err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if _, err := s.Leaf(r); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkSubjectHasher is the keyed hash of one subject identifier.
func BenchmarkSubjectHasher(b *testing.B) {
	k := NewSubjectHasher(exampleHashKey)
	for b.Loop() {
		k.Hash("customer-4711")
	}
}

func TestSealerLeafIsSealThenEncode(t *testing.T) {
	keys := [][]byte{bytes.Repeat([]byte{1}, DataKeyBytes), bytes.Repeat([]byte{2}, DataKeyBytes)}
	hs := []SubjectHash{HashSubject(exampleHashKey, "b"), HashSubject(exampleHashKey, "a")}
	s, err := NewSealer(hs, keys)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range []int{0, 1, 250, 4096} {
		r := sealExample
		r.Payload = bytes.Repeat([]byte("y"), n)
		if n == 0 {
			r.Payload = nil
		}
		leaf, err := s.Leaf(r)
		if err != nil {
			t.Fatal(err)
		}
		sealed, err := Seal(r, hs, keys)
		if err != nil {
			t.Fatal(err)
		}
		want, err := sealed.Encode()
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(leaf, want) || len(leaf) != cap(leaf) {
			t.Fatalf("payload %d: Leaf differs from Seal+Encode (or has spare capacity)", n)
		}
		open := keys
		if sealed.Subjects[0] != hs[0] {
			open = [][]byte{keys[1], keys[0]}
		}
		got, err := sealed.Open(open)
		if err != nil {
			t.Fatalf("payload %d: %v", n, err)
		}
		if !bytes.Equal(got.Payload, r.Payload) && n > 0 {
			t.Fatalf("payload %d: opened a different payload", n)
		}
		if HashSubject(exampleHashKey, "a") != NewSubjectHasher(exampleHashKey).Hash("a") {
			t.Fatal("SubjectHasher differs from HashSubject")
		}
	}
	// The largest v1 envelope and eight subjects do not fit in a leaf.
	var hs8 []SubjectHash
	var keys8 [][]byte
	for i := range MaxSubjects {
		hs8 = append(hs8, HashSubject(exampleHashKey, strconv.Itoa(i)))
		keys8 = append(keys8, bytes.Repeat([]byte{byte(i)}, DataKeyBytes))
	}
	s8, err := NewSealer(hs8, keys8)
	if err != nil {
		t.Fatal(err)
	}
	big := Record{Submitter: strings.Repeat("s", MaxSubmitterBytes), IdempotencyKey: strings.Repeat("k", MaxIdempotencyKeyBytes), Payload: bytes.Repeat([]byte("z"), MaxPayloadBytes)}
	if _, err := s8.Leaf(big); !errors.Is(err, ErrLeafTooLarge) || !errors.Is(err, ErrInvalid) {
		t.Fatalf("oversized sealed record: %v, want ErrLeafTooLarge", err)
	}
}
