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
	"fmt"
	"net"
	"testing"

	certv1 "k8s.io/api/certificates/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
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
	n, err := approveServingCSRs(context.Background(), cs, testCSRTenantInfo)
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
			d, reason, _, err := evaluateCSR(context.Background(), csr, csrTenant{}, func(context.Context, string) (*corev1.Node, error) { return nil, tt.err })
			if d != tt.want || (err != nil) != tt.wantErr || reason != tt.wantWhat {
				t.Fatalf("evaluateCSR = %v, %q, %v; want %v, %q, error=%v", d, reason, err, tt.want, tt.wantWhat, tt.wantErr)
			}
		})
	}
}

// testCSRTenantInfo is a tenant with the default ranges and an endpoint
// on the admin node.
var testCSRTenantInfo = csrTenantInfo{
	apiServerNames: []string{"kubernetes", "kubernetes.default", "kubernetes.default.svc", "kubernetes.default.svc.cluster.local", "10.96.0.1", "10.199.0.1", "api.example.com"},
	clusterRanges:  []string{"10.96.0.0/16", "10.244.0.0/16"},
}

// TestServingCSRAttacks runs each attack on the approver through
// approveServingCSRs, with the Nodes in the tenant's API: every one is
// denied with its reason, and the honest request beside them approved.
func TestServingCSRAttacks(t *testing.T) {
	nodes := []*corev1.Node{
		{ObjectMeta: metav1.ObjectMeta{Name: "w1"}, Status: corev1.NodeStatus{Addresses: []corev1.NodeAddress{
			{Type: corev1.NodeInternalIP, Address: "10.210.1.11"}, {Type: corev1.NodeHostName, Address: "w1"}}}},
		{ObjectMeta: metav1.ObjectMeta{Name: "w2"}, Status: corev1.NodeStatus{Addresses: []corev1.NodeAddress{
			{Type: corev1.NodeInternalIP, Address: "10.210.2.11"}, {Type: corev1.NodeHostName, Address: "w2"}}}},
		// w3 claims w2's address as its own, and the API server's names.
		{ObjectMeta: metav1.ObjectMeta{Name: "w3"}, Status: corev1.NodeStatus{Addresses: []corev1.NodeAddress{
			{Type: corev1.NodeInternalIP, Address: "10.210.2.11"}, {Type: corev1.NodeInternalIP, Address: "127.0.0.1"},
			{Type: corev1.NodeInternalIP, Address: "10.244.0.5"},
			{Type: corev1.NodeHostName, Address: "kubernetes.default.svc"}, {Type: corev1.NodeHostName, Address: "api.example.com"}}}},
	}
	tests := []struct {
		name, user string
		ips, dns   []string
		want       certv1.RequestConditionType
		reason     string
	}{
		{"honest node", "system:node:w1", []string{"10.210.1.11"}, []string{"w1"}, certv1.CertificateApproved, "KubinceptionNamesMatchNode"},
		{"another node's IP, reported by the attacker too", "system:node:w3", []string{"10.210.2.11"}, nil, certv1.CertificateDenied, "KubinceptionAddressOfAnotherNode"},
		{"another node's IP, not reported", "system:node:w1", []string{"10.210.2.11"}, nil, certv1.CertificateDenied, "KubinceptionNameNotOfNode"},
		{"kubernetes.default.svc", "system:node:w3", nil, []string{"kubernetes.default.svc"}, certv1.CertificateDenied, "KubinceptionAPIServerName"},
		{"kubernetes.default.svc in capitals with a trailing dot", "system:node:w3", nil, []string{"Kubernetes.Default.SVC."}, certv1.CertificateDenied, "KubinceptionAPIServerName"},
		{"the endpoint host", "system:node:w3", nil, []string{"api.example.com"}, certv1.CertificateDenied, "KubinceptionAPIServerName"},
		{"the kubernetes Service IP", "system:node:w1", []string{"10.96.0.1"}, nil, certv1.CertificateDenied, "KubinceptionAPIServerName"},
		{"loopback", "system:node:w3", []string{"127.0.0.1"}, nil, certv1.CertificateDenied, "KubinceptionAddressNotAllowed"},
		{"a pod address", "system:node:w3", []string{"10.244.0.5"}, nil, certv1.CertificateDenied, "KubinceptionAddressInClusterRange"},
	}
	objs := []runtime.Object{}
	for _, n := range nodes {
		objs = append(objs, n)
	}
	for i, tt := range tests {
		objs = append(objs, servingCSR(t, fmt.Sprintf("csr-%d", i), tt.user, tt.user, tt.ips, tt.dns))
	}
	cs := fake.NewSimpleClientset(objs...)
	if _, err := approveServingCSRs(context.Background(), cs, testCSRTenantInfo); err != nil {
		t.Fatal(err)
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			csr, err := cs.CertificatesV1().CertificateSigningRequests().Get(context.Background(), fmt.Sprintf("csr-%d", i), metav1.GetOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if len(csr.Status.Conditions) != 1 || csr.Status.Conditions[0].Type != tt.want || csr.Status.Conditions[0].Reason != tt.reason {
				t.Fatalf("conditions %+v, want %s with reason %s", csr.Status.Conditions, tt.want, tt.reason)
			}
		})
	}
}
