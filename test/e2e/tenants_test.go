package e2e

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	appsv1 "k8s.io/api/apps/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/client"

	kv1 "kubinception.dev/kubinception/api/v1alpha1"
	"kubinception.dev/kubinception/internal/controlplane"
	"kubinception.dev/kubinception/internal/datastore"
	"kubinception.dev/kubinception/internal/install"
	"kubinception.dev/kubinception/internal/local/admincluster"
	"kubinception.dev/kubinception/internal/local/hostproc"
	"kubinception.dev/kubinception/internal/scheme"
	"kubinception.dev/kubinception/internal/testenv"
)

// TestTenantClusters runs the operator on the admin cluster and checks
// tenants from the outside, where only real pods and a real datastore
// show it: concurrent creation, isolation in the API and in etcd itself,
// control-plane restarts, an operator restart in the middle of creation,
// deletion and a deletion that waits for an unreachable datastore. (The
// API's validation rules are tested against a real API server in
// internal/install.)
func TestTenantClusters(t *testing.T) {
	requireE2E(t)
	upAndInstall(t)
	// The tenants go with the test, so the next test's tenants do not
	// share the machine with idle control planes.
	t.Cleanup(func() {
		cleanupKubectl(t, adminKubeconfig(), "-n", "default", "delete", "tenantclusters", "--all", "--timeout=5m")
	})
	if !t.Run("two tenants at once", testTwoTenants) {
		t.FailNow()
	}
	t.Run("control plane survives a killed API server and a deleted pod", testControlPlaneRestart)
	t.Run("operator restart in the middle of creation", testOperatorRestart)
	t.Run("delete leaves nothing in the datastore", testDelete)
	t.Run("delete waits for an unreachable datastore", testDeleteUnreachableDatastore)
}

func adminClient(t *testing.T) client.Client {
	t.Helper()
	rc, err := clientcmd.BuildConfigFromFlags("", adminKubeconfig())
	if err != nil {
		t.Fatal(err)
	}
	c, err := client.New(rc, client.Options{Scheme: scheme.New()})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// getTenant reads a tenant in the default namespace.
func getTenant(ctx context.Context, c client.Client, name string) (*kv1.TenantCluster, error) {
	tc := &kv1.TenantCluster{}
	return tc, c.Get(ctx, types.NamespacedName{Namespace: "default", Name: name}, tc)
}

// waitTenantReady waits for Ready and returns the tenant.
func waitTenantReady(t *testing.T, name string) *kv1.TenantCluster {
	t.Helper()
	c := adminClient(t)
	var tc *kv1.TenantCluster
	eventually(t, 5*time.Minute, "tenant "+name+" to be Ready", func(ctx context.Context) error {
		var err error
		if tc, err = getTenant(ctx, c, name); err != nil {
			return err
		}
		if !meta.IsStatusConditionTrue(tc.Status.Conditions, kv1.ConditionReady) || tc.Status.ObservedGeneration != tc.Generation {
			return fmt.Errorf("conditions: %+v", tc.Status.Conditions)
		}
		return nil
	})
	return tc
}

// tenantKubeconfig writes the tenant's admin kubeconfig, fetched with the
// CLI, and returns its path.
func tenantKubeconfig(t *testing.T, name string) string {
	t.Helper()
	r := run(t, "kubeconfig", name, "--kubeconfig", adminKubeconfig())
	if r.err != nil {
		t.Fatalf("kubeconfig %s:\n%s", name, r)
	}
	path := filepath.Join(t.TempDir(), name+".kubeconfig")
	if err := os.WriteFile(path, []byte(r.stdout), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func testTwoTenants(t *testing.T) {
	createTenants(t, "alpha", "beta")
	a, b := waitTenantReady(t, "alpha"), waitTenantReady(t, "beta")
	if a.Status.Datastore.Prefix == "" || a.Status.Datastore.Prefix == b.Status.Datastore.Prefix {
		t.Fatalf("tenants' prefixes %q and %q: want two distinct ones", a.Status.Datastore.Prefix, b.Status.Datastore.Prefix)
	}
	ka, kb := tenantKubeconfig(t, "alpha"), tenantKubeconfig(t, "beta")
	for _, kc := range []string{ka, kb} {
		if !slices.Contains(names(t, kc, "get", "namespaces"), "namespace/kube-system") {
			t.Fatalf("no kube-system namespace in %s", kc)
		}
	}
	checkKubernetesEndpoints(t, a, ka)
	mustTkube(t, ka, "create", "namespace", "only-in-alpha")
	mustTkube(t, ka, "-n", "only-in-alpha", "create", "secret", "generic", "alpha-secret", "--from-literal=k=alpha-value")
	if out, err := tkube(t, kb, "get", "namespace", "only-in-alpha"); err == nil || !strings.Contains(out, "NotFound") {
		t.Fatalf("beta sees alpha's namespace: %v\n%s", err, out)
	}
	if secrets := strings.Fields(mustTkube(t, kb, "get", "secrets", "-A", "-o", "name")); slices.Contains(secrets, "secret/alpha-secret") {
		t.Fatalf("beta sees alpha's secret: %v", secrets)
	}
	if out := mustTkube(t, ka, "-n", "only-in-alpha", "get", "secret", "alpha-secret", "-o", "jsonpath={.data.k}"); out == "" {
		t.Fatal("alpha's own secret has no data")
	}
}

// checkKubernetesEndpoints checks, inside a tenant, that the kubernetes
// Service's Endpoints and its one EndpointSlice name the address and port
// the API server advertises, as the conformance test "should have
// Endpoints and EndpointSlices pointing to API Server" requires. The
// operator writes them; the API servers do not.
func checkKubernetesEndpoints(t *testing.T, tc *kv1.TenantCluster, kubeconfig string) {
	t.Helper()
	rc, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	rc.WarningHandler = rest.NoWarnings{} // v1 Endpoints are deprecated, and still what conformance reads
	cs, err := kubernetes.NewForConfig(rc)
	if err != nil {
		t.Fatal(err)
	}
	var advertised, port string
	if pid := apiserverPID(t, tc); pid != 0 {
		for _, a := range hostproc.Read(pid).Args {
			if v, ok := strings.CutPrefix(a, "--advertise-address="); ok {
				advertised = v
			}
			if v, ok := strings.CutPrefix(a, "--secure-port="); ok {
				port = v
			}
		}
	}
	if advertised == "" || port == "" {
		t.Fatalf("%s: no API server process with --advertise-address and --secure-port", tc.Name)
	}
	got, err := testenv.KubernetesServiceEndpoints(t.Context(), cs)
	if err != nil {
		t.Fatalf("%s: %v", tc.Name, err)
	}
	want := []string{"Endpoints " + advertised + ":" + port, "EndpointSlice kubernetes " + advertised + ":" + port}
	if !slices.Equal(got, want) {
		t.Fatalf("%s: the kubernetes Service's endpoints are %q, want %q (what the API server advertises)", tc.Name, got, want)
	}
	t.Logf("%s: kubernetes Service endpoints %q", tc.Name, got)
}

// apiserverPID finds the API server process of a tenant, or returns 0.
// Each tenant's API server listens on its own node port.
func apiserverPID(t *testing.T, tc *kv1.TenantCluster) int {
	t.Helper()
	u, err := url.Parse(tc.Status.Endpoint)
	if err != nil || u.Port() == "" {
		t.Fatalf("tenant %s has no endpoint with a port: %q", tc.Name, tc.Status.Endpoint)
	}
	return onePID(t, "the API server of "+tc.Name, func(p hostproc.Process) bool {
		return p.Command() == "kube-apiserver" && slices.Contains(p.Args, "--secure-port="+u.Port())
	})
}

func testControlPlaneRestart(t *testing.T) {
	a := waitTenantReady(t, "alpha")
	ka := tenantKubeconfig(t, "alpha")
	stillThere := func(ctx context.Context) error {
		out, err := kubectlIn(ctx, ka, "", "-n", "only-in-alpha", "get", "secret", "alpha-secret", "-o", "jsonpath={.data.k}")
		if err != nil {
			return err
		}
		if out == "" {
			return fmt.Errorf("secret has no data")
		}
		return nil
	}
	pid := apiserverPID(t, a)
	if pid == 0 {
		t.Fatal("no API server process for alpha")
	}
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	eventually(t, 3*time.Minute, "alpha's API back after its API server was killed", func(ctx context.Context) error {
		if p := apiserverPID(t, a); p == 0 || p == pid {
			return fmt.Errorf("API server not restarted")
		}
		return stillThere(ctx)
	})
	mustKube(t, "-n", "default", "delete", "pod", "-l", controlplane.LabelTenant+"=alpha", "--wait=false")
	eventually(t, 3*time.Minute, "alpha's API back after its pod was deleted", stillThere)
	waitTenantReady(t, "alpha")
}

// tenantPrefixes lists the tenant IDs that have keys in the datastore.
func tenantPrefixes(t *testing.T, cli *clientv3.Client) map[string]bool {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	resp, err := cli.Get(ctx, datastore.TenantsPrefix, clientv3.WithPrefix(), clientv3.WithKeysOnly())
	if err != nil {
		t.Fatal(err)
	}
	ids := map[string]bool{}
	for _, kv := range resp.Kvs {
		rest := strings.TrimPrefix(string(kv.Key), datastore.TenantsPrefix)
		ids[strings.SplitN(rest, "/", 2)[0]] = true
	}
	return ids
}

func testOperatorRestart(t *testing.T) {
	created := []string{"gamma", "delta", "epsilon"}
	createTenants(t, created...)
	mustKube(t, "-n", install.Namespace, "delete", "pod", "-l", "app.kubernetes.io/name="+install.Name, "--wait=false")
	for _, n := range created {
		waitTenantReady(t, n)
	}
	// One etcd user per tenant, and keys only under live tenants' prefixes.
	c := adminClient(t)
	var list kv1.TenantClusterList
	if err := c.List(t.Context(), &list); err != nil {
		t.Fatal(err)
	}
	live := map[string]bool{}
	for _, tc := range list.Items {
		live[string(tc.UID)] = true
	}
	if len(live) < len(created) {
		t.Fatalf("%d tenants listed after creating %d", len(live), len(created))
	}
	cli := datastoreClient(t)
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	users, err := datastore.Tenants(ctx, cli)
	if err != nil {
		t.Fatal(err)
	}
	if len(users) != len(live) {
		t.Fatalf("%d tenant users in etcd for %d tenants: %v", len(users), len(live), users)
	}
	for _, u := range users {
		if !live[strings.TrimPrefix(u, "tenant-")] {
			t.Errorf("etcd user %s belongs to no tenant", u)
		}
	}
	prefixes := tenantPrefixes(t, cli)
	if len(prefixes) < len(created) {
		t.Fatalf("keys under %d tenant prefixes for %d Ready tenants: %v", len(prefixes), len(live), prefixes)
	}
	for id := range prefixes {
		if !live[id] {
			t.Errorf("orphaned keys under %s%s", datastore.TenantsPrefix, id)
		}
	}
}

// tenancyOf is the datastore tenancy of a Ready tenant.
func tenancyOf(t *testing.T, tc *kv1.TenantCluster) datastore.Tenancy {
	t.Helper()
	tn, err := datastore.TenancyFor(string(tc.UID))
	if err != nil {
		t.Fatal(err)
	}
	return tn
}

// requireTenancyGone fails the test if the datastore still holds keys, the
// user or the role of a tenancy.
func requireTenancyGone(t *testing.T, tn datastore.Tenancy) {
	t.Helper()
	cli := datastoreClient(t)
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	resp, err := cli.Get(ctx, tn.Prefix, clientv3.WithPrefix(), clientv3.WithCountOnly())
	if err != nil {
		t.Fatal(err)
	}
	if resp.Count != 0 {
		t.Errorf("%d keys left under %s", resp.Count, tn.Prefix)
	}
	if _, err := cli.UserGet(ctx, tn.User); err == nil || !strings.Contains(err.Error(), "user name not found") {
		t.Errorf("etcd user %s: want not found, got %v", tn.User, err)
	}
	if _, err := cli.RoleGet(ctx, tn.Role); err == nil || !strings.Contains(err.Error(), "role name not found") {
		t.Errorf("etcd role %s: want not found, got %v", tn.Role, err)
	}
}

func testDelete(t *testing.T) {
	const name = "doomed"
	createTenants(t, name)
	tn := tenancyOf(t, waitTenantReady(t, name))
	if r := run(t, "delete", "cluster", name, "--wait", "--kubeconfig", adminKubeconfig()); r.err != nil {
		t.Fatalf("delete cluster %s:\n%s\n%s", name, r, clusterState(t))
	}
	requireTenancyGone(t, tn)
	if out, err := kube(t, "-n", "default", "get", "deployment", controlplane.DeploymentName(name)); err == nil || !strings.Contains(out, "NotFound") {
		t.Fatalf("control plane: want NotFound, got %v\n%s", err, out)
	}
}

func testDeleteUnreachableDatastore(t *testing.T) {
	const name = "stranded"
	createTenants(t, name)
	tn := tenancyOf(t, waitTenantReady(t, name))
	// Take the datastore away: its members' manifests leave the kubelet's
	// folder, so the kubelet stops them.
	manifests := filepath.Join(root, "manifests")
	parked := t.TempDir()
	for i := 0; i < admincluster.DatastoreMembers; i++ {
		f := fmt.Sprintf("datastore-%d.yaml", i)
		if err := os.Rename(filepath.Join(manifests, f), filepath.Join(parked, f)); err != nil {
			t.Fatal(err)
		}
	}
	restored := false
	restore := func() {
		if restored {
			return
		}
		restored = true
		for i := 0; i < admincluster.DatastoreMembers; i++ {
			f := fmt.Sprintf("datastore-%d.yaml", i)
			if err := os.Rename(filepath.Join(parked, f), filepath.Join(manifests, f)); err != nil {
				t.Errorf("restore %s: %v", f, err)
			}
		}
	}
	defer restore()
	// Each step's time is logged: this subtest is among the longest of
	// the suite, and the log says which step to shorten.
	step := time.Now()
	took := func(what string) {
		t.Logf("%s took %s", what, time.Since(step).Round(100*time.Millisecond))
		step = time.Now()
	}
	eventually(t, 2*time.Minute, "the datastore members to stop", func(context.Context) error {
		for i := 0; i < admincluster.DatastoreMembers; i++ {
			if memberPID(t, fmt.Sprintf("datastore-%d", i)) != 0 {
				return fmt.Errorf("datastore-%d still runs", i)
			}
		}
		return nil
	})
	took("stopping the datastore")
	if r := run(t, "delete", "cluster", name, "--kubeconfig", adminKubeconfig()); r.err != nil {
		t.Fatalf("delete cluster %s:\n%s", name, r)
	}
	c := adminClient(t)
	// How a control plane drains is not what this test is about: with its
	// datastore gone, an API server holds its requests for the whole
	// grace period (75 s). Once the operator has deleted the control
	// plane, its pods are given a second.
	eventually(t, time.Minute, "the operator to delete "+name+"'s control plane", func(ctx context.Context) error {
		dep := &appsv1.Deployment{}
		err := c.Get(ctx, types.NamespacedName{Namespace: "default", Name: controlplane.DeploymentName(name)}, dep)
		if err == nil && dep.DeletionTimestamp.IsZero() {
			return fmt.Errorf("deployment %s not deleted yet", dep.Name)
		}
		return client.IgnoreNotFound(err)
	})
	mustKube(t, "-n", "default", "delete", "pods", "-l", labels.SelectorFromSet(controlplane.Labels(name)).String(), "--grace-period=1", "--wait=false")
	took("the delete command, up to the control plane's deletion")
	eventually(t, 3*time.Minute, name+" to say the datastore is unreachable", func(ctx context.Context) error {
		tc, err := getTenant(ctx, c, name)
		if err != nil {
			return err
		}
		cond := meta.FindStatusCondition(tc.Status.Conditions, kv1.ConditionDatastoreReady)
		if cond == nil || cond.Reason != kv1.ReasonDatastoreUnreachable || !strings.Contains(cond.Message, tn.Prefix) {
			return fmt.Errorf("DatastoreReady = %+v", cond)
		}
		return nil
	})
	took("the control plane's pods stopping and the unreachable condition")
	restore()
	eventually(t, 4*time.Minute, name+"'s deletion to finish once the datastore is back", func(ctx context.Context) error {
		tc, err := getTenant(ctx, c, name)
		if err == nil {
			return fmt.Errorf("still there: %+v", tc.Status.Conditions)
		}
		return client.IgnoreNotFound(err)
	})
	took("the deletion once the datastore was back")
	requireTenancyGone(t, tn)
}
