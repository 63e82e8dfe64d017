package e2e

import (
	"bytes"
	"context"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"

	"kubinception.dev/kubinception/internal/install"
	"kubinception.dev/kubinception/internal/local/admincluster"
	"kubinception.dev/kubinception/internal/testenv"
)

// chartDir is the Helm chart, from this package's directory.
const chartDir = "../../deploy/helm/kubinception"

// TestHelmChart installs the operator with the Helm chart instead of
// `kubinception install`, as a platform team would, and checks that a
// tenant becomes Ready and answers. Before installing, it checks that
// `kubinception install --dry-run` on this cluster (image and datastore
// found on their own) and the chart, with values naming the same image
// and datastore, render the same objects. The release and the tenant go
// with the test; the CRDs stay, as Helm leaves them.
func TestHelmChart(t *testing.T) {
	requireE2E(t)
	helmBin := testenv.Helm(t)
	if r := run(t, "admin", "up"); r.err != nil {
		t.Fatalf("admin up:\n%s", r)
	}

	// What install would apply here, and what the chart renders with
	// values naming the same image (the one admin up imported: the rollout
	// below shows it is there, as nothing can be pulled from the local
	// registry name) and the datastore admin up started.
	r := run(t, "install", "--dry-run", "-o", "yaml", "--kubeconfig", adminKubeconfig(), "--root", root)
	if r.err != nil {
		t.Fatalf("install --dry-run:\n%s", r)
	}
	fromInstall := renderedObjects(t, []byte(r.stdout))
	values := chartValues(t, operatorImage(t, fromInstall))
	withNamespace := map[string]any{}
	for k, v := range values {
		withNamespace[k] = v
	}
	withNamespace["namespace"] = map[string]any{"create": true}
	fromChart := renderedObjects(t, helm(t, helmBin, "template", "kubinception", chartDir,
		"--namespace", install.Namespace, "--include-crds", "-f", testenv.WriteHelmValues(t, withNamespace)))
	if _, ok := fromInstall["kubinception.dev/v1alpha1/Datastore//default"]; !ok {
		t.Fatalf("install --dry-run on the local admin cluster renders no Datastore default; objects: %v", slices.Sorted(maps.Keys(fromInstall)))
	}
	if diff := cmp.Diff(fromInstall, fromChart); diff != "" {
		t.Fatalf("install --dry-run and the chart render different objects (-install +chart):\n%s", diff)
	}

	// Helm does not adopt objects it did not create: remove what an
	// earlier `kubinception install` on this cluster left (nothing, when
	// this test runs first). The CRDs and the namespace stay.
	if _, err := kube(t, "get", "crd", "datastores.kubinception.dev"); err == nil {
		mustKube(t, "delete", "--ignore-not-found", "--wait", "datastores.kubinception.dev/"+install.DefaultDatastoreName)
	}
	mustKube(t, "delete", "--ignore-not-found", "--wait", "clusterrole/"+install.Name, "clusterrolebinding/"+install.Name,
		"clusterrole/"+install.MetricsReaderName, "clusterrole/"+install.GatewayName, "clusterrolebinding/"+install.GatewayName,
		"clusterrole/"+install.ConsoleName, "clusterrolebinding/"+install.ConsoleName)
	mustKube(t, "-n", install.Namespace, "delete", "--ignore-not-found", "--wait",
		"deployment/"+install.Name, "serviceaccount/"+install.Name, "serviceaccount/"+install.GatewayName,
		"role/"+install.Name+"-leader-election", "rolebinding/"+install.Name+"-leader-election",
		"deployment/"+install.ConsoleName, "service/"+install.ConsoleName, "serviceaccount/"+install.ConsoleName)
	// The front door's namespace holds only what install made there, and
	// the routes and Leases the operator writes again on its next pass.
	mustKube(t, "delete", "--ignore-not-found", "--wait", "namespace/kubinception-frontdoor")

	// The backup directory the values name must exist for the operator's
	// pod, writable by its user, as the chart's values say; install makes
	// it, the chart cannot.
	backups := filepath.Join(root, "backups")
	if err := os.MkdirAll(backups, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(backups, 65534, 65534); err != nil {
		t.Fatal(err)
	}

	// Install with Helm; admin up made the namespace, so the chart does not.
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		if out, err := helmCommand(ctx, helmBin, "uninstall", "kubinception", "--namespace", install.Namespace,
			"--kubeconfig", adminKubeconfig(), "--wait", "--timeout", "3m").CombinedOutput(); err != nil {
			t.Errorf("cleanup: helm uninstall: %v\n%s", err, out)
		}
	})
	helm(t, helmBin, "install", "kubinception", chartDir, "--namespace", install.Namespace,
		"--kubeconfig", adminKubeconfig(), "-f", testenv.WriteHelmValues(t, values), "--wait", "--timeout", "3m")
	mustKube(t, "-n", install.Namespace, "rollout", "status", "deployment/"+install.Name, "--timeout=2m")
	owner := mustKube(t, "-n", install.Namespace, "get", "deployment", install.Name, "-o", "jsonpath={.metadata.annotations.meta\\.helm\\.sh/release-name}")
	if owner != "kubinception" {
		t.Fatalf("the operator's Deployment belongs to Helm release %q, want kubinception: was it installed by something else?", owner)
	}

	const name = "charted"
	t.Cleanup(func() {
		cleanupKubectl(t, adminKubeconfig(), "-n", "default", "delete", "tenantcluster", name, "--ignore-not-found", "--timeout=5m")
	})
	createTenants(t, name)
	tc := waitTenantReady(t, name)
	if tc.Spec.Datastore.Name != install.DefaultDatastoreName {
		t.Fatalf("tenant placed on datastore %q, want the chart's %q", tc.Spec.Datastore.Name, install.DefaultDatastoreName)
	}
	kc := tenantKubeconfig(t, name)
	if got := names(t, kc, "get", "namespaces"); !slices.Contains(got, "namespace/kube-system") {
		t.Fatalf("the tenant lists namespaces %v, want kube-system among them", got)
	}
}

// helmCommand runs Helm with its caches and configuration under a
// directory of its own, not the machine's.
func helmCommand(ctx context.Context, helmBin string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, helmBin, args...)
	home := filepath.Join(os.TempDir(), "kubinception-e2e-helm")
	cmd.Env = append(os.Environ(),
		"HELM_CACHE_HOME="+filepath.Join(home, "cache"),
		"HELM_CONFIG_HOME="+filepath.Join(home, "config"),
		"HELM_DATA_HOME="+filepath.Join(home, "data"))
	return cmd
}

// helm runs Helm and returns its standard output, failing the test with
// the cluster's state when Helm fails.
func helm(t *testing.T, helmBin string, args ...string) []byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Minute)
	defer cancel()
	var stdout, stderr bytes.Buffer
	cmd := helmCommand(ctx, helmBin, args...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("helm %s: %v\n%s%s\n%s", strings.Join(args, " "), err, stdout.String(), stderr.String(), clusterState(t))
	}
	return stdout.Bytes()
}

// operatorImage is the image of the operator's Deployment among objects.
func operatorImage(t *testing.T, objs map[string]map[string]any) string {
	t.Helper()
	dep := objs["apps/v1/Deployment/"+install.Namespace+"/"+install.Name]
	containers, _, _ := unstructured.NestedSlice(dep, "spec", "template", "spec", "containers")
	if len(containers) != 1 {
		t.Fatalf("install --dry-run renders %d operator containers, want 1; objects: %v", len(containers), slices.Sorted(maps.Keys(objs)))
	}
	image, _, _ := unstructured.NestedString(containers[0].(map[string]any), "image")
	if image == "" || !strings.Contains(image, ":") {
		t.Fatalf("install --dry-run renders the operator image %q, want REPOSITORY:TAG", image)
	}
	return image
}

// chartValues are the chart values for this admin cluster: the operator
// image, the registry admin up imported images under, its load-balancer
// range, its protected networks (pod range and node address, as install
// gives them), its backup directory (ROOT/backups, as install gives it),
// and the datastore admin up started, from the Secret it stored.
func chartValues(t *testing.T, image string) map[string]any {
	t.Helper()
	c := config(t)
	secret := &corev1.Secret{}
	if err := adminClient(t).Get(t.Context(), types.NamespacedName{Namespace: admincluster.SystemNamespace, Name: admincluster.DatastoreRootSecret}, secret); err != nil {
		t.Fatalf("the datastore Secret admin up stores: %v", err)
	}
	endpoints := strings.Split(string(secret.Data["endpoints"]), ",")
	if len(endpoints) == 0 || endpoints[0] == "" {
		t.Fatalf("the Secret %s/%s lists no endpoints", admincluster.SystemNamespace, admincluster.DatastoreRootSecret)
	}
	sep := strings.LastIndex(image, ":")
	return map[string]any{
		"image":                   map[string]any{"repository": image[:sep], "tag": image[sep+1:]},
		"tenantImageRegistry":     c.Images.Registry,
		"allowedRegistries":       []string{c.Images.Registry},
		"loadBalancerAddressPool": c.LoadBalancerCIDR.String(),
		"protectedNetworks":       []string{c.PodCIDR.String(), c.NodeIP.String() + "/32"},
		"backup":                  map[string]any{"hostPath": filepath.Join(root, "backups")},
		"defaultDatastore": map[string]any{
			"enabled":       true,
			"endpoints":     endpoints,
			"caSecretRef":   map[string]any{"namespace": admincluster.SystemNamespace, "name": admincluster.DatastoreCASecret},
			"rootSecretRef": map[string]any{"namespace": admincluster.SystemNamespace, "name": admincluster.DatastoreRootSecret},
		},
	}
}

// renderedObjects parses a rendered stream, failing the test on a bad or
// empty one.
func renderedObjects(t *testing.T, stream []byte) map[string]map[string]any {
	t.Helper()
	objs, err := install.ReadObjects(stream)
	if err != nil {
		t.Fatal(err)
	}
	if len(objs) == 0 {
		t.Fatalf("no objects in:\n%s", stream)
	}
	return objs
}
