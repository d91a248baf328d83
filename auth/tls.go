package auth

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"sync/atomic"
)

// TLSFiles name a server's certificate and key (PEM), and, for mutual
// TLS, the CA bundle client certificates must chain to.
type TLSFiles struct {
	Cert, Key, ClientCA string
}

// TLS serves the certificate read last: Reload swaps it (and the client
// CA) for new handshakes, while connections already open go on.
type TLS struct {
	files TLSFiles
	cert  atomic.Pointer[tls.Certificate]
	cas   atomic.Pointer[x509.CertPool]
}

// LoadTLS reads the files; both a certificate and its key are needed.
func LoadTLS(f TLSFiles) (*TLS, error) {
	if f.Cert == "" || f.Key == "" {
		return nil, errors.New("TLS needs both --tls-cert and --tls-key")
	}
	t := &TLS{files: f}
	if err := t.Reload(); err != nil {
		return nil, err
	}
	return t, nil
}

// Files are the files Reload reads.
func (t *TLS) Files() []string {
	fs := []string{t.files.Cert, t.files.Key}
	if t.files.ClientCA != "" {
		fs = append(fs, t.files.ClientCA)
	}
	return fs
}

// ClientCertificates reports whether clients must present a certificate.
func (t *TLS) ClientCertificates() bool { return t.files.ClientCA != "" }

// Reload reads the certificate, key and client CA again; on any error the
// ones in force stay.
func (t *TLS) Reload() error {
	cert, err := tls.LoadX509KeyPair(t.files.Cert, t.files.Key)
	if err != nil {
		return fmt.Errorf("TLS certificate %s with key %s: %w", t.files.Cert, t.files.Key, err)
	}
	var pool *x509.CertPool
	if t.files.ClientCA != "" {
		pem, err := os.ReadFile(t.files.ClientCA)
		if err != nil {
			return fmt.Errorf("--tls-client-ca: %w", err)
		}
		pool = x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return fmt.Errorf("--tls-client-ca %s holds no PEM certificate", t.files.ClientCA)
		}
	}
	t.cert.Store(&cert)
	if pool != nil {
		t.cas.Store(pool)
	}
	return nil
}

// Config is the server's TLS configuration: TLS 1.2 at least, Go's
// default cipher suites, the certificate in force at each handshake, and,
// with a client CA, client certificates verified against it: a
// certificate it did not sign fails the handshake. One without any
// certificate gets through the handshake so the probes (the kubelet has
// none) can be answered; the policy refuses it everything else (401).
func (t *TLS) Config() *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
			c := &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{*t.cert.Load()}}
			if pool := t.cas.Load(); pool != nil {
				c.ClientCAs, c.ClientAuth = pool, tls.VerifyClientCertIfGiven
			}
			return c, nil
		},
	}
}
