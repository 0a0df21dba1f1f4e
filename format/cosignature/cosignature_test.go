package cosignature

import (
	"bytes"
	"encoding/base64"
	"errors"
	"os"
	"strings"
	"testing"

	fnote "github.com/transparency-dev/formats/note"
	"golang.org/x/mod/sumdb/note"
)

const text = "example.test/log\n5\ntnSPbtepnefahP2X4aO6xvq4mZ9KQ2lcq5Uoot5DEUc=\n"

// TestCosignaturesVerifyIndependently signs with both key types and checks
// the note with x/mod's note.Open and formats' verifiers built from the vkey
// alone: exactly the code a third party would run.
func TestCosignaturesVerifyIndependently(t *testing.T) {
	for _, typ := range []KeyType{Ed25519, MLDSA44} {
		t.Run(typ.String(), func(t *testing.T) {
			skey, vkey, err := GenerateKey("witness.example", typ)
			if err != nil {
				t.Fatal(err)
			}
			s, err := ParseSigner(skey)
			if err != nil {
				t.Fatal(err)
			}
			if s.Type() != typ || s.VKey() != vkey {
				t.Fatalf("ParseSigner: type %s vkey %q, want %s %q", s.Type(), s.VKey(), typ, vkey)
			}
			msg, err := note.Sign(&note.Note{Text: text}, s)
			if err != nil {
				t.Fatal(err)
			}
			v, err := fnote.NewVerifierForCosignatureV1(vkey)
			if err != nil {
				t.Fatal(err)
			}
			n, err := note.Open(msg, note.VerifierList(v))
			if err != nil {
				t.Fatalf("independent verification: %v", err)
			}
			sig, _ := base64.StdEncoding.DecodeString(n.Sigs[0].Base64)
			if got, ok := SignatureType(sig); !ok || got != typ {
				t.Errorf("SignatureType(%d bytes) = %s, want %s", len(sig), got, typ)
			}
			wantLen := map[KeyType]int{Ed25519: 76, MLDSA44: 2432}[typ]
			if len(sig) != wantLen {
				t.Errorf("signature line decodes to %d bytes, want %d (tlog-cosignature)", len(sig), wantLen)
			}
			if ts, err := fnote.CoSigV1Timestamp(n.Sigs[0]); err != nil || ts.Unix() == 0 {
				t.Errorf("timestamp %v, %v: want a non-zero timestamp", ts, err)
			}
			k, err := ParseVKey(vkey)
			if err != nil || k.Type != typ {
				t.Fatalf("ParseVKey: %v, %v", k.Type, err)
			}
			// The same bytes over another checkpoint must not verify.
			other := strings.Replace(string(msg), "\n5\n", "\n6\n", 1)
			if _, err := note.Open([]byte(other), note.VerifierList(k.Verifier)); err == nil {
				t.Error("a cosignature verified over a different checkpoint")
			}
		})
	}
}

// TestInteropOmniwitnessMLDSA verifies omniwitness's ML-DSA-44 and Ed25519
// cosignatures in testdata/interop with keys parsed here.
func TestInteropOmniwitnessMLDSA(t *testing.T) {
	cp, err := os.ReadFile("../../testdata/interop/checkpoint-cosigned.txt")
	if err != nil {
		t.Fatal(err)
	}
	for file, typ := range map[string]KeyType{"omniwitness-mldsa44.vkey": MLDSA44, "omniwitness-ed25519.vkey": Ed25519, "litewitness.vkey": Ed25519} {
		b, err := os.ReadFile("../../testdata/interop/" + file)
		if err != nil {
			t.Fatal(err)
		}
		k, err := ParseVKey(strings.TrimSpace(string(b)))
		if err != nil {
			t.Fatalf("%s: %v", file, err)
		}
		if k.Type != typ {
			t.Errorf("%s: type %s, want %s", file, k.Type, typ)
		}
		if _, err := note.Open(cp, note.VerifierList(k.Verifier)); err != nil {
			t.Errorf("%s: %v", file, err)
		}
	}
}

func TestParseRejects(t *testing.T) {
	skey, vkey, err := GenerateKey("w.example", MLDSA44)
	if err != nil {
		t.Fatal(err)
	}
	edSkey, _, err := GenerateKey("w.example", Ed25519)
	if err != nil {
		t.Fatal(err)
	}
	logSkey, _, err := note.GenerateKey(nil, "log.example")
	if err != nil {
		t.Fatal(err)
	}
	parts := strings.SplitN(skey, "+", 5)
	raw, _ := base64.StdEncoding.DecodeString(parts[4])
	short := strings.Join(append(parts[:4:4], base64.StdEncoding.EncodeToString(raw[:20])), "+")
	wrongID := strings.Join([]string{parts[0], parts[1], parts[2], "00000000", parts[4]}, "+")
	typ5 := append([]byte{0x05}, raw[1:]...)
	for name, k := range map[string]string{
		"empty":          "",
		"vkey":           vkey,
		"short seed":     short,
		"wrong key ID":   wrongID,
		"type 0x05":      strings.Join(append(parts[:4:4], base64.StdEncoding.EncodeToString(typ5)), "+"),
		"bad base64":     strings.Join(append(parts[:4:4], "!!!"), "+"),
		"space in name":  strings.Replace(skey, "w.example", "w example", 1),
		"truncated line": skey[:40],
	} {
		if _, err := ParseSigner(k); !errors.Is(err, ErrKey) {
			t.Errorf("%s: ParseSigner err = %v, want ErrKey", name, err)
		}
	}
	for _, k := range []string{edSkey, logSkey, skey} {
		if _, err := ParseSigner(k); err != nil {
			t.Errorf("ParseSigner(%.30s…): %v", k, err)
		}
	}
	vparts := strings.SplitN(vkey, "+", 3)
	for name, k := range map[string]string{
		"wrong key ID": vparts[0] + "+00000000+" + vparts[2],
		"truncated":    vkey[:200],
		"private":      skey,
		"empty":        "",
	} {
		if _, err := ParseVKey(k); !errors.Is(err, ErrKey) {
			t.Errorf("%s: ParseVKey err = %v, want ErrKey", name, err)
		}
	}
}

func TestKeyTypeNames(t *testing.T) {
	for _, typ := range []KeyType{Ed25519, MLDSA44} {
		got, err := ParseKeyType(typ.String())
		if err != nil || got != typ {
			t.Errorf("ParseKeyType(%q) = %v, %v", typ.String(), got, err)
		}
	}
	if _, err := ParseKeyType("rsa"); err == nil {
		t.Error("ParseKeyType(rsa) succeeded")
	}
}

func FuzzParseVKey(f *testing.F) {
	for _, file := range []string{"omniwitness-mldsa44.vkey", "omniwitness-ed25519.vkey", "litewitness.vkey", "log.vkey"} {
		b, err := os.ReadFile("../../testdata/interop/" + file)
		if err == nil {
			f.Add(strings.TrimSpace(string(b)))
		}
	}
	f.Fuzz(func(t *testing.T, vkey string) {
		k, err := ParseVKey(vkey)
		if err != nil {
			return
		}
		if k.Type != Ed25519 && k.Type != MLDSA44 {
			t.Fatalf("accepted type %s", k.Type)
		}
	})
}

func FuzzParseSigner(f *testing.F) {
	f.Add("PRIVATE+KEY+w.example+00000000+BgAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA")
	f.Add("PRIVATE+KEY+w.example+00000000+BAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA")
	f.Fuzz(func(t *testing.T, skey string) {
		s, err := ParseSigner(skey)
		if err != nil {
			return
		}
		msg, err := note.Sign(&note.Note{Text: text}, s)
		if err != nil {
			t.Fatal(err)
		}
		k, err := ParseVKey(s.VKey())
		if err != nil {
			t.Fatalf("own vkey does not parse: %v", err)
		}
		if _, err := note.Open(msg, note.VerifierList(k.Verifier)); err != nil {
			t.Fatalf("own cosignature does not verify: %v", err)
		}
		if !bytes.HasPrefix(msg, []byte(text)) {
			t.Fatal("note text changed")
		}
	})
}

// BenchmarkSign and BenchmarkVerify measure one cosignature of each type
// over a checkpoint: the cost a witness pays per key per checkpoint, and a
// verifier per cosignature.
func BenchmarkSign(b *testing.B) {
	for _, typ := range []KeyType{Ed25519, MLDSA44} {
		b.Run(typ.String(), func(b *testing.B) {
			skey, _, _ := GenerateKey("w.example", typ)
			s, err := ParseSigner(skey)
			if err != nil {
				b.Fatal(err)
			}
			for b.Loop() {
				if _, err := s.Sign([]byte(text)); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkVerify(b *testing.B) {
	for _, typ := range []KeyType{Ed25519, MLDSA44} {
		b.Run(typ.String(), func(b *testing.B) {
			skey, vkey, _ := GenerateKey("w.example", typ)
			s, _ := ParseSigner(skey)
			k, _ := ParseVKey(vkey)
			sig, err := s.Sign([]byte(text))
			if err != nil {
				b.Fatal(err)
			}
			for b.Loop() {
				if !k.Verifier.Verify([]byte(text), sig) {
					b.Fatal("does not verify")
				}
			}
		})
	}
}
