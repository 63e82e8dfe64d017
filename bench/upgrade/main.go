// Command upgrade measures tenant upgrades from v1.34 to v1.35 under a
// steady client load: how long an upgrade takes (spec.version changed →
// the control plane and addons run the new version; → the replaced API
// server has drained and exited), how many requests the client sent and
// how many failed, and the client's latency during the roll beside the
// same client's latency on the steady control plane just before, in the
// same run. The client reads and patches ConfigMaps through the tenant's
// endpoint with client-go (internal/apiload): two loops on kept
// connections and two dialling for every request. It writes a Markdown
// report (bench/results/upgrade.md).
//
// Run as root from the repository, with the machine's admin cluster
// ports free: go run ./bench/upgrade
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/client"

	kv1 "kubinception.dev/kubinception/api/v1alpha1"
	"kubinception.dev/kubinception/bench/internal/benchkit"
	"kubinception.dev/kubinception/internal/apiload"
	"kubinception.dev/kubinception/internal/controlplane"
	"kubinception.dev/kubinception/internal/local/components"
)

const (
	from = "v1.34.4"
	to   = "v1.35.4"
)

func main() {
	root := flag.String("root", "/var/lib/kubinception-bench", "admin cluster state directory used for the measurement")
	runs := flag.Int("runs", 3, "tenants upgraded, one after another")
	steady := flag.Duration("steady", 30*time.Second, "how long the client runs against the steady control plane before each upgrade")
	out := flag.String("out", "bench/results/upgrade.md", "report file")
	flag.Parse()
	if err := run(*root, *runs, *steady, *out); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

// sample is one tenant's upgrade.
type sample struct {
	// ready: spec.version patched → status.version at the new version
	// and Upgrading False; drained: → the old API server's pod gone.
	ready, drained time.Duration
	steady, roll   apiload.Summary
}

func run(root string, runs int, steady time.Duration, out string) error {
	start := time.Now()
	load0 := benchkit.LoadAverage()
	// The older version's images must be on the admin node: admin up
	// imports every cached version.
	if _, err := (&components.Builder{CacheDir: components.DefaultCacheDir()}).Build(context.Background(), from); err != nil {
		return err
	}
	o, err := benchkit.UpWithOperator(root)
	defer o.Down()
	if err != nil {
		return err
	}
	var samples []sample
	for i := range runs {
		s, err := upgradeOne(o, fmt.Sprintf("bu%d", i), steady)
		if err != nil {
			return err
		}
		fmt.Printf("upgrade %d of %d: %s to Ready, %s until drained; steady %s; roll %s\n", i+1, runs,
			s.ready.Round(time.Second), s.drained.Round(time.Second), s.steady, s.roll)
		samples = append(samples, s)
	}
	return benchkit.WriteReport(out, report(samples, steady, time.Since(start), load0, benchkit.LoadAverage()))
}

func upgradeOne(o *benchkit.Operator, name string, steady time.Duration) (sample, error) {
	ctx := context.Background()
	c := o.Client
	key := types.NamespacedName{Namespace: "default", Name: name}
	tc, remove, err := o.CreateTenant(ctx, &kv1.TenantCluster{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default"}, Spec: kv1.TenantClusterSpec{Version: from}})
	defer remove()
	if err != nil {
		return sample{}, err
	}
	secret := &corev1.Secret{}
	if err := c.Get(ctx, types.NamespacedName{Namespace: "default", Name: tc.Status.AdminKubeconfigSecret}, secret); err != nil {
		return sample{}, err
	}
	rc, err := clientcmd.RESTConfigFromKubeConfig(secret.Data["kubeconfig"])
	if err != nil {
		return sample{}, err
	}
	rc.QPS, rc.Burst, rc.Timeout = 1000, 1000, time.Minute
	cs, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return sample{}, err
	}
	fresh, err := apiload.FreshConnections(rc)
	if err != nil {
		return sample{}, err
	}
	load, err := apiload.Start(ctx, cs, apiload.Options{Namespace: "default", Name: "load", Clients: 2, Pause: 20 * time.Millisecond})
	if err != nil {
		return sample{}, err
	}
	freshLoad, err := apiload.Start(ctx, fresh, apiload.Options{Namespace: "default", Name: "load-fresh", Clients: 2, Pause: 20 * time.Millisecond})
	if err != nil {
		load.Stop()
		return sample{}, err
	}
	stop := func() []apiload.Sample { return append(load.Stop(), freshLoad.Stop()...) }
	steadyStart := time.Now()
	time.Sleep(steady) // the steady window is a measurement's length, not a wait for a condition
	patchAt := time.Now()
	if err := c.Patch(ctx, &kv1.TenantCluster{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default"}},
		client.RawPatch(types.MergePatchType, []byte(`{"spec":{"version":"`+to+`"}}`))); err != nil {
		stop()
		return sample{}, err
	}
	var s sample
	err = wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 10*time.Minute, true, func(ctx context.Context) (bool, error) {
		got := &kv1.TenantCluster{}
		if err := c.Get(ctx, key, got); err != nil {
			return false, nil
		}
		return got.Status.Version == to && meta.IsStatusConditionFalse(got.Status.Conditions, kv1.ConditionUpgrading) &&
			meta.IsStatusConditionTrue(got.Status.Conditions, kv1.ConditionReady), nil
	})
	if err != nil {
		stop()
		return sample{}, fmt.Errorf("tenant %s did not finish its upgrade to %s: %w", name, to, err)
	}
	s.ready = time.Since(patchAt)
	err = wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 5*time.Minute, true, func(ctx context.Context) (bool, error) {
		var pods corev1.PodList
		if err := c.List(ctx, &pods, client.InNamespace("default"), client.MatchingLabels(controlplane.Labels(name))); err != nil {
			return false, nil
		}
		return len(pods.Items) == 1 && strings.HasSuffix(pods.Items[0].Spec.InitContainers[len(pods.Items[0].Spec.InitContainers)-1].Image, ":"+to), nil
	})
	samples := stop()
	if err != nil {
		return sample{}, fmt.Errorf("the old control-plane pod of %s did not go: %w", name, err)
	}
	s.drained = time.Since(patchAt)
	s.steady = apiload.Summarize(samples, steadyStart, patchAt)
	s.roll = apiload.Summarize(samples, patchAt, time.Time{})
	return s, nil
}

func report(samples []sample, steady, took time.Duration, load0, load1 string) string {
	var ready, drained, sp99, rp99, sworst, rworst []time.Duration
	sent, failed, steadySent, steadyFailed := 0, 0, 0, 0
	var failures []string
	for _, s := range samples {
		ready, drained = append(ready, s.ready), append(drained, s.drained)
		sp99, rp99 = append(sp99, s.steady.P99), append(rp99, s.roll.P99)
		sworst, rworst = append(sworst, s.steady.Worst), append(rworst, s.roll.Worst)
		sent, failed = sent+s.roll.Sent, failed+s.roll.Failed
		steadySent, steadyFailed = steadySent+s.steady.Sent, steadyFailed+s.steady.Failed
		failures = append(failures, s.roll.Failures...)
	}
	var b strings.Builder
	fmt.Fprintf(&b, `# Upgrade benchmark

Measured %s on %s; load average (1, 5, 15 min) %s at the start and %s at
the end; the whole run took %s:

    go run ./bench/upgrade

%d tenants, one after another, each created at %s with one control-plane
replica and upgraded to %s (spec.version patched) while a client reads
and merge-patches ConfigMaps through the tenant's endpoint (the admin
node's address and node port) with client-go: two clients on kept
connections and two opening a new connection for every request (as
kubectl runs do), each one request at a time, 20 ms apart. The same client first ran %s against the steady control plane:
that is the floor the roll is compared with, in the same run.

| what | median | worst |
|---|---|---|
| spec.version patched → status.version %s, Upgrading False, Ready | %s | %s |
| spec.version patched → the old API server drained and gone | %s | %s |

| client during the roll | steady control plane | rolling | ratio |
|---|---|---|---|
| requests sent (all runs) | %d | %d | |
| requests failed (all runs) | %d | **%d** | |
| p99 latency, median over runs | %s | %s | %.2f |
| worst latency, worst over runs | %s | %s | %.2f |
`, benchkit.Now(), benchkit.Machine(), load0, load1, took.Round(time.Second),
		len(samples), from, to, steady,
		to, benchkit.Seconds(benchkit.Median(ready)), benchkit.Seconds(benchkit.Worst(ready)),
		benchkit.Seconds(benchkit.Median(drained)), benchkit.Seconds(benchkit.Worst(drained)),
		steadySent, sent, steadyFailed, failed,
		benchkit.Millis(benchkit.Median(sp99)), benchkit.Millis(benchkit.Median(rp99)), benchkit.Ratio(benchkit.Median(rp99), benchkit.Median(sp99)),
		benchkit.Millis(benchkit.Worst(sworst)), benchkit.Millis(benchkit.Worst(rworst)), benchkit.Ratio(benchkit.Worst(rworst), benchkit.Worst(sworst)))
	if len(failures) > 0 {
		fmt.Fprintf(&b, "\nFailed requests:\n\n")
		for _, f := range failures {
			fmt.Fprintf(&b, "- %s\n", f)
		}
	}
	b.WriteString(`
The roll: a new pod at the new version starts beside the old one (about
its API server's start on a busy node), the old one is removed once the
new one is ready and drains for the API server's shutdown delay (10 s)
before it exits; requests that reach it after the delay are answered 429
with Retry-After and retried by client-go, which shows in the worst
latency, not as a failure.
`)
	return b.String()
}
