// Package cosignature holds the cosigner keys of C2SP tlog-cosignature
// (c2sp.org/tlog-cosignature) that Cairn's witnesses and mirrors sign with and
// that policies verify: Ed25519 cosignature/v1 (signature type 0x04) and the
// post-quantum ML-DSA-44 subtree cosignature (type 0x06).
//
// The signing and verifying are transparency-dev/formats' (note.
// NewSignerForCosignatureV1, NewVerifierForCosignatureV1, ML-DSA-44 by
// filippo.io/mldsa); this package only picks the key type, derives a signer's
// verifier key (vkey) and names the type in errors and output.
//
//	private key  PRIVATE+KEY+<name>+<8 hex key ID>+<base64(type || 32-byte seed)>
//	vkey         <name>+<8 hex key ID>+<base64(type || public key)>
//	key ID       SHA-256(name || "\n" || type || public key)[:4]
//
// Ed25519 keys carry 0x04 (0x01 is accepted for private keys, as formats
// does); ML-DSA-44 keys carry 0x06 and a 1312-byte public key. Both are the
// encodings omniwitness and formats' generate_keys write.
package cosignature

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"

	"filippo.io/mldsa"
	fnote "github.com/transparency-dev/formats/note"
	"golang.org/x/mod/sumdb/note"
)

// KeyType is a cosigner key's signature type byte (signed-note key types).
type KeyType byte

// The cosigner key types Cairn signs and verifies with.
const (
	// Ed25519 is a cosignature/v1 key: timestamp || Ed25519 over
	// "cosignature/v1\ntime T\n" + the checkpoint text (76-byte lines).
	Ed25519 KeyType = 0x04
	// MLDSA44 is an ML-DSA-44 subtree cosignature key: timestamp || ML-DSA-44
	// over the subtree/v1 message of [0, size) (2432-byte lines).
	MLDSA44 KeyType = 0x06
)

// String is the name used by flags (--alg), output and errors.
func (t KeyType) String() string {
	switch t {
	case Ed25519:
		return "ed25519"
	case MLDSA44:
		return "ml-dsa-44"
	default:
		return fmt.Sprintf("unknown key type 0x%02x", byte(t))
	}
}

// ParseKeyType parses the name String returns.
func ParseKeyType(s string) (KeyType, error) {
	switch strings.ToLower(s) {
	case "ed25519":
		return Ed25519, nil
	case "ml-dsa-44", "mldsa44", "ml-dsa44":
		return MLDSA44, nil
	}
	return 0, fmt.Errorf("unknown key algorithm %q (want ed25519 or ml-dsa-44)", s)
}

// ErrKey is wrapped by every error about a malformed or unsupported key.
var ErrKey = errors.New("bad cosigner key")

// Signer is a cosigner's private key: a note.Signer whose signatures are
// cosignatures of the key's type.
type Signer struct {
	signer   *fnote.Signer
	typ      KeyType
	vkey     string
	verifier note.Verifier
}

// ParseSigner parses a cosigner private key (PRIVATE+KEY+…) of type 0x04,
// 0x01 (treated as 0x04) or 0x06. Surrounding white space is ignored.
func ParseSigner(skey string) (*Signer, error) {
	skey = strings.TrimSpace(skey)
	parts := strings.SplitN(skey, "+", 5)
	if len(parts) != 5 || parts[0] != "PRIVATE" || parts[1] != "KEY" {
		return nil, fmt.Errorf("%w: not a private key (want PRIVATE+KEY+<name>+<id>+<key>)", ErrKey)
	}
	name := parts[2]
	if !validName(name) {
		return nil, fmt.Errorf("%w: key name %q must be non-empty, without spaces or '+'", ErrKey, name)
	}
	raw, err := base64.StdEncoding.DecodeString(parts[4])
	if err != nil || len(raw) == 0 {
		return nil, fmt.Errorf("%w: private key of %q is not base64", ErrKey, name)
	}
	typ, pub, err := publicKey(name, raw)
	if err != nil {
		return nil, err
	}
	s, err := fnote.NewSignerForCosignatureV1(skey)
	if err != nil {
		return nil, fmt.Errorf("%w: %s private key of %q: %v", ErrKey, typ, name, err)
	}
	vkey := formatVKey(name, typ, pub)
	v, err := fnote.NewVerifierForCosignatureV1(vkey)
	if err != nil || v.KeyHash() != s.KeyHash() {
		return nil, fmt.Errorf("%w: %s key of %q: derived verifier key does not match the signer", ErrKey, typ, name)
	}
	// A 0x01 key carries the ID of its plain Ed25519 (log) form.
	if want := fmt.Sprintf("%08x", s.KeyHash()); raw[0] != 0x01 && parts[3] != want {
		return nil, fmt.Errorf("%w: %s private key of %q has key ID %s, but its key's ID is %s", ErrKey, typ, name, parts[3], want)
	}
	return &Signer{signer: s, typ: typ, vkey: vkey, verifier: v}, nil
}

// Name is the cosigner's key name.
func (s *Signer) Name() string { return s.signer.Name() }

// KeyHash is the key ID.
func (s *Signer) KeyHash() uint32 { return s.signer.KeyHash() }

// Sign returns the cosignature body (timestamp || signature) over a
// checkpoint's note text, timestamped now.
func (s *Signer) Sign(msg []byte) ([]byte, error) { return s.signer.Sign(msg) }

// Type is the key type.
func (s *Signer) Type() KeyType { return s.typ }

// VKey is the cosigner's verifier key, for policies and log lists.
func (s *Signer) VKey() string { return s.vkey }

// Verifier verifies this key's cosignatures.
func (s *Signer) Verifier() note.Verifier { return s.verifier }

// Key is a parsed cosigner verifier key.
type Key struct {
	VKey     string
	Type     KeyType
	Verifier note.Verifier
}

// ParseVKey parses a cosigner verifier key of type 0x04 or 0x06. A 0x01
// (plain Ed25519) vkey is accepted as 0x04, with the 0x04 key ID, as
// transparency-dev/formats and Tessera do.
func ParseVKey(vkey string) (Key, error) {
	name, rest, _ := strings.Cut(vkey, "+")
	_, key64, _ := strings.Cut(rest, "+")
	raw, err := base64.StdEncoding.DecodeString(key64)
	if err != nil || len(raw) == 0 {
		return Key{}, fmt.Errorf("%w: verifier key %q: malformed (want <name>+<id>+<base64 key>)", ErrKey, truncate(vkey))
	}
	var typ KeyType
	switch raw[0] {
	case 0x01, byte(Ed25519):
		typ = Ed25519
	case byte(MLDSA44):
		typ = MLDSA44
	default:
		return Key{}, fmt.Errorf("%w: verifier key of %q has type 0x%02x (want 0x04 Ed25519 or 0x06 ML-DSA-44)", ErrKey, truncate(name), raw[0])
	}
	v, err := fnote.NewVerifierForCosignatureV1(vkey)
	if err != nil {
		return Key{}, fmt.Errorf("%w: %s verifier key of %q: %v", ErrKey, typ, truncate(name), err)
	}
	// formats does not compare the written key ID with the key; a 0x01 key
	// carries the ID of its plain Ed25519 form, which x/mod checks.
	if raw[0] == 0x01 {
		if _, err := note.NewVerifier(vkey); err != nil {
			return Key{}, fmt.Errorf("%w: %s verifier key of %q: %v", ErrKey, typ, truncate(name), err)
		}
	} else if want := fmt.Sprintf("%08x", v.KeyHash()); !strings.HasPrefix(rest, want+"+") {
		return Key{}, fmt.Errorf("%w: %s verifier key of %q: key ID is not %s, the ID of its key", ErrKey, typ, truncate(name), want)
	}
	return Key{VKey: vkey, Type: typ, Verifier: v}, nil
}

// SignatureType returns the key type a signature line's decoded bytes (key
// ID first) have by their length: 76 bytes for Ed25519, 2432 for ML-DSA-44.
func SignatureType(sig []byte) (KeyType, bool) {
	switch len(sig) {
	case 4 + 8 + ed25519.SignatureSize:
		return Ed25519, true
	case 4 + 8 + mldsa.MLDSA44SignatureSize:
		return MLDSA44, true
	}
	return 0, false
}

// GenerateKey returns a new cosigner key pair of type t named name.
func GenerateKey(name string, t KeyType) (skey, vkey string, err error) {
	if !validName(name) {
		return "", "", fmt.Errorf("%w: key name %q must be non-empty, without spaces or '+'", ErrKey, name)
	}
	var raw []byte
	switch t {
	case Ed25519:
		seed := make([]byte, ed25519.SeedSize)
		if _, err := rand.Read(seed); err != nil {
			return "", "", err
		}
		raw = append([]byte{byte(Ed25519)}, seed...)
	case MLDSA44:
		k, err := mldsa.GenerateKey(mldsa.MLDSA44())
		if err != nil {
			return "", "", err
		}
		raw = append([]byte{byte(MLDSA44)}, k.Bytes()...)
	default:
		return "", "", fmt.Errorf("%w: cannot generate a key of %s", ErrKey, t)
	}
	_, pub, err := publicKey(name, raw)
	if err != nil {
		return "", "", err
	}
	skey = fmt.Sprintf("PRIVATE+KEY+%s+%08x+%s", name, keyID(name, t, pub), base64.StdEncoding.EncodeToString(raw))
	s, err := ParseSigner(skey)
	if err != nil {
		return "", "", err
	}
	return skey, s.VKey(), nil
}

// publicKey returns the type and public key of a private key's raw bytes
// (type || seed).
func publicKey(name string, raw []byte) (KeyType, []byte, error) {
	switch raw[0] {
	case 0x01, byte(Ed25519):
		if len(raw) != 1+ed25519.SeedSize {
			return 0, nil, fmt.Errorf("%w: Ed25519 private key of %q has %d bytes, want %d", ErrKey, name, len(raw)-1, ed25519.SeedSize)
		}
		return Ed25519, ed25519.NewKeyFromSeed(raw[1:]).Public().(ed25519.PublicKey), nil
	case byte(MLDSA44):
		if len(raw) != 1+mldsa.PrivateKeySize {
			return 0, nil, fmt.Errorf("%w: ML-DSA-44 private key of %q has %d bytes, want a %d-byte seed", ErrKey, name, len(raw)-1, mldsa.PrivateKeySize)
		}
		k, err := mldsa.NewPrivateKey(mldsa.MLDSA44(), raw[1:])
		if err != nil {
			return 0, nil, fmt.Errorf("%w: ML-DSA-44 private key of %q: %v", ErrKey, name, err)
		}
		return MLDSA44, k.PublicKey().Bytes(), nil
	}
	return 0, nil, fmt.Errorf("%w: private key of %q has type 0x%02x (want 0x04 Ed25519 or 0x06 ML-DSA-44 cosigner keys)", ErrKey, name, raw[0])
}

// formatVKey encodes a verifier key.
func formatVKey(name string, t KeyType, pub []byte) string {
	return fmt.Sprintf("%s+%08x+%s", name, keyID(name, t, pub), base64.StdEncoding.EncodeToString(append([]byte{byte(t)}, pub...)))
}

// keyID is SHA-256(name || "\n" || type || public key)[:4] (signed-note).
func keyID(name string, t KeyType, pub []byte) uint32 {
	h := sha256.New()
	h.Write([]byte(name + "\n"))
	h.Write([]byte{byte(t)})
	h.Write(pub)
	return binary.BigEndian.Uint32(h.Sum(nil))
}

// validName: non-empty, valid UTF-8, no spaces, no '+' (signed-note).
func validName(name string) bool {
	return name != "" && utf8.ValidString(name) && strings.IndexFunc(name, unicode.IsSpace) < 0 && !strings.Contains(name, "+")
}

func truncate(s string) string {
	if len(s) > 64 {
		return s[:64] + "…"
	}
	return s
}
