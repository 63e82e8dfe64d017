package install_test

import (
	"context"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"kubinception.dev/kubinception/internal/install"
	"kubinception.dev/kubinception/internal/objects"
	"kubinception.dev/kubinception/internal/testenv"
)

// TestOperatorMayApplyNetworkPolicies: with the RBAC `kubinception
// install` renders, the operator's service account can server-side apply
// a tenant's NetworkPolicy, first creating it and then changing it, and
// can do nothing it was not given (delete).
func TestOperatorMayApplyNetworkPolicies(t *testing.T) {
	a := testenv.SharedAPIServer(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	o := install.DefaultOptions()
	o.Image = "registry.example.com/kubinception:v0.1.0"
	objs, err := install.Render(o)
	if err != nil {
		t.Fatal(err)
	}
	for _, u := range objs {
		switch u.GetKind() {
		case "Namespace", "ServiceAccount", "ClusterRole", "ClusterRoleBinding":
			u := u.DeepCopy()
			//nolint:staticcheck // unstructured server-side apply
			if err := a.Client.Patch(ctx, u, client.Apply, client.ForceOwnership, client.FieldOwner(install.FieldOwner)); err != nil {
				t.Fatalf("apply %s %s: %v", u.GetKind(), u.GetName(), err)
			}
		}
	}
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "rbac-netpol"}}
	if err := a.Client.Create(ctx, ns); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}

	cfg := rest.CopyConfig(a.Config)
	cfg.Impersonate = rest.ImpersonationConfig{UserName: "system:serviceaccount:" + install.Namespace + ":" + install.Name}
	operator, err := client.New(cfg, client.Options{Scheme: a.Client.Scheme()})
	if err != nil {
		t.Fatal(err)
	}
	apply := func(port int32) error {
		pol := &networkingv1.NetworkPolicy{
			TypeMeta:   metav1.TypeMeta{APIVersion: "networking.k8s.io/v1", Kind: "NetworkPolicy"},
			ObjectMeta: metav1.ObjectMeta{Name: "demo-control-plane", Namespace: ns.Name},
			Spec: networkingv1.NetworkPolicySpec{
				PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeIngress},
				Ingress:     []networkingv1.NetworkPolicyIngressRule{{Ports: []networkingv1.NetworkPolicyPort{{Port: ptrPort(port)}}}},
			},
		}
		//nolint:staticcheck // typed objects with server-side apply
		return operator.Patch(ctx, pol, client.Apply, client.ForceOwnership, objects.FieldOwner)
	}
	if err := apply(6443); err != nil {
		t.Fatalf("the operator cannot create a NetworkPolicy by server-side apply: %v", err)
	}
	if err := apply(31234); err != nil {
		t.Fatalf("the operator cannot change a NetworkPolicy by server-side apply: %v", err)
	}
	err = operator.Delete(ctx, &networkingv1.NetworkPolicy{ObjectMeta: metav1.ObjectMeta{Name: "demo-control-plane", Namespace: ns.Name}})
	if !apierrors.IsForbidden(err) {
		t.Errorf("the operator deleting a NetworkPolicy: %v, want Forbidden (garbage collection deletes them)", err)
	}
	var list unstructured.UnstructuredList
	list.SetAPIVersion("networking.k8s.io/v1")
	list.SetKind("NetworkPolicyList")
	if err := operator.List(ctx, &list, client.InNamespace(ns.Name)); !apierrors.IsForbidden(err) {
		t.Errorf("the operator listing NetworkPolicies: %v, want Forbidden (it neither reads nor watches them)", err)
	}
}

func ptrPort(n int32) *intstr.IntOrString { v := intstr.FromInt32(n); return &v }
