package gateway_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"kubinception.dev/kubinception/internal/datastore"
	"kubinception.dev/kubinception/internal/datastore/datastoretest"
	"kubinception.dev/kubinception/internal/pki"
)

// gatewayTarget is the datastore as tenants reach it through the gateway.
type gatewayTarget struct {
	e *testEnv
	g *runningGateway
}

func (g *gatewayTarget) Root() *clientv3.Client { return g.e.Root }
func (g *gatewayTarget) Guarded() bool          { return true }
func (g *gatewayTarget) Tenant(t *testing.T, tn datastore.Tenancy) (*clientv3.Client, string) {
	return g.e.tenantClient(t, g.g, tn.ID), ""
}

// TestIsolation runs the isolation scenario (the one run against etcd's
// own authentication in internal/datastore) through the gateway.
func TestIsolation(t *testing.T) {
	e := newTestEnv(t)
	g := e.startGateway(t, nil)
	datastoretest.RunIsolation(t, &gatewayTarget{e: e, g: g})
}

// TestForeignCertificatesRefused checks that only the gateway CA's
// certificates naming a tenant open the gateway: a certificate from the
// datastore's CA (which tenants held before the gateway) fails the TLS
// handshake, and one from the gateway CA that names no tenant is refused.
func TestForeignCertificatesRefused(t *testing.T) {
	e := newTestEnv(t)
	g := e.startGateway(t, nil)
	get := func(cli *clientv3.Client) error {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		_, err := cli.Get(ctx, "/registry/x")
		return err
	}

	foreign := e.Etcd.ClientCert(t, datastoretest.TenantA.User)
	if err := handshake(g.Addr(), e.TenantCA, foreign); err == nil {
		t.Fatal("the TLS handshake accepted a certificate from the datastore's CA")
	} else {
		t.Logf("a datastore CA certificate is refused at TLS: %v", err)
	}
	if err := get(e.client(t, g.Addr(), foreign)); err == nil {
		t.Fatal("a certificate from the datastore's CA was accepted")
	}

	other, err := pki.NewCA("another-ca", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	kp, err := other.Issue(pki.Spec{CommonName: datastoretest.TenantA.User, Client: true}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if err := get(e.client(t, g.Addr(), kp)); err == nil {
		t.Fatal("a certificate from an unknown CA was accepted")
	}

	noTenant, err := e.TenantCA.Issue(pki.Spec{CommonName: "root", Client: true}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if err := get(e.client(t, g.Addr(), noTenant)); !datastoretest.IsDenied(err) {
		t.Fatalf("a gateway certificate naming no tenant: want permission denied, got %v", err)
	}
}

// handshake completes a TLS connection to addr with kp and reads from it,
// returning the error with which the server refused the certificate.
func handshake(addr string, ca, kp *pki.KeyPair) error {
	cert, err := tls.X509KeyPair(kp.CertPEM, kp.KeyPEM)
	if err != nil {
		return err
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca.Cert)
	conn, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{cert}, NextProtos: []string{"h2"}, MinVersion: tls.VersionTLS12})
	if err != nil {
		return err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
	// With TLS 1.3 the server judges the client's certificate after the
	// client's side of the handshake: its verdict arrives on the first read.
	_, err = conn.Read(make([]byte, 1))
	if err != nil && strings.Contains(err.Error(), "timeout") {
		return nil
	}
	return err
}
