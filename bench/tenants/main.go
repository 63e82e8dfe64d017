// Command tenants measures tenant control planes on the local admin
// cluster: time from create to Ready (the tenant's /readyz answers ok with
// its admin kubeconfig) over sequential runs, beside the floor — a bare
// kube-apiserver started directly on the same machine against the same
// datastore, in the same run — and the time for many tenants created at
// once; then the memory of idle tenant control planes and of the operator
// per tenant. It writes a Markdown report (bench/results/tenants.md).
//
// Run as root from the repository: go run ./bench/tenants
package main

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"flag"
	"fmt"
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
	"kubinception.dev/kubinception/internal/local/admincluster"
	"kubinception.dev/kubinception/internal/local/components"
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
	var floors, readies []time.Duration
	var seq []*milestones
	for i := 0; i < runs; i++ {
		f, err := b.bareAPIServer(cfg, tmp)
		if err != nil {
			return fmt.Errorf("bare kube-apiserver: %w", err)
		}
		floors = append(floors, f)
		name := fmt.Sprintf("seq-%d", i)
		tr := b.track([]string{name})
		d, err := b.createReady([]string{name}, 5*time.Minute)
		if err != nil {
			return err
		}
		seq = append(seq, tr.finish()[name])
		readies = append(readies, d)
		b.logf("run %d: bare apiserver ready in %s, tenant Ready and usable in %s", i, f.Round(time.Millisecond), d.Round(time.Millisecond))
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
| %d tenants created at once → all Ready and usable | %s |
| idle tenant control plane, pod working set, median of %d (min–max) | %s (%s–%s) |
| operator working set with 0 tenants → with %d | %s → %s (%s per tenant) |

Per-run times (tenant / floor): %s
%s`, benchkit.Now(), benchkit.Machine(), cfg.KubernetesVersion,
		runs, benchkit.Median(readies).Round(10*time.Millisecond), runs, benchkit.Worst(readies).Round(10*time.Millisecond),
		runs, benchkit.Median(floors).Round(10*time.Millisecond), benchkit.Ratio(benchkit.Median(readies), benchkit.Median(floors)),
		many, manyTime.Round(100*time.Millisecond),
		many, mib(benchkit.Median(tenantMem)), mib(slices.Min(tenantMem)), mib(benchkit.Worst(tenantMem)),
		many, mib(opMem0), mib(opMemN), mib((opMemN-opMem0)/int64(many)), pairs(readies, floors),
		details(seq, manyM, many, opCPU1-opCPU0, loadBefore, idle0, idleN)+memoryTable(contMem))
	return benchkit.WriteReport(out, report)
}

func pairs(a, b []time.Duration) string {
	var parts []string
	for i := range a {
		parts = append(parts, fmt.Sprintf("%.2fs/%.2fs", a[i].Seconds(), b[i].Seconds()))
	}
	return strings.Join(parts, ", ")
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

// bareAPIServer starts kube-apiserver directly with a fresh tenancy in the
// datastore and returns the time to /readyz ok.
func (b *bench) bareAPIServer(cfg admincluster.Config, tmp string) (time.Duration, error) {
	cl := &admincluster.Cluster{Config: cfg}
	creds, err := cl.DatastoreCredentials()
	if err != nil {
		return 0, err
	}
	root, err := datastore.Connect(creds)
	if err != nil {
		return 0, err
	}
	defer root.Close()
	id := uuid()
	tn, _ := datastore.TenancyFor(id)
	if err := datastore.EnsureTenancy(b.ctx, root, tn); err != nil {
		return 0, err
	}
	defer datastore.DeleteTenancy(b.ctx, root, tn)

	dir := filepath.Join(tmp, "floor-"+id)
	d := pki.Dir{Path: dir}
	caKey, err := os.ReadFile(filepath.Join(cfg.Root, "pki", "datastore", "ca.key"))
	if err != nil {
		return 0, err
	}
	dsCA, err := pki.ParseKeyPair(creds.CAPEM, caKey)
	if err != nil {
		return 0, err
	}
	ca, err := d.CA("ca", "floor")
	if err != nil {
		return 0, err
	}
	if _, err := d.Leaf("serving", ca, pki.Spec{CommonName: "kube-apiserver", IPs: []net.IP{net.ParseIP("127.0.0.1")}, Server: true}); err != nil {
		return 0, err
	}
	if _, err := d.Leaf("etcd", dsCA, pki.Spec{CommonName: tn.User, Client: true}); err != nil {
		return 0, err
	}
	if err := os.WriteFile(filepath.Join(dir, "etcd-ca.crt"), creds.CAPEM, 0o644); err != nil {
		return 0, err
	}
	if err := d.SigningKey("sa"); err != nil {
		return 0, err
	}
	l, _ := net.Listen("tcp", "127.0.0.1:0")
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	bins, err := (&components.Builder{CacheDir: components.DefaultCacheDir()}).Lookup(cfg.KubernetesVersion)
	if err != nil {
		return 0, err
	}
	cmd := exec.Command(bins.Component("kube-apiserver"),
		"--bind-address=127.0.0.1", "--advertise-address=127.0.0.1", "--secure-port="+strconv.Itoa(port),
		"--etcd-servers="+strings.Join(creds.Endpoints, ","), "--etcd-prefix="+tn.Prefix, "--etcd-compaction-interval=0",
		"--etcd-cafile="+filepath.Join(dir, "etcd-ca.crt"), "--etcd-certfile="+filepath.Join(dir, "etcd.crt"), "--etcd-keyfile="+filepath.Join(dir, "etcd.key"),
		"--client-ca-file="+filepath.Join(dir, "ca.crt"), "--tls-cert-file="+filepath.Join(dir, "serving.crt"), "--tls-private-key-file="+filepath.Join(dir, "serving.key"),
		"--service-account-issuer=https://kubernetes.default.svc.cluster.local", "--service-account-key-file="+filepath.Join(dir, "sa.pub"),
		"--service-account-signing-key-file="+filepath.Join(dir, "sa.key"), "--service-cluster-ip-range=10.96.0.0/16",
		"--authorization-mode=Node,RBAC", "--profiling=false")
	logf, _ := os.Create(filepath.Join(dir, "apiserver.log"))
	cmd.Stdout, cmd.Stderr = logf, logf
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return 0, err
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
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
	if err == nil {
		return time.Since(start), nil
	}
	return 0, fmt.Errorf("bare kube-apiserver not ready in 2 minutes (log %s)", filepath.Join(dir, "apiserver.log"))
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
