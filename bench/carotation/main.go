// Command carotation measures a tenant's CA rotation with overlap, phase
// by phase, on a tenant with two joined local workers: start (request →
// Prepared: the control plane rolls onto both CAs), moving each node
// (kubinception node rotate-ca: new certificates, kubelet restarted),
// and complete (request → Completed: the control plane rolls onto the new
// CA alone). A client reads and patches a ConfigMap through the tenant's
// endpoint throughout each step with a kubeconfig that trusts the CAs of
// that step (the customer kubeconfig of the tenant, read again once the
// rotation is Prepared), and the report counts its failed requests. It
// writes a Markdown report (bench/results/carotation.md).
//
// Run as root from the repository, with the machine's admin cluster
// ports free: go run ./bench/carotation
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"strings"
	"time"

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
)

func main() {
	root := flag.String("root", "/var/lib/kubinception-bench", "admin cluster state directory used for the measurement")
	runs := flag.Int("runs", 2, "rotations, one after the other")
	out := flag.String("out", "bench/results/carotation.md", "report file")
	flag.Parse()
	if err := run(*root, *runs, *out); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

const name = "bca"

// rotation is one rotation's phases, as the bench saw them and as the
// operator recorded them in status.
type rotation struct {
	start, nodes, complete  time.Duration
	perNode                 []time.Duration
	preparing, completing   time.Duration // from status: phase entered → next phase
	startLoad, completeLoad apiload.Summary
}

func run(root string, runs int, out string) error {
	began := time.Now()
	load0 := benchkit.LoadAverage()
	o, err := benchkit.UpWithOperator(root)
	defer o.Down()
	if err != nil {
		return err
	}
	ctx := context.Background()
	c := o.Client
	key := types.NamespacedName{Namespace: "default", Name: name}
	_, remove, err := o.CreateTenant(ctx, &kv1.TenantCluster{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default"}})
	defer remove()
	if err != nil {
		return err
	}
	for range 2 {
		if err := o.Kubinception("node", "add", name); err != nil {
			return err
		}
	}
	var rs []rotation
	for i := range runs {
		r, err := rotate(ctx, o, c, key)
		if err != nil {
			return fmt.Errorf("rotation %d: %w", i+1, err)
		}
		fmt.Printf("rotation %d of %d: start %s, nodes %s, complete %s\n", i+1, runs, r.start.Round(time.Second), r.nodes.Round(time.Second), r.complete.Round(time.Second))
		rs = append(rs, r)
	}
	return benchkit.WriteReport(out, report(rs, time.Since(began), load0, benchkit.LoadAverage()))
}

// rotate runs one rotation and times its steps.
func rotate(ctx context.Context, o *benchkit.Operator, c client.Client, key types.NamespacedName) (rotation, error) {
	var r rotation
	cs, err := customerClient(ctx, c)
	if err != nil {
		return r, err
	}
	load, err := apiload.Start(ctx, cs, apiload.Options{Namespace: "default", Name: "load", Clients: 2, Pause: 20 * time.Millisecond})
	if err != nil {
		return r, err
	}
	at := time.Now()
	if err := request(ctx, c, kv1.CARotationStart); err != nil {
		load.Stop()
		return r, err
	}
	if err := waitPhase(ctx, c, key, kv1.CARotationPrepared, at); err != nil {
		load.Stop()
		return r, err
	}
	r.start = time.Since(at)
	r.startLoad = apiload.Summarize(load.Stop(), at, time.Now())

	at = time.Now()
	for _, n := range []string{name + "-w1", name + "-w2"} {
		t0 := time.Now()
		if err := o.Kubinception("node", "rotate-ca", name, n); err != nil {
			return r, err
		}
		r.perNode = append(r.perNode, time.Since(t0))
	}
	if err := wait.PollUntilContextTimeout(ctx, 500*time.Millisecond, 3*time.Minute, true, func(ctx context.Context) (bool, error) {
		tc := &kv1.TenantCluster{}
		if err := c.Get(ctx, key, tc); err != nil {
			return false, nil
		}
		st := tc.Status.Certificates.CARotation
		return st != nil && len(st.PendingNodes) == 0, nil
	}); err != nil {
		return r, fmt.Errorf("nodes still pending after moving them: %w", err)
	}
	r.nodes = time.Since(at)

	// A client that has moved: the customer kubeconfig as the rotation
	// reissued it (both CAs, a certificate of the new one).
	if cs, err = customerClient(ctx, c); err != nil {
		return r, err
	}
	load, err = apiload.Start(ctx, cs, apiload.Options{Namespace: "default", Name: "load", Clients: 2, Pause: 20 * time.Millisecond})
	if err != nil {
		return r, err
	}
	at = time.Now()
	if err := request(ctx, c, kv1.CARotationComplete); err != nil {
		load.Stop()
		return r, err
	}
	if err := waitPhase(ctx, c, key, kv1.CARotationCompleted, at); err != nil {
		load.Stop()
		return r, err
	}
	r.complete = time.Since(at)
	r.completeLoad = apiload.Summarize(load.Stop(), at, time.Now())
	tc := &kv1.TenantCluster{}
	if err := c.Get(ctx, key, tc); err != nil {
		return r, err
	}
	st := tc.Status.Certificates.CARotation
	r.preparing = st.PreparedTime.Sub(st.PreparingTime.Time)
	r.completing = st.CompletedTime.Sub(st.CompletingTime.Time)
	return r, nil
}

func request(ctx context.Context, c client.Client, value string) error {
	patch := fmt.Sprintf(`{"metadata":{"annotations":{%q:%q}}}`, kv1.AnnotationCARotation, value)
	return c.Patch(ctx, &kv1.TenantCluster{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default"}}, client.RawPatch(types.MergePatchType, []byte(patch)))
}

// waitPhase waits until the rotation entered want after since.
func waitPhase(ctx context.Context, c client.Client, key types.NamespacedName, want kv1.CARotationPhase, since time.Time) error {
	last := "no status"
	err := wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, 10*time.Minute, true, func(ctx context.Context) (bool, error) {
		tc := &kv1.TenantCluster{}
		if err := c.Get(ctx, key, tc); err != nil {
			return false, nil
		}
		st := tc.Status.Certificates.CARotation
		if st == nil || st.LastTransitionTime == nil {
			return false, nil
		}
		last = string(st.Phase) + ": " + st.Message
		return st.Phase == want && !st.LastTransitionTime.Time.Before(since.Truncate(time.Second)), nil
	})
	if err != nil {
		return fmt.Errorf("waiting for %s: %w (last: %s)", want, err, last)
	}
	return nil
}

// customerClient reaches the tenant with the customer kubeconfig the
// operator keeps in NAME-admin-kubeconfig.
func customerClient(ctx context.Context, c client.Client) (kubernetes.Interface, error) {
	secret := &corev1.Secret{}
	if err := c.Get(ctx, types.NamespacedName{Namespace: "default", Name: name + "-admin-kubeconfig"}, secret); err != nil {
		return nil, err
	}
	rc, err := clientcmd.RESTConfigFromKubeConfig(secret.Data["kubeconfig"])
	if err != nil {
		return nil, err
	}
	rc.QPS, rc.Burst, rc.Timeout = 1000, 1000, time.Minute
	return kubernetes.NewForConfig(rc)
}

func report(rs []rotation, took time.Duration, load0, load1 string) string {
	var start, nodes, complete, perNode, preparing, completing []time.Duration
	var sent, failed [2]int
	var failures []string
	for _, r := range rs {
		start, nodes, complete = append(start, r.start), append(nodes, r.nodes), append(complete, r.complete)
		perNode = append(perNode, r.perNode...)
		preparing, completing = append(preparing, r.preparing), append(completing, r.completing)
		sent[0], failed[0] = sent[0]+r.startLoad.Sent, failed[0]+r.startLoad.Failed
		sent[1], failed[1] = sent[1]+r.completeLoad.Sent, failed[1]+r.completeLoad.Failed
		failures = append(failures, r.startLoad.Failures...)
		failures = append(failures, r.completeLoad.Failures...)
	}
	var b strings.Builder
	fmt.Fprintf(&b, `# CA rotation benchmark

Measured %s on %s; load average (1, 5, 15 min) %s at the start and %s at
the end; the whole run took %s:

    go run ./bench/carotation

One tenant (one control-plane replica, default settings) with two joined
local workers (behind NAT). %d rotations, one after the other, each in
three steps: start (kubinception.dev/ca-rotation=start, as kubinception
rotate ca start sets it) until status.certificates.caRotation says
Prepared; kubinception node rotate-ca on each worker, one after the other,
until no node is pending; complete until Completed. A client reads and
merge-patches a ConfigMap through the tenant's endpoint with client-go,
two requests at a time, 20 ms apart, during start (with the customer
kubeconfig from before the rotation) and during complete (with the one
the rotation reissued).

| step | median | worst |
|---|---|---|
| start: request → Prepared | %s | %s |
| (status: Preparing → Prepared) | %s | %s |
| one node moved (node rotate-ca, until its kubelet is Ready again) | %s | %s |
| both nodes moved, until none is pending | %s | %s |
| complete: request → Completed | %s | %s |
| (status: Completing → Completed) | %s | %s |

| client | during start | during complete |
|---|---|---|
| requests sent | %d | %d |
| requests failed | **%d** | **%d** |
`, benchkit.Now(), benchkit.Machine(), load0, load1, took.Round(time.Second), len(rs),
		benchkit.Seconds(benchkit.Median(start)), benchkit.Seconds(benchkit.Worst(start)),
		benchkit.Seconds(benchkit.Median(preparing)), benchkit.Seconds(benchkit.Worst(preparing)),
		benchkit.Seconds(benchkit.Median(perNode)), benchkit.Seconds(benchkit.Worst(perNode)),
		benchkit.Seconds(benchkit.Median(nodes)), benchkit.Seconds(benchkit.Worst(nodes)),
		benchkit.Seconds(benchkit.Median(complete)), benchkit.Seconds(benchkit.Worst(complete)),
		benchkit.Seconds(benchkit.Median(completing)), benchkit.Seconds(benchkit.Worst(completing)),
		sent[0], sent[1], failed[0], failed[1])
	if len(failures) > 0 {
		b.WriteString("\nFailed requests:\n\n")
		for _, f := range failures {
			fmt.Fprintf(&b, "- %s\n", f)
		}
	}
	b.WriteString(`
Each of start and complete is one reissue in the operator (milliseconds)
and one rolling update of the control plane, as a leaf rotation is
(bench/results/rotation.md); the operator records the phase once the roll
is done and the tenant's cluster-info carries the new trust. Moving a node
is two certificate requests (the client one approved by the controller
manager, the serving one by the operator's approver, which the command
nudges) and a kubelet restart: its pods keep running.
`)
	return b.String()
}
