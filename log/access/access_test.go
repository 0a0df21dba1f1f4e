package access

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestTokensAreStoredOnlyAsSaltedHashes(t *testing.T) {
	f := &File{}
	tok, err := f.AddToken("billing", []Role{RoleAppend})
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "access.txt")
	if err := f.Save(path); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(path)
	secret := tok[len("cairn_")+17:] // cairn_<16 hex id>_<secret>
	if bytes.Contains(b, []byte(tok)) || bytes.Contains(b, []byte(secret)) {
		t.Fatalf("the access file contains the token:\n%s", b)
	}
	if st, _ := os.Stat(path); st.Mode().Perm() != 0o600 {
		t.Errorf("access file mode %v, want 0600", st.Mode().Perm())
	}
	g, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	e, err := g.Token(tok)
	if err != nil || e.Name != "billing" || !e.Has(RoleAppend) || e.Has(RoleRead) {
		t.Fatalf("Token = %+v, %v", e, err)
	}
	// Two tokens for different principals never share a salt.
	tok2, _ := g.AddToken("other", []Role{RoleRead})
	if _, err := g.Token(tok2); err != nil {
		t.Fatal(err)
	}
	if bytes.Equal(g.Entries[0].Salt, g.Entries[1].Salt) {
		t.Fatal("two tokens share a salt")
	}
	for _, bad := range []string{"", tok + "x", strings.Replace(tok, "cairn_", "cairm_", 1), tok[:len(tok)-2]} {
		if _, err := g.Token(bad); !errors.Is(err, ErrUnknownToken) {
			t.Errorf("Token(%q) = %v, want ErrUnknownToken", bad, err)
		}
	}
	if err := g.Revoke("billing"); err != nil {
		t.Fatal(err)
	}
	if _, err := g.Token(tok); !errors.Is(err, ErrUnknownToken) {
		t.Fatal("a revoked token still authenticates")
	}
}

func TestParseErrorsNameTheLine(t *testing.T) {
	for in, want := range map[string]string{
		"token a append":                      "line 1",
		"# c\nuser a append":                  "line 2: unknown kind",
		"cert a write":                        "unknown role",
		"cert a append\ncert a read":          "duplicate cert principal",
		"token a append zz c2FsdA== aGFzaA==": "salt",
	} {
		if _, err := Parse([]byte(in)); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Parse(%q) = %v, want an error mentioning %q", in, err, want)
		}
	}
}

func TestAddRefusesDuplicatesAndBadNames(t *testing.T) {
	f := &File{}
	if _, err := f.AddToken("a", []Role{RoleAppend}); err != nil {
		t.Fatal(err)
	}
	if _, err := f.AddToken("a", []Role{RoleRead}); !errors.Is(err, ErrExists) {
		t.Errorf("duplicate token: %v", err)
	}
	if _, err := f.AddToken("has space", []Role{RoleRead}); err == nil {
		t.Error("a name with a space was accepted")
	}
	if err := f.Revoke("nobody"); !errors.Is(err, ErrNotFound) {
		t.Errorf("revoking nobody: %v", err)
	}
}

func FuzzParse(f *testing.F) {
	g := &File{}
	_, _ = g.AddToken("a", []Role{RoleAppend, RoleRead})
	_ = g.AddCert("spiffe://x/y", []Role{RoleAdmin})
	f.Add(g.Marshal())
	f.Add([]byte("cert a append\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := Parse(b)
		if err != nil {
			return
		}
		q, err := Parse(p.Marshal())
		if err != nil {
			t.Fatalf("re-parsing what Marshal wrote: %v", err)
		}
		if !bytes.Equal(q.Marshal(), p.Marshal()) {
			t.Fatal("Marshal is not stable")
		}
	})
}

// A token's id names it in logs; the secret never comes out.
func TestTokenIDIsThePublicPart(t *testing.T) {
	f := &File{}
	tok, err := f.AddToken("svc", []Role{RoleAppend})
	if err != nil {
		t.Fatal(err)
	}
	id, ok := TokenID(tok)
	if !ok || id != f.Entries[0].ID {
		t.Fatalf("TokenID(%q) = %q, %v; want the entry's id %q", tok, id, ok, f.Entries[0].ID)
	}
	for _, bad := range []string{"", "cairn_", "cairn_zz_secret", "cairn_0011223344556677", "bearer_0011223344556677_x", "cairn_00112233_x"} {
		if id, ok := TokenID(bad); ok {
			t.Errorf("TokenID(%q) = %q, want not well-formed", bad, id)
		}
	}
}
