package tenantcluster_test

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"io"
	"net"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/go-logr/logr/testr"
	appsv1 "k8s.io/api/apps/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/utils/clock"

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

// TestWakeThroughFrontDoor holds a request to a hibernated tenant in the
// front door and answers it once the tenant is woken: the front door's
// proxy with the operator's route and the activity Lease in the real API
// server, and the reconciler. The request is sent while no API server
// runs; the front door renews the Lease; the reconcile that follows
// scales the control plane up; the API server started in the pod's place
// (as the kubelet would) answers the very request that was waiting. A
// forwarder stands in for the Service: it takes connections only once the
// woken API server is ready, as kube-proxy sends them only to ready pods.
func TestWakeThroughFrontDoor(t *testing.T) {
	t.Parallel()
	e := start(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	e.r.FrontDoor = tenantcluster.FrontDoorSettings{Domain: "tenants.test", Port: 31443}
	if err := e.api.Client.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: frontdoor.Namespace}}); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	name := "wake-" + e.ns
	tc := e.tenant(t, name, func(tc *kv1.TenantCluster) {
		tc.Spec.Exposure.Type = kv1.ExposureFrontDoor
		tc.Spec.Hibernation = kv1.HibernationSpec{Enabled: true}
	})
	got, tenant := e.ready(t, tc)
	dep := &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: cp.DeploymentName(name)}}
	readDeployment := func() {
		t.Helper()
		if !e.exists(t, dep) || dep.Spec.Replicas == nil {
			t.Fatalf("no control-plane Deployment %s", dep.Name)
		}
	}
	// Its first start waits for the bootstrap hooks; every start after a
	// hibernation does not.
	if readDeployment(); cp.FastStarting(dep) {
		t.Fatal("the first start's probe leaves out the bootstrap hooks")
	}

	cs, err := kubernetes.NewForConfig(e.api.Config)
	if err != nil {
		t.Fatal(err)
	}
	route, err := cs.CoreV1().ConfigMaps(frontdoor.Namespace).Get(ctx, frontdoor.ObjectName(e.ns, name), metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	srv := &frontdoor.Server{HoldTimeout: time.Minute, Log: testr.New(t),
		Activity: &frontdoor.LeaseActivity{Leases: cs.CoordinationV1().Leases(frontdoor.Namespace), Identity: "test", Every: 20 * time.Second, Clock: clock.RealClock{}, Log: testr.New(t)}}
	srv.SetTable(frontdoor.BuildTable([]*corev1.ConfigMap{route}))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	door := ln.Addr().String()
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, ln) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("front door: %v", err)
		}
	}()

	// The customer's kubeconfig, its name resolved to the front door.
	kc := &corev1.Secret{}
	if err := e.api.Client.Get(ctx, types.NamespacedName{Namespace: e.ns, Name: got.Status.AdminKubeconfigSecret}, kc); err != nil {
		t.Fatal(err)
	}
	rc, err := clientcmd.RESTConfigFromKubeConfig(kc.Data["kubeconfig"])
	if err != nil {
		t.Fatal(err)
	}
	rc.Timeout = 90 * time.Second
	rc.Dial = func(ctx context.Context, network, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, network, door)
	}
	customer, err := kubernetes.NewForConfig(rc)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := customer.Discovery().ServerVersion(); err != nil {
		t.Fatalf("the tenant does not answer through the front door: %v", err)
	}

	// Hibernate: the Deployment at zero, and the API server gone as the
	// kubelet would stop it.
	e.clock.SetTime(time.Now())
	e.api.Update(t, got, func() {
		got.Annotations = map[string]string{kv1.AnnotationHibernateRequested: time.Now().Add(time.Second).Format(time.RFC3339Nano)}
	})
	e.clock.SetTime(time.Now().Add(2 * time.Second))
	e.mustReconcile(t, tc)
	if h := e.get(t, tc).Status.Hibernation; !h.Hibernated {
		t.Fatalf("not hibernated on request: %+v", h)
	}
	if readDeployment(); *dep.Spec.Replicas != 0 || !cp.FastStarting(dep) {
		t.Fatalf("hibernated Deployment: %d replicas, fast start %v; want 0 and the faster start's probe", *dep.Spec.Replicas, cp.FastStarting(dep))
	}
	tenant.stop(t)
	gate, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gateAddr := gate.Addr().String()
	gate.Close()
	route.Data[frontdoor.KeyAPIServer] = gateAddr
	srv.SetTable(frontdoor.BuildTable([]*corev1.ConfigMap{route}))

	// A request now waits in the front door.
	type answer struct {
		version string
		err     error
	}
	answered := make(chan answer, 1)
	sent := time.Now()
	go func() {
		v, err := customer.Discovery().ServerVersion()
		if err != nil {
			answered <- answer{err: err}
			return
		}
		answered <- answer{version: v.GitVersion}
	}()
	leaseKey := types.NamespacedName{Namespace: frontdoor.Namespace, Name: frontdoor.ObjectName(e.ns, name)}
	if err := wait.PollUntilContextTimeout(ctx, 50*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
		l := &coordinationv1.Lease{}
		if err := e.api.Client.Get(ctx, leaseKey, l); err != nil {
			return false, err
		}
		return frontdoor.LastActivity(l).After(e.get(t, tc).Status.Hibernation.Since.Time), nil
	}); err != nil {
		t.Fatalf("the front door did not renew the activity Lease for the waiting request: %v", err)
	}
	select {
	case a := <-answered:
		t.Fatalf("answered before the tenant woke: %+v", a)
	default:
	}
	// The operator reconciles on the Lease's update.
	e.clock.SetTime(time.Now())
	e.mustReconcile(t, tc)
	if h := e.get(t, tc).Status.Hibernation; h.Hibernated || h.Reason != "Request" {
		t.Fatalf("hibernation after the request: %+v, want awake by Request", h)
	}
	if readDeployment(); *dep.Spec.Replicas != 1 || !cp.FastStarting(dep) {
		t.Fatalf("woken Deployment: %d replicas, fast start %v; want 1 and the faster start's probe kept", *dep.Spec.Replicas, cp.FastStarting(dep))
	}
	e.setAvailable(t, tc)
	e.startTenantAPIServer(t, e.get(t, tc))
	e.forward(t, gateAddr, e.get(t, tc))
	select {
	case a := <-answered:
		if a.err != nil || a.version == "" {
			t.Fatalf("the held request failed: %v", a.err)
		}
		t.Logf("held request answered %s after it was sent", time.Since(sent).Round(time.Millisecond))
	case <-time.After(time.Minute):
		t.Fatal("the held request was not answered within a minute of the wake")
	}
}

// forward stands in for the tenant's Service once a ready API server is
// behind it: it listens on addr and joins each connection to the API
// server at the Service's address.
func (e *env) forward(t *testing.T, addr string, tc *kv1.TenantCluster) {
	t.Helper()
	svc := &corev1.Service{}
	if err := e.api.Client.Get(context.Background(), types.NamespacedName{Namespace: tc.Namespace, Name: cp.ServiceName(tc.Name)}, svc); err != nil {
		t.Fatal(err)
	}
	backend := net.JoinHostPort(svc.Spec.ClusterIP, strconv.Itoa(cp.DefaultPort))
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				b, err := net.Dial("tcp", backend)
				if err != nil {
					return
				}
				defer b.Close()
				go func() { _, _ = io.Copy(b, c) }()
				_, _ = io.Copy(c, b)
			}()
		}
	}()
}
