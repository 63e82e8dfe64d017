package tenantcluster

import (
	"context"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	kv1 "kubinception.dev/kubinception/api/v1alpha1"
)

func TestTenancyPolicies(t *testing.T) {
	now := time.Date(2026, 11, 22, 0, 0, 0, 0, time.UTC)
	const user = "tenant-x"
	tests := []struct {
		name string
		in   tenancyInput
		want string
	}{
		{"never checked by this process", tenancyInput{now: now, statusUser: user, desiredUser: user}, "NeverChecked"},
		{"status names another user", tenancyInput{known: true, ensuredAt: now, now: now, statusUser: "", desiredUser: user}, "UserChanged"},
		{"checked long ago", tenancyInput{known: true, ensuredAt: now.Add(-tenancyRecheck), now: now, statusUser: user, desiredUser: user}, "Stale"},
		{"checked recently", tenancyInput{known: true, ensuredAt: now.Add(-time.Minute), now: now, statusUser: user, desiredUser: user}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got, msg := evaluateTenancy(tt.in); got != tt.want {
				t.Fatalf("evaluateTenancy = %q (%s), want %q", got, msg, tt.want)
			}
		})
	}
}

func TestQuotaState(t *testing.T) {
	tests := []struct {
		used, quota int64
		want        string
		text        string
	}{
		{0, 0, kv1.ReasonWithinQuota, "0"},
		{10 << 20, 2 << 30, kv1.ReasonWithinQuota, "10.0Mi of 2.0Gi (0%)"},
		{18 << 20, 20 << 20, kv1.ReasonQuotaNearlyExhausted, "18.0Mi of 20.0Mi (90%)"},
		{20 << 20, 20 << 20, kv1.ReasonQuotaExhausted, "20.0Mi of 20.0Mi (100%)"},
		{21 << 20, 20 << 20, kv1.ReasonQuotaExhausted, "21.0Mi of 20.0Mi (105%)"},
	}
	for _, tt := range tests {
		if got, msg := quotaState(tt.used, tt.quota); got != tt.want {
			t.Errorf("quotaState(%d, %d) = %s (%s), want %s", tt.used, tt.quota, got, msg, tt.want)
		}
		if got := usageText(tt.used, tt.quota); got != tt.text {
			t.Errorf("usageText(%d, %d) = %q, want %q", tt.used, tt.quota, got, tt.text)
		}
	}
}

// TestCSRPolicies runs the serving-certificate approval chain on each
// attack, one policy's reason each, against a tenant whose node w2 holds
// 10.210.2.11.
func TestCSRPolicies(t *testing.T) {
	w1 := corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "w1"}, Status: corev1.NodeStatus{Addresses: []corev1.NodeAddress{
		{Type: corev1.NodeInternalIP, Address: "10.210.1.11"}, {Type: corev1.NodeHostName, Address: "w1"},
		// What a lying kubelet reports about itself.
		{Type: corev1.NodeInternalIP, Address: "10.210.2.11"}, {Type: corev1.NodeInternalIP, Address: "127.0.0.1"},
		{Type: corev1.NodeInternalIP, Address: "169.254.169.254"}, {Type: corev1.NodeInternalIP, Address: "0.0.0.0"},
		{Type: corev1.NodeInternalIP, Address: "10.96.0.1"}, {Type: corev1.NodeInternalIP, Address: "10.96.3.3"},
		{Type: corev1.NodeHostName, Address: "kubernetes.default.svc"}, {Type: corev1.NodeHostName, Address: "api.example.com"},
		{Type: corev1.NodeHostName, Address: "kubernetes.default.svc.cluster.local"}}}}
	w2 := corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "w2"}, Status: corev1.NodeStatus{Addresses: []corev1.NodeAddress{
		{Type: corev1.NodeInternalIP, Address: "10.210.2.11"}, {Type: corev1.NodeHostName, Address: "w2"}}}}
	tenant := newCSRTenant(testCSRTenantInfo.apiServerNames, testCSRTenantInfo.clusterRanges, []corev1.Node{w1, w2})
	getNode := func(_ context.Context, name string) (*corev1.Node, error) {
		if name == "w1" {
			return &w1, nil
		}
		return &w2, nil
	}
	tests := []struct {
		name     string
		ips, dns []string
		want     csrDecision
		reason   string
	}{
		{"its own address and host name", []string{"10.210.1.11"}, []string{"w1"}, csrApprove, "NamesMatchNode"},
		{"another node's IP", []string{"10.210.2.11"}, nil, csrDeny, "AddressOfAnotherNode"},
		{"another node's IP beside its own", []string{"10.210.1.11", "10.210.2.11"}, nil, csrDeny, "AddressOfAnotherNode"},
		{"kubernetes.default.svc", nil, []string{"kubernetes.default.svc"}, csrDeny, "APIServerName"},
		{"kubernetes.default.svc with the cluster domain", nil, []string{"kubernetes.default.svc.cluster.local"}, csrDeny, "APIServerName"},
		{"the endpoint host", nil, []string{"api.example.com"}, csrDeny, "APIServerName"},
		{"the kubernetes Service IP", []string{"10.96.0.1"}, nil, csrDeny, "APIServerName"},
		{"the admin node address the API server advertises", []string{"10.199.0.1"}, nil, csrDeny, "APIServerName"},
		{"127.0.0.1", []string{"127.0.0.1"}, nil, csrDeny, "AddressNotAllowed"},
		{"a link-local address", []string{"169.254.169.254"}, nil, csrDeny, "AddressNotAllowed"},
		{"the unspecified address", []string{"0.0.0.0"}, nil, csrDeny, "AddressNotAllowed"},
		{"an address of the Service range", []string{"10.96.3.3"}, nil, csrDeny, "AddressInClusterRange"},
		{"a name the node does not report", nil, []string{"w9"}, csrDeny, "NameNotOfNode"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			csr := servingCSR(t, "x", "system:node:w1", "system:node:w1", tt.ips, tt.dns)
			d, reason, msg, err := evaluateCSR(context.Background(), csr, tenant, getNode)
			if err != nil || d != tt.want || reason != tt.reason {
				t.Fatalf("evaluateCSR = %v, %q (%s), %v; want %v, %q", d, reason, msg, err, tt.want, tt.reason)
			}
		})
	}
}
