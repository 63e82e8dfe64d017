package e2e

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	kv1 "kubinception.dev/kubinception/api/v1alpha1"
	"kubinception.dev/kubinception/internal/apiload"
)

const (
	upgradeFrom = "v1.34.4"
	upgradeTo   = "v1.35.4"
)

// TestUpgrade creates a tenant at v1.34 with a joined local worker running
// a Deployment and upgrades it to v1.35 while two clients read and write
// through the tenant's endpoint without pause, two more opening a new
// connection for every request: no request fails; status
// reports Upgrading, then the new version; the objects, the workload's pod
// and the node are the same afterwards. `node upgrade` then moves the
// worker's kubelet to v1.35 without re-joining and with its pods still
// running, and the API server refuses a downgrade naming the field.
func TestUpgrade(t *testing.T) {
	requireE2E(t)
	if r := run(t, "build", "components", "--version", upgradeFrom); r.err != nil {
		t.Fatalf("build components --version %s:\n%s", upgradeFrom, r)
	}
	upAndInstall(t)
	const name = "upgrade"
	t.Cleanup(func() { removeTenants(t, name) })
	if r := run(t, "create", "cluster", name, "--version", upgradeFrom, "--kubeconfig", adminKubeconfig()); r.err != nil {
		t.Fatalf("create cluster:\n%s", r)
	}
	waitTenantReady(t, name)
	c := adminClient(t)
	kc := tenantKubeconfig(t, name)
	diags := func() string { return encryptionState(c, name) + controlPlaneLogs(name) + tenantState(t, kc) }

	nodeAdd(t, name)
	nodesReady(t, kc, 1)
	node := strings.TrimPrefix(names(t, kc, "get", "nodes")[0], "node/")
	runWorkload(t, kc, 1)
	const podState = `jsonpath={range .items[*]}{.metadata.uid} {.spec.nodeName} {.status.containerStatuses[0].restartCount} {.status.containerStatuses[0].ready}{"\n"}{end}`
	webBefore := mustTkube(t, kc, "get", "pods", "-l", "app=web", "-o", podState)
	mustTkube(t, kc, "create", "configmap", "kept", "--from-literal=made=before-the-upgrade")

	// The clients go through the tenant's endpoint (the admin node's
	// address and node port), as any customer's would.
	rc, err := clientcmd.BuildConfigFromFlags("", kc)
	if err != nil {
		t.Fatal(err)
	}
	rc.QPS, rc.Burst, rc.Timeout = 1000, 1000, time.Minute
	cs, err := kubernetes.NewForConfig(rc)
	if err != nil {
		t.Fatal(err)
	}
	// Two clients keep one connection each, two open a new one for every
	// request, as kubectl runs do: those meet the proxy in front while
	// the endpoints change.
	fresh, err := apiload.FreshConnections(rc)
	if err != nil {
		t.Fatal(err)
	}
	load, err := apiload.Start(t.Context(), cs, apiload.Options{Namespace: "default", Name: "load", Clients: 2, Pause: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { load.Stop() })
	freshLoad, err := apiload.Start(t.Context(), fresh, apiload.Options{Namespace: "default", Name: "load-fresh", Clients: 2, Pause: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { freshLoad.Stop() })

	start := time.Now()
	mustKube(t, "-n", "default", "patch", "tenantcluster", name, "--type", "merge", "-p", `{"spec":{"version":"`+upgradeTo+`"}}`)
	sawUpgrading := ""
	eventually(t, 5*time.Minute, "the tenant to run "+upgradeTo, func(ctx context.Context) error {
		tc, err := getTenant(ctx, c, name)
		if err != nil {
			return err
		}
		if u := meta.FindStatusCondition(tc.Status.Conditions, kv1.ConditionUpgrading); u != nil && u.Status == metav1.ConditionTrue && sawUpgrading == "" {
			sawUpgrading = u.Reason + ": " + u.Message
		}
		if tc.Status.Version != upgradeTo || !meta.IsStatusConditionFalse(tc.Status.Conditions, kv1.ConditionUpgrading) ||
			!meta.IsStatusConditionTrue(tc.Status.Conditions, kv1.ConditionReady) {
			return fmt.Errorf("status.version %s, conditions %+v", tc.Status.Version, tc.Status.Conditions)
		}
		return nil
	}, diags)
	rolled := time.Since(start)
	// The replaced API server drains before it exits: the load runs on
	// until it is gone.
	eventually(t, 3*time.Minute, "one control-plane pod, at "+upgradeTo, func(ctx context.Context) error {
		out, err := kube(t, "-n", "default", "get", "pods", "-l", "kubinception.dev/tenant="+name+",kubinception.dev/component=control-plane",
			"-o", `jsonpath={range .items[*]}{.spec.initContainers[?(@.name=="kube-apiserver")].image}{"\n"}{end}`)
		if err != nil {
			return err
		}
		if images := strings.Fields(out); len(images) != 1 || !strings.HasSuffix(images[0], ":"+upgradeTo) {
			return fmt.Errorf("control-plane pods' API server images: %q", images)
		}
		return nil
	}, diags)
	gone := time.Since(start)
	for what, l := range map[string]*apiload.Load{"on kept connections": load, "on new connections": freshLoad} {
		sum := apiload.Summarize(l.Stop(), start, time.Time{})
		t.Logf("upgrade %s → %s: Ready at the new version after %s, old API server gone after %s; requests %s: %s",
			upgradeFrom, upgradeTo, rolled.Round(time.Second), gone.Round(time.Second), what, sum)
		if sum.Failed != 0 {
			t.Errorf("%d of %d requests %s failed during the upgrade: %s\n%s", sum.Failed, sum.Sent, what, strings.Join(sum.Failures, "\n"), diags())
		}
		if sum.Sent < 100 {
			t.Errorf("only %d requests %s were sent during the upgrade: the check saw too little", sum.Sent, what)
		}
	}
	if sawUpgrading == "" {
		t.Errorf("the Upgrading condition was never seen True during the upgrade\n%s", diags())
	} else {
		t.Logf("Upgrading while it rolled: %s", sawUpgrading)
	}
	if out := mustTkube(t, kc, "version", "-o", "json"); !strings.Contains(out, `"gitVersion": "`+upgradeTo) {
		t.Errorf("the tenant's API server does not report %s:\n%s", upgradeTo, out)
	}
	if got := mustTkube(t, kc, "get", "configmap", "kept", "-o", "jsonpath={.data.made}"); got != "before-the-upgrade" {
		t.Errorf("ConfigMap kept holds %q after the upgrade", got)
	}
	if got := mustTkube(t, kc, "get", "pods", "-l", "app=web", "-o", podState); got != webBefore {
		t.Errorf("the workload's pod changed during the upgrade: before %q, after %q", webBefore, got)
	}
	nodesReady(t, kc, 1)
	// The addons followed: kube-proxy's DaemonSet is at the new version.
	if img := mustTkube(t, kc, "-n", "kube-system", "get", "daemonset", "kube-proxy", "-o", "jsonpath={.spec.template.spec.containers[0].image}"); !strings.HasSuffix(img, ":"+upgradeTo) {
		t.Errorf("kube-proxy's DaemonSet runs %s after the upgrade, want %s", img, upgradeTo)
	}

	// The node: its kubelet moves to the new version, the node keeps its
	// identity and the pod keeps running.
	if got := mustTkube(t, kc, "get", "node", node, "-o", "jsonpath={.status.nodeInfo.kubeletVersion}"); got != upgradeFrom {
		t.Fatalf("node %s runs kubelet %s before node upgrade, want %s", node, got, upgradeFrom)
	}
	uid := mustTkube(t, kc, "get", "node", node, "-o", "jsonpath={.metadata.uid}")
	start = time.Now()
	if r := run(t, "node", "upgrade", name, node, "--kubeconfig", adminKubeconfig(), "--root", root); r.err != nil {
		t.Fatalf("node upgrade:\n%s\n%s", r, diags())
	} else {
		t.Logf("node upgrade took %s:\n%s", time.Since(start).Round(time.Second), r.stdout)
	}
	if got := mustTkube(t, kc, "get", "node", node, "-o", "jsonpath={.metadata.uid} {.status.nodeInfo.kubeletVersion}"); got != uid+" "+upgradeTo {
		t.Errorf("node %s after node upgrade: %q, want uid %s and kubelet %s", node, got, uid, upgradeTo)
	}
	nodesReady(t, kc, 1)
	eventually(t, 2*time.Minute, "the workload's pod ready, unchanged", func(ctx context.Context) error {
		if got, err := kubectlIn(ctx, kc, "", "get", "pods", "-l", "app=web", "-o", podState); err != nil || got != webBefore {
			return fmt.Errorf("web pod %q (%v), want %q", got, err, webBefore)
		}
		return nil
	}, diags)
	eventually(t, 2*time.Minute, "kube-proxy running at "+upgradeTo+" on "+node, func(ctx context.Context) error {
		out, err := kubectlIn(ctx, kc, "", "-n", "kube-system", "get", "pods", "-l", "k8s-app=kube-proxy", "--field-selector", "spec.nodeName="+node,
			"-o", `jsonpath={range .items[*]}{.spec.containers[0].image} {.status.phase}{"\n"}{end}`)
		if err != nil {
			return err
		}
		if strings.TrimSpace(out) != config(t).Images.Registry+"/kube-proxy:"+upgradeTo+" Running" {
			return fmt.Errorf("kube-proxy pods on %s: %q", node, out)
		}
		return nil
	}, diags)

	// A downgrade is refused by the API server, naming the field.
	out, err := kube(t, "-n", "default", "patch", "tenantcluster", name, "--type", "merge", "-p", `{"spec":{"version":"`+upgradeFrom+`"}}`)
	if want := "spec.version: downgrades are not supported (" + upgradeTo + " → " + upgradeFrom + ")"; err == nil || !strings.Contains(out, want) {
		t.Errorf("spec.version → %s answered %v: %s; want %q", upgradeFrom, err, out, want)
	}
}

// controlPlaneLogs is the end of each control-plane container's log of a
// tenant, for a failure report.
func controlPlaneLogs(tenant string) string {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out, err := kubectlIn(ctx, adminKubeconfig(), "", "-n", "default", "logs", "-l", "kubinception.dev/tenant="+tenant+",kubinception.dev/component=control-plane",
		"--all-containers", "--prefix", "--tail=20")
	if err != nil {
		out += err.Error()
	}
	return "=== control-plane logs of " + tenant + "\n" + out + "\n"
}
