package certpool

import (
	"crypto/x509"
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cairnlog/cairn/internal/devpki"
)

func TestLoadRefusesAFileWithoutCertificates(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(path, []byte("not a certificate\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for name, load := range map[string]func(string) error{
		"Load":           func(p string) error { _, err := Load(p); return err },
		"LoadWithSystem": func(p string) error { _, err := LoadWithSystem(p); return err },
	} {
		if err := load(path); err == nil || !strings.Contains(err.Error(), "holds no PEM certificate") {
			t.Errorf("%s: %v, want a refusal", name, err)
		}
		if err := load(path + ".missing"); err == nil {
			t.Errorf("%s of a missing file: no error", name)
		}
	}
}

func TestLoadTrustsTheBundlesCA(t *testing.T) {
	dir := t.TempDir()
	ca, err := devpki.NewCA("certpool test CA")
	if err != nil {
		t.Fatal(err)
	}
	certPath := filepath.Join(dir, "ca.pem")
	if err := ca.WriteCA(certPath, filepath.Join(dir, "ca.key")); err != nil {
		t.Fatal(err)
	}
	leaf, err := ca.Loopback("server")
	if err != nil {
		t.Fatal(err)
	}
	pool, err := Load(certPath)
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(leaf.CertPEM)
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cert.Verify(x509.VerifyOptions{Roots: pool}); err != nil {
		t.Errorf("a certificate the CA issued does not verify with the loaded pool: %v", err)
	}
}
