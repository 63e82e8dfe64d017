package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/client"

	kv1 "kubinception.dev/kubinception/api/v1alpha1"
	"kubinception.dev/kubinception/internal/controlplane"
	"kubinception.dev/kubinception/internal/datastore"
	"kubinception.dev/kubinception/internal/install"
	"kubinception.dev/kubinception/internal/local/admincluster"
	"kubinception.dev/kubinception/internal/operator"
)

// TestTenantClusters runs the operator on the admin cluster and checks
// tenants from the outside: concurrent creation, isolation in the API and in
// etcd itself, control-plane restarts, an operator restart in the middle of
// creation, validation, deletion and a deletion that waits for an
// unreachable datastore.
func TestTenantClusters(t *testing.T) {
	if r := run(t, "admin", "up"); r.err != nil {
		t.Fatalf("admin up:\n%s", r)
	}
	if r := run(t, "install", "--kubeconfig", adminKubeconfig(), "--root", root); r.err != nil {
		t.Fatalf("install:\n%s", r)
	}
	t.Run("two tenants at once", testTwoTenants)
	t.Run("etcd denies a tenant everything outside its prefix", testEtcdIsolation)
	t.Run("control plane survives a killed API server and a deleted pod", testControlPlaneRestart)
	t.Run("invalid specs are rejected by the API server", testValidation)
	t.Run("operator restart in the middle of creation", testOperatorRestart)
	t.Run("delete leaves nothing in the datastore", testDelete)
	t.Run("delete waits for an unreachable datastore", testDeleteUnreachableDatastore)
}

func adminKubeconfig() string { return filepath.Join(root, "admin.conf") }

func adminClient(t *testing.T) client.Client {
	t.Helper()
	rc, err := clientcmd.BuildConfigFromFlags("", adminKubeconfig())
	if err != nil {
		t.Fatal(err)
	}
	c, err := client.New(rc, client.Options{Scheme: operator.Scheme()})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// createTenant creates a tenant through the CLI without waiting.
func createTenant(t *testing.T, name string) {
	t.Helper()
	if r := run(t, "create", "cluster", name, "--kubeconfig", adminKubeconfig()); r.err != nil {
		t.Fatalf("create cluster %s:\n%s", name, r)
	}
}

// waitTenantReady waits for Ready and returns the tenant.
func waitTenantReady(t *testing.T, name string) *kv1.TenantCluster {
	t.Helper()
	c := adminClient(t)
	tc := &kv1.TenantCluster{}
	eventually(t, 5*time.Minute, "tenant "+name+" to be Ready", func() error {
		if err := c.Get(context.Background(), types.NamespacedName{Namespace: "default", Name: name}, tc); err != nil {
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

// tkube runs the upstream kubectl against a tenant.
func tkube(kubeconfig string, args ...string) (string, error) {
	out, err := exec.Command(kubectl, append([]string{"--kubeconfig", kubeconfig, "--request-timeout=20s"}, args...)...).CombinedOutput()
	return string(out), err
}

func testTwoTenants(t *testing.T) {
	var wg sync.WaitGroup
	for _, name := range []string{"alpha", "beta"} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			createTenant(t, name)
		}()
	}
	wg.Wait()
	a, b := waitTenantReady(t, "alpha"), waitTenantReady(t, "beta")
	if a.Status.Datastore.Prefix == b.Status.Datastore.Prefix {
		t.Fatalf("two tenants share the prefix %s", a.Status.Datastore.Prefix)
	}
	ka, kb := tenantKubeconfig(t, "alpha"), tenantKubeconfig(t, "beta")
	for name, kc := range map[string]string{"alpha": ka, "beta": kb} {
		out, err := tkube(kc, "get", "namespaces")
		if err != nil || !strings.Contains(out, "kube-system") {
			t.Fatalf("kubectl get namespaces on %s: %v\n%s", name, err, out)
		}
	}
	if out, err := tkube(ka, "create", "namespace", "only-in-alpha"); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	if out, err := tkube(ka, "-n", "only-in-alpha", "create", "secret", "generic", "alpha-secret", "--from-literal=k=alpha-value"); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	if out, err := tkube(kb, "get", "namespace", "only-in-alpha"); err == nil || !strings.Contains(out, "NotFound") {
		t.Fatalf("beta sees alpha's namespace: %v\n%s", err, out)
	}
	if out, err := tkube(kb, "get", "secrets", "-A", "-o", "name"); err != nil || strings.Contains(out, "alpha-secret") {
		t.Fatalf("beta sees alpha's secret (or cannot list): %v\n%s", err, out)
	}
	if out, err := tkube(ka, "-n", "only-in-alpha", "get", "secret", "alpha-secret", "-o", "jsonpath={.data.k}"); err != nil || out == "" {
		t.Fatalf("alpha lost its own secret: %v\n%s", err, out)
	}
}

// tenantEtcdClient connects to the datastore with the tenant's own client
// certificate, taken from its PKI Secret, as its API server does.
func tenantEtcdClient(t *testing.T, name string) *clientv3.Client {
	t.Helper()
	c := adminClient(t)
	s := &corev1.Secret{}
	if err := c.Get(context.Background(), types.NamespacedName{Namespace: "default", Name: controlplane.PKISecretName(name)}, s); err != nil {
		t.Fatal(err)
	}
	cfg := config(t)
	cli, err := datastore.Connect(datastore.Credentials{Endpoints: cfg.DatastoreEndpoints(), CAPEM: s.Data[controlplane.FileDatastoreCA],
		CertPEM: s.Data[controlplane.FileDatastoreClient], KeyPEM: s.Data[controlplane.FileDatastoreClientKey]})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })
	return cli
}

func testEtcdIsolation(t *testing.T) {
	a, b := waitTenantReady(t, "alpha"), waitTenantReady(t, "beta")
	ca := tenantEtcdClient(t, "alpha")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	own, err := ca.Get(ctx, a.Status.Datastore.Prefix, clientv3.WithPrefix(), clientv3.WithCountOnly())
	if err != nil || own.Count == 0 {
		t.Fatalf("alpha's certificate cannot read alpha's own keys: count=%v err=%v", own, err)
	}
	checks := []struct {
		name string
		op   func() error
	}{
		{"read beta's prefix", func() error { _, err := ca.Get(ctx, b.Status.Datastore.Prefix, clientv3.WithPrefix()); return err }},
		{"write into beta's prefix", func() error {
			_, err := ca.Put(ctx, b.Status.Datastore.Prefix+"/namespaces/evil", "x")
			return err
		}},
		{"delete beta's keys", func() error { _, err := ca.Delete(ctx, b.Status.Datastore.Prefix, clientv3.WithPrefix()); return err }},
		{"read the root /", func() error { _, err := ca.Get(ctx, "/", clientv3.WithPrefix()); return err }},
		{"read every key", func() error { _, err := ca.Get(ctx, "\x00", clientv3.WithFromKey()); return err }},
		{"write at the root", func() error { _, err := ca.Put(ctx, "/evil", "x"); return err }},
		{"list all tenants", func() error { _, err := ca.Get(ctx, datastore.TenantsPrefix, clientv3.WithPrefix()); return err }},
		{"list etcd users", func() error { _, err := ca.UserList(ctx); return err }},
	}
	for _, c := range checks {
		err := c.op()
		if err == nil || !strings.Contains(err.Error(), "permission denied") {
			t.Errorf("alpha's certificate may %s: want etcd's permission denied, got %v", c.name, err)
		}
	}
}

// apiserverPID finds the API server process of the tenant with prefix.
func apiserverPID(prefix string) int {
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		cmdline, _ := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if strings.HasSuffix(strings.Split(string(cmdline), "\x00")[0], "kube-apiserver") && strings.Contains(string(cmdline), "--etcd-prefix="+prefix+"\x00") {
			return pid
		}
	}
	return 0
}

func testControlPlaneRestart(t *testing.T) {
	a := waitTenantReady(t, "alpha")
	ka := tenantKubeconfig(t, "alpha")
	stillThere := func() error {
		out, err := tkube(ka, "-n", "only-in-alpha", "get", "secret", "alpha-secret", "-o", "jsonpath={.data.k}")
		if err != nil {
			return fmt.Errorf("%v: %s", err, out)
		}
		if out == "" {
			return fmt.Errorf("secret has no data")
		}
		return nil
	}
	pid := apiserverPID(a.Status.Datastore.Prefix)
	if pid == 0 {
		t.Fatal("no API server process for alpha")
	}
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	eventually(t, 3*time.Minute, "alpha's API back after its API server was killed", func() error {
		if p := apiserverPID(a.Status.Datastore.Prefix); p == 0 || p == pid {
			return fmt.Errorf("API server not restarted")
		}
		return stillThere()
	})
	mustKube(t, "-n", "default", "delete", "pod", "-l", controlplane.LabelTenant+"=alpha", "--wait=false")
	eventually(t, 3*time.Minute, "alpha's API back after its pod was deleted", stillThere)
	waitTenantReady(t, "alpha")
}

// applyTenant applies a TenantCluster manifest with kubectl.
func applyTenant(manifest string) (string, error) {
	cmd := exec.Command(kubectl, "--kubeconfig", adminKubeconfig(), "apply", "-f", "-")
	cmd.Stdin = strings.NewReader(manifest)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func testValidation(t *testing.T) {
	tests := []struct {
		name, manifest, want string
	}{
		{"unsupported version", `{"apiVersion":"kubinception.dev/v1alpha1","kind":"TenantCluster","metadata":{"name":"bad-version","namespace":"default"},"spec":{"version":"v1.99.0"}}`, "spec.version"},
		{"malformed CIDR", `{"apiVersion":"kubinception.dev/v1alpha1","kind":"TenantCluster","metadata":{"name":"bad-cidr","namespace":"default"},"spec":{"network":{"serviceCIDR":"10.96.0.0/33"}}}`, "network.serviceCIDR"},
		{"DNS address outside the Service range", `{"apiVersion":"kubinception.dev/v1alpha1","kind":"TenantCluster","metadata":{"name":"bad-dns","namespace":"default"},"spec":{"network":{"dnsServiceIP":"192.168.0.10"}}}`, "network.dnsServiceIP"},
		{"100-character name", `{"apiVersion":"kubinception.dev/v1alpha1","kind":"TenantCluster","metadata":{"name":"` + strings.Repeat("a", 100) + `","namespace":"default"}}`, "metadata.name"},
		{"bad exposure", `{"apiVersion":"kubinception.dev/v1alpha1","kind":"TenantCluster","metadata":{"name":"bad-exposure","namespace":"default"},"spec":{"exposure":{"type":"Ingress"}}}`, "spec.exposure.type"},
		{"changing an immutable field", `{"apiVersion":"kubinception.dev/v1alpha1","kind":"TenantCluster","metadata":{"name":"beta","namespace":"default"},"spec":{"network":{"serviceCIDR":"10.97.0.0/16","dnsServiceIP":"10.97.0.10"}}}`, "network is immutable"},
		{"moving to another datastore", `{"apiVersion":"kubinception.dev/v1alpha1","kind":"TenantCluster","metadata":{"name":"beta","namespace":"default"},"spec":{"datastore":{"name":"other"}}}`, "datastore.name is immutable"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, err := applyTenant(tt.manifest)
			if err == nil || !strings.Contains(out, tt.want) {
				t.Fatalf("want a rejection naming %q, got err=%v:\n%s", tt.want, err, out)
			}
		})
	}
	r := run(t, "create", "cluster", "x", "--version", "v1.99.0", "--kubeconfig", adminKubeconfig())
	if r.err == nil || !strings.Contains(r.stderr, "--version") || !strings.Contains(r.stderr, "not supported") {
		t.Fatalf("the CLI accepted --version v1.99.0:\n%s", r)
	}
}

// tenantPrefixes lists the tenant IDs that have keys in the datastore.
func tenantPrefixes(t *testing.T, cli *clientv3.Client) map[string]bool {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
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
	names := []string{"gamma", "delta", "epsilon"}
	for _, n := range names {
		createTenant(t, n)
	}
	mustKube(t, "-n", install.Namespace, "delete", "pod", "-l", "app.kubernetes.io/name="+install.Name, "--wait=false")
	for _, n := range names {
		waitTenantReady(t, n)
	}
	// One etcd user per tenant, and keys only under live tenants' prefixes.
	c := adminClient(t)
	var list kv1.TenantClusterList
	if err := c.List(context.Background(), &list); err != nil {
		t.Fatal(err)
	}
	live := map[string]bool{}
	for _, tc := range list.Items {
		live[string(tc.UID)] = true
	}
	cli := datastoreClient(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	users, err := datastore.Tenants(ctx, cli)
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(users)
	if len(users) != len(live) {
		t.Fatalf("%d tenant users in etcd for %d tenants: %v", len(users), len(live), users)
	}
	for _, u := range users {
		if !live[strings.TrimPrefix(u, "tenant-")] {
			t.Errorf("etcd user %s belongs to no tenant", u)
		}
	}
	for id := range tenantPrefixes(t, cli) {
		if !live[id] {
			t.Errorf("orphaned keys under %s%s", datastore.TenantsPrefix, id)
		}
	}
}

func testDelete(t *testing.T) {
	g := waitTenantReady(t, "gamma")
	tn, err := datastore.TenancyFor(string(g.UID))
	if err != nil {
		t.Fatal(err)
	}
	r := run(t, "delete", "cluster", "gamma", "--wait", "--kubeconfig", adminKubeconfig())
	if r.err != nil {
		t.Fatalf("delete cluster gamma:\n%s\n%s", r, clusterState(t))
	}
	cli := datastoreClient(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	resp, err := cli.Get(ctx, tn.Prefix, clientv3.WithPrefix(), clientv3.WithCountOnly())
	if err != nil || resp.Count != 0 {
		t.Fatalf("keys left under %s after delete: %v %v", tn.Prefix, resp, err)
	}
	if _, err := cli.UserGet(ctx, tn.User); err == nil {
		t.Fatalf("etcd user %s still exists", tn.User)
	}
	if _, err := cli.RoleGet(ctx, tn.Role); err == nil {
		t.Fatalf("etcd role %s still exists", tn.Role)
	}
	if out, err := kube(t, "-n", "default", "get", "deployment", controlplane.DeploymentName("gamma")); err == nil {
		t.Fatalf("control plane still there:\n%s", out)
	}
}

func testDeleteUnreachableDatastore(t *testing.T) {
	d := waitTenantReady(t, "delta")
	tn, _ := datastore.TenancyFor(string(d.UID))
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
			_ = os.Rename(filepath.Join(parked, f), filepath.Join(manifests, f))
		}
	}
	defer restore()
	eventually(t, 2*time.Minute, "the datastore members to stop", func() error {
		for i := 0; i < admincluster.DatastoreMembers; i++ {
			if memberPID(fmt.Sprintf("datastore-%d", i)) != 0 {
				return fmt.Errorf("datastore-%d still runs", i)
			}
		}
		return nil
	})
	if r := run(t, "delete", "cluster", "delta", "--kubeconfig", adminKubeconfig()); r.err != nil {
		t.Fatalf("delete cluster delta:\n%s", r)
	}
	c := adminClient(t)
	eventually(t, 3*time.Minute, "delta to say the datastore is unreachable", func() error {
		tc := &kv1.TenantCluster{}
		if err := c.Get(context.Background(), types.NamespacedName{Namespace: "default", Name: "delta"}, tc); err != nil {
			return err
		}
		cond := meta.FindStatusCondition(tc.Status.Conditions, kv1.ConditionDatastoreReady)
		if cond == nil || cond.Reason != kv1.ReasonDatastoreUnreachable || !strings.Contains(cond.Message, tn.Prefix) {
			return fmt.Errorf("DatastoreReady = %+v", cond)
		}
		return nil
	})
	restore()
	eventually(t, 4*time.Minute, "delta's deletion to finish once the datastore is back", func() error {
		tc := &kv1.TenantCluster{}
		err := c.Get(context.Background(), types.NamespacedName{Namespace: "default", Name: "delta"}, tc)
		if err == nil {
			return fmt.Errorf("still there: %+v", tc.Status.Conditions)
		}
		return client.IgnoreNotFound(err)
	})
	cli := datastoreClient(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	resp, err := cli.Get(ctx, tn.Prefix, clientv3.WithPrefix(), clientv3.WithCountOnly())
	if err != nil || resp.Count != 0 {
		t.Fatalf("keys left under %s: %v %v", tn.Prefix, resp, err)
	}
	if _, err := cli.UserGet(ctx, tn.User); err == nil {
		t.Fatalf("etcd user %s still exists", tn.User)
	}
}
