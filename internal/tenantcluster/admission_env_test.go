package tenantcluster_test

import (
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	kv1 "kubinception.dev/kubinception/api/v1alpha1"
	cp "kubinception.dev/kubinception/internal/controlplane"
)

// TestStartAdmissionReconcile: with one control plane allowed to start at a time,
// a second tenant waits, saying why and without a Deployment, until the
// first one's pods are available; then it starts.
func TestStartAdmissionReconcile(t *testing.T) {
	t.Parallel()
	e := start(t)
	e.r.MaxStartingControlPlanes = 1
	a, b := e.tenant(t, "first", nil), e.tenant(t, "second", nil)
	for _, tc := range []*kv1.TenantCluster{a, b} {
		e.mustReconcile(t, tc) // the finalizer
		if res := e.mustReconcile(t, tc); res.RequeueAfter <= 0 {
			t.Errorf("%s: result %+v while starting or waiting to, want a requeue as a safety net", tc.Name, res)
		}
	}
	wantCondition(t, e.get(t, a), kv1.ConditionControlPlaneAvailable, metav1.ConditionFalse, kv1.ReasonControlPlaneStarting)
	wantCondition(t, e.get(t, b), kv1.ConditionControlPlaneAvailable, metav1.ConditionFalse, kv1.ReasonWaitingToStart)
	wantCondition(t, e.get(t, b), kv1.ConditionReady, metav1.ConditionFalse, kv1.ReasonWaitingToStart)
	depB := &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: cp.DeploymentName(b.Name)}}
	if e.exists(t, depB) {
		t.Fatal("the waiting tenant's control plane was applied")
	}

	// The first control plane is up: its slot goes to the second.
	e.setAvailable(t, a)
	e.reconcile(t, a) // its tenant API server does not answer here: that is not what is tested
	e.mustReconcile(t, b)
	if !e.exists(t, depB) {
		t.Fatal("the second tenant's control plane not applied once the first was available")
	}
	wantCondition(t, e.get(t, b), kv1.ConditionControlPlaneAvailable, metav1.ConditionFalse, kv1.ReasonControlPlaneStarting)
}
