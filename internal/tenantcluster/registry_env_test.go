package tenantcluster_test

import (
	"errors"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	kv1 "kubinception.dev/kubinception/api/v1alpha1"
	cp "kubinception.dev/kubinception/internal/controlplane"
)

// TestRegistryNotAllowed: a running tenant switched to a registry the
// operator does not allow is refused before anything is applied: its
// Deployment keeps the images it had, the condition and a Warning Event
// name the registry, and the reconcile does not retry (the spec must
// change).
func TestRegistryNotAllowed(t *testing.T) {
	t.Parallel()
	e := start(t)
	tc := e.provision(t, e.tenant(t, "registry", nil))
	dep := &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: cp.DeploymentName(tc.Name)}}
	e.exists(t, dep)
	before := controllerManagerImage(dep)
	if !strings.HasPrefix(before, "kubinception.local/") {
		t.Fatalf("image %s, want one of the default registry", before)
	}
	e.emitted()

	e.api.Update(t, tc, func() { tc.Spec.ControlPlane.ImageRegistry = "evil.example.com" })
	_, err := e.reconcile(t, tc)
	if !errors.Is(err, reconcile.TerminalError(nil)) {
		t.Fatalf("Reconcile error %v, want a terminal error", err)
	}
	got := e.get(t, tc)
	c := wantCondition(t, got, kv1.ConditionControlPlaneAvailable, metav1.ConditionFalse, kv1.ReasonRegistryNotAllowed)
	if !strings.Contains(c.Message, `"evil.example.com"`) || !strings.Contains(c.Message, "kubinception.local") {
		t.Errorf("message %q names neither the refused nor the allowed registry", c.Message)
	}
	wantEvent(t, e.emitted(), "Warning "+kv1.ReasonRegistryNotAllowed)
	e.exists(t, dep)
	if img := controllerManagerImage(dep); img != before {
		t.Errorf("image %s after a refused registry, want %s kept", img, before)
	}

	// A path below the allowed registry is the allowed registry's.
	e.api.Update(t, tc, func() { tc.Spec.ControlPlane.ImageRegistry = "kubinception.local/mirror" })
	e.mustReconcile(t, tc)
	e.exists(t, dep)
	if img := controllerManagerImage(dep); !strings.HasPrefix(img, "kubinception.local/mirror/") {
		t.Errorf("image %s, want one under kubinception.local/mirror", img)
	}
}

// controllerManagerImage is the image of the controller manager, which
// comes from the tenant's registry.
func controllerManagerImage(dep *appsv1.Deployment) string {
	for _, c := range dep.Spec.Template.Spec.Containers {
		if c.Name == "kube-controller-manager" {
			return c.Image
		}
	}
	return ""
}
