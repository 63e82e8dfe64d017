package datastorecontroller_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/events"
	clocktesting "k8s.io/utils/clock/testing"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"

	kv1 "kubinception.dev/kubinception/api/v1alpha1"
	"kubinception.dev/kubinception/internal/datastore"
	"kubinception.dev/kubinception/internal/datastorecontroller"
	"kubinception.dev/kubinception/internal/gatewaydeploy"
	"kubinception.dev/kubinception/internal/testenv"
)

// These tests drive the reconciler against a real kube-apiserver (shared by
// the package) and real etcd processes with authentication on, calling
// Reconcile as the controller would and checking the Datastore's status,
// the objects of its gateway and the Events. Nothing runs Deployments:
// a test that needs a ready gateway writes the Deployment's status itself.
// Each test has a datastore, namespace and etcd of its own, so they run in
// parallel.

func TestMain(m *testing.M) { testenv.Main(m) }

// env is one test's world: the API server, a datastore with its Secrets,
// a reconciler, its clock and its Events.
type env struct {
	api    *testenv.APIServer
	etcd   *testenv.Etcd
	ds     *kv1.Datastore
	ns     string
	clock  *clocktesting.FakePassiveClock
	events *events.FakeRecorder
	r      *datastorecontroller.Reconciler
}

// start gives the test a real etcd with authentication on and a
// Datastore named after the test pointing at it; its Secrets and its
// gateway live in a namespace of the same name.
func start(t *testing.T) *env {
	t.Helper()
	api := testenv.SharedAPIServer(t)
	e := testenv.StartEtcd(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := datastore.EnableAuth(ctx, e.Client(t, "root"), "root-password"); err != nil {
		t.Fatal(err)
	}
	name := strings.ToLower(strings.NewReplacer("/", "-", "_", "-").Replace(t.Name()))
	ds := testenv.CreateDatastore(t, api.Client, e, name, name)
	cache := &datastore.ClientCache{}
	t.Cleanup(cache.Close)
	// The real time, truncated as the API server stores it: the gateway's
	// certificates are issued at the reconciler's "now".
	clock := clocktesting.NewFakePassiveClock(time.Now().Truncate(time.Second))
	rec := events.NewFakeRecorder(100)
	return &env{api: api, etcd: e, ds: ds, ns: name, clock: clock, events: rec, r: &datastorecontroller.Reconciler{
		Client: api.Client, APIReader: api.Client, Clock: clock, Recorder: rec, Datastores: cache,
		Gateway: datastorecontroller.GatewayOptions{Namespace: name, Image: "kubinception.local/kubinception:test"},
	}}
}

func (e *env) reconcile(t *testing.T) (ctrl.Result, error) {
	t.Helper()
	return e.r.Reconcile(context.Background(), ctrl.Request{NamespacedName: types.NamespacedName{Name: e.ds.Name}})
}

// mustReconcile reconciles and fails the test on an error.
func (e *env) mustReconcile(t *testing.T) ctrl.Result {
	t.Helper()
	res, err := e.reconcile(t)
	if err != nil {
		t.Fatalf("Reconcile: %v", err)
	}
	return res
}

// get reads the Datastore as the API server has it.
func (e *env) get(t *testing.T) *kv1.Datastore {
	t.Helper()
	ds := &kv1.Datastore{}
	if err := e.api.Client.Get(context.Background(), client.ObjectKeyFromObject(e.ds), ds); err != nil {
		t.Fatal(err)
	}
	return ds
}

// emitted drains the Events recorded so far.
func (e *env) emitted() []string {
	var out []string
	for {
		select {
		case ev := <-e.events.Events:
			out = append(out, ev)
		default:
			return out
		}
	}
}

// wantEvent fails the test unless exactly the events with these prefixes
// ("Warning DatastoreUnreachable") were emitted since the last call.
func (e *env) wantEvents(t *testing.T, prefixes ...string) {
	t.Helper()
	got := e.emitted()
	if len(got) != len(prefixes) {
		t.Errorf("events = %q, want %d starting with %q", got, len(prefixes), prefixes)
		return
	}
	for i, p := range prefixes {
		if !strings.HasPrefix(got[i], p+" ") {
			t.Errorf("event %d = %q, want one starting with %q", i, got[i], p)
		}
	}
}

func condition(t *testing.T, ds *kv1.Datastore, typ string) metav1.Condition {
	t.Helper()
	c := meta.FindStatusCondition(ds.Status.Conditions, typ)
	if c == nil {
		t.Fatalf("Datastore %s has no %s condition: %+v", ds.Name, typ, ds.Status)
	}
	return *c
}

// setGatewayReady writes the gateway Deployment's status as the
// Deployment controller would once ready pods run.
func (e *env) setGatewayReady(t *testing.T, ready int32) {
	t.Helper()
	dep := &appsv1.Deployment{}
	if err := e.api.Client.Get(context.Background(), types.NamespacedName{Namespace: e.ns, Name: gatewaydeploy.DeploymentName(e.ds.Name)}, dep); err != nil {
		t.Fatalf("the gateway Deployment: %v", err)
	}
	dep.Status = appsv1.DeploymentStatus{ObservedGeneration: dep.Generation, Replicas: ready, ReadyReplicas: ready, AvailableReplicas: ready, UpdatedReplicas: ready}
	if err := e.api.Client.Status().Update(context.Background(), dep); err != nil {
		t.Fatal(err)
	}
}

// deadEndpoint is a loopback URL nothing listens on.
func deadEndpoint(t *testing.T) string {
	return fmt.Sprintf("https://127.0.0.1:%d", testenv.FreePort(t))
}

func TestHealthyDatastore(t *testing.T) {
	t.Parallel()
	e := start(t)
	ctx := context.Background()
	// Two tenants on this datastore, one on another.
	for i, placement := range []string{e.ds.Name, e.ds.Name, "elsewhere"} {
		tc := &kv1.TenantCluster{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("tenant-%d", i), Namespace: e.ns},
			Spec: kv1.TenantClusterSpec{Datastore: kv1.DatastorePlacement{Name: placement}}}
		if err := e.api.Client.Create(ctx, tc); err != nil {
			t.Fatal(err)
		}
	}

	res := e.mustReconcile(t)
	if res.RequeueAfter <= 0 {
		t.Errorf("result %+v: a healthy datastore must be checked again later", res)
	}
	ds := e.get(t)
	c := condition(t, ds, kv1.ConditionReady)
	if c.Status != metav1.ConditionTrue || c.Reason != kv1.ReasonAllMembersHealthy || c.ObservedGeneration != ds.Generation {
		t.Errorf("Ready = %+v, want True/%s at generation %d", c, kv1.ReasonAllMembersHealthy, ds.Generation)
	}
	if !c.LastTransitionTime.Time.Equal(e.clock.Now()) {
		t.Errorf("Ready changed at %v, want the reconciler's clock %v", c.LastTransitionTime, e.clock.Now())
	}
	if g := condition(t, ds, kv1.ConditionGatewayAvailable); g.Status != metav1.ConditionFalse || g.Reason != kv1.ReasonGatewayStarting {
		t.Errorf("GatewayAvailable = %+v, want False/%s while no gateway pod is ready", g, kv1.ReasonGatewayStarting)
	}
	want := kv1.DatastoreStatus{Members: 1, HealthyMembers: 1, Tenants: 2, ObservedGeneration: ds.Generation,
		Gateway: kv1.GatewayStatus{Endpoint: ds.Status.Gateway.Endpoint}}
	got := ds.Status
	got.Conditions = nil
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("status without conditions (-want +got):\n%s", diff)
	}
	if !strings.HasPrefix(ds.Status.Gateway.Endpoint, "https://") {
		t.Errorf("gateway endpoint = %q, want the gateway Service's URL", ds.Status.Gateway.Endpoint)
	}
	e.wantEvents(t, "Normal "+kv1.ReasonAllMembersHealthy, "Warning "+kv1.ReasonGatewayStarting)

	// The gateway's objects exist, owned by the Datastore.
	for _, obj := range []client.Object{
		&appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: gatewaydeploy.DeploymentName(ds.Name)}},
		&corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: gatewaydeploy.ServiceName(ds.Name)}},
		&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: gatewaydeploy.SecretName(ds.Name)}},
		&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: gatewaydeploy.CASecretName(ds.Name)}},
	} {
		if err := e.api.Client.Get(ctx, types.NamespacedName{Namespace: e.ns, Name: obj.GetName()}, obj); err != nil {
			t.Errorf("gateway object %s: %v", obj.GetName(), err)
			continue
		}
		if refs := obj.GetOwnerReferences(); len(refs) != 1 || refs[0].UID != ds.UID {
			t.Errorf("%T %s owners = %+v, want the Datastore", obj, obj.GetName(), refs)
		}
	}
	caBefore := &corev1.Secret{}
	if err := e.api.Client.Get(ctx, types.NamespacedName{Namespace: e.ns, Name: gatewaydeploy.CASecretName(ds.Name)}, caBefore); err != nil {
		t.Fatal(err)
	}

	// The gateway's pods become ready.
	e.clock.SetTime(e.clock.Now().Add(time.Minute))
	e.setGatewayReady(t, 2)
	e.mustReconcile(t)
	ds = e.get(t)
	if g := condition(t, ds, kv1.ConditionGatewayAvailable); g.Status != metav1.ConditionTrue || g.Reason != kv1.ReasonGatewayAvailable {
		t.Errorf("GatewayAvailable = %+v, want True/%s", g, kv1.ReasonGatewayAvailable)
	}
	if ds.Status.Gateway.ReadyReplicas != 2 {
		t.Errorf("gateway ready replicas = %d, want 2", ds.Status.Gateway.ReadyReplicas)
	}
	e.wantEvents(t, "Normal "+kv1.ReasonGatewayAvailable)

	// Nothing changed: a reconcile writes nothing, emits nothing and
	// keeps the gateway's CA.
	rv := ds.ResourceVersion
	e.clock.SetTime(e.clock.Now().Add(time.Minute))
	e.mustReconcile(t)
	if again := e.get(t); again.ResourceVersion != rv {
		t.Errorf("a reconcile with nothing changed wrote the Datastore (resourceVersion %s -> %s): %+v", rv, again.ResourceVersion, again.Status)
	}
	e.wantEvents(t)
	caAfter := &corev1.Secret{}
	if err := e.api.Client.Get(ctx, types.NamespacedName{Namespace: e.ns, Name: gatewaydeploy.CASecretName(ds.Name)}, caAfter); err != nil {
		t.Fatal(err)
	}
	if !cmp.Equal(caBefore.Data, caAfter.Data) {
		t.Error("the gateway's tenant CA changed between reconciles: every tenant's client certificate would stop working")
	}
}

func TestCredentialsProblems(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name string
		// spoil breaks the Datastore's Secrets and returns what the
		// message must name.
		spoil func(t *testing.T, e *env) string
	}{
		{name: "CA Secret missing", spoil: func(t *testing.T, e *env) string {
			e.api.Update(t, e.ds, func() { e.ds.Spec.CASecretRef.Name = "no-such-secret" })
			return "no-such-secret"
		}},
		{name: "root Secret missing", spoil: func(t *testing.T, e *env) string {
			e.api.Update(t, e.ds, func() { e.ds.Spec.RootSecretRef.Name = "no-such-root" })
			return "no-such-root"
		}},
		{name: "CA Secret without the certificate", spoil: func(t *testing.T, e *env) string {
			s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: e.ds.Spec.CASecretRef.Namespace, Name: e.ds.Spec.CASecretRef.Name}}
			e.api.Update(t, s, func() { delete(s.Data, "ca.crt") })
			return e.ds.Spec.CASecretRef.Name
		}},
		{name: "root Secret with a broken certificate", spoil: func(t *testing.T, e *env) string {
			s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: e.ds.Spec.RootSecretRef.Namespace, Name: e.ds.Spec.RootSecretRef.Name}}
			e.api.Update(t, s, func() { s.Data["tls.crt"] = []byte("not a certificate") })
			return e.ds.Spec.RootSecretRef.Name
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			e := start(t)
			mention := c.spoil(t, e)
			res := e.mustReconcile(t)
			if res.RequeueAfter <= 0 {
				t.Errorf("result %+v: a datastore with broken credentials must be checked again", res)
			}
			ds := e.get(t)
			cond := condition(t, ds, kv1.ConditionReady)
			if cond.Status != metav1.ConditionFalse || cond.Reason != kv1.ReasonDatastoreCredentials {
				t.Errorf("Ready = %+v, want False/%s", cond, kv1.ReasonDatastoreCredentials)
			}
			if !strings.Contains(cond.Message, mention) {
				t.Errorf("Ready message %q does not name %s", cond.Message, mention)
			}
			if ds.Status.ObservedGeneration != ds.Generation {
				t.Errorf("observedGeneration = %d, want %d: the status describes the current spec", ds.Status.ObservedGeneration, ds.Generation)
			}
			if got := e.emitted(); len(got) == 0 || !strings.HasPrefix(got[0], "Warning "+kv1.ReasonDatastoreCredentials+" ") {
				t.Errorf("events = %q, want a Warning %s first", got, kv1.ReasonDatastoreCredentials)
			}
			// The gateway gets no root credential it cannot check.
			dep := &appsv1.Deployment{}
			if err := e.api.Client.Get(context.Background(), types.NamespacedName{Namespace: e.ns, Name: gatewaydeploy.DeploymentName(ds.Name)}, dep); err == nil {
				t.Errorf("gateway Deployment created although the Datastore's credentials are broken")
			}
		})
	}
}

// TestUnreachableAndBack takes a healthy datastore's endpoint away and
// gives it back: Ready follows, with the transition time and an Event for
// each change, and the reconcile does not hang on the dead endpoint.
func TestUnreachableAndBack(t *testing.T) {
	t.Parallel()
	e := start(t)
	e.mustReconcile(t)
	e.emitted()
	healthyAt := e.clock.Now()

	e.clock.SetTime(healthyAt.Add(time.Minute))
	e.api.Update(t, e.ds, func() { e.ds.Spec.Endpoints = []string{deadEndpoint(t)} })
	res := e.mustReconcile(t)
	if res.RequeueAfter <= 0 {
		t.Errorf("result %+v: an unreachable datastore must be checked again", res)
	}
	ds := e.get(t)
	c := condition(t, ds, kv1.ConditionReady)
	if c.Status != metav1.ConditionFalse || c.Reason != kv1.ReasonDatastoreUnreachable || !strings.Contains(c.Message, ds.Spec.Endpoints[0]) {
		t.Errorf("Ready = %+v, want False/%s naming %s", c, kv1.ReasonDatastoreUnreachable, ds.Spec.Endpoints[0])
	}
	if !c.LastTransitionTime.Time.Equal(e.clock.Now()) {
		t.Errorf("Ready became False at %v, want %v", c.LastTransitionTime, e.clock.Now())
	}
	if ds.Status.ObservedGeneration != ds.Generation {
		t.Errorf("observedGeneration = %d, want %d", ds.Status.ObservedGeneration, ds.Generation)
	}
	e.wantEvents(t, "Warning "+kv1.ReasonDatastoreUnreachable)

	e.clock.SetTime(healthyAt.Add(2 * time.Minute))
	e.api.Update(t, e.ds, func() { e.ds.Spec.Endpoints = []string{e.etcd.Endpoint} })
	e.mustReconcile(t)
	ds = e.get(t)
	c = condition(t, ds, kv1.ConditionReady)
	if c.Status != metav1.ConditionTrue || !c.LastTransitionTime.Time.Equal(e.clock.Now()) {
		t.Errorf("Ready = %+v, want True since %v", c, e.clock.Now())
	}
	if ds.Status.HealthyMembers != 1 || ds.Status.ObservedGeneration != ds.Generation {
		t.Errorf("status = %+v, want 1 healthy member at generation %d", ds.Status, ds.Generation)
	}
	e.wantEvents(t, "Normal "+kv1.ReasonAllMembersHealthy)
}

// intercepted is c with some calls replaced, to inject failures.
func intercepted(c client.Client, f interceptor.Funcs) client.Client {
	return interceptor.NewClient(c.(client.WithWatch), f)
}

// TestFailingStatusPatch: a status write the API server refuses is an
// error (so the controller retries with backoff), and the next reconcile
// writes the status.
func TestFailingStatusPatch(t *testing.T) {
	t.Parallel()
	e := start(t)
	refused := errors.New("injected: status patch refused")
	e.r.Client = intercepted(e.api.Client, interceptor.Funcs{
		SubResourcePatch: func(ctx context.Context, c client.Client, sub string, obj client.Object, patch client.Patch, opts ...client.SubResourcePatchOption) error {
			return refused
		},
		SubResourceUpdate: func(ctx context.Context, c client.Client, sub string, obj client.Object, opts ...client.SubResourceUpdateOption) error {
			return refused
		},
	})
	if _, err := e.reconcile(t); !errors.Is(err, refused) {
		t.Fatalf("Reconcile with a refused status write returned %v, want the write's error", err)
	}
	if ds := e.get(t); len(ds.Status.Conditions) != 0 || ds.Status.ObservedGeneration != 0 {
		t.Fatalf("status written although the write failed: %+v", ds.Status)
	}

	e.r.Client = e.api.Client
	e.mustReconcile(t)
	ds := e.get(t)
	if c := condition(t, ds, kv1.ConditionReady); c.Status != metav1.ConditionTrue || ds.Status.ObservedGeneration != ds.Generation {
		t.Fatalf("after the retry: status = %+v", ds.Status)
	}
}

// TestFailingTenantCount: when tenants cannot be listed the reconcile
// fails and the status does not claim to describe the new generation.
func TestFailingTenantCount(t *testing.T) {
	t.Parallel()
	e := start(t)
	e.mustReconcile(t)
	e.api.Update(t, e.ds, func() { e.ds.Spec.Endpoints = append(e.ds.Spec.Endpoints, e.etcd.Endpoint) })
	refused := errors.New("injected: list refused")
	e.r.Client = intercepted(e.api.Client, interceptor.Funcs{
		List: func(ctx context.Context, c client.WithWatch, list client.ObjectList, opts ...client.ListOption) error {
			if _, ok := list.(*kv1.TenantClusterList); ok {
				return refused
			}
			return c.List(ctx, list, opts...)
		},
	})
	if _, err := e.reconcile(t); !errors.Is(err, refused) {
		t.Errorf("Reconcile with tenants not listable returned %v, want the list's error", err)
	}
	if ds := e.get(t); ds.Status.ObservedGeneration == ds.Generation {
		t.Errorf("observedGeneration = %d although the reconcile of generation %d failed", ds.Status.ObservedGeneration, ds.Generation)
	}
}

// TestGatewayFailure: a gateway Deployment the API server refuses is an
// error; the status says so in GatewayAvailable but keeps the last
// observed generation; the next reconcile catches up.
func TestGatewayFailure(t *testing.T) {
	t.Parallel()
	e := start(t)
	e.mustReconcile(t)
	e.emitted()
	e.api.Update(t, e.ds, func() { e.ds.Spec.Gateway.Replicas = ptr.To[int32](3) })
	refused := errors.New("injected: Deployment refused")
	e.r.Client = intercepted(e.api.Client, interceptor.Funcs{
		Patch: func(ctx context.Context, c client.WithWatch, obj client.Object, patch client.Patch, opts ...client.PatchOption) error {
			if _, ok := obj.(*appsv1.Deployment); ok {
				return refused
			}
			return c.Patch(ctx, obj, patch, opts...)
		},
	})
	if _, err := e.reconcile(t); !errors.Is(err, refused) {
		t.Fatalf("Reconcile with the gateway Deployment refused returned %v, want its error", err)
	}
	ds := e.get(t)
	g := condition(t, ds, kv1.ConditionGatewayAvailable)
	if g.Status != metav1.ConditionFalse || g.Reason != kv1.ReasonGatewayFailed || !strings.Contains(g.Message, refused.Error()) {
		t.Errorf("GatewayAvailable = %+v, want False/%s with the error", g, kv1.ReasonGatewayFailed)
	}
	if ds.Status.ObservedGeneration == ds.Generation {
		t.Errorf("observedGeneration = %d although the reconcile of generation %d failed", ds.Status.ObservedGeneration, ds.Generation)
	}
	e.wantEvents(t, "Warning "+kv1.ReasonGatewayFailed)

	e.r.Client = e.api.Client
	e.mustReconcile(t)
	ds = e.get(t)
	if ds.Status.ObservedGeneration != ds.Generation {
		t.Errorf("observedGeneration = %d after a successful reconcile of generation %d", ds.Status.ObservedGeneration, ds.Generation)
	}
	dep := &appsv1.Deployment{}
	if err := e.api.Client.Get(context.Background(), types.NamespacedName{Namespace: e.ns, Name: gatewaydeploy.DeploymentName(ds.Name)}, dep); err != nil {
		t.Fatal(err)
	}
	if dep.Spec.Replicas == nil || *dep.Spec.Replicas != 3 {
		t.Errorf("gateway replicas = %v, want the 3 of the spec", dep.Spec.Replicas)
	}
}

// TestNoGatewayOptions: an operator started without a gateway image
// reports it, instead of running tenants without a gateway.
func TestNoGatewayOptions(t *testing.T) {
	t.Parallel()
	e := start(t)
	e.r.Gateway = datastorecontroller.GatewayOptions{}
	if _, err := e.reconcile(t); err == nil {
		t.Fatal("Reconcile without gateway options succeeded")
	}
	ds := e.get(t)
	if g := condition(t, ds, kv1.ConditionGatewayAvailable); g.Status != metav1.ConditionFalse || g.Reason != kv1.ReasonGatewayFailed || !strings.Contains(g.Message, "--gateway-image") {
		t.Errorf("GatewayAvailable = %+v, want False/%s naming the missing flag", g, kv1.ReasonGatewayFailed)
	}
}

// TestDeletedDatastore: a Datastore gone between the event and the
// reconcile is not an error.
func TestDeletedDatastore(t *testing.T) {
	t.Parallel()
	api := testenv.SharedAPIServer(t)
	r := &datastorecontroller.Reconciler{Client: api.Client, APIReader: api.Client,
		Clock: clocktesting.NewFakePassiveClock(time.Now()), Datastores: &datastore.ClientCache{}}
	res, err := r.Reconcile(context.Background(), ctrl.Request{NamespacedName: types.NamespacedName{Name: "never-created"}})
	if err != nil || !res.IsZero() {
		t.Fatalf("Reconcile of a missing Datastore = %+v, %v; want nothing to do", res, err)
	}
}
