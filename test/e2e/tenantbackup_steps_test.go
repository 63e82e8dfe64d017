package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"strings"
	"testing"
	"time"

	kv1 "kubinception.dev/kubinception/api/v1alpha1"
)

// configMapsAt lists a namespace's ConfigMaps through a tenant's API, at
// an exact resourceVersion when rv is not empty, as name → data.
func configMapsAt(t *testing.T, kubeconfig, namespace, rv string) map[string]map[string]string {
	t.Helper()
	path := "/api/v1/namespaces/" + namespace + "/configmaps"
	if rv != "" {
		path += "?resourceVersionMatch=Exact&resourceVersion=" + rv
	}
	cms, err := parseConfigMaps(mustTkube(t, kubeconfig, "get", "--raw", path))
	if err != nil {
		t.Fatalf("ConfigMaps of %s: %v", namespace, err)
	}
	return cms
}

// parseConfigMaps reads a ConfigMapList as name → data.
func parseConfigMaps(out string) (map[string]map[string]string, error) {
	var list struct {
		Items []struct {
			Metadata struct {
				Name string `json:"name"`
			} `json:"metadata"`
			Data map[string]string `json:"data"`
		} `json:"items"`
	}
	if err := json.Unmarshal([]byte(out), &list); err != nil {
		return nil, err
	}
	cms := map[string]map[string]string{}
	for _, i := range list.Items {
		cms[i.Metadata.Name] = i.Data
	}
	return cms, nil
}

// testClone clones backup tb of the tenant behind kc into a new tenant
// with the CLI: the clone becomes Ready on its own certificates, holds by
// content the ConfigMaps the source held at the backup's revision, reads
// the Secret the source stored encrypted with its own key, and the source
// is untouched.
func testClone(t *testing.T, tb *kv1.TenantBackup, kc, clone string) {
	t.Helper()
	t.Cleanup(func() { removeTenants(t, clone) })
	want := configMapsAt(t, kc, "data", fmt.Sprint(tb.Status.Revision))
	sourceCount := len(configMapsAt(t, kc, "data", ""))
	r := run(t, "backup", "restore", tb.Name, "--into", clone, "--kubeconfig", adminKubeconfig())
	if r.err != nil || !strings.Contains(r.stdout, clone+" cloned") {
		tr := mustKube(t, "get", "tenantrestores", "-n", "default", "-o", "yaml")
		t.Fatalf("backup restore --into %s:\n%s\nTenantRestores:\n%s\noperator log:\n%s", clone, r, tr, operatorLog())
	}
	waitTenantReady(t, clone)
	ck := tenantKubeconfig(t, clone)
	if a, b := mustTkube(t, ck, "config", "view", "--raw", "-o", "jsonpath={.clusters[0].cluster.certificate-authority-data}"),
		mustTkube(t, kc, "config", "view", "--raw", "-o", "jsonpath={.clusters[0].cluster.certificate-authority-data}"); a == b {
		t.Error("the clone trusts the source's CA: it must have its own")
	}
	// kube-root-ca.crt is published again by the clone's controller
	// manager with the clone's own CA.
	const rootCA = "kube-root-ca.crt"
	var got map[string]map[string]string
	eventually(t, 2*time.Minute, "the clone's ConfigMaps, kube-root-ca.crt with the clone's CA", func(ctx context.Context) error {
		out, err := kubectlIn(ctx, ck, "", "get", "--raw", "/api/v1/namespaces/data/configmaps")
		if err != nil {
			return err
		}
		if got, err = parseConfigMaps(out); err != nil {
			return err
		}
		if len(got) != len(want) {
			return fmt.Errorf("%d ConfigMaps in the clone, %d in the source at the backup", len(got), len(want))
		}
		if maps.Equal(got[rootCA], want[rootCA]) {
			return fmt.Errorf("the clone's %s still holds the source's CA", rootCA)
		}
		return nil
	}, func() string { return clusterState(t) })
	delete(got, rootCA)
	delete(want, rootCA)
	if !maps.EqualFunc(got, want, maps.Equal) {
		for name, data := range want {
			if !maps.Equal(got[name], data) {
				t.Fatalf("ConfigMap data/%s: the clone holds %v, the source held %v at the backup (%d against %d ConfigMaps)", name, got[name], data, len(got), len(want))
			}
		}
		t.Fatalf("the clone holds %d ConfigMaps, the source held %d at the backup", len(got), len(want))
	}
	if v := mustTkube(t, ck, "-n", "data", "get", "secret", "keep", "-o", "jsonpath={.data.k}"); v != mustTkube(t, kc, "-n", "data", "get", "secret", "keep", "-o", "jsonpath={.data.k}") {
		t.Errorf("the Secret read through the clone differs from the source's: %q", v)
	}
	mustTkube(t, ck, "-n", "data", "create", "configmap", "only-in-clone", "--from-literal=k=v")
	if out, err := tkube(t, kc, "-n", "data", "get", "configmap", "only-in-clone"); err == nil || !strings.Contains(out, "NotFound") {
		t.Errorf("a ConfigMap created in the clone shows in the source: %v %s", err, out)
	}
	if n := len(configMapsAt(t, kc, "data", "")); n != sourceCount {
		t.Errorf("the source holds %d ConfigMaps after the clone, %d before", n, sourceCount)
	}
	t.Logf("backup %s cloned into %s: %d ConfigMaps compared by content", tb.Name, clone, len(got))
}

// runWorkload runs the web Deployment (tinyhost, ready when it serves)
// with replicas and waits until it has rolled out.
func runWorkload(t *testing.T, kc string, replicas int) {
	t.Helper()
	mustApply(t, kc, fmt.Sprintf(`
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: default}
spec:
  replicas: %d
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
      - name: web
        image: %s
        imagePullPolicy: Never
        args: [serve, "8080"]
        readinessProbe: {httpGet: {path: /, port: 8080}, periodSeconds: 1}
`, replicas, config(t).Images.Tinyhost()))
	mustTkube(t, kc, "rollout", "status", "deployment/web", "--timeout=180s")
}

// workloadRecovered waits until the Deployment of runWorkload is back to
// what the backup held: two replicas, both available, and no third pod
// left from the scale-up made after the backup.
func workloadRecovered(t *testing.T, kc string) {
	t.Helper()
	eventually(t, 3*time.Minute, "the web Deployment back to its 2 replicas on the joined node", func(ctx context.Context) error {
		out, err := kubectlIn(ctx, kc, "", "get", "deployment", "web", "-o", "jsonpath={.spec.replicas} {.status.availableReplicas}")
		if err != nil {
			return err
		}
		if out != "2 2" {
			return fmt.Errorf("replicas and available replicas: %q", out)
		}
		pods, err := kubectlIn(ctx, kc, "", "get", "pods", "-l", "app=web", "-o", "jsonpath={range .items[*]}{.status.phase}/{.spec.nodeName}{\" \"}{end}")
		if err != nil {
			return err
		}
		if f := strings.Fields(pods); len(f) != 2 || strings.Count(pods, "Running/") != 2 {
			return fmt.Errorf("web pods: %q", pods)
		}
		return nil
	}, func() string { return tenantState(t, kc) })
}
