package log

import (
	"crypto/tls"
	"fmt"

	"github.com/cairnlog/cairn/internal/certpool"
)

// serverTLS builds the listeners' TLS configuration: the server certificate,
// and, with a client CA, verification of any client certificate presented
// (an invalid, expired or foreign certificate fails the handshake).
func serverTLS(cfg Config) (*tls.Config, error) {
	cert, err := tls.LoadX509KeyPair(cfg.TLSCert, cfg.TLSKey)
	if err != nil {
		return nil, fmt.Errorf("--tls-cert/--tls-key: %w", err)
	}
	t := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	if cfg.TLSClientCA != "" {
		pool, err := certpool.Load(cfg.TLSClientCA)
		if err != nil {
			return nil, fmt.Errorf("--tls-client-ca: %w", err)
		}
		t.ClientCAs = pool
		t.ClientAuth = tls.VerifyClientCertIfGiven
	}
	return t, nil
}
