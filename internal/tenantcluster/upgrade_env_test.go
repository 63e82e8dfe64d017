package tenantcluster_test

import (
	"context"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	kv1 "kubinception.dev/kubinception/api/v1alpha1"
)

// An upgrade rolls the control plane first and the addons only once it is
// done: while the Deployment rolls, the tenant stays Ready, Upgrading
// says so, status.version keeps the version that runs and kube-proxy
// keeps its version; once every pod runs the new version, status.version
// moves, the addons follow and Upgrading turns False. Kubelets outside the
// supported skew are reported.
func TestUpgradeRollsControlPlaneThenAddons(t *testing.T) {
	t.Parallel()
	e := start(t)
	ctx := context.Background()
	tc := e.tenant(t, "up", func(tc *kv1.TenantCluster) { tc.Spec.Version = "v1.34.4" })
	got, tenant := e.ready(t, tc)
	wantCondition(t, got, kv1.ConditionUpgrading, metav1.ConditionFalse, kv1.ReasonVersionCurrent)
	if got.Status.Version != "v1.34.4" {
		t.Fatalf("status.version = %q, want v1.34.4", got.Status.Version)
	}
	kubeProxyImage := func() string {
		t.Helper()
		ds, err := tenant.Client.AppsV1().DaemonSets("kube-system").Get(ctx, "kube-proxy", metav1.GetOptions{})
		if err != nil {
			t.Fatalf("kube-proxy in the tenant: %v", err)
		}
		return ds.Spec.Template.Spec.Containers[0].Image
	}
	if img := kubeProxyImage(); !strings.HasSuffix(img, ":v1.34.4") {
		t.Fatalf("kube-proxy runs %s before the upgrade, want v1.34.4", img)
	}
	e.emitted()

	// spec.version moves on: the Deployment's template changes and the
	// Deployment controller has not rolled it yet.
	e.api.Update(t, got, func() { got.Spec.Version = "v1.35.4" })
	res := e.mustReconcile(t, tc)
	got = e.get(t, tc)
	if res.RequeueAfter <= 0 {
		t.Errorf("result %+v while the control plane rolls, want a requeue", res)
	}
	c := wantCondition(t, got, kv1.ConditionUpgrading, metav1.ConditionTrue, kv1.ReasonRollingControlPlane)
	if !strings.Contains(c.Message, "v1.34.4 to v1.35.4") {
		t.Errorf("Upgrading message %q does not name the versions", c.Message)
	}
	wantCondition(t, got, kv1.ConditionControlPlaneAvailable, metav1.ConditionTrue, kv1.ReasonControlPlaneAvailable)
	wantCondition(t, got, kv1.ConditionReady, metav1.ConditionTrue, kv1.ReasonReady)
	if got.Status.Version != "v1.34.4" {
		t.Errorf("status.version = %q while the control plane rolls, want v1.34.4 (what runs)", got.Status.Version)
	}
	if img := kubeProxyImage(); !strings.HasSuffix(img, ":v1.34.4") {
		t.Errorf("kube-proxy moved to %s while the control plane rolls", img)
	}
	wantEvent(t, e.emitted(), "Normal "+kv1.ReasonRollingControlPlane)

	// Every pod runs the new template: the version moves, the addons
	// follow, the upgrade is over.
	e.setAvailable(t, tc)
	e.mustReconcile(t, tc)
	got = e.get(t, tc)
	if got.Status.Version != "v1.35.4" {
		t.Errorf("status.version = %q after the rollout, want v1.35.4", got.Status.Version)
	}
	if img := kubeProxyImage(); !strings.HasSuffix(img, ":v1.35.4") {
		t.Errorf("kube-proxy runs %s after the upgrade, want v1.35.4", img)
	}
	wantCondition(t, got, kv1.ConditionUpgrading, metav1.ConditionFalse, kv1.ReasonVersionCurrent)
	wantEvent(t, e.emitted(), "Normal "+kv1.ReasonVersionCurrent)

	// A node whose kubelet is four minors older is out of the skew: a
	// Warning names it.
	wantCondition(t, got, kv1.ConditionNodeVersionsSupported, metav1.ConditionTrue, kv1.ReasonKubeletsWithinSkew)
	node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "old-node"}}
	node, err := tenant.Client.CoreV1().Nodes().Create(ctx, node, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	node.Status.NodeInfo.KubeletVersion = "v1.31.2"
	if _, err := tenant.Client.CoreV1().Nodes().UpdateStatus(ctx, node, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	e.mustReconcile(t, tc)
	got = e.get(t, tc)
	c = wantCondition(t, got, kv1.ConditionNodeVersionsSupported, metav1.ConditionFalse, kv1.ReasonKubeletSkewUnsupported)
	if !strings.Contains(c.Message, "old-node runs kubelet v1.31.2") {
		t.Errorf("NodeVersionsSupported message %q does not name the node", c.Message)
	}
	wantCondition(t, got, kv1.ConditionReady, metav1.ConditionTrue, kv1.ReasonReady)
	wantEvent(t, e.emitted(), "Warning "+kv1.ReasonKubeletSkewUnsupported)
}
