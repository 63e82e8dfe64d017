package tenantcluster_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/client"

	kv1 "kubinception.dev/kubinception/api/v1alpha1"
	cp "kubinception.dev/kubinception/internal/controlplane"
	"kubinception.dev/kubinception/internal/kubeconfig"
	"kubinception.dev/kubinception/internal/pki"
	"kubinception.dev/kubinception/internal/tenantbootstrap"
)

// TestCustomerAccess runs a revocation against the tenant's real API
// server: customer credentials (the stored kubeconfig and one issued as
// the CLI issues them) are cluster-admin through a binding, not
// system:masters; raising the generation leaves them authenticated but
// refused, takes earlier generations out of bindings the customer made,
// and new credentials work at once; the operator keeps its own access.
func TestCustomerAccess(t *testing.T) {
	t.Parallel()
	e := start(t)
	ctx := context.Background()
	tc := e.tenant(t, "access", nil)
	got, tenant := e.ready(t, tc)
	if a := got.Annotations[kubeconfig.AnnotationCustomerAuthorized]; a != "1" {
		t.Fatalf("authorized generation %q after the first Ready reconcile, want 1", a)
	}
	host := tenantHost(t, e, tc)

	// The stored kubeconfig and an issued one: generation 1, not
	// system:masters, cluster-admin.
	stored := e.storedKubeconfig(t, tc)
	if groups := stored.Cert.Subject.Organization; len(groups) != 1 || groups[0] != kubeconfig.CustomerGroup(1) {
		t.Fatalf("stored kubeconfig's groups = %v, want [%s]", groups, kubeconfig.CustomerGroup(1))
	}
	issued1 := e.issue(t, tc, host, 1)
	for name, cs := range map[string]kubernetes.Interface{"stored": tenant.Client, "issued": issued1} {
		if _, err := cs.CoreV1().Secrets("kube-system").List(ctx, metav1.ListOptions{}); err != nil {
			t.Fatalf("%s generation-1 kubeconfig cannot list Secrets in kube-system: %v", name, err)
		}
	}

	// The customer binds its own identities of generation 1: they must
	// not outlive the revocation.
	mine := &rbacv1.ClusterRoleBinding{ObjectMeta: metav1.ObjectMeta{Name: "mine"},
		RoleRef: rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "cluster-admin"},
		Subjects: []rbacv1.Subject{
			{Kind: rbacv1.GroupKind, APIGroup: rbacv1.GroupName, Name: kubeconfig.CustomerGroup(1)},
			{Kind: rbacv1.UserKind, APIGroup: rbacv1.GroupName, Name: "alice"},
		}}
	if _, err := issued1.RbacV1().ClusterRoleBindings().Create(ctx, mine, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	only := &rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Name: "only-old", Namespace: "default"},
		RoleRef:  rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "admin"},
		Subjects: []rbacv1.Subject{{Kind: rbacv1.UserKind, APIGroup: rbacv1.GroupName, Name: kubeconfig.CustomerUser(1, "x")}}}
	if _, err := issued1.RbacV1().RoleBindings("default").Create(ctx, only, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	e.emitted()

	// Revoke, as the CLI does: raise the generation.
	patch := fmt.Sprintf(`{"metadata":{"annotations":{%q:"2"}}}`, kubeconfig.AnnotationCustomerGeneration)
	if err := e.api.Client.Patch(ctx, got, client.RawPatch(types.MergePatchType, []byte(patch))); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		e.mustReconcile(t, tc)
		if got = e.get(t, tc); got.Annotations[kubeconfig.AnnotationCustomerAuthorized] == "2" || time.Now().After(deadline) {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	if a := got.Annotations[kubeconfig.AnnotationCustomerAuthorized]; a != "2" {
		t.Fatalf("authorized generation %q after the revocation, want 2; conditions %+v", a, got.Status.Conditions)
	}
	// The reconcile that revoked went through the tenant with the
	// operator's own credential.
	wantCondition(t, got, kv1.ConditionAddonsReady, metav1.ConditionTrue, kv1.ReasonAddonsApplied)
	wantEvent(t, e.emitted(), "Normal CustomerCredentialsRevoked")

	for name, cs := range map[string]kubernetes.Interface{"stored": tenant.Client, "issued": issued1} {
		_, err := cs.CoreV1().Namespaces().List(ctx, metav1.ListOptions{})
		if !apierrors.IsForbidden(err) {
			t.Errorf("revoked %s kubeconfig listing namespaces: err = %v, want Forbidden", name, err)
		}
	}
	operator := e.operatorClient(t, tc, host)
	binding, err := operator.RbacV1().ClusterRoleBindings().Get(ctx, tenantbootstrap.CustomerAdminsBinding, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(binding.Subjects) != 1 || binding.Subjects[0].Name != kubeconfig.CustomerGroup(2) || binding.RoleRef.Name != "cluster-admin" {
		t.Errorf("binding %s = %+v -> %+v, want cluster-admin for %s only", binding.Name, binding.Subjects, binding.RoleRef, kubeconfig.CustomerGroup(2))
	}
	kept, err := operator.RbacV1().ClusterRoleBindings().Get(ctx, "mine", metav1.GetOptions{})
	if err != nil || len(kept.Subjects) != 1 || kept.Subjects[0].Name != "alice" {
		t.Errorf("the customer's binding after the revocation: %+v, %v; want alice only", kept, err)
	}
	if _, err := operator.RbacV1().RoleBindings("default").Get(ctx, "only-old", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("a binding of only revoked identities: err = %v, want it deleted", err)
	}

	// New credentials work at once: the stored one was reissued, and
	// one issued now.
	if c := e.storedKubeconfig(t, tc); c.Cert.Subject.Organization[0] != kubeconfig.CustomerGroup(2) {
		t.Errorf("stored kubeconfig's groups after the revocation = %v", c.Cert.Subject.Organization)
	}
	for name, cs := range map[string]kubernetes.Interface{"stored": e.storedClient(t, tc, host), "issued": e.issue(t, tc, host, 2)} {
		if _, err := cs.CoreV1().Secrets("kube-system").List(ctx, metav1.ListOptions{}); err != nil {
			t.Errorf("%s generation-2 kubeconfig: %v", name, err)
		}
	}

	// Steady state: no write, no event.
	rv := got.ResourceVersion
	e.mustReconcile(t, tc)
	if again := e.get(t, tc); again.ResourceVersion != rv {
		t.Errorf("a steady-state reconcile wrote the TenantCluster")
	}
	if ev := e.emitted(); len(ev) != 0 {
		t.Errorf("a steady-state reconcile emitted %q", ev)
	}
}

// tenantHost is where the test's tenant API server listens: the
// Service's address (the kubeconfigs name the node port).
func tenantHost(t *testing.T, e *env, tc *kv1.TenantCluster) string {
	t.Helper()
	svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: cp.ServiceName(tc.Name)}}
	if !e.exists(t, svc) {
		t.Fatal("no tenant Service")
	}
	return fmt.Sprintf("https://%s:%d", svc.Spec.ClusterIP, cp.DefaultPort)
}

func (e *env) secret(t *testing.T, name string) map[string][]byte {
	t.Helper()
	s := &corev1.Secret{}
	if err := e.api.Client.Get(context.Background(), types.NamespacedName{Namespace: e.ns, Name: name}, s); err != nil {
		t.Fatal(err)
	}
	return s.Data
}

// storedKubeconfig is the certificate of the customer kubeconfig Secret.
func (e *env) storedKubeconfig(t *testing.T, tc *kv1.TenantCluster) *pki.KeyPair {
	t.Helper()
	rc, err := clientcmd.RESTConfigFromKubeConfig(e.secret(t, cp.AdminKubeconfigSecret(tc.Name))["kubeconfig"])
	if err != nil {
		t.Fatal(err)
	}
	kp, err := pki.ParseKeyPair(rc.CertData, rc.KeyData)
	if err != nil {
		t.Fatal(err)
	}
	return kp
}

func (e *env) storedClient(t *testing.T, tc *kv1.TenantCluster, host string) kubernetes.Interface {
	t.Helper()
	rc, err := clientcmd.RESTConfigFromKubeConfig(e.secret(t, cp.AdminKubeconfigSecret(tc.Name))["kubeconfig"])
	if err != nil {
		t.Fatal(err)
	}
	rc.Host = host
	return kubernetes.NewForConfigOrDie(rc)
}

// issue signs a customer kubeconfig of generation gen as the CLI does.
func (e *env) issue(t *testing.T, tc *kv1.TenantCluster, host string, gen int) kubernetes.Interface {
	t.Helper()
	data := e.secret(t, cp.PKISecretName(tc.Name))
	ca, err := pki.ParseKeyPair(data[cp.FileCA], data[cp.FileCAKey])
	if err != nil {
		t.Fatal(err)
	}
	issued, err := kubeconfig.IssueCustomer(kubeconfig.CustomerRequest{ClusterName: tc.Name, Server: host, CA: ca, Generation: gen, TTL: time.Hour, Now: time.Now()})
	if err != nil {
		t.Fatal(err)
	}
	rc, err := clientcmd.RESTConfigFromKubeConfig(issued.Kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	return kubernetes.NewForConfigOrDie(rc)
}

// operatorClient reaches the tenant with the operator's own credential.
func (e *env) operatorClient(t *testing.T, tc *kv1.TenantCluster, host string) kubernetes.Interface {
	t.Helper()
	data := e.secret(t, cp.PKISecretName(tc.Name))
	kc, err := kubeconfig.Render(kubeconfig.Config{ClusterName: tc.Name, Server: host, CAPEM: data[cp.FileCA], UserName: "operator",
		CertPEM: data["admin-client.crt"], KeyPEM: data["admin-client.key"]})
	if err != nil {
		t.Fatal(err)
	}
	rc, err := clientcmd.RESTConfigFromKubeConfig(kc)
	if err != nil {
		t.Fatal(err)
	}
	return kubernetes.NewForConfigOrDie(rc)
}
