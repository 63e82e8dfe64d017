// Command workers measures local workers joining tenant clusters: the time
// from `kubinception node add` to the node being Ready, and the time from
// creating a TenantCluster to its first pod Running on a joined node (create,
// Ready, node add, pod). It writes a Markdown report
// (bench/results/workers.md).
//
// Run as root from the repository: go run ./bench/workers
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"

	kv1 "kubinception.dev/kubinception/api/v1alpha1"
	"kubinception.dev/kubinception/bench/internal/benchkit"
)

func main() {
	root := flag.String("root", "/var/lib/kubinception-bench", "admin cluster state directory used for the measurement")
	runs := flag.Int("runs", 5, "tenants measured, one after another")
	out := flag.String("out", "bench/results/workers.md", "report file")
	flag.Parse()
	if err := run(*root, *runs, *out); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

func run(root string, runs int, out string) error {
	ctx := context.Background()
	o, err := benchkit.UpWithOperator(root)
	defer o.Down()
	if err != nil {
		return err
	}
	c, cfg := o.Client, o.Config
	var nodeAdd, firstPod []time.Duration
	for i := 0; i < runs; i++ {
		name := fmt.Sprintf("bw%d", i)
		start := time.Now()
		if err := c.Create(ctx, &kv1.TenantCluster{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default"}}); err != nil {
			return err
		}
		tc, err := benchkit.WaitTenantUsable(ctx, c, types.NamespacedName{Namespace: "default", Name: name}, 5*time.Minute)
		if err != nil {
			return err
		}
		addStart := time.Now()
		if err := o.Kubinception("node", "add", name); err != nil {
			return err
		}
		nodeAdd = append(nodeAdd, time.Since(addStart))
		cs, err := benchkit.TenantClient(ctx, c, tc)
		if err != nil {
			return err
		}
		pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "first", Namespace: "default"}, Spec: corev1.PodSpec{
			Containers: []corev1.Container{{Name: "first", Image: cfg.Images.Tinyhost(), ImagePullPolicy: corev1.PullNever, Args: []string{"pause"}}}}}
		if _, err := cs.CoreV1().Pods("default").Create(ctx, pod, metav1.CreateOptions{}); err != nil {
			return err
		}
		if err := waitRunning(ctx, cs, "first"); err != nil {
			return err
		}
		firstPod = append(firstPod, time.Since(start))
		fmt.Printf("run %d: node add → Ready %s, create → first pod Running %s\n", i, nodeAdd[i].Round(10*time.Millisecond), firstPod[i].Round(10*time.Millisecond))
		if err := o.Kubinception("node", "remove", name, name+"-w1"); err != nil {
			return err
		}
		if err := c.Delete(ctx, tc); err != nil {
			return err
		}
	}
	report := fmt.Sprintf(`# Worker benchmark

Measured %s; Kubernetes %s; %d tenants one after another, each with one
local worker joined by the upstream kubeadm join.

| what | median | worst |
|---|---|---|
| node add → node Ready (namespaces, containerd, kubelet, image import, kubeadm join, pod range, routes) | %s | %s |
| TenantCluster created → first pod Running on a joined node | %s | %s |
`, benchkit.Now(), cfg.KubernetesVersion, runs,
		benchkit.Median(nodeAdd).Round(10*time.Millisecond), benchkit.Worst(nodeAdd).Round(10*time.Millisecond),
		benchkit.Median(firstPod).Round(10*time.Millisecond), benchkit.Worst(firstPod).Round(10*time.Millisecond))
	return benchkit.WriteReport(out, report)
}

// waitRunning waits for a pod in the default namespace to run.
func waitRunning(ctx context.Context, cs kubernetes.Interface, name string) error {
	err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 5*time.Minute, true, func(ctx context.Context) (bool, error) {
		p, err := cs.CoreV1().Pods("default").Get(ctx, name, metav1.GetOptions{})
		return err == nil && p.Status.Phase == corev1.PodRunning, nil
	})
	if err != nil {
		return fmt.Errorf("pod %s not Running in 5 minutes: %w", name, err)
	}
	return nil
}
