package tenantcluster_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"

	kv1 "kubinception.dev/kubinception/api/v1alpha1"
	cp "kubinception.dev/kubinception/internal/controlplane"
	"kubinception.dev/kubinception/internal/netpolicy"
	pkiPkg "kubinception.dev/kubinception/internal/pki"
	"kubinception.dev/kubinception/internal/tenantlb"
	"kubinception.dev/kubinception/internal/testenv"
)

// TestLifecycle follows one tenant from creation to Ready to gone: the
// finalizer first and alone, the phases in order, the tenant's own API
// server receiving the bootstrap objects, a steady state that writes
// nothing, and deletion in order (control plane, then keys, then the
// finalizer).
func TestLifecycle(t *testing.T) {
	t.Parallel()
	e := start(t)
	ctx := context.Background()
	tc := e.tenant(t, "demo", nil)

	// The first reconcile adds the finalizer and returns: the update
	// brings the next one.
	res := e.mustReconcile(t, tc)
	got := e.get(t, tc)
	if !controllerutil.ContainsFinalizer(got, kv1.Finalizer) {
		t.Fatalf("finalizers = %v, want %s", got.Finalizers, kv1.Finalizer)
	}
	if !res.IsZero() {
		t.Errorf("result %+v after adding the finalizer, want none: the update event brings the next reconcile", res)
	}
	if len(got.Status.Conditions) != 0 || got.Status.ObservedGeneration != 0 {
		t.Errorf("status written with the finalizer: %+v", got.Status)
	}
	for _, obj := range controlPlaneObjects(tc.Name) {
		if e.exists(t, obj) {
			t.Errorf("%T %s created in the reconcile that added the finalizer", obj, obj.GetName())
		}
	}
	e.emitted()

	// The phases run up to the control plane, which waits for its pods.
	res = e.mustReconcile(t, tc)
	if res.RequeueAfter <= 0 {
		t.Errorf("result %+v while the control plane starts, want a requeue", res)
	}
	got = e.get(t, tc)
	wantCondition(t, got, kv1.ConditionDatastoreReady, metav1.ConditionTrue, kv1.ReasonTenancyProvisioned)
	wantCondition(t, got, kv1.ConditionCertificatesReady, metav1.ConditionTrue, kv1.ReasonCertificatesIssued)
	wantCondition(t, got, kv1.ConditionControlPlaneAvailable, metav1.ConditionFalse, kv1.ReasonControlPlaneStarting)
	wantCondition(t, got, kv1.ConditionReady, metav1.ConditionFalse, kv1.ReasonControlPlaneStarting)
	wantCondition(t, got, kv1.ConditionDeleting, metav1.ConditionFalse, kv1.ReasonNotDeleting)
	if c := condition(t, got, kv1.ConditionReady); !c.LastTransitionTime.Time.Equal(e.clock.Now()) || c.ObservedGeneration != got.Generation {
		t.Errorf("Ready = %+v, want it stamped with the reconciler's clock %v and generation %d", c, e.clock.Now(), got.Generation)
	}
	if got.Status.ObservedGeneration != got.Generation {
		t.Errorf("observedGeneration = %d, want %d: waiting for pods is not a failure", got.Status.ObservedGeneration, got.Generation)
	}
	if !e.userExists(t, got.Status.Datastore.User) {
		t.Errorf("etcd user %s not in the datastore", got.Status.Datastore.User)
	}
	for _, obj := range controlPlaneObjects(tc.Name) {
		if !e.exists(t, obj) {
			t.Errorf("%T %s missing", obj, obj.GetName())
			continue
		}
		if ref := metav1.GetControllerOf(obj); ref == nil || ref.UID != got.UID {
			t.Errorf("%T %s is not controlled by the TenantCluster: %+v", obj, obj.GetName(), obj.GetOwnerReferences())
		}
	}
	svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: cp.ServiceName(tc.Name)}}
	e.exists(t, svc)
	if want := fmt.Sprintf("https://%s:%d", nodeAddress, svc.Spec.Ports[0].NodePort); got.Status.Endpoint != want {
		t.Errorf("endpoint = %q, want %q (the admin node's address and the node port)", got.Status.Endpoint, want)
	}
	events := e.emitted()
	wantEvent(t, events, "Normal "+kv1.ReasonTenancyProvisioned)
	wantEvent(t, events, "Normal "+kv1.ReasonCertificatesIssued)

	// The pods are ready; the tenant's API server does not answer yet.
	e.setAvailable(t, tc)
	res = e.mustReconcile(t, tc)
	got = e.get(t, tc)
	wantCondition(t, got, kv1.ConditionControlPlaneAvailable, metav1.ConditionTrue, kv1.ReasonControlPlaneAvailable)
	wantCondition(t, got, kv1.ConditionAddonsReady, metav1.ConditionFalse, kv1.ReasonTenantAPIUnreachable)
	wantCondition(t, got, kv1.ConditionReady, metav1.ConditionFalse, kv1.ReasonTenantAPIUnreachable)
	if res.RequeueAfter <= 0 {
		t.Errorf("result %+v while the tenant API is unreachable, want a requeue", res)
	}
	if got.Status.Version != got.Spec.Version {
		t.Errorf("status.version = %q, want %q once the control plane is available", got.Status.Version, got.Spec.Version)
	}

	// The tenant's API server answers: the bootstrap objects go in and
	// the tenant is Ready.
	tenant := e.startTenantAPIServer(t, got)
	res = e.mustReconcile(t, tc)
	got = e.get(t, tc)
	wantCondition(t, got, kv1.ConditionAddonsReady, metav1.ConditionTrue, kv1.ReasonAddonsApplied)
	wantCondition(t, got, kv1.ConditionReady, metav1.ConditionTrue, kv1.ReasonReady)
	if res.RequeueAfter <= 0 {
		t.Errorf("result %+v for a Ready tenant, want the addon resync", res)
	}
	wantEvent(t, e.emitted(), "Normal "+kv1.ReasonReady)
	if _, err := tenant.Client.CoreV1().ConfigMaps("kube-public").Get(ctx, "cluster-info", metav1.GetOptions{}); err != nil {
		t.Errorf("cluster-info in the tenant: %v", err)
	}
	if _, err := tenant.Client.AppsV1().DaemonSets("kube-system").Get(ctx, "kube-proxy", metav1.GetOptions{}); err != nil {
		t.Errorf("kube-proxy in the tenant: %v", err)
	}
	if _, err := tenant.Client.AppsV1().Deployments("kube-system").Get(ctx, "coredns", metav1.GetOptions{}); err != nil {
		t.Errorf("coredns in the tenant: %v", err)
	}
	if dns, err := tenant.Client.CoreV1().Services("kube-system").Get(ctx, "kube-dns", metav1.GetOptions{}); err != nil || dns.Spec.ClusterIP != got.Spec.Network.DNSServiceIP {
		t.Errorf("kube-dns in the tenant: %v, %v; want it at %s", dns, err, got.Spec.Network.DNSServiceIP)
	}
	if n := e.keys(t, got.Status.Datastore.Prefix); n == 0 {
		t.Errorf("no keys under %s: the tenant's API server stores its state there", got.Status.Datastore.Prefix)
	}

	// Nothing changed: a reconcile writes nothing and emits nothing.
	rv := got.ResourceVersion
	e.clock.SetTime(e.clock.Now().Add(15 * time.Minute))
	e.mustReconcile(t, tc)
	if again := e.get(t, tc); again.ResourceVersion != rv {
		t.Errorf("a steady-state reconcile wrote the TenantCluster: %+v", again.Status)
	}
	if ev := e.emitted(); len(ev) != 0 {
		t.Errorf("a steady-state reconcile emitted %q", ev)
	}

	// A deleted addon comes back with the periodic re-apply, not at every
	// reconcile: in between, a steady tenant's reconcile costs its API
	// server a few reads.
	if err := tenant.Client.AppsV1().DaemonSets("kube-system").Delete(ctx, "kube-proxy", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	e.clock.SetTime(e.clock.Now().Add(time.Minute))
	e.mustReconcile(t, tc)
	if _, err := tenant.Client.AppsV1().DaemonSets("kube-system").Get(ctx, "kube-proxy", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("kube-proxy after a reconcile a minute after the last apply: %v, want not found (the addons are re-applied every 10 minutes)", err)
	}
	e.clock.SetTime(e.clock.Now().Add(10 * time.Minute))
	e.mustReconcile(t, tc)
	if _, err := tenant.Client.AppsV1().DaemonSets("kube-system").Get(ctx, "kube-proxy", metav1.GetOptions{}); err != nil {
		t.Errorf("kube-proxy not brought back by the periodic re-apply: %v", err)
	}

	testLoadBalancer(t, e, tc, tenant.Client)

	// Deletion starts with the control plane; the keys stay while it
	// runs.
	got = e.get(t, tc)
	if err := e.api.Client.Delete(ctx, got); err != nil {
		t.Fatal(err)
	}
	res = e.mustReconcile(t, tc)
	got = e.get(t, tc)
	if got == nil || !controllerutil.ContainsFinalizer(got, kv1.Finalizer) {
		t.Fatalf("the TenantCluster lost its finalizer while its control plane runs: %+v", got)
	}
	wantCondition(t, got, kv1.ConditionDeleting, metav1.ConditionTrue, kv1.ReasonDeletingControlPlane)
	wantCondition(t, got, kv1.ConditionReady, metav1.ConditionFalse, kv1.ReasonDeletingControlPlane)
	if res.RequeueAfter <= 0 {
		t.Errorf("result %+v while the control plane stops, want a requeue", res)
	}
	keys := e.keys(t, got.Status.Datastore.Prefix)
	if keys == 0 {
		t.Fatal("keys deleted while the control plane still runs")
	}

	// The Deployment is gone but a pod still stops: still no deletion of
	// keys.
	e.collectGarbage(t, tc)
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: tc.Name + "-control-plane-x", Namespace: e.ns, Labels: cp.Labels(tc.Name)},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "kube-apiserver", Image: "kube-apiserver"}}}}
	if err := e.api.Client.Create(ctx, pod); err != nil {
		t.Fatal(err)
	}
	e.mustReconcile(t, tc)
	got = e.get(t, tc)
	if c := wantCondition(t, got, kv1.ConditionDeleting, metav1.ConditionTrue, kv1.ReasonDeletingControlPlane); !strings.Contains(c.Message, "1 control-plane pod") {
		t.Errorf("Deleting message %q does not say a pod still stops", c.Message)
	}
	if n := e.keys(t, got.Status.Datastore.Prefix); n != keys {
		t.Fatalf("keys under the prefix went from %d to %d while a control-plane pod still runs", keys, n)
	}

	// The pod stops (and its API server with it): the keys, the etcd user
	// and role go, then the finalizer, and the TenantCluster is gone.
	tenant.stop(t)
	if err := e.api.Client.Delete(ctx, pod, client.GracePeriodSeconds(0)); err != nil {
		t.Fatal(err)
	}
	e.mustReconcile(t, tc)
	if gone := e.get(t, tc); gone != nil {
		t.Fatalf("TenantCluster still there after its data was deleted: finalizers %v, status %+v", gone.Finalizers, gone.Status)
	}
	if n := e.keys(t, got.Status.Datastore.Prefix); n != 0 {
		t.Errorf("%d keys left under %s", n, got.Status.Datastore.Prefix)
	}
	if e.userExists(t, got.Status.Datastore.User) {
		t.Errorf("etcd user %s left in the datastore", got.Status.Datastore.User)
	}
	wantEvent(t, e.emitted(), "Normal "+kv1.ReasonDeletingData)
}

// putKey writes a key under the tenant's prefix, as its API server would.
func (e *env) putKey(t *testing.T, tc *kv1.TenantCluster) {
	t.Helper()
	if _, err := e.root.Put(context.Background(), tc.Status.Datastore.Prefix+"/registry/configmaps/default/x", "x"); err != nil {
		t.Fatal(err)
	}
}

// TestPaused: a paused tenant is left as it is, whether running, new or
// being deleted, and goes on when unpaused.
func TestPaused(t *testing.T) {
	t.Parallel()
	e := start(t)
	ctx := context.Background()

	t.Run("new", func(t *testing.T) {
		tc := e.tenant(t, "paused-new", func(tc *kv1.TenantCluster) { tc.Spec.Paused = true })
		res := e.mustReconcile(t, tc)
		got := e.get(t, tc)
		if !res.IsZero() || len(got.Finalizers) != 0 {
			t.Errorf("paused new tenant: result %+v, finalizers %v; want nothing", res, got.Finalizers)
		}
		wantCondition(t, got, kv1.ConditionReady, metav1.ConditionFalse, kv1.ReasonPaused)
		if got.Status.ObservedGeneration != 0 {
			t.Errorf("observedGeneration = %d: a paused reconcile acted on nothing", got.Status.ObservedGeneration)
		}
		for _, obj := range controlPlaneObjects(tc.Name) {
			if e.exists(t, obj) {
				t.Errorf("%T %s created for a paused tenant", obj, obj.GetName())
			}
		}
	})

	t.Run("running", func(t *testing.T) {
		tc := e.provision(t, e.tenant(t, "paused-running", nil))
		e.api.Update(t, tc, func() {
			tc.Spec.Paused = true
			tc.Spec.ControlPlane.Replicas = ptr.To[int32](3)
		})
		e.mustReconcile(t, tc)
		dep := &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: cp.DeploymentName(tc.Name)}}
		e.exists(t, dep)
		if *dep.Spec.Replicas != 1 {
			t.Errorf("a paused tenant's control plane was scaled to %d", *dep.Spec.Replicas)
		}
		got := e.get(t, tc)
		wantCondition(t, got, kv1.ConditionReady, metav1.ConditionFalse, kv1.ReasonPaused)
		if got.Status.ObservedGeneration == got.Generation {
			t.Errorf("observedGeneration = %d: the paused change was not acted on", got.Status.ObservedGeneration)
		}

		e.api.Update(t, tc, func() { tc.Spec.Paused = false })
		e.mustReconcile(t, tc)
		e.exists(t, dep)
		if *dep.Spec.Replicas != 3 {
			t.Errorf("unpaused tenant's control plane has %d replicas, want 3", *dep.Spec.Replicas)
		}
	})

	t.Run("deleted", func(t *testing.T) {
		tc := e.provision(t, e.tenant(t, "paused-deleted", nil))
		e.putKey(t, tc)
		e.api.Update(t, tc, func() { tc.Spec.Paused = true })
		if err := e.api.Client.Delete(ctx, tc); err != nil {
			t.Fatal(err)
		}
		res := e.mustReconcile(t, tc)
		got := e.get(t, tc)
		if got == nil || !controllerutil.ContainsFinalizer(got, kv1.Finalizer) {
			t.Fatalf("a paused tenant lost its finalizer: %+v", got)
		}
		if !res.IsZero() {
			t.Errorf("result %+v for a paused tenant, want none", res)
		}
		wantCondition(t, got, kv1.ConditionReady, metav1.ConditionFalse, kv1.ReasonPaused)
		dep := &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: cp.DeploymentName(tc.Name)}}
		if !e.exists(t, dep) || !dep.DeletionTimestamp.IsZero() {
			t.Errorf("a paused tenant's control plane is being deleted")
		}
		if e.keys(t, got.Status.Datastore.Prefix) == 0 || !e.userExists(t, got.Status.Datastore.User) {
			t.Errorf("a paused tenant's keys or etcd user were deleted")
		}

		// Unpaused, deletion goes on.
		e.api.Update(t, tc, func() { tc.Spec.Paused = false })
		e.mustReconcile(t, tc)
		got = e.get(t, tc)
		wantCondition(t, got, kv1.ConditionDeleting, metav1.ConditionTrue, kv1.ReasonDeletingControlPlane)
		if !e.exists(t, dep) || dep.DeletionTimestamp.IsZero() {
			t.Errorf("unpaused deleted tenant: its control plane is not being deleted")
		}
	})
}

// TestDatastoreNotReady: while the tenant's datastore is missing, broken
// or without its gateway, the datastore phase says why and the later
// phases do not run; the reconcile waits without failing.
func TestDatastoreNotReady(t *testing.T) {
	t.Parallel()
	e := start(t)
	cases := []struct {
		name      string
		datastore func(t *testing.T) string
		reason    string
		mention   string
	}{
		{name: "missing", reason: kv1.ReasonDatastoreNotFound, mention: "no-such-datastore",
			datastore: func(t *testing.T) string { return "no-such-datastore" }},
		{name: "broken root Secret", reason: kv1.ReasonDatastoreCredentials, mention: e.ns + "-broken-root",
			datastore: func(t *testing.T) string {
				ds := testenv.CreateDatastore(t, e.api.Client, e.etcd, e.ns+"-broken", e.ns)
				root := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: e.ns, Name: ds.Spec.RootSecretRef.Name}}
				e.api.Update(t, root, func() { delete(root.Data, "tls.key") })
				return ds.Name
			}},
		{name: "no gateway yet", reason: kv1.ReasonWaitingForGateway, mention: "gateway",
			datastore: func(t *testing.T) string {
				return testenv.CreateDatastore(t, e.api.Client, e.etcd, e.ns+"-nogw", e.ns).Name
			}},
	}
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			name := c.datastore(t)
			tc := e.tenant(t, fmt.Sprintf("not-ready-%d", i), func(tc *kv1.TenantCluster) { tc.Spec.Datastore.Name = name })
			e.mustReconcile(t, tc)
			e.emitted()
			res, err := e.reconcile(t, tc)
			if err != nil || res.RequeueAfter <= 0 {
				t.Errorf("Reconcile = %+v, %v; want a requeue and no error", res, err)
			}
			got := e.get(t, tc)
			d := wantCondition(t, got, kv1.ConditionDatastoreReady, metav1.ConditionFalse, c.reason)
			if !strings.Contains(d.Message, c.mention) {
				t.Errorf("DatastoreReady message %q does not mention %q", d.Message, c.mention)
			}
			wantCondition(t, got, kv1.ConditionReady, metav1.ConditionFalse, c.reason)
			if got.Status.ObservedGeneration != got.Generation {
				t.Errorf("observedGeneration = %d, want %d", got.Status.ObservedGeneration, got.Generation)
			}
			for _, obj := range controlPlaneObjects(tc.Name) {
				if e.exists(t, obj) {
					t.Errorf("%T %s created although the datastore phase waits", obj, obj.GetName())
				}
			}
			wantEvent(t, e.emitted(), "Warning "+c.reason)
		})
	}
}

// TestWaitingForEndpoint: a LoadBalancer tenant waits, after its Service
// and before its certificates, for the load balancer's address, which
// then becomes the endpoint and a SAN.
func TestWaitingForEndpoint(t *testing.T) {
	t.Parallel()
	e := start(t)
	ctx := context.Background()
	tc := e.tenant(t, "lb", func(tc *kv1.TenantCluster) { tc.Spec.Exposure.Type = kv1.ExposureLoadBalancer })
	e.mustReconcile(t, tc)
	e.emitted()
	res := e.mustReconcile(t, tc)
	if res.RequeueAfter <= 0 {
		t.Errorf("result %+v while waiting for the load balancer, want a requeue", res)
	}
	got := e.get(t, tc)
	wantCondition(t, got, kv1.ConditionControlPlaneAvailable, metav1.ConditionFalse, kv1.ReasonWaitingForEndpoint)
	t.Run("Ready names the wait", func(t *testing.T) {
		wantCondition(t, got, kv1.ConditionReady, metav1.ConditionFalse, kv1.ReasonWaitingForEndpoint)
	})
	objs := controlPlaneObjects(tc.Name)
	if !e.exists(t, objs[0]) {
		t.Fatal("no Service: the exposure phase did not run")
	}
	for _, obj := range objs[1:] {
		if e.exists(t, obj) {
			t.Errorf("%T %s created before the endpoint is known", obj, obj.GetName())
		}
	}
	// Waiting for a load balancer is expected: a Normal Event.
	wantEvent(t, e.emitted(), "Normal "+kv1.ReasonWaitingForEndpoint)

	// The load balancer answers.
	svc := objs[0].(*corev1.Service)
	svc.Status.LoadBalancer.Ingress = []corev1.LoadBalancerIngress{{IP: "192.0.2.10"}}
	if err := e.api.Client.Status().Update(ctx, svc); err != nil {
		t.Fatal(err)
	}
	e.mustReconcile(t, tc)
	got = e.get(t, tc)
	if got.Status.Endpoint != "https://192.0.2.10:6443" {
		t.Errorf("endpoint = %q, want the load balancer's address", got.Status.Endpoint)
	}
	wantCondition(t, got, kv1.ConditionCertificatesReady, metav1.ConditionTrue, kv1.ReasonCertificatesIssued)
	wantCondition(t, got, kv1.ConditionControlPlaneAvailable, metav1.ConditionFalse, kv1.ReasonControlPlaneStarting)
	pki := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: cp.PKISecretName(tc.Name)}}
	e.exists(t, pki)
	serving, err := pkiPkg.ParseKeyPair(pki.Data[cp.FileAPIServer], pki.Data[cp.FileAPIServerKey])
	if err != nil {
		t.Fatal(err)
	}
	if err := serving.Cert.VerifyHostname("192.0.2.10"); err != nil {
		t.Errorf("the API server's certificate does not cover the load balancer's address: %v", err)
	}
}

// TestDeletionWithDatastoreDown: with the datastore unreachable, deletion
// stops before the keys, says why, keeps the finalizer and returns (no
// hang); once the datastore is back it finishes.
func TestDeletionWithDatastoreDown(t *testing.T) {
	t.Parallel()
	e := start(t)
	ctx := context.Background()
	tc := e.provision(t, e.tenant(t, "down", nil))
	e.putKey(t, tc)
	if err := e.api.Client.Delete(ctx, tc); err != nil {
		t.Fatal(err)
	}
	e.mustReconcile(t, tc)
	e.collectGarbage(t, tc)

	e.api.Update(t, e.ds, func() { e.ds.Spec.Endpoints = []string{fmt.Sprintf("https://127.0.0.1:%d", testenv.FreePort(t))} })
	res, err := e.reconcile(t, tc)
	if err != nil || res.RequeueAfter <= 0 {
		t.Errorf("Reconcile with the datastore down = %+v, %v; want a requeue and no error", res, err)
	}
	got := e.get(t, tc)
	if got == nil || !controllerutil.ContainsFinalizer(got, kv1.Finalizer) {
		t.Fatalf("finalizer removed although the keys could not be deleted: %+v", got)
	}
	wantCondition(t, got, kv1.ConditionDatastoreReady, metav1.ConditionFalse, kv1.ReasonDatastoreUnreachable)
	wantCondition(t, got, kv1.ConditionDeleting, metav1.ConditionTrue, kv1.ReasonDeletingData)
	wantCondition(t, got, kv1.ConditionReady, metav1.ConditionFalse, kv1.ReasonDeletingData)
	if e.keys(t, got.Status.Datastore.Prefix) == 0 {
		t.Fatal("keys gone although the datastore was down")
	}

	e.api.Update(t, e.ds, func() { e.ds.Spec.Endpoints = []string{e.etcd.Endpoint} })
	e.mustReconcile(t, tc)
	if gone := e.get(t, tc); gone != nil {
		t.Fatalf("TenantCluster still there once the datastore is back: %+v", gone.Status)
	}
	if n := e.keys(t, got.Status.Datastore.Prefix); n != 0 {
		t.Errorf("%d keys left under %s", n, got.Status.Datastore.Prefix)
	}
}

// intercepted is the admin cluster's client with some calls replaced.
func (e *env) intercepted(f interceptor.Funcs) client.Client {
	return interceptor.NewClient(e.api.Client, f)
}

// TestFailingStatusPatch: a status write the API server refuses is
// returned as the error, so the controller retries; the retry writes it.
func TestFailingStatusPatch(t *testing.T) {
	t.Parallel()
	e := start(t)
	tc := e.tenant(t, "status-refused", nil)
	e.mustReconcile(t, tc)
	refused := errors.New("injected: status write refused")
	e.r.Client = e.intercepted(interceptor.Funcs{
		SubResourcePatch: func(ctx context.Context, c client.Client, sub string, obj client.Object, patch client.Patch, opts ...client.SubResourcePatchOption) error {
			return refused
		},
	})
	if _, err := e.reconcile(t, tc); !errors.Is(err, refused) {
		t.Fatalf("Reconcile with the status write refused returned %v, want its error", err)
	}
	if got := e.get(t, tc); len(got.Status.Conditions) != 0 {
		t.Fatalf("status present although its write failed: %+v", got.Status)
	}
	e.r.Client = e.api.Client
	e.mustReconcile(t, tc)
	got := e.get(t, tc)
	wantCondition(t, got, kv1.ConditionReady, metav1.ConditionFalse, kv1.ReasonControlPlaneStarting)
	if got.Status.ObservedGeneration != got.Generation {
		t.Errorf("observedGeneration = %d after the retry, want %d", got.Status.ObservedGeneration, got.Generation)
	}
}

// TestFailingPhase: a phase that fails returns its error, stops the later
// phases, names the failure in Ready with a Warning Event, and leaves
// observedGeneration behind; the retry catches up.
func TestFailingPhase(t *testing.T) {
	t.Parallel()
	e := start(t)
	tc := e.tenant(t, "phase-fails", nil)
	e.mustReconcile(t, tc)
	e.emitted()
	refused := errors.New("injected: Service refused")
	e.r.Client = e.intercepted(interceptor.Funcs{
		Patch: func(ctx context.Context, c client.WithWatch, obj client.Object, patch client.Patch, opts ...client.PatchOption) error {
			if _, ok := obj.(*corev1.Service); ok {
				return refused
			}
			return c.Patch(ctx, obj, patch, opts...)
		},
	})
	if _, err := e.reconcile(t, tc); !errors.Is(err, refused) {
		t.Fatalf("Reconcile with the Service refused returned %v, want its error", err)
	}
	got := e.get(t, tc)
	if c := wantCondition(t, got, kv1.ConditionReady, metav1.ConditionFalse, kv1.ReasonReconcileFailed); !strings.Contains(c.Message, refused.Error()) {
		t.Errorf("Ready message %q does not carry the error", c.Message)
	}
	wantCondition(t, got, kv1.ConditionDatastoreReady, metav1.ConditionTrue, kv1.ReasonTenancyProvisioned)
	if got.Status.ObservedGeneration == got.Generation {
		t.Errorf("observedGeneration = %d after a failed reconcile", got.Status.ObservedGeneration)
	}
	for _, obj := range controlPlaneObjects(tc.Name) {
		if e.exists(t, obj) {
			t.Errorf("%T %s created after the exposure phase failed", obj, obj.GetName())
		}
	}
	wantEvent(t, e.emitted(), "Warning "+kv1.ReasonReconcileFailed)

	e.r.Client = e.api.Client
	e.mustReconcile(t, tc)
	got = e.get(t, tc)
	wantCondition(t, got, kv1.ConditionReady, metav1.ConditionFalse, kv1.ReasonControlPlaneStarting)
	if got.Status.ObservedGeneration != got.Generation {
		t.Errorf("observedGeneration = %d after the retry, want %d", got.Status.ObservedGeneration, got.Generation)
	}
}

// TestFailingFinalizerPatch: when the finalizer cannot be added nothing
// else happens and the error is returned.
func TestFailingFinalizerPatch(t *testing.T) {
	t.Parallel()
	e := start(t)
	tc := e.tenant(t, "finalizer-refused", nil)
	refused := errors.New("injected: TenantCluster patch refused")
	e.r.Client = e.intercepted(interceptor.Funcs{
		Patch: func(ctx context.Context, c client.WithWatch, obj client.Object, patch client.Patch, opts ...client.PatchOption) error {
			if _, ok := obj.(*kv1.TenantCluster); ok {
				return refused
			}
			return c.Patch(ctx, obj, patch, opts...)
		},
	})
	if _, err := e.reconcile(t, tc); !errors.Is(err, refused) {
		t.Fatalf("Reconcile with the finalizer refused returned %v, want its error", err)
	}
	got := e.get(t, tc)
	if len(got.Finalizers) != 0 {
		t.Errorf("finalizers = %v", got.Finalizers)
	}
	for _, obj := range controlPlaneObjects(tc.Name) {
		if e.exists(t, obj) {
			t.Errorf("%T %s created without the finalizer", obj, obj.GetName())
		}
	}
	if e.userExists(t, "tenant-"+string(got.UID)) {
		t.Error("etcd user created without the finalizer")
	}
}

// TestDeletedTenant: a TenantCluster gone before its reconcile is not an
// error.
func TestDeletedTenant(t *testing.T) {
	t.Parallel()
	e := start(t)
	res, err := e.r.Reconcile(context.Background(), ctrl.Request{NamespacedName: types.NamespacedName{Namespace: e.ns, Name: "never-created"}})
	if err != nil || !res.IsZero() {
		t.Fatalf("Reconcile of a missing TenantCluster = %+v, %v; want nothing to do", res, err)
	}
}

// testLoadBalancer: a tenant Service of type LoadBalancer gets a load
// balancer in the admin cluster (a Deployment reaching the tenant through
// the tunnel's client port, behind a LoadBalancer Service), whose address
// the reconcile copies into the tenant Service; deleting the Service
// removes the load balancer.
func testLoadBalancer(t *testing.T, e *env, tc *kv1.TenantCluster, tenant kubernetes.Interface) {
	t.Helper()
	ctx := context.Background()
	web := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "default"}, Spec: corev1.ServiceSpec{
		Type:     corev1.ServiceTypeLoadBalancer,
		Selector: map[string]string{"app": "web"},
		Ports:    []corev1.ServicePort{{Name: "http", Port: 80, TargetPort: intstr.FromInt32(8080)}},
	}}
	web, err := tenant.CoreV1().Services("default").Create(ctx, web, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	name := tenantlb.Name(tc.Name, types.NamespacedName{Namespace: "default", Name: "web"})
	dep, front := &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: name}}, &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: name}}
	// The first reconciles may wait for the watch of the tenant's Services.
	reconcileUntil(t, e, tc, "the load balancer of Service default/web", func() bool { return e.exists(t, dep) && e.exists(t, front) })
	args := strings.Join(dep.Spec.Template.Spec.Containers[0].Args, " ")
	clients := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: cp.TunnelClientsServiceName(tc.Name)}}
	if !e.exists(t, clients) {
		t.Fatal("no Service in front of the tunnel's client port")
	}
	for _, want := range []string{"--tunnel=" + clients.Spec.ClusterIP + ":8134", fmt.Sprintf("--port=http:80:%d", web.Spec.Ports[0].NodePort)} {
		if !strings.Contains(args, want) {
			t.Errorf("load balancer args %q lack %s", args, want)
		}
	}
	if front.Spec.Type != corev1.ServiceTypeLoadBalancer || len(front.Spec.Ports) != 1 || front.Spec.Ports[0].Port != 80 {
		t.Errorf("admin Service %+v, want type LoadBalancer on port 80", front.Spec)
	}
	// Its port opens in the tenant's NetworkPolicies at the next
	// reconcile.
	reconcileUntil(t, e, tc, "port 80 open to the load balancers", func() bool {
		return slices.Equal(ingressPorts(e.networkPolicy(t, tc, netpolicy.LoadBalancersName(tc.Name))), []string{"from-any:80"})
	})

	// The admin cluster gives its Service an address: it becomes the
	// tenant Service's.
	front.Status.LoadBalancer.Ingress = []corev1.LoadBalancerIngress{{IP: "192.0.2.10"}}
	if err := e.api.Client.Status().Update(ctx, front); err != nil {
		t.Fatal(err)
	}
	reconcileUntil(t, e, tc, "the address in the tenant Service", func() bool {
		got, err := tenant.CoreV1().Services("default").Get(ctx, "web", metav1.GetOptions{})
		return err == nil && len(got.Status.LoadBalancer.Ingress) == 1 && got.Status.LoadBalancer.Ingress[0].IP == "192.0.2.10"
	})
	wantEvent(t, e.emitted(), "Normal "+kv1.ReasonLoadBalancerAddress)

	if err := tenant.CoreV1().Services("default").Delete(ctx, "web", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	reconcileUntil(t, e, tc, "the load balancer to go", func() bool {
		return !e.exists(t, &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: name}}) && !e.exists(t, &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: name}})
	})
	reconcileUntil(t, e, tc, "no port open to the load balancers", func() bool {
		return len(ingressPorts(e.networkPolicy(t, tc, netpolicy.LoadBalancersName(tc.Name)))) == 0
	})
}

// reconcileUntil reconciles tc until cond holds, for up to 30 seconds.
func reconcileUntil(t *testing.T, e *env, tc *kv1.TenantCluster, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		e.mustReconcile(t, tc)
		if cond() {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("reconciled for 30s without %s", what)
		}
		time.Sleep(200 * time.Millisecond)
	}
}
