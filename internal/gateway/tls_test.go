package gateway

import (
	"crypto/x509"
	"os"
	"path/filepath"
	"testing"
	"time"

	"kubinception.dev/kubinception/internal/pki"
)

// TestTLSFilesReload checks that a rotated serving certificate and tenant
// CA (a Secret mounted again) are served without a restart, and that a
// file that fails to load keeps the previous ones.
func TestTLSFilesReload(t *testing.T) {
	dir := t.TempDir()
	d := pki.Dir{Path: dir}
	issue := func(name string) *pki.KeyPair {
		ca, err := pki.NewCA(name, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		leaf, err := ca.Issue(pki.Spec{CommonName: "gateway", Server: true}, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		if err := d.Save("ca", ca); err != nil {
			t.Fatal(err)
		}
		if err := d.Save("serving", leaf); err != nil {
			t.Fatal(err)
		}
		return leaf
	}
	first := issue("first-ca")
	f := &tlsFiles{certFile: filepath.Join(dir, "serving.crt"), keyFile: filepath.Join(dir, "serving.key"), caFile: filepath.Join(dir, "ca.crt")}
	if err := f.load(); err != nil {
		t.Fatal(err)
	}
	serving := func() *x509.Certificate {
		cert, _ := f.current()
		c, err := x509.ParseCertificate(cert.Certificate[0])
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	if !serving().Equal(first.Cert) {
		t.Fatal("not serving the first certificate")
	}

	second := issue("second-ca")
	// The files are looked at again only after a while.
	f.checkedAt = time.Now().Add(-2 * recheck)
	if !serving().Equal(second.Cert) {
		t.Fatal("the rotated certificate is not served")
	}
	if _, pool := f.current(); !pool.Equal(mustPool(t, filepath.Join(dir, "ca.crt"))) {
		t.Fatal("the rotated tenant CA is not trusted")
	}

	if err := os.WriteFile(filepath.Join(dir, "serving.crt"), []byte("garbage"), 0o600); err != nil {
		t.Fatal(err)
	}
	f.checkedAt = time.Now().Add(-2 * recheck)
	if !serving().Equal(second.Cert) {
		t.Fatal("a broken certificate file replaced the working one")
	}
}

func mustPool(t *testing.T, path string) *x509.CertPool {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	p := x509.NewCertPool()
	p.AppendCertsFromPEM(b)
	return p
}
