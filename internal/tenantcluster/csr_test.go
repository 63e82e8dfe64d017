package tenantcluster

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"net"
	"testing"

	certv1 "k8s.io/api/certificates/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"
)

func servingCSR(t *testing.T, name, user string, cn string, ips []string, dns []string) *certv1.CertificateSigningRequest {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.CertificateRequest{Subject: pkix.Name{CommonName: cn, Organization: []string{"system:nodes"}}, DNSNames: dns}
	for _, ip := range ips {
		tmpl.IPAddresses = append(tmpl.IPAddresses, net.ParseIP(ip))
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, tmpl, key)
	if err != nil {
		t.Fatal(err)
	}
	return &certv1.CertificateSigningRequest{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: certv1.CertificateSigningRequestSpec{
			Request:    pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}),
			SignerName: certv1.KubeletServingSignerName, Username: user, Groups: []string{"system:nodes", "system:authenticated"},
			Usages: []certv1.KeyUsage{certv1.UsageDigitalSignature, certv1.UsageServerAuth},
		},
	}
}

func TestApproveServingCSRs(t *testing.T) {
	node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "w1"}, Status: corev1.NodeStatus{Addresses: []corev1.NodeAddress{
		{Type: corev1.NodeInternalIP, Address: "10.210.1.11"}, {Type: corev1.NodeHostName, Address: "w1"}}}}
	good := servingCSR(t, "good", "system:node:w1", "system:node:w1", []string{"10.210.1.11"}, []string{"w1"})
	foreignIP := servingCSR(t, "foreign-ip", "system:node:w1", "system:node:w1", []string{"10.0.0.1"}, nil)
	otherNode := servingCSR(t, "other-node", "system:node:w1", "system:node:w2", []string{"10.210.1.11"}, nil)
	notNode := servingCSR(t, "not-node", "alice", "system:node:w1", []string{"10.210.1.11"}, nil)
	cs := fake.NewSimpleClientset(node, good, foreignIP, otherNode, notNode)
	n, err := approveServingCSRs(context.Background(), cs)
	if err != nil {
		t.Fatal(err)
	}
	if n != 1 {
		t.Fatalf("approved %d requests, want only the node's own", n)
	}
	for name, want := range map[string]certv1.RequestConditionType{"good": certv1.CertificateApproved, "foreign-ip": certv1.CertificateDenied,
		"other-node": certv1.CertificateDenied, "not-node": certv1.CertificateDenied} {
		csr, err := cs.CertificatesV1().CertificateSigningRequests().Get(context.Background(), name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if len(csr.Status.Conditions) != 1 || csr.Status.Conditions[0].Type != want {
			t.Errorf("%s: conditions %+v, want %s", name, csr.Status.Conditions, want)
		}
	}
}

func TestCSRNodeLookup(t *testing.T) {
	csr := servingCSR(t, "good", "system:node:w1", "system:node:w1", []string{"10.210.1.11"}, nil)
	tests := []struct {
		name     string
		err      error
		want     csrDecision
		wantErr  bool
		wantWhat string
	}{
		{name: "lookup fails: an error to retry, never a deny", err: errors.New("connection refused"), want: csrWait, wantErr: true},
		{name: "node not registered yet: pending", err: apierrors.NewNotFound(corev1.Resource("nodes"), "w1"), want: csrWait, wantWhat: "NodeNotRegistered"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d, reason, _, err := evaluateCSR(context.Background(), csr, func(context.Context, string) (*corev1.Node, error) { return nil, tt.err })
			if d != tt.want || (err != nil) != tt.wantErr || reason != tt.wantWhat {
				t.Fatalf("evaluateCSR = %v, %q, %v; want %v, %q, error=%v", d, reason, err, tt.want, tt.wantWhat, tt.wantErr)
			}
		})
	}
}
