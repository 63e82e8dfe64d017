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
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/client"

	kv1 "kubinception.dev/kubinception/api/v1alpha1"
	"kubinception.dev/kubinception/internal/local/admincluster"
	"kubinception.dev/kubinception/internal/operator"
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
	tmp, err := os.MkdirTemp("", "kubinception-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	bin := filepath.Join(tmp, "kubinception")
	if _, err := sh("go", "build", "-ldflags", "-s -w", "-o", bin, "./cmd/kubinception"); err != nil {
		return err
	}
	if _, err := sh(bin, "admin", "up", "--root", root); err != nil {
		return err
	}
	defer sh(bin, "admin", "down", "--purge", "--root", root)
	kc := filepath.Join(root, "admin.conf")
	if _, err := sh(bin, "install", "--kubeconfig", kc, "--root", root); err != nil {
		return err
	}
	rc, err := clientcmd.BuildConfigFromFlags("", kc)
	if err != nil {
		return err
	}
	rc.QPS, rc.Burst = 100, 200
	c, err := client.New(rc, client.Options{Scheme: operator.Scheme()})
	if err != nil {
		return err
	}
	cfg, _, err := admincluster.LoadSaved(root)
	if err != nil {
		return err
	}
	var nodeAdd, firstPod []time.Duration
	for i := 0; i < runs; i++ {
		name := fmt.Sprintf("bw%d", i)
		start := time.Now()
		if err := c.Create(ctx, &kv1.TenantCluster{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default"}}); err != nil {
			return err
		}
		tc, err := waitReady(ctx, c, name)
		if err != nil {
			return err
		}
		addStart := time.Now()
		if _, err := sh(bin, "node", "add", name, "--kubeconfig", kc, "--root", root); err != nil {
			return err
		}
		nodeAdd = append(nodeAdd, time.Since(addStart))
		cs, err := tenantClient(ctx, c, tc)
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
		if _, err := sh(bin, "node", "remove", name, name+"-w1", "--kubeconfig", kc, "--root", root); err != nil {
			return err
		}
		if err := c.Delete(ctx, tc); err != nil {
			return err
		}
	}
	med := func(d []time.Duration) time.Duration {
		s := append([]time.Duration(nil), d...)
		sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
		return s[len(s)/2]
	}
	worst := func(d []time.Duration) time.Duration {
		w := d[0]
		for _, x := range d {
			w = max(w, x)
		}
		return w
	}
	report := fmt.Sprintf(`# Worker benchmark

Measured %s; Kubernetes %s; %d tenants one after another, each with one
local worker joined by the upstream kubeadm join.

| what | median | worst |
|---|---|---|
| node add → node Ready (namespaces, containerd, kubelet, image import, kubeadm join, pod range, routes) | %s | %s |
| TenantCluster created → first pod Running on a joined node | %s | %s |
`, time.Now().UTC().Format("2006-01-02 15:04 UTC"), cfg.KubernetesVersion, runs,
		med(nodeAdd).Round(10*time.Millisecond), worst(nodeAdd).Round(10*time.Millisecond),
		med(firstPod).Round(10*time.Millisecond), worst(firstPod).Round(10*time.Millisecond))
	fmt.Print(report)
	if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
		return err
	}
	return os.WriteFile(out, []byte(report), 0o644)
}

func waitReady(ctx context.Context, c client.Client, name string) (*kv1.TenantCluster, error) {
	deadline := time.Now().Add(5 * time.Minute)
	for time.Now().Before(deadline) {
		tc := &kv1.TenantCluster{}
		if err := c.Get(ctx, types.NamespacedName{Namespace: "default", Name: name}, tc); err == nil && meta.IsStatusConditionTrue(tc.Status.Conditions, kv1.ConditionReady) {
			return tc, nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	return nil, fmt.Errorf("tenant %s not Ready in 5 minutes", name)
}

func tenantClient(ctx context.Context, c client.Client, tc *kv1.TenantCluster) (kubernetes.Interface, error) {
	s := &corev1.Secret{}
	if err := c.Get(ctx, types.NamespacedName{Namespace: tc.Namespace, Name: tc.Status.AdminKubeconfigSecret}, s); err != nil {
		return nil, err
	}
	rc, err := clientcmd.RESTConfigFromKubeConfig(s.Data["kubeconfig"])
	if err != nil {
		return nil, err
	}
	return kubernetes.NewForConfig(rc)
}

func waitRunning(ctx context.Context, cs kubernetes.Interface, name string) error {
	deadline := time.Now().Add(5 * time.Minute)
	for time.Now().Before(deadline) {
		p, err := cs.CoreV1().Pods("default").Get(ctx, name, metav1.GetOptions{})
		if err == nil && p.Status.Phase == corev1.PodRunning {
			return nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("pod %s not Running in 5 minutes", name)
}

func sh(name string, args ...string) (string, error) {
	c := exec.Command(name, args...)
	c.Env = append(os.Environ(), "CGO_ENABLED=0")
	out, err := c.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("%s %s: %w\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out), nil
}
