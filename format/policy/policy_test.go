package policy

import (
	"crypto/rand"
	"encoding/base64"
	"errors"
	"os"
	"strings"
	"testing"

	"github.com/cairnlog/cairn/format/cosignature"
	"golang.org/x/mod/sumdb/note"
)

func read(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestInteropFixtureVerifies(t *testing.T) {
	p, err := Parse(read(t, "../../testdata/interop.policy"))
	if err != nil {
		t.Fatal(err)
	}
	v, err := p.Verify(read(t, "../../testdata/interop/checkpoint-cosigned.txt"))
	if err != nil {
		t.Fatal(err)
	}
	for _, w := range []string{"lite", "omni", "mldsa"} {
		if _, ok := v.Cosigned[w]; !ok {
			t.Errorf("cosignature of %s not counted (have %v)", w, v.Cosigned)
		}
	}
	if v.Cosigned["lite"].IsZero() {
		t.Error("Ed25519 cosignature timestamp not read")
	}
	if v.Checkpoint.Size != 360 || v.Checkpoint.Origin != "example.test/oneshot" {
		t.Errorf("checkpoint %+v", v.Checkpoint)
	}
}

func TestQuorumAndSignatureRules(t *testing.T) {
	cp := read(t, "../../testdata/interop/checkpoint-cosigned.txt")
	logLine := "log " + strings.TrimSpace(string(read(t, "../../testdata/interop/log.vkey")))
	lite := "witness lite " + strings.TrimSpace(string(read(t, "../../testdata/interop/litewitness.vkey")))
	_, strangerVKey, _ := note.GenerateKey(rand.Reader, "example.test/stranger")
	stranger := "witness stranger " + strangerVKey
	for _, c := range []struct {
		name, policy string
		ok           bool
	}{
		{"log only", logLine + "\nquorum none\n", true},
		{"one witness", logLine + "\n" + lite + "\nquorum lite\n", true},
		{"missing witness", logLine + "\n" + stranger + "\nquorum stranger\n", false},
		{"2 of 2 with a stranger", logLine + "\n" + lite + "\n" + stranger + "\ngroup g 2 lite stranger\nquorum g\n", false},
		{"any of 2 with a stranger", logLine + "\n" + lite + "\n" + stranger + "\ngroup g any lite stranger\nquorum g\n", true},
		{"nested group", logLine + "\n" + lite + "\n" + stranger + "\ngroup a any lite\ngroup b all a\nquorum b\n", true},
		{"no log key", lite + "\nquorum lite\n", false},
	} {
		p, err := Parse([]byte(c.policy))
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		_, err = p.Verify(cp)
		if c.ok != (err == nil) {
			t.Errorf("%s: Verify = %v, want ok=%v", c.name, err, c.ok)
		}
		if err != nil && !errors.Is(err, ErrVerification) {
			t.Errorf("%s: error does not wrap ErrVerification: %v", c.name, err)
		}
	}
	// A known key's bad signature rejects the note.
	p, _ := Parse([]byte(logLine + "\n" + lite + "\nquorum none\n"))
	bad := strings.Replace(string(cp), "NaVVBQ==", "NaVVBA==", 1) // the litewitness signature's last bytes
	if _, err := p.Verify([]byte(bad)); err == nil {
		t.Error("a checkpoint with a broken cosignature by a known witness verified")
	}
}

func TestParseErrors(t *testing.T) {
	_, vkey, _ := note.GenerateKey(rand.Reader, "example.test/log")
	_, wkey, _ := note.GenerateKey(rand.Reader, "example.test/w")
	for _, c := range []struct{ in, want string }{
		{"", "no quorum line"},
		{"quorum x", "not defined"},
		{"log " + vkey + "\nlog " + vkey + "\nquorum none", "listed twice"},
		{"witness w " + wkey + "\nwitness w " + wkey + "\nquorum none", "already defined"},
		{"witness w " + wkey + "\ngroup g 2 w\nquorum g", "threshold"},
		{"witness w " + wkey + "\ngroup g any w w\nquorum g", "listed twice"},
		{"group g any nobody\nquorum none", "not a witness or group"},
		{"quorum none\nquorum none", "second quorum"},
		{"logs " + vkey + "\nquorum none", "unknown keyword"},
		{"log nonsense\nquorum none", "line 1: log vkey"},
		{"quorum none\x01", "not allowed"},
	} {
		if _, err := Parse([]byte(c.in)); !errors.Is(err, ErrMalformed) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("Parse(%q) = %v, want an error mentioning %q", c.in, err, c.want)
		}
	}
}

func FuzzParse(f *testing.F) {
	f.Add([]byte("log example.test/oneshot+f1bd5c65+AfWxAPRYEuwL0N11FKlCp0vGQr+Pvx9x6xdtY3wQNyt3 http://x\nquorum none\n"))
	f.Add([]byte("witness a b\ngroup g any a\nquorum g # c\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := Parse(b)
		if err != nil {
			return
		}
		if p.Quorum == "" {
			t.Fatal("accepted a policy without a quorum")
		}
		_, _ = p.Verify([]byte("x\n1\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n\n— x AAAAAAAA\n"))
	})
}

// TestHybridWitnessNeedsBothKeyTypes: the hybrid rule in plain tlog-policy
// (group all of a witness's Ed25519 and ML-DSA-44 lines) is met only when
// both cosignatures verify; the key types are reported per witness line.
func TestHybridWitnessNeedsBothKeyTypes(t *testing.T) {
	src := strings.Replace(string(read(t, "../../testdata/interop.policy")), "quorum ed25519", "group omni-hybrid all omni mldsa\nquorum omni-hybrid", 1)
	p, err := Parse([]byte(src))
	if err != nil {
		t.Fatal(err)
	}
	for _, w := range p.Witnesses {
		want := map[string]cosignature.KeyType{"lite": cosignature.Ed25519, "omni": cosignature.Ed25519, "mldsa": cosignature.MLDSA44}[w.Name]
		if w.Type != want {
			t.Errorf("witness %s: type %s, want %s", w.Name, w.Type, want)
		}
	}
	cp := string(read(t, "../../testdata/interop/checkpoint-cosigned.txt"))
	v, err := p.Verify([]byte(cp))
	if err != nil {
		t.Fatal(err)
	}
	if v.KeyTypes["mldsa"] != cosignature.MLDSA44 || v.Cosigned["mldsa"].IsZero() {
		t.Errorf("mldsa: type %s, time %v", v.KeyTypes["mldsa"], v.Cosigned["mldsa"])
	}
	var without []string
	for _, line := range strings.Split(cp, "\n") {
		if !strings.Contains(line, "example.test/mldsawitness") {
			without = append(without, line)
		}
	}
	if _, err := p.Verify([]byte(strings.Join(without, "\n"))); !errors.Is(err, ErrVerification) || !strings.Contains(err.Error(), `quorum "omni-hybrid" not met`) {
		t.Errorf("Ed25519 alone under the hybrid rule: %v", err)
	}
}

func TestParseRejectsABadMLDSAKey(t *testing.T) {
	_, vkey, err := cosignature.GenerateKey("w.example", cosignature.MLDSA44)
	if err != nil {
		t.Fatal(err)
	}
	name, rest, _ := strings.Cut(vkey, "+")
	id, key, _ := strings.Cut(rest, "+")
	raw, _ := base64.StdEncoding.DecodeString(key)
	raw[0] = 0x05
	for what, k := range map[string]string{
		"wrong key ID": name + "+00000000+" + key,
		"short key":    vkey[:len(vkey)-8],
		"type 0x05":    name + "+" + id + "+" + base64.StdEncoding.EncodeToString(raw),
	} {
		_, err := Parse([]byte("witness w " + k + "\nquorum w\n"))
		if !errors.Is(err, ErrMalformed) || !strings.Contains(err.Error(), "line 1") {
			t.Errorf("%s: %v", what, err)
		}
	}
}
