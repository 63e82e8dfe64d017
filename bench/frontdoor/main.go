// Command frontdoor measures the front door and hibernation: the latency
// the front door adds to an API request against the same request sent
// to the tenant's node port (the same tenant, the same server name,
// interleaved in the same run), on a kept-alive connection and on a new
// connection per request; the wake time, from the first request to a
// hibernated tenant until it is answered; and what a hibernated tenant
// costs the admin cluster beside an awake idle one. It writes a Markdown
// report (bench/results/frontdoor.md).
//
// Run as root from the repository: go run ./bench/frontdoor
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/client"

	kv1 "kubinception.dev/kubinception/api/v1alpha1"
	"kubinception.dev/kubinception/bench/internal/benchkit"
	cp "kubinception.dev/kubinception/internal/controlplane"
	"kubinception.dev/kubinception/internal/local/hostproc"
)

func main() {
	root := flag.String("root", "/var/lib/kubinception-bench", "admin cluster state directory used for the measurement")
	runs := flag.Int("runs", 200, "requests of each kind and path")
	wakes := flag.Int("wakes", 5, "hibernate-and-wake rounds")
	out := flag.String("out", "bench/results/frontdoor.md", "report file")
	flag.Parse()
	if err := run(*root, *runs, *wakes, *out); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

const name = "fdbench"

func run(root string, runs, wakes int, out string) error {
	start := time.Now()
	load0 := benchkit.LoadAverage()
	o, err := benchkit.UpWithOperator(root)
	defer o.Down()
	if err != nil {
		return err
	}
	ctx := context.Background()
	key := types.NamespacedName{Namespace: "default", Name: name}
	tc := &kv1.TenantCluster{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default"},
		Spec: kv1.TenantClusterSpec{Exposure: kv1.ExposureSpec{Type: kv1.ExposureFrontDoor}, Hibernation: kv1.HibernationSpec{Enabled: true}}}
	if err := o.Client.Create(ctx, tc); err != nil {
		return err
	}
	if err := waitReady(ctx, o.Client, key); err != nil {
		return fmt.Errorf("the new tenant Ready: %w", err)
	}
	if _, err := benchkit.Run(nil, o.Bin, "frontdoor", "hosts", "--kubeconfig", o.Kubeconfig); err != nil {
		return err
	}
	if tc, err = benchkit.WaitTenantUsable(ctx, o.Client, key, 3*time.Minute); err != nil {
		return err
	}
	fmt.Println("tenant ready; measuring the front door's latency")
	viaDoor, direct, err := configs(ctx, o.Client, tc)
	if err != nil {
		return err
	}

	r := report{runs: runs, load0: load0}
	// Per request on kept-alive connections, then a new connection
	// (TCP, TLS) per request; the two paths alternate.
	for _, fresh := range []bool{false, true} {
		door, node, err := latencies(ctx, viaDoor, direct, runs, fresh)
		if err != nil {
			return err
		}
		r.latency = append(r.latency, pair{fresh: fresh, door: door, node: node})
	}

	// An awake idle tenant's control plane, then a hibernated one's.
	if r.awakeRSS, r.awakeCPU, r.awakePods, err = controlPlaneCost(ctx, o.Client); err != nil {
		return err
	}
	for i := range wakes {
		if _, err := benchkit.Run(nil, o.Bin, "hibernate", name, "--wait", "--kubeconfig", o.Kubeconfig); err != nil {
			return err
		}
		if err := waitNoPods(ctx, o.Client); err != nil {
			return fmt.Errorf("wake %d: no control-plane pod left after hibernate: %w", i+1, err)
		}
		if i == 0 {
			if r.sleepRSS, r.sleepCPU, r.sleepPods, err = controlPlaneCost(ctx, o.Client); err != nil {
				return err
			}
		}
		wctx, stop := context.WithCancel(ctx)
		r.timelines = append(r.timelines, watchWake(wctx, o.Client, time.Now()))
		d, err := firstRequest(ctx, viaDoor)
		if err != nil {
			stop()
			return fmt.Errorf("wake %d: %w", i+1, err)
		}
		r.wakes = append(r.wakes, d)
		err = waitReady(ctx, o.Client, key)
		stop()
		if err != nil {
			return fmt.Errorf("wake %d: Ready after the first request: %w", i+1, err)
		}
		fmt.Printf("wake %d of %d: answered after %s\n", i+1, wakes, d.Round(time.Millisecond))
	}
	// Its names leave /etc/hosts with it.
	if err := o.Client.Delete(ctx, tc); err != nil {
		return err
	}
	if err := wait.PollUntilContextTimeout(ctx, time.Second, 3*time.Minute, true, func(ctx context.Context) (bool, error) {
		return apierrors.IsNotFound(o.Client.Get(ctx, key, &kv1.TenantCluster{})), nil
	}); err != nil {
		return err
	}
	if _, err := benchkit.Run(nil, o.Bin, "frontdoor", "hosts", "--kubeconfig", o.Kubeconfig); err != nil {
		return err
	}
	r.took = time.Since(start)
	r.load1 = benchkit.LoadAverage()
	return benchkit.WriteReport(out, r.markdown())
}

// waitReady waits until the tenant is Ready and awake.
func waitReady(ctx context.Context, c client.Client, key types.NamespacedName) error {
	return wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, 5*time.Minute, true, func(ctx context.Context) (bool, error) {
		tc := &kv1.TenantCluster{}
		if err := c.Get(ctx, key, tc); err != nil {
			return false, nil
		}
		return meta.IsStatusConditionTrue(tc.Status.Conditions, kv1.ConditionReady) && !tc.Status.Hibernation.Hibernated, nil
	})
}

// configs are two REST configurations of the tenant's admin: through the
// front door, and straight to the API server's node port with the same
// server name, so both verify the same certificate the same way.
func configs(ctx context.Context, c client.Client, tc *kv1.TenantCluster) (*rest.Config, *rest.Config, error) {
	s := &corev1.Secret{}
	if err := c.Get(ctx, types.NamespacedName{Namespace: tc.Namespace, Name: tc.Status.AdminKubeconfigSecret}, s); err != nil {
		return nil, nil, err
	}
	door, err := clientcmd.RESTConfigFromKubeConfig(s.Data["kubeconfig"])
	if err != nil {
		return nil, nil, err
	}
	u, err := url.Parse(door.Host)
	if err != nil {
		return nil, nil, err
	}
	svc := &corev1.Service{}
	if err := c.Get(ctx, types.NamespacedName{Namespace: tc.Namespace, Name: cp.ServiceName(tc.Name)}, svc); err != nil {
		return nil, nil, err
	}
	var nodePort int32
	for _, p := range svc.Spec.Ports {
		if p.Name == "https" {
			nodePort = p.NodePort
		}
	}
	addrs, err := net.LookupHost(u.Hostname())
	if err != nil || len(addrs) == 0 {
		return nil, nil, fmt.Errorf("resolve %s: %v", u.Hostname(), err)
	}
	direct := rest.CopyConfig(door)
	direct.Host = "https://" + net.JoinHostPort(addrs[0], strconv.Itoa(int(nodePort)))
	direct.TLSClientConfig.ServerName = u.Hostname()
	return door, direct, nil
}

// latencies times GET /version through both paths, alternating; fresh
// opens a new connection for every request.
func latencies(ctx context.Context, door, direct *rest.Config, runs int, fresh bool) ([]time.Duration, []time.Duration, error) {
	clients := map[bool]kubernetes.Interface{}
	for _, via := range []bool{true, false} {
		rc := direct
		if via {
			rc = door
		}
		rc = rest.CopyConfig(rc)
		rc.QPS, rc.Burst = -1, 0
		cs, err := kubernetes.NewForConfig(rc)
		if err != nil {
			return nil, nil, err
		}
		clients[via] = cs
	}
	var d, n []time.Duration
	for i := range runs * 2 {
		via := i%2 == 0
		cs := clients[via]
		if fresh {
			rc := door
			if !via {
				rc = direct
			}
			rc = rest.CopyConfig(rc)
			rc.QPS, rc.Burst = -1, 0
			// A dialer of its own keeps client-go from sharing a cached
			// transport: no connection is reused.
			rc.Dial = (&net.Dialer{}).DialContext
			var err error
			if cs, err = kubernetes.NewForConfig(rc); err != nil {
				return nil, nil, err
			}
		}
		t0 := time.Now()
		if _, err := cs.Discovery().RESTClient().Get().AbsPath("/version").DoRaw(ctx); err != nil {
			return nil, nil, err
		}
		if via {
			d = append(d, time.Since(t0))
		} else {
			n = append(n, time.Since(t0))
		}
	}
	return d, n, nil
}

// firstRequest times one GET /version to the hibernated tenant through
// the front door, on a new client whose timeout allows a wake.
func firstRequest(ctx context.Context, door *rest.Config) (time.Duration, error) {
	// The front door holds the connection until the API server answers,
	// TLS handshake included: client-go's 10-second handshake timeout
	// would cut a slow wake short, so this client waits as long as the
	// front door holds.
	tlsCfg, err := rest.TLSConfigFor(door)
	if err != nil {
		return 0, err
	}
	hc := &http.Client{Timeout: 90 * time.Second, Transport: &http.Transport{TLSClientConfig: tlsCfg, TLSHandshakeTimeout: 90 * time.Second, DialContext: (&net.Dialer{}).DialContext}}
	defer hc.CloseIdleConnections()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimSuffix(door.Host, "/")+"/version", nil)
	if err != nil {
		return 0, err
	}
	t0 := time.Now()
	resp, err := hc.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if _, err := io.Copy(io.Discard, resp.Body); err != nil {
		return 0, err
	}
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("GET /version: %s", resp.Status)
	}
	return time.Since(t0), nil
}

// controlPlanePods lists the tenant's control-plane pods in the admin
// cluster.
func controlPlanePods(ctx context.Context, c client.Client) ([]corev1.Pod, error) {
	var pods corev1.PodList
	err := c.List(ctx, &pods, client.InNamespace("default"), client.MatchingLabels(cp.Labels(name)))
	return pods.Items, err
}

func waitNoPods(ctx context.Context, c client.Client) error {
	return wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, 2*time.Minute, true, func(ctx context.Context) (bool, error) {
		pods, err := controlPlanePods(ctx, c)
		return err == nil && len(pods) == 0, nil
	})
}

// controlPlaneCost sums the resident memory of the tenant's control-plane
// processes and their CPU over 30 idle seconds.
func controlPlaneCost(ctx context.Context, c client.Client) (rss int64, cpu time.Duration, pods int, err error) {
	list, err := controlPlanePods(ctx, c)
	if err != nil {
		return 0, 0, 0, err
	}
	var procs []hostproc.Process
	for _, p := range list {
		uid := string(p.UID)
		forms := []string{uid, strings.ReplaceAll(uid, "-", "_")}
		procs = append(procs, hostproc.Find(func(pr hostproc.Process) bool {
			cg, err := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", pr.PID))
			return err == nil && slices.ContainsFunc(forms, func(f string) bool { return strings.Contains(string(cg), "pod"+f) })
		})...)
	}
	cpuAt := func() time.Duration {
		var sum time.Duration
		for _, p := range procs {
			if t, err := benchkit.CPUTime(p.PID); err == nil {
				sum += t
			}
		}
		return sum
	}
	c0 := cpuAt()
	time.Sleep(30 * time.Second)
	cpu = cpuAt() - c0
	for _, p := range procs {
		status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", p.PID))
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(status), "\n") {
			if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
				kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
				rss += kb * 1024
			}
		}
	}
	return rss, cpu, len(list), nil
}

type pair struct {
	fresh      bool
	door, node []time.Duration
}

type report struct {
	runs                 int
	latency              []pair
	wakes                []time.Duration
	timelines            []*timeline
	awakeRSS, sleepRSS   int64
	awakeCPU, sleepCPU   time.Duration
	awakePods, sleepPods int
	took                 time.Duration
	load0, load1         string
}

func (r report) markdown() string {
	var b strings.Builder
	fmt.Fprintf(&b, "# Front door and hibernation\n\n%s, %s. `go run ./bench/frontdoor` took %s; load average before %s, after %s.\n\n",
		benchkit.Now(), benchkit.Machine(), r.took.Round(time.Second), r.load0, r.load1)
	b.WriteString("## Latency the front door adds\n\n")
	fmt.Fprintf(&b, "GET /version of one tenant, %d requests through the front door (`https://%s.<domain>:31443`) and %d straight to the API server's node port with the same server name, alternating.\n\n", r.runs, name, r.runs)
	b.WriteString("| connection | path | median | p90 | p99 | median ratio (front door ÷ node port) | added (median) |\n|---|---|---|---|---|---|---|\n")
	for _, p := range r.latency {
		kind := "kept alive"
		if p.fresh {
			kind = "new per request (TCP + TLS)"
		}
		dm, nm := benchkit.Median(p.door), benchkit.Median(p.node)
		fmt.Fprintf(&b, "| %s | front door | %s | %s | %s | %.2f | %s |\n", kind, benchkit.Millis(dm), benchkit.Millis(benchkit.Percentile(p.door, 90)), benchkit.Millis(benchkit.Percentile(p.door, 99)), benchkit.Ratio(dm, nm), benchkit.Millis(dm-nm))
		fmt.Fprintf(&b, "| %s | node port | %s | %s | %s | | |\n", kind, benchkit.Millis(nm), benchkit.Millis(benchkit.Percentile(p.node, 90)), benchkit.Millis(benchkit.Percentile(p.node, 99)))
	}
	b.WriteString("\n## Wake time\n\n")
	fmt.Fprintf(&b, "`kubinception hibernate --wait`, no control-plane pod left, then one GET /version through the front door on a new connection: the front door holds it, renews the activity Lease, the operator scales the control plane up, and the request is answered once the API server is ready. %d rounds; goal ≤ 5 s.\n\n", len(r.wakes))
	var ws []string
	for _, w := range r.wakes {
		ws = append(ws, benchkit.Millis(w))
	}
	if len(r.wakes) > 0 {
		fmt.Fprintf(&b, "| median | worst | all |\n|---|---|---|\n| %s | %s | %s |\n", benchkit.Millis(benchkit.Median(r.wakes)), benchkit.Millis(benchkit.Worst(r.wakes)), strings.Join(ws, ", "))
	}
	if len(r.timelines) > 0 {
		b.WriteString("\nWhere a wake's time goes: when the benchmark first saw each step, reading the admin API every 25 ms from the moment the request was sent.\n\n")
		b.WriteString(timelineTable(r.timelines, r.wakes))
	}
	b.WriteString("\n## What a hibernated tenant costs\n\n")
	b.WriteString("Control-plane processes of the tenant in the admin cluster (resident memory summed, CPU over 30 idle seconds). Hibernated, what is left is objects: its Service, Secrets, NetworkPolicies, route ConfigMap, activity Lease and its keys in the datastore, and a reconcile every 10 minutes.\n\n")
	b.WriteString("| state | pods | resident memory | CPU (mCPU) |\n|---|---|---|---|\n")
	fmt.Fprintf(&b, "| awake, idle | %d | %d MiB | %.1f |\n", r.awakePods, r.awakeRSS>>20, float64(r.awakeCPU.Microseconds())/30/1000)
	fmt.Fprintf(&b, "| hibernated | %d | %d MiB | %.1f |\n", r.sleepPods, r.sleepRSS>>20, float64(r.sleepCPU.Microseconds())/30/1000)
	return b.String()
}
