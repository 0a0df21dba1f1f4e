// Package certpool loads PEM bundles of CA certificates: the one place every
// Cairn client and server turns a --ca / --tls-client-ca file into a pool.
package certpool

import (
	"crypto/x509"
	"fmt"
	"os"
)

// Load returns a pool holding exactly the certificates of the PEM file at
// path. A file without a single certificate is an error, never an empty pool.
func Load(path string) (*x509.CertPool, error) {
	return load(path, x509.NewCertPool())
}

// LoadWithSystem returns the system roots plus the certificates of the PEM
// file at path (the system roots are skipped where the platform has none).
func LoadWithSystem(path string) (*x509.CertPool, error) {
	pool, err := x509.SystemCertPool()
	if err != nil {
		pool = x509.NewCertPool()
	}
	return load(path, pool)
}

func load(path string, pool *x509.CertPool) (*x509.CertPool, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading CA bundle: %w", err)
	}
	if !pool.AppendCertsFromPEM(b) {
		return nil, fmt.Errorf("%s holds no PEM certificate", path)
	}
	return pool, nil
}
