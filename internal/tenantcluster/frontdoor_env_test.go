package tenantcluster_test

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"net"
	"slices"
	"strconv"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	kv1 "kubinception.dev/kubinception/api/v1alpha1"
	cp "kubinception.dev/kubinception/internal/controlplane"
	"kubinception.dev/kubinception/internal/frontdoor"
	"kubinception.dev/kubinception/internal/tenantcluster"
)

// TestFrontDoorAndHibernation follows a tenant exposed through the front
// door: its name is refused while an older tenant of the same name holds
// it, then its route, activity Lease, endpoint and certificate names are
// published; it hibernates when idle (the Deployment at zero, status and
// Ready saying so), wakes when the front door renews its Lease, and its
// route and Lease go when it leaves the front door.
func TestFrontDoorAndHibernation(t *testing.T) {
	t.Parallel()
	e := start(t)
	ctx := context.Background()
	e.r.FrontDoor = tenantcluster.FrontDoorSettings{Domain: "tenants.test", Port: 31443}
	if err := e.api.Client.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: frontdoor.Namespace}}); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	name := "fd-" + e.ns
	// An older tenant of the same name in another namespace holds the
	// front-door name.
	other := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "other-" + e.ns}}
	if err := e.api.Client.Create(ctx, other); err != nil {
		t.Fatal(err)
	}
	holder := &kv1.TenantCluster{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: other.Name},
		Spec: kv1.TenantClusterSpec{Exposure: kv1.ExposureSpec{Type: kv1.ExposureFrontDoor}}}
	if err := e.api.Client.Create(ctx, holder); err != nil {
		t.Fatal(err)
	}
	time.Sleep(1100 * time.Millisecond) // creation times have one-second resolution
	tc := e.tenant(t, name, func(tc *kv1.TenantCluster) {
		tc.Spec.Exposure.Type = kv1.ExposureFrontDoor
		tc.Spec.Hibernation = kv1.HibernationSpec{Enabled: true, IdleAfterMinutes: 5}
	})
	e.mustReconcile(t, tc)
	e.mustReconcile(t, tc)
	wantCondition(t, e.get(t, tc), kv1.ConditionControlPlaneAvailable, metav1.ConditionFalse, kv1.ReasonHostnameTaken)
	if err := e.api.Client.Delete(ctx, holder); err != nil {
		t.Fatal(err)
	}

	got := e.provision(t, tc)
	host := name + ".tenants.test"
	if want := "https://" + host + ":31443"; got.Status.Endpoint != want {
		t.Errorf("endpoint = %q, want %q", got.Status.Endpoint, want)
	}
	route := &corev1.ConfigMap{}
	if err := e.api.Client.Get(ctx, types.NamespacedName{Namespace: frontdoor.Namespace, Name: frontdoor.ObjectName(e.ns, name)}, route); err != nil {
		t.Fatalf("route: %v", err)
	}
	svc := &corev1.Service{}
	if err := e.api.Client.Get(ctx, types.NamespacedName{Namespace: e.ns, Name: cp.ServiceName(name)}, svc); err != nil {
		t.Fatal(err)
	}
	if svc.Spec.Type != corev1.ServiceTypeNodePort {
		t.Errorf("Service type %s, want NodePort: clients inside the tenant send no server name", svc.Spec.Type)
	}
	table := frontdoor.BuildTable([]*corev1.ConfigMap{route})
	for n, backend := range map[string]string{
		host: net.JoinHostPort(svc.Spec.ClusterIP, strconv.Itoa(cp.DefaultPort)),
		frontdoor.TunnelHostName(name, "tenants.test"): net.JoinHostPort(svc.Spec.ClusterIP, strconv.Itoa(cp.TunnelPort)),
	} {
		if target, ok := table.Lookup(n); !ok || target.Backend != backend {
			t.Errorf("route for %s = %+v, %t; want backend %s", n, target, ok, backend)
		}
	}
	pkiSecret := &corev1.Secret{}
	if err := e.api.Client.Get(ctx, types.NamespacedName{Namespace: e.ns, Name: cp.PKISecretName(name)}, pkiSecret); err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(pkiSecret.Data[cp.FileAPIServer])
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{host, frontdoor.TunnelHostName(name, "tenants.test")} {
		if !slices.Contains(cert.DNSNames, n) {
			t.Errorf("API server certificate names %v, missing %s", cert.DNSNames, n)
		}
	}
	lease := &coordinationv1.Lease{}
	leaseKey := types.NamespacedName{Namespace: frontdoor.Namespace, Name: frontdoor.ObjectName(e.ns, name)}
	if err := e.api.Client.Get(ctx, leaseKey, lease); err != nil {
		t.Fatalf("activity lease: %v", err)
	}
	wantCondition(t, got, kv1.ConditionHibernated, metav1.ConditionFalse, kv1.ReasonAwake)

	// Idle past the setting: the control plane goes to zero.
	e.setAvailable(t, tc)
	if res := e.mustReconcile(t, tc); res.RequeueAfter <= 0 || res.RequeueAfter > 5*time.Minute {
		t.Errorf("requeue %v while awake, want at most the idle time", res.RequeueAfter)
	}
	e.clock.SetTime(e.clock.Now().Add(5*time.Minute + time.Second))
	res := e.mustReconcile(t, tc)
	if res.RequeueAfter <= 0 {
		t.Errorf("result %+v while hibernated, want a requeue", res)
	}
	got = e.get(t, tc)
	if h := got.Status.Hibernation; !h.Hibernated || h.Reason != "Idle" || h.Since == nil || !h.Since.Time.Equal(e.clock.Now()) {
		t.Errorf("hibernation status %+v, want hibernated for idleness since now", h)
	}
	wantCondition(t, got, kv1.ConditionHibernated, metav1.ConditionTrue, kv1.ReasonHibernated)
	wantCondition(t, got, kv1.ConditionReady, metav1.ConditionFalse, kv1.ReasonHibernated)
	dep := &appsv1.Deployment{}
	if err := e.api.Client.Get(ctx, types.NamespacedName{Namespace: e.ns, Name: cp.DeploymentName(name)}, dep); err != nil {
		t.Fatal(err)
	}
	if *dep.Spec.Replicas != 0 {
		t.Errorf("hibernated control plane has %d replicas, want 0", *dep.Spec.Replicas)
	}

	// The front door renews the Lease: a request waits.
	e.clock.SetTime(e.clock.Now().Add(time.Minute))
	renewed := metav1.NewMicroTime(e.clock.Now())
	lease.Spec.RenewTime = &renewed
	if err := e.api.Client.Update(ctx, lease); err != nil {
		t.Fatal(err)
	}
	e.mustReconcile(t, tc)
	got = e.get(t, tc)
	if h := got.Status.Hibernation; h.Hibernated || h.Reason != "Request" {
		t.Errorf("hibernation status %+v after a request, want awake (Request)", h)
	}
	if err := e.api.Client.Get(ctx, types.NamespacedName{Namespace: e.ns, Name: cp.DeploymentName(name)}, dep); err != nil {
		t.Fatal(err)
	}
	if *dep.Spec.Replicas != 1 {
		t.Errorf("woken control plane has %d replicas, want 1", *dep.Spec.Replicas)
	}

	// Off the front door: its route and Lease go.
	e.api.Update(t, got, func() { got.Spec.Exposure.Type = kv1.ExposureNodePort })
	e.mustReconcile(t, tc)
	if err := e.api.Client.Get(ctx, leaseKey, &coordinationv1.Lease{}); !apierrors.IsNotFound(err) {
		t.Errorf("activity lease after leaving the front door: %v, want not found", err)
	}
	if err := e.api.Client.Get(ctx, types.NamespacedName{Namespace: frontdoor.Namespace, Name: frontdoor.ObjectName(e.ns, name)}, &corev1.ConfigMap{}); !apierrors.IsNotFound(err) {
		t.Errorf("route after leaving the front door: %v, want not found", err)
	}
}
