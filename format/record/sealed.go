package record

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"io"
)

// SealedVersion is the envelope version of a sealed record: a record about
// data subjects whose body is encrypted under the subjects' data keys, so
// that destroying one key erases the record without changing the leaf
// (docs/record-format.md, docs/erasure.md).
//
// Layout (version 2), all integers big-endian:
//
//	u8   version (= 2)
//	u8   len(submitter)        1..255
//	     submitter             as in version 1, in clear
//	u64  timestamp             as in version 1, in clear
//	u8   subject count n       1..MaxSubjects
//	n×32 subject hashes        SubjectHash values, strictly ascending
//	16   siv                   synthetic IV (see Seal)
//	u16  len(sealed body)
//	     sealed body           AES-256-GCM ciphertext and 16-byte tag of the
//	                           record's complete version-1 envelope
const SealedVersion = 2

// Limits of a sealed record.
const (
	// MaxSubjects is the most data subjects one record may name.
	MaxSubjects = 8
	// MaxSubjectBytes bounds a subject identifier.
	MaxSubjectBytes = 255
	// DataKeyBytes is the size of a subject's data key (AES-256).
	DataKeyBytes = 32
	// SubjectHashBytes is the size of a keyed subject hash.
	SubjectHashBytes = sha256.Size
	// SIVBytes is the size of a sealed record's synthetic IV.
	SIVBytes = 16
	// TagBytes is the GCM tag at the end of the sealed body.
	TagBytes = 16
)

// Key-derivation labels (HKDF info strings), part of the format.
const (
	labelSIV = "cairn record v2 siv"
	labelKey = "cairn record v2 aes-256-gcm"
)

// ErrAuthentication is wrapped when a sealed body does not authenticate
// under the subjects' keys: the ciphertext, its header or a key is wrong.
var ErrAuthentication = errors.New("sealed record does not authenticate")

// SubjectHash is the keyed hash under which a log stores a data subject:
// HMAC-SHA256(hash key, UTF-8 subject identifier). The hash key is a
// per-log secret kept in the log's key store; the same identifier always
// gives the same hash in one log, so the hash indexes a subject's records
// (search, erasure) without naming the subject.
type SubjectHash [SubjectHashBytes]byte

// HashSubject returns the keyed hash of subject under the log's hash key.
func HashSubject(hashKey []byte, subject string) SubjectHash {
	return NewSubjectHasher(hashKey).Hash(subject)
}

// A SubjectHasher is HashSubject under one hash key, keyed once: safe for
// concurrent use.
type SubjectHasher struct {
	key []byte
	mac hash.Cloner // HMAC-SHA256 under key, nothing written; nil if it cannot clone
}

// NewSubjectHasher returns a SubjectHasher for hashKey.
func NewSubjectHasher(hashKey []byte) *SubjectHasher {
	mac, _ := hmac.New(sha256.New, hashKey).(hash.Cloner)
	return &SubjectHasher{key: hashKey, mac: mac}
}

// Hash returns the keyed hash of subject.
func (k *SubjectHasher) Hash(subject string) SubjectHash {
	var m hash.Hash
	if k.mac != nil {
		if c, err := k.mac.Clone(); err == nil {
			m = c
		}
	}
	if m == nil {
		m = hmac.New(sha256.New, k.key)
	}
	io.WriteString(m, subject)
	var h SubjectHash
	m.Sum(h[:0])
	return h
}

// ValidateSubject reports why subject cannot name a data subject, or nil:
// it must be 1..MaxSubjectBytes bytes of UTF-8 without C0/C1 or
// bidirectional controls (the rule of the text fields).
func ValidateSubject(subject string) error {
	if subject == "" {
		return fmt.Errorf("%w: a subject identifier is empty", ErrInvalid)
	}
	return checkText("subject", subject, MaxSubjectBytes)
}

// ValidateText reports why s cannot be a text field called field of at
// most max bytes (UTF-8 without C0/C1 or bidirectional controls), or nil.
// The log applies it to text it records besides envelope fields (the
// reason of an erasure).
func ValidateText(field, s string, max int) error { return checkText(field, s, max) }

// Sealed is a version-2 envelope as stored: the clear header and the
// encrypted body. Open it with the subjects' data keys.
type Sealed struct {
	// Submitter and Timestamp are the record's, in clear (the log's
	// authenticated principal and the submitter's clock are not personal
	// data of the subjects; everything else is sealed).
	Submitter string
	Timestamp uint64
	// Subjects are the keyed hashes of the data subjects, ascending.
	Subjects []SubjectHash
	// SIV is the synthetic IV that makes sealing deterministic.
	SIV [SIVBytes]byte
	// Body is the AES-256-GCM ciphertext and tag of the version-1 envelope.
	Body []byte
}

// header returns the clear bytes before the SIV; they are the sealed body's
// additional authenticated data.
func (s Sealed) header() []byte {
	b := make([]byte, 0, 1+1+len(s.Submitter)+8+1+len(s.Subjects)*SubjectHashBytes)
	b = append(b, SealedVersion, byte(len(s.Submitter)))
	b = append(b, s.Submitter...)
	b = binary.BigEndian.AppendUint64(b, s.Timestamp)
	b = append(b, byte(len(s.Subjects)))
	for _, h := range s.Subjects {
		b = append(b, h[:]...)
	}
	return b
}

// validate checks the clear fields.
func (s Sealed) validate() error {
	if s.Submitter == "" {
		return fmt.Errorf("%w: submitter is empty", ErrInvalid)
	}
	if err := checkText("submitter", s.Submitter, MaxSubmitterBytes); err != nil {
		return err
	}
	if s.Timestamp > 1<<63-1 {
		return fmt.Errorf("%w: timestamp %d exceeds 2^63-1", ErrInvalid, s.Timestamp)
	}
	if len(s.Subjects) < 1 || len(s.Subjects) > MaxSubjects {
		return fmt.Errorf("%w: %d subjects, want 1..%d", ErrInvalid, len(s.Subjects), MaxSubjects)
	}
	for i := 1; i < len(s.Subjects); i++ {
		if bytes.Compare(s.Subjects[i-1][:], s.Subjects[i][:]) >= 0 {
			return fmt.Errorf("%w: subject hashes are not strictly ascending at %d", ErrInvalid, i)
		}
	}
	if len(s.Body) < TagBytes {
		return fmt.Errorf("%w: sealed body is %d bytes, shorter than its tag", ErrInvalid, len(s.Body))
	}
	return nil
}

// Encode returns the leaf bytes of s.
func (s Sealed) Encode() ([]byte, error) {
	if err := s.validate(); err != nil {
		return nil, err
	}
	b := s.header()
	b = append(b, s.SIV[:]...)
	b = binary.BigEndian.AppendUint16(b, uint16(len(s.Body)))
	b = append(b, s.Body...)
	if len(b) > MaxLeafBytes {
		return nil, fmt.Errorf("%w: the sealed record is %d bytes, over the %d-byte leaf limit", ErrInvalid, len(b), MaxLeafBytes)
	}
	return b, nil
}

// LeafVersion returns the envelope version byte of a leaf (0 for an empty leaf).
func LeafVersion(leaf []byte) int {
	if len(leaf) == 0 {
		return 0
	}
	return int(leaf[0])
}

// DecodeSealed parses a version-2 leaf. Like Decode it accepts exactly what
// Encode produces; it does not decrypt (see Open).
func DecodeSealed(leaf []byte) (Sealed, error) {
	d := decoder{b: leaf}
	v := d.u8("version")
	if d.err == nil && v != SealedVersion {
		return Sealed{}, fmt.Errorf("%w: version %d is not a sealed record (version %d)", ErrMalformed, v, SealedVersion)
	}
	var s Sealed
	s.Submitter = string(d.bytes("submitter", int(d.u8("submitter length"))))
	s.Timestamp = d.u64("timestamp")
	n := int(d.u8("subject count"))
	for i := 0; i < n && d.err == nil; i++ {
		var h SubjectHash
		copy(h[:], d.take("subject hash", SubjectHashBytes))
		s.Subjects = append(s.Subjects, h)
	}
	copy(s.SIV[:], d.take("siv", SIVBytes))
	s.Body = d.bytes("sealed body", int(d.u16("sealed body length")))
	if d.err != nil {
		return Sealed{}, d.err
	}
	if len(d.b) != 0 {
		return Sealed{}, fmt.Errorf("%w: %d trailing bytes after the sealed body", ErrMalformed, len(d.b))
	}
	if err := s.validate(); err != nil {
		return Sealed{}, fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	return s, nil
}

// Seal encrypts r for the data subjects whose hashes are subjects, under
// their data keys keys (keys[i] belongs to subjects[i]; the order of the
// pairs does not matter). Sealing is deterministic — the same record and
// keys give the same leaf, so a retried request keeps its index — and every
// key is needed to open the record, so destroying any one erases it.
//
// With ikm = the data keys concatenated in ascending subject-hash order and
// aad = the clear header (version through the subject hashes):
//
//	siv   = HMAC-SHA256(HKDF-SHA256(ikm, salt "", info "cairn record v2 siv"), aad ‖ v1 envelope)[:16]
//	key   = HKDF-SHA256(ikm, salt siv, info "cairn record v2 aes-256-gcm"), 32 bytes
//	body  = AES-256-GCM(key).Seal(nonce 12 zero bytes, v1 envelope, aad)
//
// A fresh key per distinct record (it depends on the siv, which depends on
// the whole record) makes the fixed nonce safe; the siv reveals only
// whether two sealed records are identical, which the leaf would anyway.
func Seal(r Record, subjects []SubjectHash, keys [][]byte) (Sealed, error) {
	s, err := NewSealer(subjects, keys)
	if err != nil {
		return Sealed{}, err
	}
	return s.Seal(r)
}

// ErrLeafTooLarge is wrapped when a sealed record would not fit in a leaf.
var ErrLeafTooLarge = errors.New("sealed record too large")

// A Sealer seals records for one set of data subjects (see Seal). It does
// once what depends only on the subjects' keys, so a log sealing many
// records for the same subjects pays for it once. It is safe for
// concurrent use.
type Sealer struct {
	subjects []SubjectHash // ascending
	ikm      []byte        // the data keys in subject order
	mac      hash.Cloner   // HMAC-SHA256 under the siv key, nothing written
}

// NewSealer returns a Sealer for subjects and their data keys (keys[i]
// belongs to subjects[i]).
func NewSealer(subjects []SubjectHash, keys [][]byte) (*Sealer, error) {
	hs, ks, err := sortSubjects(subjects, keys)
	if err != nil {
		return nil, err
	}
	ikm := bytes.Join(ks, nil)
	macKey, err := hkdf.Key(sha256.New, ikm, nil, labelSIV, 32)
	if err != nil {
		return nil, err
	}
	mac, ok := hmac.New(sha256.New, macKey).(hash.Cloner)
	if !ok {
		return nil, errors.New("crypto/hmac does not implement hash.Cloner")
	}
	return &Sealer{subjects: hs, ikm: ikm, mac: mac}, nil
}

// Seal encrypts r (see the function Seal).
func (s *Sealer) Seal(r Record) (Sealed, error) {
	leaf, err := s.Leaf(r)
	if err != nil {
		return Sealed{}, err
	}
	return DecodeSealed(leaf)
}

// Leaf encrypts r and returns the leaf bytes, what Seal followed by Encode
// returns, in one allocation. A record whose sealed form does not fit in a
// leaf is an error wrapping ErrInvalid and ErrLeafTooLarge.
func (s *Sealer) Leaf(r Record) ([]byte, error) {
	if err := r.Validate(); err != nil {
		return nil, err
	}
	hdr := 1 + 1 + len(r.Submitter) + 8 + 1 + len(s.subjects)*SubjectHashBytes
	inner := r.Size()
	size := hdr + SIVBytes + 2 + inner + TagBytes
	if size > MaxLeafBytes {
		return nil, fmt.Errorf("%w: %w: the sealed record is %d bytes, over the %d-byte leaf limit", ErrInvalid, ErrLeafTooLarge, size, MaxLeafBytes)
	}
	// One buffer: the leaf, then the plaintext envelope as scratch.
	buf := make([]byte, 0, size+inner)
	b := append(buf, SealedVersion, byte(len(r.Submitter)))
	b = append(b, r.Submitter...)
	b = binary.BigEndian.AppendUint64(b, r.Timestamp)
	b = append(b, byte(len(s.subjects)))
	for _, h := range s.subjects {
		b = append(b, h[:]...)
	}
	plain := r.AppendTo(buf[size:size])

	mc, err := s.mac.Clone()
	if err != nil {
		return nil, err
	}
	mc.Write(b) // the header, the aad
	mc.Write(plain)
	var sum [sha256.Size]byte
	var siv [SIVBytes]byte
	copy(siv[:], mc.Sum(sum[:0]))
	aead, err := recordAEAD(s.ikm, siv)
	if err != nil {
		return nil, err
	}
	b = append(b, siv[:]...)
	b = binary.BigEndian.AppendUint16(b, uint16(inner+TagBytes))
	var nonce [12]byte
	b = aead.Seal(b, nonce[:aead.NonceSize()], plain, b[:hdr])
	return b[:size:size], nil
}

// Open decrypts s with the subjects' data keys (keys[i] for s.Subjects[i])
// and returns the record. The record's submitter and timestamp must equal
// the clear header's. A wrong key, a changed header or a changed body is
// an error wrapping ErrAuthentication.
func (s Sealed) Open(keys [][]byte) (Record, error) {
	if len(keys) != len(s.Subjects) {
		return Record{}, fmt.Errorf("%d keys for %d subjects", len(keys), len(s.Subjects))
	}
	for i, k := range keys {
		if len(k) != DataKeyBytes {
			return Record{}, fmt.Errorf("data key %d is %d bytes, want %d", i, len(k), DataKeyBytes)
		}
	}
	aead, err := recordAEAD(bytes.Join(keys, nil), s.SIV)
	if err != nil {
		return Record{}, err
	}
	inner, err := aead.Open(nil, make([]byte, aead.NonceSize()), s.Body, s.header())
	if err != nil {
		return Record{}, ErrAuthentication
	}
	r, err := Decode(inner)
	if err != nil {
		return Record{}, fmt.Errorf("%w: the decrypted body: %w", ErrAuthentication, err)
	}
	if r.Submitter != s.Submitter || r.Timestamp != s.Timestamp {
		return Record{}, fmt.Errorf("%w: the decrypted record's submitter or timestamp differs from the header", ErrAuthentication)
	}
	return r, nil
}

// recordAEAD is AES-256-GCM under the record key derived from ikm and siv.
func recordAEAD(ikm []byte, siv [SIVBytes]byte) (cipher.AEAD, error) {
	key, err := hkdf.Key(sha256.New, ikm, siv[:], labelKey, 32)
	if err != nil {
		return nil, err
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(block)
}

// sortSubjects returns subjects ascending with keys in the same order,
// refusing duplicates and keys of the wrong size.
func sortSubjects(subjects []SubjectHash, keys [][]byte) ([]SubjectHash, [][]byte, error) {
	if len(subjects) < 1 || len(subjects) > MaxSubjects {
		return nil, nil, fmt.Errorf("%w: %d subjects, want 1..%d", ErrInvalid, len(subjects), MaxSubjects)
	}
	if len(keys) != len(subjects) {
		return nil, nil, fmt.Errorf("%w: %d keys for %d subjects", ErrInvalid, len(keys), len(subjects))
	}
	idx := make([]int, len(subjects))
	for i := range idx {
		idx[i] = i
		if len(keys[i]) != DataKeyBytes {
			return nil, nil, fmt.Errorf("%w: data key %d is %d bytes, want %d", ErrInvalid, i, len(keys[i]), DataKeyBytes)
		}
	}
	// Insertion sort: at most MaxSubjects elements.
	for i := 1; i < len(idx); i++ {
		for j := i; j > 0 && bytes.Compare(subjects[idx[j-1]][:], subjects[idx[j]][:]) > 0; j-- {
			idx[j-1], idx[j] = idx[j], idx[j-1]
		}
	}
	hs := make([]SubjectHash, len(idx))
	ks := make([][]byte, len(idx))
	for i, j := range idx {
		hs[i], ks[i] = subjects[j], keys[j]
		if i > 0 && hs[i-1] == hs[i] {
			return nil, nil, fmt.Errorf("%w: a subject is named twice", ErrInvalid)
		}
	}
	return hs, ks, nil
}
