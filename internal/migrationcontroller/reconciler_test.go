package migrationcontroller_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/clock"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	kv1 "kubinception.dev/kubinception/api/v1alpha1"
	"kubinception.dev/kubinception/internal/controlplane"
	"kubinception.dev/kubinception/internal/gateway"
	"kubinception.dev/kubinception/internal/gatewaydeploy"
	"kubinception.dev/kubinception/internal/migration"
	"kubinception.dev/kubinception/internal/migrationcontroller"
	"kubinception.dev/kubinception/internal/release"
	"kubinception.dev/kubinception/internal/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// TestReconcileMovesTenant changes a TenantCluster's spec.datastore.name
// from the Datastore serving it to another, each a real etcd with its
// gateway, and reconciles: the keys move, the status names the new
// Datastore and the migration's phase, pause and revisions, and the
// tenant's client of the old gateway reads and writes the new datastore.
func TestReconcileMovesTenant(t *testing.T) {
	a := testenv.SharedAPIServer(t)
	c := a.Client
	ctx := context.Background()
	src, dst := testenv.StartGatewayDatastore(t), testenv.StartGatewayDatastore(t)
	const ns = "migration-system"
	dss := testenv.CreateDatastore(t, c, src.Etcd, "mig-src", ns)
	dsd := testenv.CreateDatastore(t, c, dst.Etcd, "mig-dst", ns)
	policy := func(cfg *gateway.Config) { cfg.Policy = gateway.StaticPolicy{}; cfg.CompactionInterval = 0 }
	gs, gd := src.StartGateway(t, policy), dst.StartGateway(t, policy)
	for ds, g := range map[*kv1.Datastore]*testenv.Gateway{dss: gs, dsd: gd} {
		ds.Status.Gateway.Endpoint = "https://" + g.Addr()
		if err := c.Status().Update(ctx, ds); err != nil {
			t.Fatal(err)
		}
	}
	for name, ds := range map[string]*testenv.GatewayDatastore{"mig-src": src, "mig-dst": dst} {
		if err := c.Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: gatewaydeploy.CASecretName(name), Namespace: ns},
			Data: map[string][]byte{gatewaydeploy.FileCACert: ds.TenantCA.CertPEM, gatewaydeploy.FileCAKey: ds.TenantCA.KeyPEM}}); err != nil {
			t.Fatal(err)
		}
	}
	tc := &kv1.TenantCluster{
		ObjectMeta: metav1.ObjectMeta{Name: "moving", Namespace: "default"},
		Spec: kv1.TenantClusterSpec{
			Version:   release.DefaultKubernetesVersion,
			Datastore: kv1.DatastorePlacement{Name: "mig-src"},
			Network:   kv1.NetworkSpec{ServiceCIDR: "10.96.0.0/16", PodCIDR: "10.244.0.0/16", ClusterDomain: "cluster.local", DNSServiceIP: "10.96.0.10"},
		},
	}
	if err := c.Create(ctx, tc); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Delete(context.Background(), tc) })
	tc.Status.Datastore.Name = "mig-src"
	if err := c.Status().Update(ctx, tc); err != nil {
		t.Fatal(err)
	}
	uid := string(tc.UID)
	cli, err := src.TenantClient(gs.Addr(), uid)
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	for i := range 200 {
		if _, err := cli.Put(ctx, fmt.Sprintf("/registry/configmaps/default/c-%03d", i), "v"); err != nil {
			t.Fatal(err)
		}
	}
	r := &migrationcontroller.Reconciler{Client: c, APIReader: c, Clock: clock.RealClock{}, GatewayNamespace: ns}
	req := reconcile.Request{NamespacedName: types.NamespacedName{Namespace: tc.Namespace, Name: tc.Name}}

	// Nothing to do while the spec names the serving Datastore.
	if _, err := r.Reconcile(ctx, req); err != nil {
		t.Fatal(err)
	}
	if err := c.Get(ctx, req.NamespacedName, tc); err != nil || tc.Status.Migration != nil {
		t.Fatalf("migration without a change: %+v %v", tc.Status.Migration, err)
	}

	tc.Spec.Datastore.Name = "mig-dst"
	if err := c.Update(ctx, tc); err != nil {
		t.Fatalf("change spec.datastore.name: %v", err)
	}
	start := time.Now()
	if _, err := r.Reconcile(ctx, req); err != nil {
		t.Fatal(err)
	}
	if err := c.Get(ctx, req.NamespacedName, tc); err != nil {
		t.Fatal(err)
	}
	m := tc.Status.Migration
	if m == nil || m.Phase != kv1.MigrationPhase(migration.PhaseCompleted) || tc.Status.Datastore.Name != "mig-dst" {
		t.Fatalf("after the reconcile: serving %q, migration %+v", tc.Status.Datastore.Name, m)
	}
	t.Logf("moved in %s: %+v (pause %s)", time.Since(start).Round(time.Millisecond), *m, m.Pause)
	if m.Source != "mig-src" || m.Destination != "mig-dst" || m.Keys != 200 || m.Pause == nil || m.SwitchRevision == 0 || m.CompletionTime == nil || m.Attempts != 1 {
		t.Errorf("migration status %+v", *m)
	}
	n, err := dst.Root.Get(ctx, "/tenants/"+uid, clientv3.WithPrefix(), clientv3.WithCountOnly())
	if err != nil || n.Count != 200 {
		t.Errorf("destination holds %v keys (%v), want 200", n, err)
	}
	n, err = src.Root.Get(ctx, "/tenants/"+uid, clientv3.WithPrefix(), clientv3.WithCountOnly())
	if err != nil || n.Count != 0 {
		t.Errorf("source holds %v keys (%v), want 0", n, err)
	}
	wctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	if _, err := cli.Put(wctx, "/registry/after", "v"); err != nil {
		t.Fatalf("write through the old gateway after the move: %v", err)
	}
	if n, err := dst.Root.Get(ctx, "/tenants/"+uid+"/registry/after"); err != nil || len(n.Kvs) != 1 {
		t.Errorf("the write after the move is not in the destination: %v %v", n, err)
	}

	// The source forwards the tenant while an API server of the old
	// rollout still uses its gateway; once none does, the record goes.
	apiserver := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "moving-old", Namespace: tc.Namespace, Labels: controlplane.Labels(tc.Name)},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "kube-apiserver", Image: "kube-apiserver",
			Args: []string{"--etcd-servers=" + dss.Status.Gateway.Endpoint}}}},
	}
	if err := c.Create(ctx, apiserver); err != nil {
		t.Fatal(err)
	}
	forwarding := func() bool {
		t.Helper()
		fwd, err := migration.Forwarded(ctx, src.Root, uid)
		if err != nil {
			t.Fatal(err)
		}
		return fwd
	}
	res, err := r.Reconcile(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Get(ctx, req.NamespacedName, tc); err != nil || res.RequeueAfter == 0 || tc.Status.Migration.ReleaseTime != nil || !forwarding() {
		t.Fatalf("released while a pod used the source's gateway: %+v %v", tc.Status.Migration, err)
	}
	if err := c.Delete(ctx, apiserver, client.GracePeriodSeconds(0)); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Reconcile(ctx, req); err != nil {
		t.Fatal(err)
	}
	if err := c.Get(ctx, req.NamespacedName, tc); err != nil || tc.Status.Migration.ReleaseTime == nil {
		t.Fatalf("not released once no pod used the source's gateway: %+v %v", tc.Status.Migration, err)
	}
	if forwarding() {
		t.Error("the source still forwards the tenant after the release")
	}

	// Done: reconciling again changes nothing.
	if _, err := r.Reconcile(ctx, req); err != nil {
		t.Fatal(err)
	}
	if err := c.Get(ctx, req.NamespacedName, tc); err != nil || tc.Status.Migration.Attempts != 1 || tc.Status.Migration.ReleaseTime == nil {
		t.Errorf("a second reconcile: %+v %v", tc.Status.Migration, err)
	}

	// Back to the Datastore it left, then deleted while an API server
	// still uses the gateway it left: a tenant going away needs no
	// forwarding, so the record goes at once.
	tc.Spec.Datastore.Name = "mig-src"
	tc.Finalizers = append(tc.Finalizers, "test.kubinception.dev/hold")
	if err := c.Update(ctx, tc); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Reconcile(ctx, req); err != nil {
		t.Fatal(err)
	}
	if err := c.Get(ctx, req.NamespacedName, tc); err != nil || tc.Status.Datastore.Name != "mig-src" || tc.Status.Migration.Phase != kv1.MigrationPhase(migration.PhaseCompleted) {
		t.Fatalf("moving back: serving %q, %+v %v", tc.Status.Datastore.Name, tc.Status.Migration, err)
	}
	if n, err := src.Root.Get(ctx, "/tenants/"+uid, clientv3.WithPrefix(), clientv3.WithCountOnly()); err != nil || n.Count != 201 {
		t.Errorf("the original datastore holds %v keys after the move back (%v), want 201", n, err)
	}
	apiserver.ResourceVersion = ""
	apiserver.Spec.Containers[0].Args = []string{"--etcd-servers=" + dsd.Status.Gateway.Endpoint}
	if err := c.Create(ctx, apiserver); err != nil {
		t.Fatal(err)
	}
	if err := c.Delete(ctx, tc); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Reconcile(ctx, req); err != nil {
		t.Fatal(err)
	}
	if fwd, err := migration.Forwarded(ctx, dst.Root, uid); err != nil || fwd {
		t.Errorf("the datastore left still forwards the deleted tenant: %v %v", fwd, err)
	}
	if err := c.Get(ctx, req.NamespacedName, tc); err == nil {
		tc.Finalizers = nil
		if err := c.Update(ctx, tc); err != nil {
			t.Error(err)
		}
	}
	_ = c.Delete(ctx, apiserver, client.GracePeriodSeconds(0))
}
