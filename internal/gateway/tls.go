package gateway

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
	"sync"
	"time"
)

// tlsFiles serves the gateway's certificate and trusts the tenant CA, both
// read from files and read again when the files change (a mounted Secret
// that was rotated), looked at no more than every recheck.
type tlsFiles struct {
	certFile, keyFile, caFile string

	mu        sync.Mutex
	stamp     string
	checkedAt time.Time
	cert      tls.Certificate
	pool      *x509.CertPool
}

const recheck = 10 * time.Second

func (f *tlsFiles) fileStamp() string {
	var s string
	for _, p := range []string{f.certFile, f.keyFile, f.caFile} {
		if fi, err := os.Stat(p); err == nil {
			s += fmt.Sprintf("%s:%d:%d;", p, fi.Size(), fi.ModTime().UnixNano())
		}
	}
	return s
}

// load reads the files.
func (f *tlsFiles) load() error {
	cert, err := tls.LoadX509KeyPair(f.certFile, f.keyFile)
	if err != nil {
		return fmt.Errorf("gateway serving certificate: %w", err)
	}
	caPEM, err := os.ReadFile(f.caFile)
	if err != nil {
		return fmt.Errorf("tenant CA: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return fmt.Errorf("tenant CA %s holds no PEM certificate", f.caFile)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.cert, f.pool, f.stamp, f.checkedAt = cert, pool, f.fileStamp(), time.Now()
	return nil
}

// current returns the certificate and pool, reloading changed files; a
// file that fails to load keeps the previous ones.
func (f *tlsFiles) current() (tls.Certificate, *x509.CertPool) {
	f.mu.Lock()
	stale := time.Since(f.checkedAt) > recheck && f.fileStamp() != f.stamp
	if time.Since(f.checkedAt) > recheck {
		f.checkedAt = time.Now()
	}
	f.mu.Unlock()
	if stale {
		_ = f.load()
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.cert, f.pool
}

// config requires a client certificate from the tenant CA on every
// connection and offers the application protocols protos (ALPN).
func (f *tlsFiles) config(protos ...string) *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
			cert, pool := f.current()
			return &tls.Config{
				MinVersion:   tls.VersionTLS12,
				Certificates: []tls.Certificate{cert},
				ClientAuth:   tls.RequireAndVerifyClientCert,
				ClientCAs:    pool,
				NextProtos:   protos,
			}, nil
		},
	}
}
