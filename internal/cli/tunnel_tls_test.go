package cli

import (
	"crypto/tls"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"kubinception.dev/kubinception/internal/pki"
)

// TestTunnelTLSReloadsFiles checks that the tunnel's TLS reads its
// certificates and CA bundles at every handshake: after the files are
// replaced (as the kubelet replaces a mounted Secret's), the next
// connection uses the new certificates and trusts the new CA, and a
// client of a CA no longer trusted is refused.
func TestTunnelTLSReloadsFiles(t *testing.T) {
	now := time.Now()
	dir := t.TempDir()
	write := func(name string, data []byte) {
		t.Helper()
		if err := pki.WriteFileAtomic(filepath.Join(dir, name), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	issue := func(ca *pki.KeyPair, spec pki.Spec, cert, key string) {
		t.Helper()
		kp, err := ca.Issue(spec, now)
		if err != nil {
			t.Fatal(err)
		}
		write(cert, kp.CertPEM)
		write(key, kp.KeyPEM)
	}
	oldCA, err := pki.NewCA("old", now)
	if err != nil {
		t.Fatal(err)
	}
	newCA, err := pki.NewCA("new", now)
	if err != nil {
		t.Fatal(err)
	}
	server := pki.Spec{CommonName: "server", IPs: []net.IP{net.ParseIP("127.0.0.1")}, Server: true}
	client := pki.Spec{CommonName: "agent", Client: true}
	issue(oldCA, server, "server.crt", "server.key")
	issue(oldCA, client, "client.crt", "client.key")
	write("ca.crt", oldCA.CertPEM)
	p := func(n string) string { return filepath.Join(dir, n) }
	scfg, err := serverTLS(p("server.crt"), p("server.key"), p("ca.crt"))
	if err != nil {
		t.Fatal(err)
	}
	ccfg, err := clientTLS(p("client.crt"), p("client.key"), p("ca.crt"), "")
	if err != nil {
		t.Fatal(err)
	}
	ln, err := tls.Listen("tcp", "127.0.0.1:0", scfg)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				_ = c.(*tls.Conn).Handshake()
				_, _ = c.Write([]byte("x"))
			}()
		}
	}()
	dial := func() (*tls.ConnectionState, error) {
		c, err := tls.Dial("tcp", ln.Addr().String(), ccfg)
		if err != nil {
			return nil, err
		}
		defer c.Close()
		// The server checks the client's certificate in its handshake;
		// a refusal shows on the first read.
		if _, err := c.Read(make([]byte, 1)); err != nil {
			return nil, err
		}
		st := c.ConnectionState()
		return &st, nil
	}
	st, err := dial()
	if err != nil {
		t.Fatalf("first connection: %v", err)
	}
	if st.PeerCertificates[0].Issuer.CommonName != "old" {
		t.Fatalf("server certificate issued by %s", st.PeerCertificates[0].Issuer.CommonName)
	}

	// Both sides move to the new CA; nothing restarts.
	both := append(append([]byte{}, oldCA.CertPEM...), newCA.CertPEM...)
	write("ca.crt", both)
	issue(newCA, server, "server.crt", "server.key")
	issue(newCA, client, "client.crt", "client.key")
	if st, err = dial(); err != nil {
		t.Fatalf("connection after the files changed: %v", err)
	}
	if st.PeerCertificates[0].Issuer.CommonName != "new" {
		t.Fatalf("server still presents a certificate issued by %s", st.PeerCertificates[0].Issuer.CommonName)
	}

	// The old CA leaves the bundle: a client still holding an old-CA
	// certificate is refused.
	write("ca.crt", newCA.CertPEM)
	issue(oldCA, client, "client.crt", "client.key")
	if _, err := dial(); err == nil {
		t.Fatal("a client certificate of the removed CA was accepted")
	}
	if err := os.Remove(p("ca.crt")); err != nil {
		t.Fatal(err)
	}
	issue(newCA, client, "client.crt", "client.key")
	if _, err := dial(); err == nil {
		t.Fatal("a connection succeeded with the CA bundle gone")
	}
}
