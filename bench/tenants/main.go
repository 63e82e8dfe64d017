// Command tenants measures tenant control planes on the local admin
// cluster: time from create to Ready (the tenant's /readyz answers ok with
// its admin kubeconfig) over sequential runs, beside the floor — a bare
// kube-apiserver started directly on the same machine against the same
// datastore, in the same run — and the time for many tenants created at
// once; then the CPU and memory of idle tenant control planes and of the
// operator per tenant, beside the idle floor — kube-apiserver,
// kube-controller-manager and kube-scheduler started directly with a
// tenant's flags, idle as long and measured as long. It writes a Markdown report (bench/results/tenants.md).
//
// Run as root from the repository: go run ./bench/tenants
package main

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"flag"
	"fmt"
	"maps"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"sigs.k8s.io/controller-runtime/pkg/client"

	kv1 "kubinception.dev/kubinception/api/v1alpha1"
	"kubinception.dev/kubinception/bench/internal/benchkit"
	cp "kubinception.dev/kubinception/internal/controlplane"
	"kubinception.dev/kubinception/internal/datastore"
	"kubinception.dev/kubinception/internal/install"
	"kubinception.dev/kubinception/internal/kubeconfig"
	"kubinception.dev/kubinception/internal/local/admincluster"
	"kubinception.dev/kubinception/internal/local/components"
	"kubinception.dev/kubinception/internal/local/hostproc"
	"kubinception.dev/kubinception/internal/pki"
)

func main() {
	root := flag.String("root", "/var/lib/kubinception-bench", "admin cluster state directory used for the measurement")
	runs := flag.Int("runs", 10, "sequential create-to-Ready runs")
	many := flag.Int("many", 20, "tenants created at once")
	idle := flag.Duration("idle", 60*time.Second, "idle time before memory is read")
	window := flag.Duration("cpu-window", 60*time.Second, "how long idle CPU is measured, with no tenant and with the many tenants")
	out := flag.String("out", "bench/results/tenants.md", "report file")
	keep := flag.Bool("keep", false, "leave the admin cluster up afterwards")
	flag.Parse()
	if err := run(*root, *runs, *many, *idle, *window, *out, *keep); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

type bench struct {
	c    client.Client
	ctx  context.Context
	root string
}

func (b *bench) logf(format string, args ...any) {
	fmt.Printf(format+"\n", args...)
}

func run(root string, runs, many int, idle, window time.Duration, out string, keep bool) error {
	ctx := context.Background()
	tmp, err := os.MkdirTemp("", "kubinception-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	o, err := benchkit.UpWithOperator(root)
	if keep {
		defer o.Close()
	} else {
		defer o.Down()
	}
	if err != nil {
		return err
	}
	b := &bench{ctx: ctx, c: o.Client, root: root}
	cfg := o.Config

	// Floor and create-to-Ready, interleaved so both see the same machine.
	var floors, podFloors, readies []time.Duration
	var seq []*milestones
	for i := 0; i < runs; i++ {
		fl, err := b.startBare(cfg, tmp, false)
		fl.stop()
		if err != nil {
			return fmt.Errorf("bare kube-apiserver: %w", err)
		}
		f := fl.ready
		floors = append(floors, f)
		name := fmt.Sprintf("seq-%d", i)
		tr := b.track([]string{name})
		d, err := b.createReady([]string{name}, 5*time.Minute)
		if err != nil {
			return err
		}
		seq = append(seq, tr.finish()[name])
		readies = append(readies, d)
		pf, err := b.podFloor(name)
		if err != nil {
			return err
		}
		podFloors = append(podFloors, pf)
		b.logf("run %d: bare apiserver ready in %s, tenant Ready and usable in %s, its API server alone in a pod Ready in %s", i, f.Round(time.Millisecond), d.Round(time.Millisecond), pf.Round(time.Millisecond))
		if err := b.deleteAll(); err != nil {
			return err
		}
	}

	opMem0, err := b.operatorMemory()
	if err != nil {
		return err
	}
	idle0, err := b.measureIdle(window)
	if err != nil {
		return err
	}
	b.logf("no tenant: machine busy %.0f mCPU", idle0.machine)
	floorIdle, err := b.idleFloor(cfg, tmp, idle, window)
	if err != nil {
		return fmt.Errorf("idle floor: %w", err)
	}
	b.logf("bare control plane idle: %.1f mCPU, %.0f MiB resident", floorIdle.total(), mibF(floorIdle.rss))
	names := make([]string, many)
	for i := range names {
		names[i] = fmt.Sprintf("many-%d", i)
	}
	loadBefore := benchkit.LoadAverage()
	opCPU0, _ := b.operatorCPU()
	tr := b.track(names)
	manyTime, err := b.createReady(names, 15*time.Minute)
	if err != nil {
		return err
	}
	manyM := tr.finish()
	opCPU1, _ := b.operatorCPU()
	b.logf("%d tenants Ready in %s; idling %s", many, manyTime.Round(time.Millisecond), idle)
	time.Sleep(idle)
	idleN, err := b.measureIdle(window)
	if err != nil {
		return err
	}
	var tenantMem []int64
	for _, n := range names {
		m, err := b.tenantMemory(n)
		if err != nil {
			return err
		}
		tenantMem = append(tenantMem, m)
	}
	contMem := b.containerMemory(names)
	opMemN, err := b.operatorMemory()
	if err != nil {
		return err
	}
	if err := b.deleteAll(); err != nil {
		return err
	}

	mib := func(b int64) string { return fmt.Sprintf("%.0f MiB", float64(b)/(1<<20)) }
	report := fmt.Sprintf(`# Tenant control-plane benchmark

Measured %s on %s; Kubernetes %s; one run of this program. The
floor is a bare kube-apiserver started directly (no pod, no operator) against
the same datastore with its own tenancy, measured in the same run, interleaved
with the tenant runs.

| what | result |
|---|---|
| create → Ready and admin kubeconfig usable, median of %d | %s |
| create → Ready, worst of %d | %s |
| floor: bare kube-apiserver start → /readyz ok, median of %d | %s |
| ratio median tenant / median floor | %.2f |
| pod floor: the tenant's kube-apiserver alone in a Pod, create → Ready, median of %d | %s |
| ratio median tenant / median pod floor | %.2f |
| ratio median tenant pod Ready / median pod floor | %.2f |
| %d tenants created at once → all Ready and usable | %s |
| idle tenant control plane, pod working set, median of %d (min–max) | %s (%s–%s) |
| operator working set with 0 tenants → with %d | %s → %s (%s per tenant) |

Per-run times (tenant / floor / pod floor): %s

The pod floor is created after each tenant is Ready, beside its running
control plane: a Pod with only that tenant's kube-apiserver container (the
same image, flags, certificates, resources, labels and startup probe),
timed from its creation to its Ready condition. It is what running the API
server in a pod on this admin node costs (scheduling, sandbox and pod
network, the probe's one-second period), with nothing of the operator's;
its API server finds the tenant's default roles written, so its start-up
hooks have less to do than a first start's.
%s`, benchkit.Now(), benchkit.Machine(), cfg.KubernetesVersion,
		runs, benchkit.Median(readies).Round(10*time.Millisecond), runs, benchkit.Worst(readies).Round(10*time.Millisecond),
		runs, benchkit.Median(floors).Round(10*time.Millisecond), benchkit.Ratio(benchkit.Median(readies), benchkit.Median(floors)),
		runs, benchkit.Median(podFloors).Round(10*time.Millisecond), benchkit.Ratio(benchkit.Median(readies), benchkit.Median(podFloors)),
		benchkit.Ratio(benchkit.Median(podReadies(seq)), benchkit.Median(podFloors)),
		many, manyTime.Round(100*time.Millisecond),
		many, mib(benchkit.Median(tenantMem)), mib(slices.Min(tenantMem)), mib(benchkit.Worst(tenantMem)),
		many, mib(opMem0), mib(opMemN), mib((opMemN-opMem0)/int64(many)), triples(readies, floors, podFloors),
		details(seq, manyM, many, opCPU1-opCPU0, loadBefore, idle0, idleN)+floorIdle.section(idleN, idle0, benchkit.Median(tenantMem))+memoryTable(contMem))
	return benchkit.WriteReport(out, report)
}

func triples(a, b, c []time.Duration) string {
	var parts []string
	for i := range a {
		parts = append(parts, fmt.Sprintf("%.2fs/%.2fs/%.2fs", a[i].Seconds(), b[i].Seconds(), c[i].Seconds()))
	}
	return strings.Join(parts, ", ")
}

// podReadies are the times from create to the control-plane pod's Ready.
func podReadies(ms []*milestones) []time.Duration {
	var d []time.Duration
	for _, m := range ms {
		d = append(d, m.podReady)
	}
	return d
}

// createReady creates the tenants at once and returns the time until every
// one is Ready and answers /readyz with its admin kubeconfig.
func (b *bench) createReady(names []string, timeout time.Duration) (time.Duration, error) {
	start := time.Now()
	var wg sync.WaitGroup
	errs := make(chan error, len(names))
	for _, n := range names {
		wg.Add(1)
		go func() {
			defer wg.Done()
			tc := &kv1.TenantCluster{ObjectMeta: metav1.ObjectMeta{Name: n, Namespace: "default"}}
			if err := b.c.Create(b.ctx, tc); err != nil {
				errs <- err
				return
			}
			_, err := benchkit.WaitTenantUsable(b.ctx, b.c, types.NamespacedName{Namespace: "default", Name: n}, timeout)
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			return 0, err
		}
	}
	return time.Since(start), nil
}

func (b *bench) deleteAll() error {
	if err := b.c.DeleteAllOf(b.ctx, &kv1.TenantCluster{}, client.InNamespace("default")); err != nil {
		return err
	}
	err := wait.PollUntilContextTimeout(b.ctx, 200*time.Millisecond, 5*time.Minute, true, func(ctx context.Context) (bool, error) {
		var list kv1.TenantClusterList
		return b.c.List(ctx, &list) == nil && len(list.Items) == 0, nil
	})
	if err != nil {
		return fmt.Errorf("tenants not deleted within 5 minutes: %w", err)
	}
	return nil
}

// bare is a tenant's control plane as bare processes on the machine (no
// pod, no probe, no operator) against the same datastore with a tenancy of
// its own: the floor a tenant's control plane is measured against.
type bare struct {
	// ready is the time from the kube-apiserver's start to /readyz ok.
	ready time.Duration
	// pids of kube-apiserver and, when started, kube-controller-manager
	// and kube-scheduler.
	pids map[string]int
	undo []func()
}

// stop ends the processes and deletes the tenancy.
func (f *bare) stop() {
	for i := len(f.undo) - 1; i >= 0; i-- {
		f.undo[i]()
	}
	f.undo = nil
}

// startBare starts kube-apiserver directly with a fresh tenancy in the
// datastore and waits for /readyz; with controllers, then also
// kube-controller-manager and kube-scheduler with the flags a tenant's
// pod gives them (controlplane.ControllerManagerArgs and SchedulerArgs,
// one replica), each with its own identity.
func (b *bench) startBare(cfg admincluster.Config, tmp string, controllers bool) (f *bare, err error) {
	f = &bare{pids: map[string]int{}}
	defer func() {
		if err != nil {
			f.stop()
		}
	}()
	cl := &admincluster.Cluster{Config: cfg}
	creds, err := cl.DatastoreCredentials()
	if err != nil {
		return f, err
	}
	root, err := datastore.Connect(creds)
	if err != nil {
		return f, err
	}
	f.undo = append(f.undo, func() { root.Close() })
	id := uuid()
	tn, _ := datastore.TenancyFor(id)
	if err := datastore.EnsureTenancy(b.ctx, root, tn); err != nil {
		return f, err
	}
	f.undo = append(f.undo, func() { _ = datastore.DeleteTenancy(b.ctx, root, tn) })

	dir := filepath.Join(tmp, "floor-"+id)
	d := pki.Dir{Path: dir}
	caKey, err := os.ReadFile(filepath.Join(cfg.Root, "pki", "datastore", "ca.key"))
	if err != nil {
		return f, err
	}
	dsCA, err := pki.ParseKeyPair(creds.CAPEM, caKey)
	if err != nil {
		return f, err
	}
	ca, err := d.CA("ca", "floor")
	if err != nil {
		return f, err
	}
	if _, err := d.Leaf("serving", ca, pki.Spec{CommonName: "kube-apiserver", IPs: []net.IP{net.ParseIP("127.0.0.1")}, Server: true}); err != nil {
		return f, err
	}
	if _, err := d.Leaf("etcd", dsCA, pki.Spec{CommonName: tn.User, Client: true}); err != nil {
		return f, err
	}
	if err := os.WriteFile(filepath.Join(dir, "etcd-ca.crt"), creds.CAPEM, 0o644); err != nil {
		return f, err
	}
	if err := d.SigningKey("sa"); err != nil {
		return f, err
	}
	bins, err := (&components.Builder{CacheDir: components.DefaultCacheDir()}).Lookup(cfg.KubernetesVersion)
	if err != nil {
		return f, err
	}
	port := freePort()
	apiserver, err := f.start(dir, "kube-apiserver", exec.Command(bins.Component("kube-apiserver"),
		"--bind-address=127.0.0.1", "--advertise-address=127.0.0.1", "--secure-port="+strconv.Itoa(port),
		"--etcd-servers="+strings.Join(creds.Endpoints, ","), "--etcd-prefix="+tn.Prefix, "--etcd-compaction-interval=0",
		"--etcd-cafile="+filepath.Join(dir, "etcd-ca.crt"), "--etcd-certfile="+filepath.Join(dir, "etcd.crt"), "--etcd-keyfile="+filepath.Join(dir, "etcd.key"),
		"--client-ca-file="+filepath.Join(dir, "ca.crt"), "--tls-cert-file="+filepath.Join(dir, "serving.crt"), "--tls-private-key-file="+filepath.Join(dir, "serving.key"),
		"--service-account-issuer=https://kubernetes.default.svc.cluster.local", "--service-account-key-file="+filepath.Join(dir, "sa.pub"),
		"--service-account-signing-key-file="+filepath.Join(dir, "sa.key"), "--service-cluster-ip-range=10.96.0.0/16",
		"--authorization-mode=Node,RBAC", "--profiling=false"))
	if err != nil {
		return f, err
	}
	hc := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	url := fmt.Sprintf("https://127.0.0.1:%d/readyz", port)
	err = wait.PollUntilContextTimeout(b.ctx, 20*time.Millisecond, 2*time.Minute, true, func(ctx context.Context) (bool, error) {
		resp, err := hc.Get(url)
		if err != nil {
			return false, nil
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK, nil
	})
	if err != nil {
		return f, fmt.Errorf("bare kube-apiserver not ready in 2 minutes (log %s)", filepath.Join(dir, "kube-apiserver.log"))
	}
	f.ready = time.Since(apiserver)
	if !controllers {
		return f, nil
	}

	// The tenant's flags name files under the pod's PKI mount: here
	// they are in dir, under the same names.
	if err := os.WriteFile(filepath.Join(dir, cp.FileCASigning), ca.CertPEM, 0o644); err != nil {
		return f, err
	}
	if err := os.WriteFile(filepath.Join(dir, cp.FileFrontProxyCA), ca.CertPEM, 0o644); err != nil {
		return f, err
	}
	p := cp.Params{Replicas: 1, ServiceCIDR: "10.96.0.0/16", PodCIDR: "10.244.0.0/16"}
	for _, c := range []struct {
		component, kubeconfig, user string
		args                        []string
	}{
		{"kube-controller-manager", cp.FileControllerManager, "system:kube-controller-manager", cp.ControllerManagerArgs(p)},
		{"kube-scheduler", cp.FileScheduler, "system:kube-scheduler", cp.SchedulerArgs(p)},
	} {
		kp, err := ca.Issue(pki.Spec{CommonName: c.user, Client: true}, time.Now())
		if err != nil {
			return f, err
		}
		kc, err := kubeconfig.Render(kubeconfig.Config{ClusterName: "floor", Server: fmt.Sprintf("https://127.0.0.1:%d", port),
			CAPEM: ca.CertPEM, UserName: c.user, CertPEM: kp.CertPEM, KeyPEM: kp.KeyPEM})
		if err != nil {
			return f, err
		}
		if err := os.WriteFile(filepath.Join(dir, c.kubeconfig), kc, 0o600); err != nil {
			return f, err
		}
		args := make([]string, 0, len(c.args)+1)
		for _, a := range c.args {
			args = append(args, strings.ReplaceAll(a, cp.PKIMountPath, dir))
		}
		// The admin cluster's own controller manager and scheduler hold
		// the default ports on this host.
		args = append(args, "--secure-port="+strconv.Itoa(freePort()))
		if _, err := f.start(dir, c.component, exec.Command(bins.Component(c.component), args...)); err != nil {
			return f, err
		}
	}
	return f, nil
}

// start runs one of the floor's processes with its log in dir, stopped
// by f.stop.
func (f *bare) start(dir, name string, cmd *exec.Cmd) (time.Time, error) {
	logf, err := os.Create(filepath.Join(dir, name+".log"))
	if err != nil {
		return time.Time{}, err
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	start := time.Now()
	if err := cmd.Start(); err != nil {
		logf.Close()
		return start, fmt.Errorf("%s: %w", name, err)
	}
	f.pids[name] = cmd.Process.Pid
	f.undo = append(f.undo, func() { _ = cmd.Process.Kill(); _ = cmd.Wait(); logf.Close() })
	return start, nil
}

// freePort is a loopback port free when asked.
func freePort() int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// tenantMemory is the working set of a tenant's control-plane pod, read
// from its memory cgroup (usage minus inactive file pages, as the kubelet
// computes it).
func (b *bench) tenantMemory(name string) (int64, error) {
	var pods corev1.PodList
	if err := b.c.List(b.ctx, &pods, client.InNamespace("default"), client.MatchingLabels(cp.Labels(name))); err != nil {
		return 0, err
	}
	if len(pods.Items) == 0 {
		return 0, fmt.Errorf("no pod for tenant %s", name)
	}
	return podWorkingSet(string(pods.Items[0].UID))
}

func (b *bench) operatorMemory() (int64, error) {
	var pods corev1.PodList
	if err := b.c.List(b.ctx, &pods, client.InNamespace(install.Namespace), client.MatchingLabels{"app.kubernetes.io/name": install.Name}); err != nil {
		return 0, err
	}
	if len(pods.Items) == 0 {
		return 0, fmt.Errorf("no operator pod")
	}
	return podWorkingSet(string(pods.Items[0].UID))
}

func podWorkingSet(uid string) (int64, error) {
	dir, err := cgroupDir("memory", uid)
	if err != nil {
		return 0, err
	}
	return workingSet(dir)
}

// workingSet is a memory cgroup's usage minus its inactive file pages.
func workingSet(dir string) (int64, error) {
	usage, err := readInt(filepath.Join(dir, "memory.usage_in_bytes"))
	if err != nil {
		return 0, err
	}
	stat, err := os.ReadFile(filepath.Join(dir, "memory.stat"))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(stat), "\n") {
		if f := strings.Fields(line); len(f) == 2 && f[0] == "total_inactive_file" {
			inactive, _ := strconv.ParseInt(f[1], 10, 64)
			if inactive < usage {
				usage -= inactive
			}
		}
	}
	return usage, nil
}

func readInt(path string) (int64, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	return strconv.ParseInt(strings.TrimSpace(string(data)), 10, 64)
}

func uuid() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}

// floorIdle is what a bare control plane (startBare with controllers)
// costs idle: each process's CPU over the window and their resident
// memory together at its end.
type floorIdle struct {
	mcpu map[string]float64
	rss  int64
}

func (f floorIdle) total() float64 {
	var t float64
	for _, v := range f.mcpu {
		t += v
	}
	return t
}

// idleFloor starts a bare control plane, lets it idle as long as the
// tenants do before theirs is measured, and measures it over window.
func (b *bench) idleFloor(cfg admincluster.Config, tmp string, idle, window time.Duration) (floorIdle, error) {
	out := floorIdle{mcpu: map[string]float64{}}
	f, err := b.startBare(cfg, tmp, true)
	defer f.stop()
	if err != nil {
		return out, err
	}
	time.Sleep(idle)
	cpu0 := map[string]time.Duration{}
	for name, pid := range f.pids {
		if cpu0[name], err = benchkit.CPUTime(pid); err != nil {
			return out, fmt.Errorf("%s exited: %w", name, err)
		}
	}
	start := time.Now()
	time.Sleep(window)
	el := time.Since(start)
	for name, pid := range f.pids {
		cpu1, err := benchkit.CPUTime(pid)
		if err != nil {
			return out, fmt.Errorf("%s exited: %w", name, err)
		}
		out.mcpu[name] = float64(cpu1-cpu0[name]) / float64(el) * 1000
		out.rss += hostproc.RSS(pid)
	}
	return out, nil
}

// section compares idle tenants with the bare control plane.
func (f floorIdle) section(idleN, idle0 idleCPU, podMem int64) string {
	var sb strings.Builder
	sb.WriteString("\n## Idle floor: a bare control plane\n\nThe same three upstream processes with a tenant's flags, started directly on the machine (no pod, no probe, no operator, no gateway) against the datastore with a tenancy of their own, idle as long as the tenants were before theirs was measured, then measured over the same window with no tenant present. Memory is not compared: the floor's is the processes' resident set, which counts the pages of their binaries each process maps, while a pod's working set counts only what its memory cgroup was charged.\n\n| what | floor | tenant | ratio |\n|---|---|---|---|\n")
	for _, n := range slices.Sorted(maps.Keys(f.mcpu)) {
		fmt.Fprintf(&sb, "| %s, mCPU | %.1f | %.1f | %.2f |\n", n, f.mcpu[n], idleN.perContainer[n], idleN.perContainer[n]/f.mcpu[n])
	}
	fmt.Fprintf(&sb, "| control plane, mCPU | %.1f | %.1f (pod) | %.2f |\n", f.total(), idleN.perTenantPod, idleN.perTenantPod/f.total())
	if idleN.tenants > 0 {
		perTenant := (idleN.machine - idle0.machine) / float64(idleN.tenants)
		fmt.Fprintf(&sb, "| whole machine per tenant, mCPU | %.1f (the processes alone) | %.1f | %.2f |\n", f.total(), perTenant, perTenant/f.total())
	}
	fmt.Fprintf(&sb, "| memory, MiB | %.0f resident | %.0f working set | |\n", mibF(f.rss), mibF(podMem))
	return sb.String()
}

func mibF(b int64) float64 { return float64(b) / (1 << 20) }
