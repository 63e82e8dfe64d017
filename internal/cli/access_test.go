package cli

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	kv1 "kubinception.dev/kubinception/api/v1alpha1"
	cp "kubinception.dev/kubinception/internal/controlplane"
	"kubinception.dev/kubinception/internal/kubeconfig"
	"kubinception.dev/kubinception/internal/pki"
	"kubinception.dev/kubinception/internal/scheme"
)

// TestKubeconfigRefusesBadTTL checks that a lifetime out of bounds is
// refused, naming the flag, before the command reaches for an admin
// cluster.
func TestKubeconfigRefusesBadTTL(t *testing.T) {
	for _, ttl := range []string{"0", "-1h", "30s", "169h", "8760h"} {
		cmd := newKubeconfigCommand()
		var out bytes.Buffer
		cmd.SetOut(&out)
		cmd.SetErr(&out)
		cmd.SetArgs([]string{"demo", "--ttl", ttl, "--kubeconfig", "/nonexistent/admin.conf"})
		err := cmd.Execute()
		if err == nil || !strings.HasPrefix(err.Error(), "--ttl ") || strings.Contains(err.Error(), "admin kubeconfig") {
			t.Errorf("kubeconfig --ttl %s: err = %v, want a refusal naming --ttl before the admin cluster is read\n%s", ttl, err, out.String())
		}
	}
	cmd := newKubeconfigCommand()
	cmd.SetOut(&bytes.Buffer{})
	cmd.SetErr(&bytes.Buffer{})
	cmd.SetArgs([]string{"demo", "--ttl", "8d"})
	if err := cmd.Execute(); err == nil || !strings.Contains(err.Error(), `"--ttl"`) {
		t.Errorf("kubeconfig --ttl 8d: err = %v, want cobra's refusal naming --ttl", err)
	}
}

// tenantWithCA is a Ready-looking tenant and its PKI Secret in a fake
// admin cluster.
func tenantWithCA(t *testing.T, annotations map[string]string, paused bool) (client.Client, *pki.KeyPair) {
	t.Helper()
	ca, err := pki.NewCA("demo-ca", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	tc := &kv1.TenantCluster{
		ObjectMeta: metav1.ObjectMeta{Name: "demo", Namespace: "default", Annotations: annotations},
		Spec:       kv1.TenantClusterSpec{Paused: paused},
		Status:     kv1.TenantClusterStatus{Endpoint: "https://10.199.0.1:30443"},
	}
	secret := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: cp.PKISecretName("demo"), Namespace: "default"},
		Data: map[string][]byte{cp.FileCA: ca.CertPEM, cp.FileCAKey: ca.KeyPEM}}
	c := fake.NewClientBuilder().WithScheme(scheme.New()).WithObjects(tc, secret).Build()
	return c, ca
}

var demo = types.NamespacedName{Namespace: "default", Name: "demo"}

func TestIssueKubeconfig(t *testing.T) {
	ctx := context.Background()
	now := time.Now()
	c, _ := tenantWithCA(t, map[string]string{kubeconfig.AnnotationCustomerGeneration: "3", kubeconfig.AnnotationCustomerAuthorized: "3"}, false)
	got, err := kubeconfig.IssueForTenant(ctx, c, demo, 8*time.Hour, now, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if g := got.Cert.Subject.Organization; len(g) != 1 || g[0] != "kubinception:customer-admins:g3" {
		t.Errorf("groups = %v, want the current generation's group only", g)
	}
	if d := got.Cert.NotAfter.Sub(now); d < 8*time.Hour-time.Second || d > 8*time.Hour+time.Second {
		t.Errorf("lifetime %s, want 8h", d)
	}

	// The operator has not authorized the current generation yet: no
	// kubeconfig that would be refused.
	c, _ = tenantWithCA(t, map[string]string{kubeconfig.AnnotationCustomerGeneration: "4", kubeconfig.AnnotationCustomerAuthorized: "3"}, false)
	if _, err := kubeconfig.IssueForTenant(ctx, c, demo, time.Hour, now, time.Second); err == nil || !strings.Contains(err.Error(), "not authorized customer generation 4") {
		t.Errorf("issue before the operator authorized the generation: err = %v", err)
	}
	// A tenant the operator never got to.
	c, _ = tenantWithCA(t, nil, false)
	if _, err := kubeconfig.IssueForTenant(ctx, c, demo, time.Hour, now, time.Second); err == nil || !strings.Contains(err.Error(), "no customer access yet") {
		t.Errorf("issue for a tenant without customer access: err = %v", err)
	}
	if _, err := kubeconfig.IssueForTenant(ctx, c, types.NamespacedName{Namespace: "default", Name: "nope"}, time.Hour, now, time.Second); err == nil || !strings.Contains(err.Error(), "no tenant cluster nope") {
		t.Errorf("issue for a missing tenant: err = %v", err)
	}
}

func TestRevokeKubeconfigs(t *testing.T) {
	ctx := context.Background()
	c, _ := tenantWithCA(t, map[string]string{kubeconfig.AnnotationCustomerAuthorized: "1"}, false)
	// The operator's part: authorize whatever generation is asked for.
	done := make(chan struct{})
	go func() {
		defer close(done)
		for range 200 {
			tc := &kv1.TenantCluster{}
			if err := c.Get(ctx, demo, tc); err == nil && tc.Annotations[kubeconfig.AnnotationCustomerGeneration] == "2" {
				tc.Annotations[kubeconfig.AnnotationCustomerAuthorized] = "2"
				if err := c.Update(ctx, tc); err == nil {
					return
				}
			}
			time.Sleep(10 * time.Millisecond)
		}
	}()
	var out bytes.Buffer
	if err := revokeKubeconfigs(ctx, c, demo, 10*time.Second, &out); err != nil {
		t.Fatalf("revoke: %v\n%s", err, out.String())
	}
	<-done
	if !strings.Contains(out.String(), "generations 1 to 1") {
		t.Errorf("revoke said:\n%s", out.String())
	}

	// Without an operator the command says the old kubeconfigs still work.
	out.Reset()
	err := revokeKubeconfigs(ctx, c, demo, time.Second, &out)
	if err == nil || !strings.Contains(err.Error(), "earlier kubeconfigs still work") {
		t.Errorf("revoke without an operator: err = %v", err)
	}
	tc := &kv1.TenantCluster{}
	if err := c.Get(ctx, demo, tc); err != nil || tc.Annotations[kubeconfig.AnnotationCustomerGeneration] != "3" {
		t.Errorf("generation after two revocations: %v, %v", tc.Annotations, err)
	}

	// A paused tenant: refused before anything changes.
	c, _ = tenantWithCA(t, nil, true)
	if err := revokeKubeconfigs(ctx, c, demo, time.Second, &out); err == nil || !strings.Contains(err.Error(), "paused") {
		t.Errorf("revoke on a paused tenant: err = %v", err)
	}
	if err := c.Get(ctx, demo, tc); err != nil || tc.Annotations[kubeconfig.AnnotationCustomerGeneration] != "" {
		t.Errorf("a paused tenant's generation changed: %v, %v", tc.Annotations, err)
	}
}
