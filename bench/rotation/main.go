// Command rotation measures a tenant's leaf certificate rotation under a
// steady client load: from the request (the annotation kubinception rotate
// certs sets) to every control-plane pod running the new certificates,
// and how many of the client's requests failed meanwhile. The floor, in
// the same run and on the same tenant, is a bare rolling restart of the
// control-plane Deployment (what a rotation costs beyond it is the
// operator's reissue). The client reads and patches a ConfigMap through
// the tenant's endpoint with client-go (internal/apiload), two requests
// at a time. It writes a Markdown report (bench/results/rotation.md).
//
// Run as root from the repository, with the machine's admin cluster
// ports free: go run ./bench/rotation
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"strings"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
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
	"kubinception.dev/kubinception/internal/objects"
)

func main() {
	root := flag.String("root", "/var/lib/kubinception-bench", "admin cluster state directory used for the measurement")
	runs := flag.Int("runs", 3, "rotations (and as many bare restarts), alternating")
	out := flag.String("out", "bench/results/rotation.md", "report file")
	flag.Parse()
	if err := run(*root, *runs, *out); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

// sample is one roll: how long it took and what the client saw.
type sample struct {
	took time.Duration
	load apiload.Summary
}

func run(root string, runs int, out string) error {
	start := time.Now()
	load0 := benchkit.LoadAverage()
	o, err := benchkit.UpWithOperator(root)
	defer o.Down()
	if err != nil {
		return err
	}
	ctx := context.Background()
	c := o.Client
	const name = "brot"
	tc, remove, err := o.CreateTenant(ctx, &kv1.TenantCluster{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default"}})
	defer remove()
	if err != nil {
		return err
	}
	secret := &corev1.Secret{}
	if err := c.Get(ctx, types.NamespacedName{Namespace: "default", Name: tc.Status.AdminKubeconfigSecret}, secret); err != nil {
		return err
	}
	rc, err := clientcmd.RESTConfigFromKubeConfig(secret.Data["kubeconfig"])
	if err != nil {
		return err
	}
	rc.QPS, rc.Burst, rc.Timeout = 1000, 1000, time.Minute
	cs, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return err
	}
	load, err := apiload.Start(ctx, cs, apiload.Options{Namespace: "default", Name: "load", Clients: 2, Pause: 20 * time.Millisecond})
	if err != nil {
		return err
	}
	type window struct{ from, to time.Time }
	var restarts, rotations []window
	for i := range runs {
		// The floor: a rolling restart, as kubectl rollout restart does it.
		at := time.Now()
		patch := fmt.Sprintf(`{"spec":{"template":{"metadata":{"annotations":{"kubectl.kubernetes.io/restartedAt":%q}}}}}`, at.Format(time.RFC3339Nano))
		if err := c.Patch(ctx, &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: controlplane.DeploymentName(name), Namespace: "default"}},
			client.RawPatch(types.MergePatchType, []byte(patch))); err != nil {
			load.Stop()
			return err
		}
		if err := waitRolledOut(ctx, c, name, ""); err != nil {
			load.Stop()
			return fmt.Errorf("restart %d: %w", i+1, err)
		}
		restarts = append(restarts, window{at, time.Now()})

		// The rotation.
		at = time.Now()
		value := at.UTC().Format(time.RFC3339Nano)
		patch = fmt.Sprintf(`{"metadata":{"annotations":{%q:%q}}}`, kv1.AnnotationCertificateRotation, value)
		if err := c.Patch(ctx, &kv1.TenantCluster{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default"}}, client.RawPatch(types.MergePatchType, []byte(patch))); err != nil {
			load.Stop()
			return err
		}
		if err := waitRolledOut(ctx, c, name, value); err != nil {
			load.Stop()
			return fmt.Errorf("rotation %d: %w", i+1, err)
		}
		rotations = append(rotations, window{at, time.Now()})
		fmt.Printf("run %d of %d: restart %s, rotation %s\n", i+1, runs, restarts[i].to.Sub(restarts[i].from).Round(time.Second), rotations[i].to.Sub(rotations[i].from).Round(time.Second))
	}
	samples := load.Stop()
	summarize := func(ws []window) []sample {
		var out []sample
		for _, w := range ws {
			out = append(out, sample{took: w.to.Sub(w.from), load: apiload.Summarize(samples, w.from, w.to)})
		}
		return out
	}
	return benchkit.WriteReport(out, report(summarize(restarts), summarize(rotations), time.Since(start), load0, benchkit.LoadAverage()))
}

// waitRolledOut waits until the tenant has answered the rotation request
// value (none for "") and every control-plane pod runs the PKI Secret as
// it is and the Deployment's current template.
func waitRolledOut(ctx context.Context, c client.Client, name, value string) error {
	var last string
	err := wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, 10*time.Minute, true, func(ctx context.Context) (bool, error) {
		tc := &kv1.TenantCluster{}
		if err := c.Get(ctx, types.NamespacedName{Namespace: "default", Name: name}, tc); err != nil {
			return false, nil
		}
		if value != "" && tc.Status.Certificates.ObservedRotation != value {
			last = "the operator has not answered the request"
			return false, nil
		}
		secret := &corev1.Secret{}
		dep := &appsv1.Deployment{}
		if c.Get(ctx, types.NamespacedName{Namespace: "default", Name: controlplane.PKISecretName(name)}, secret) != nil ||
			c.Get(ctx, types.NamespacedName{Namespace: "default", Name: controlplane.DeploymentName(name)}, dep) != nil {
			return false, nil
		}
		st := dep.Status
		last = fmt.Sprintf("deployment status %+v", st)
		return dep.Spec.Template.Annotations[controlplane.AnnotationPKIHash] == objects.HashData(secret.Data) &&
			st.ObservedGeneration >= dep.Generation && st.Replicas == st.UpdatedReplicas && st.AvailableReplicas == *dep.Spec.Replicas, nil
	})
	if err != nil {
		return fmt.Errorf("%w (%s)", err, last)
	}
	return nil
}

func report(restarts, rotations []sample, took time.Duration, load0, load1 string) string {
	durations := func(ss []sample) (d, p99 []time.Duration, sent, failed int, failures []string) {
		for _, s := range ss {
			d, p99 = append(d, s.took), append(p99, s.load.P99)
			sent, failed = sent+s.load.Sent, failed+s.load.Failed
			failures = append(failures, s.load.Failures...)
		}
		return
	}
	rd, rp, rs, rf, _ := durations(restarts)
	cd, cp, csent, cf, failures := durations(rotations)
	var b strings.Builder
	fmt.Fprintf(&b, `# Certificate rotation benchmark

Measured %s on %s; load average (1, 5, 15 min) %s at the start and %s at
the end; the whole run took %s:

    go run ./bench/rotation

One tenant (one control-plane replica, default settings). %d times,
alternating: a bare rolling restart of its control-plane Deployment (the
floor, measured in the same run) and a leaf certificate rotation
(kubinception.dev/certificate-rotation-requested set, as kubinception
rotate certs does), each timed until every control-plane pod runs the
current template and PKI Secret. A client reads and merge-patches a
ConfigMap through the tenant's endpoint with client-go, two requests at a
time, 20 ms apart, throughout.

| what | median | worst | ratio of medians |
|---|---|---|---|
| rolling restart (floor) | %s | %s | |
| leaf rotation: request → every pod on the new certificates | %s | %s | %.2f |

| client | during restarts | during rotations |
|---|---|---|
| requests sent | %d | %d |
| requests failed | %d | **%d** |
| p99 latency, median over runs | %s | %s |
`, benchkit.Now(), benchkit.Machine(), load0, load1, took.Round(time.Second), len(rotations),
		benchkit.Seconds(benchkit.Median(rd)), benchkit.Seconds(benchkit.Worst(rd)),
		benchkit.Seconds(benchkit.Median(cd)), benchkit.Seconds(benchkit.Worst(cd)), benchkit.Ratio(benchkit.Median(cd), benchkit.Median(rd)),
		rs, csent, rf, cf, benchkit.Millis(benchkit.Median(rp)), benchkit.Millis(benchkit.Median(cp)))
	if len(failures) > 0 {
		b.WriteString("\nFailed requests during rotations:\n\n")
		for _, f := range failures {
			fmt.Fprintf(&b, "- %s\n", f)
		}
	}
	b.WriteString(`
A rotation is a reissue of every leaf certificate in the PKI Secret (a few
milliseconds of ECDSA work in the operator) followed by the same rolling
update as the floor: the new pod starts beside the old one, and the old
one drains before it exits. CA rotation is measured apart
(go run ./bench/carotation, bench/results/carotation.md).
`)
	return b.String()
}
