package log

import (
	"crypto/tls"
	"os"

	"github.com/cairnlog/cairn/internal/certpool"
	"github.com/cairnlog/cairn/internal/fielderr"
	"github.com/cairnlog/cairn/internal/keyfile"
)

// serverTLS builds the listeners' TLS configuration: the server certificate
// (its key file readable by this user only), and, with a client CA,
// verification of any client certificate presented (an invalid, expired or
// foreign certificate fails the handshake).
func serverTLS(cfg Config) (*tls.Config, error) {
	certPEM, err := os.ReadFile(cfg.TLSCert)
	if err != nil {
		return nil, fielderr.New("Config.TLSCert", err)
	}
	// The private key must be this user's alone (internal/keyfile).
	keyPEM, err := keyfile.Read(cfg.TLSKey)
	if err != nil {
		return nil, fielderr.New("Config.TLSKey", err)
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, fielderr.Errorf("Config.TLSCert", "with Config.TLSKey: %w", err)
	}
	t := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	if cfg.TLSClientCA != "" {
		pool, err := certpool.Load(cfg.TLSClientCA)
		if err != nil {
			return nil, fielderr.New("Config.TLSClientCA", err)
		}
		t.ClientCAs = pool
		t.ClientAuth = tls.VerifyClientCertIfGiven
	}
	return t, nil
}
