package pki

import (
	"crypto/x509"
	"net"
	"testing"
	"time"
)

func TestIssueAndReusePolicies(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	ca, err := NewCA("test-ca", now)
	if err != nil {
		t.Fatal(err)
	}
	spec := Spec{CommonName: "kube-apiserver", DNSNames: []string{"kubernetes"}, IPs: []net.IP{net.ParseIP("10.0.0.1")}, Server: true}
	kp, err := ca.Issue(spec, now)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca.Cert)
	if _, err := kp.Cert.Verify(x509.VerifyOptions{Roots: pool, DNSName: "kubernetes", CurrentTime: now, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err != nil {
		t.Fatalf("issued certificate does not verify: %v", err)
	}
	other, err := NewCA("other-ca", now)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name       string
		ca         *KeyPair
		spec       Spec
		now        time.Time
		wantReason string
	}{
		{name: "same", ca: ca, spec: spec, now: now},
		{name: "other CA", ca: other, spec: spec, now: now, wantReason: "IssuerChanged"},
		{name: "new CN", ca: ca, spec: Spec{CommonName: "x", DNSNames: spec.DNSNames, IPs: spec.IPs, Server: true}, now: now, wantReason: "SubjectChanged"},
		{name: "new SAN", ca: ca, spec: Spec{CommonName: "kube-apiserver", DNSNames: []string{"kubernetes", "x"}, IPs: spec.IPs, Server: true}, now: now, wantReason: "NamesChanged"},
		{name: "new IP", ca: ca, spec: Spec{CommonName: "kube-apiserver", DNSNames: spec.DNSNames, Server: true}, now: now, wantReason: "NamesChanged"},
		{name: "client usage", ca: ca, spec: Spec{CommonName: "kube-apiserver", DNSNames: spec.DNSNames, IPs: spec.IPs, Server: true, Client: true}, now: now, wantReason: "UsagesChanged"},
		{name: "near expiry", ca: ca, spec: spec, now: now.Add(CertValidity * 3 / 4), wantReason: "Expiring"},
		// The order matters: a certificate of another CA is reissued for
		// that reason even when it also expires.
		{name: "other CA and expiring", ca: other, spec: spec, now: now.Add(CertValidity * 3 / 4), wantReason: "IssuerChanged"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if reason, message := tt.ca.Reissue(kp, tt.spec, tt.now); reason != tt.wantReason {
				t.Fatalf("Reissue = %q (%s), want %q", reason, message, tt.wantReason)
			}
		})
	}
}

func TestDirLeafIsStable(t *testing.T) {
	d := Dir{Path: t.TempDir()}
	ca, err := d.CA("ca", "test")
	if err != nil {
		t.Fatal(err)
	}
	spec := Spec{CommonName: "admin", Organization: []string{"system:masters"}, Client: true}
	first, err := d.Leaf("admin", ca, spec)
	if err != nil {
		t.Fatal(err)
	}
	again, err := d.Leaf("admin", ca, spec)
	if err != nil {
		t.Fatal(err)
	}
	if !first.Equal(again) {
		t.Fatal("an unchanged spec reissued the certificate")
	}
	spec.Organization = nil
	changed, err := d.Leaf("admin", ca, spec)
	if err != nil {
		t.Fatal(err)
	}
	if first.Equal(changed) {
		t.Fatal("a changed spec kept the old certificate")
	}
	caAgain, err := d.CA("ca", "test")
	if err != nil {
		t.Fatal(err)
	}
	if !ca.Equal(caAgain) {
		t.Fatal("loading the CA again created a new one")
	}
}

func TestParseKeyPairRejectsMismatch(t *testing.T) {
	now := time.Now()
	a, _ := NewCA("a", now)
	b, _ := NewCA("b", now)
	if _, err := ParseKeyPair(a.CertPEM, b.KeyPEM); err == nil {
		t.Fatal("a certificate with another key's private key was accepted")
	}
	if _, err := ParseKeyPair([]byte("junk"), a.KeyPEM); err == nil {
		t.Fatal("junk was accepted as a certificate")
	}
}
