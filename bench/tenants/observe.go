package main

import (
	"context"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	"sigs.k8s.io/controller-runtime/pkg/client"

	kv1 "kubinception.dev/kubinception/api/v1alpha1"
	"kubinception.dev/kubinception/bench/internal/benchkit"
	cp "kubinception.dev/kubinception/internal/controlplane"
	"kubinception.dev/kubinception/internal/install"
)

// milestones are when the bench first saw each step of one tenant's start,
// measured from the moment it created the TenantCluster, by polling the
// admin cluster every 100 ms (metav1 timestamps only have seconds).
type milestones struct {
	podCreated, apiserverRunning, podReady, tenantReady time.Duration
	// apiserverReady is the kube-apiserver container ready (its startup
	// probe passed), addonsReady the TenantCluster's AddonsReady true,
	// deploymentAvailable its control-plane Deployment's first available
	// replica.
	apiserverReady, addonsReady, deploymentAvailable time.Duration
	// startCPU is the control-plane pod's CPU time when the tenant was
	// first seen Ready: what its start cost.
	startCPU time.Duration
	// restarts, probe failures and back-offs of its pod.
	restarts, unhealthy, backoff int
}

// tracker polls the tenants' pods and TenantClusters until stopped.
type tracker struct {
	b     *bench
	start time.Time
	mu    sync.Mutex
	m     map[string]*milestones
	stop  chan struct{}
	done  chan struct{}
}

func (b *bench) track(names []string) *tracker {
	t := &tracker{b: b, start: time.Now(), m: map[string]*milestones{}, stop: make(chan struct{}), done: make(chan struct{})}
	for _, n := range names {
		t.m[n] = &milestones{}
	}
	go t.loop()
	return t
}

func (t *tracker) loop() {
	defer close(t.done)
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		t.poll()
		select {
		case <-t.stop:
			return
		case <-tick.C:
		}
	}
}

func (t *tracker) poll() {
	ctx, cancel := context.WithTimeout(t.b.ctx, 5*time.Second)
	defer cancel()
	now := time.Since(t.start)
	var pods corev1.PodList
	if err := t.b.c.List(ctx, &pods, client.InNamespace("default"), client.HasLabels{cp.LabelTenant}); err != nil {
		return
	}
	var tcs kv1.TenantClusterList
	if err := t.b.c.List(ctx, &tcs, client.InNamespace("default")); err != nil {
		return
	}
	var deps appsv1.DeploymentList
	if err := t.b.c.List(ctx, &deps, client.InNamespace("default"), client.HasLabels{cp.LabelTenant}); err != nil {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	set := func(d *time.Duration) {
		if *d == 0 {
			*d = now
		}
	}
	for _, p := range pods.Items {
		m := t.m[p.Labels[cp.LabelTenant]]
		if m == nil {
			continue
		}
		set(&m.podCreated)
		for _, cs := range p.Status.InitContainerStatuses {
			if cs.Name == "kube-apiserver" && cs.State.Running != nil {
				set(&m.apiserverRunning)
			}
			if cs.Name == "kube-apiserver" && cs.Ready {
				set(&m.apiserverReady)
			}
		}
		for _, c := range p.Status.Conditions {
			if c.Type == corev1.PodReady && c.Status == corev1.ConditionTrue {
				set(&m.podReady)
			}
		}
	}
	for _, d := range deps.Items {
		if m := t.m[d.Labels[cp.LabelTenant]]; m != nil && d.Status.AvailableReplicas > 0 {
			set(&m.deploymentAvailable)
		}
	}
	for _, tc := range tcs.Items {
		m := t.m[tc.Name]
		if m == nil {
			continue
		}
		if meta.IsStatusConditionTrue(tc.Status.Conditions, kv1.ConditionAddonsReady) {
			set(&m.addonsReady)
		}
		if m.tenantReady != 0 || !meta.IsStatusConditionTrue(tc.Status.Conditions, kv1.ConditionReady) {
			continue
		}
		m.tenantReady = now
		for _, p := range pods.Items {
			if p.Labels[cp.LabelTenant] == tc.Name {
				if cpu, err := podCPU(string(p.UID)); err == nil {
					m.startCPU = cpu
				}
			}
		}
	}
}

// finish stops polling and counts restarts, probe failures and back-offs.
func (t *tracker) finish() map[string]*milestones {
	close(t.stop)
	<-t.done
	// The run may see its tenant usable between two polls: one more
	// records what the last tick missed (a little late, not as zero).
	t.poll()
	var pods corev1.PodList
	_ = t.b.c.List(t.b.ctx, &pods, client.InNamespace("default"), client.HasLabels{cp.LabelTenant})
	var events corev1.EventList
	_ = t.b.c.List(t.b.ctx, &events, client.InNamespace("default"))
	podTenant := map[string]string{}
	for _, p := range pods.Items {
		podTenant[p.Name] = p.Labels[cp.LabelTenant]
		m := t.m[p.Labels[cp.LabelTenant]]
		if m == nil {
			continue
		}
		for _, cs := range append(append([]corev1.ContainerStatus{}, p.Status.InitContainerStatuses...), p.Status.ContainerStatuses...) {
			m.restarts += int(cs.RestartCount)
		}
	}
	for _, e := range events.Items {
		m := t.m[podTenant[e.InvolvedObject.Name]]
		if m == nil || e.InvolvedObject.Kind != "Pod" {
			continue
		}
		count := max(int(e.Count), 1)
		if e.Series != nil {
			count = max(count, int(e.Series.Count))
		}
		switch e.Reason {
		case "Unhealthy":
			m.unhealthy += count
		case "BackOff":
			m.backoff += count
		}
	}
	return t.m
}

// cgroupDir finds a pod's cgroup directory under a v1 controller.
func cgroupDir(controller, uid string) (string, error) {
	for _, pattern := range []string{"/sys/fs/cgroup/%s/kubepods*/pod%s", "/sys/fs/cgroup/%s/kubepods*/*/pod%s"} {
		if m, _ := filepath.Glob(fmt.Sprintf(pattern, controller, uid)); len(m) > 0 {
			return m[0], nil
		}
	}
	return "", fmt.Errorf("no %s cgroup for pod %s", controller, uid)
}

// podCPU is the CPU time a pod's cgroup has used.
func podCPU(uid string) (time.Duration, error) {
	dir, err := cgroupDir("cpuacct", uid)
	if err != nil {
		return 0, err
	}
	n, err := readInt(filepath.Join(dir, "cpuacct.usage"))
	return time.Duration(n), err
}

// cpuSample is every pod's and container's CPU time at one moment, keyed
// "namespace/pod" and "namespace/pod/container".
type cpuSample struct {
	at      time.Time
	busy    time.Duration // the machine's non-idle time (/proc/stat)
	pods    map[string]time.Duration
	conts   map[string]time.Duration
	tenants map[string]string // pod key → tenant name
}

func (b *bench) sampleCPU() (cpuSample, error) {
	s := cpuSample{at: time.Now(), pods: map[string]time.Duration{}, conts: map[string]time.Duration{}, tenants: map[string]string{}}
	var pods corev1.PodList
	if err := b.c.List(b.ctx, &pods); err != nil {
		return s, err
	}
	for _, p := range pods.Items {
		key := p.Namespace + "/" + p.Name
		dir, err := cgroupDir("cpuacct", string(p.UID))
		if err != nil {
			continue
		}
		n, _ := readInt(filepath.Join(dir, "cpuacct.usage"))
		s.pods[key] = time.Duration(n)
		if t := p.Labels[cp.LabelTenant]; t != "" {
			s.tenants[key] = t
		}
		for _, cs := range append(append([]corev1.ContainerStatus{}, p.Status.InitContainerStatuses...), p.Status.ContainerStatuses...) {
			id := cs.ContainerID[strings.Index(cs.ContainerID, "://")+3:]
			if n, err := readInt(filepath.Join(dir, id, "cpuacct.usage")); err == nil {
				s.conts[key+"/"+cs.Name] = time.Duration(n)
			}
		}
	}
	s.busy = machineBusy()
	// The admin cluster's own processes (its API server, etcd, the
	// datastore's members, kubelet, containerd) run on the host: those
	// whose command line names the admin cluster's state directory.
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, f := range procs {
		cmd, err := os.ReadFile(f)
		if err != nil || !strings.Contains(string(cmd), b.root) {
			continue
		}
		pid, _ := strconv.Atoi(filepath.Base(filepath.Dir(f)))
		comm, _ := os.ReadFile(filepath.Join(filepath.Dir(f), "comm"))
		if cpu, err := benchkit.CPUTime(pid); err == nil {
			s.pods["host/"+strings.TrimSpace(string(comm))] += cpu
		}
	}
	return s, nil
}

// machineBusy is the non-idle CPU time of the whole machine.
func machineBusy() time.Duration {
	data, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0
	}
	f := strings.Fields(strings.SplitN(string(data), "\n", 2)[0])
	var busy int64
	for i, v := range f[1:] {
		if i == 3 || i == 4 { // idle, iowait
			continue
		}
		n, _ := strconv.ParseInt(v, 10, 64)
		busy += n
	}
	return time.Duration(busy) * time.Second / 100
}

// idleCPU is what one window of idleness cost, in mCPU.
type idleCPU struct {
	window time.Duration
	// perContainer is the median over tenants of each control-plane
	// container's mCPU; perTenantPod the median pod total.
	perContainer map[string]float64
	perTenantPod float64
	// others is every pod that is not a tenant's control plane, by name
	// with its ReplicaSet hash cut off.
	others  map[string]float64
	machine float64
	tenants int
}

func (b *bench) measureIdle(window time.Duration) (idleCPU, error) {
	s0, err := b.sampleCPU()
	if err != nil {
		return idleCPU{}, err
	}
	time.Sleep(window)
	s1, err := b.sampleCPU()
	if err != nil {
		return idleCPU{}, err
	}
	el := s1.at.Sub(s0.at)
	mcpu := func(d time.Duration) float64 { return float64(d) / float64(el) * 1000 }
	out := idleCPU{window: el, perContainer: map[string]float64{}, others: map[string]float64{}, machine: mcpu(s1.busy - s0.busy)}
	conts := map[string][]float64{}
	var podTotals []float64
	for key, v1 := range s1.pods {
		v0, ok := s0.pods[key]
		if !ok {
			continue
		}
		if _, ok := s1.tenants[key]; ok {
			out.tenants++
			podTotals = append(podTotals, mcpu(v1-v0))
			continue
		}
		out.others[podGroup(key)] += mcpu(v1 - v0)
	}
	for key, v1 := range s1.conts {
		if v0, ok := s0.conts[key]; ok {
			podKey := key[:strings.LastIndex(key, "/")]
			if _, ok := s1.tenants[podKey]; ok {
				name := key[strings.LastIndex(key, "/")+1:]
				conts[name] = append(conts[name], mcpu(v1-v0))
			}
		}
	}
	for name, v := range conts {
		out.perContainer[name] = medianF(v)
	}
	out.perTenantPod = medianF(podTotals)
	return out, nil
}

// podGroup names a pod without its generated suffixes.
func podGroup(key string) string {
	parts := strings.Split(key, "-")
	if len(parts) >= 3 && len(parts[len(parts)-1]) == 5 && len(parts[len(parts)-2]) >= 8 {
		return strings.Join(parts[:len(parts)-2], "-")
	}
	return key
}

func medianF(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	sort.Float64s(v)
	return v[len(v)/2]
}

// table renders an idle measurement.
func (i idleCPU) table() string {
	var sb strings.Builder
	fmt.Fprintf(&sb, "Window %s, %d tenant control planes; machine busy %.0f mCPU.\n\n", i.window.Round(time.Second), i.tenants, i.machine)
	sb.WriteString("| what | mCPU |\n|---|---|\n")
	for _, n := range slices.Sorted(maps.Keys(i.perContainer)) {
		fmt.Fprintf(&sb, "| tenant container %s (median) | %.1f |\n", n, i.perContainer[n])
	}
	fmt.Fprintf(&sb, "| tenant control-plane pod (median) | %.1f |\n", i.perTenantPod)
	others := make([]string, 0, len(i.others))
	for n := range i.others {
		others = append(others, n)
	}
	sort.Slice(others, func(a, b int) bool { return i.others[others[a]] > i.others[others[b]] })
	for _, n := range others {
		if i.others[n] >= 0.5 {
			fmt.Fprintf(&sb, "| %s | %.1f |\n", n, i.others[n])
		}
	}
	return sb.String()
}

// operatorCPU is the operator pod's CPU time.
func (b *bench) operatorCPU() (time.Duration, error) {
	var pods corev1.PodList
	if err := b.c.List(b.ctx, &pods, client.InNamespace(install.Namespace), client.MatchingLabels{"app.kubernetes.io/name": install.Name}); err != nil {
		return 0, err
	}
	if len(pods.Items) == 0 {
		return 0, fmt.Errorf("no operator pod")
	}
	return podCPU(string(pods.Items[0].UID))
}

// details renders where the start-up time goes and what idle tenants cost.
func details(seq []*milestones, many map[string]*milestones, n int, opCPU time.Duration, load string, idle0, idleN idleCPU) string {
	var sb strings.Builder
	sb.WriteString("\n## Where one tenant's start goes\n\nSeconds after create, first seen by polling every 100 ms: control-plane pod created, kube-apiserver container running, its container ready (startup probe passed), the TenantCluster's AddonsReady (bootstrap and customer access done), pod Ready, the Deployment's first available replica, TenantCluster Ready; the pod's CPU time when Ready; restarts, probe failures (Unhealthy events), back-offs.\n\n")
	sb.WriteString("| run | pod | apiserver running | apiserver ready | addons | pod Ready | Deployment available | tenant Ready | start CPU | restarts | probe failures | back-offs |\n|---|---|---|---|---|---|---|---|---|---|---|---|\n")
	for i, m := range seq {
		fmt.Fprintf(&sb, "| %d | %s |\n", i, m.row())
	}
	ms := make([]*milestones, 0, len(many))
	for _, m := range many {
		ms = append(ms, m)
	}
	pick := func(f func(*milestones) time.Duration) (med, lo, hi time.Duration) {
		var v []time.Duration
		for _, m := range ms {
			v = append(v, f(m))
		}
		return benchkit.Median(v), slices.Min(v), benchkit.Worst(v)
	}
	var restarts, unhealthy, backoff int
	for _, m := range ms {
		restarts, unhealthy, backoff = restarts+m.restarts, unhealthy+m.unhealthy, backoff+m.backoff
	}
	_, firstReady, allReady := pick(func(m *milestones) time.Duration { return m.tenantReady })
	startCPU, _, _ := pick(func(m *milestones) time.Duration { return m.startCPU })
	cores := runtime.NumCPU()
	floor := startCPU * time.Duration(n) / time.Duration(cores)
	fmt.Fprintf(&sb, "\n## %d tenants created at once\n\nLoad average before: %s.\n\n| what | result |\n|---|---|\n", n, load)
	fmt.Fprintf(&sb, "| first tenant Ready | %.1fs |\n| all Ready | %.1fs |\n", firstReady.Seconds(), allReady.Seconds())
	fmt.Fprintf(&sb, "| CPU floor: median start CPU %.2fs × %d ÷ %d cores | %.1fs |\n", startCPU.Seconds(), n, cores, floor.Seconds())
	fmt.Fprintf(&sb, "| ratio all Ready / CPU floor | %.2f |\n", allReady.Seconds()/floor.Seconds())
	fmt.Fprintf(&sb, "| operator CPU during the creates | %.2fs |\n", opCPU.Seconds())
	fmt.Fprintf(&sb, "| restarts / probe failures / back-offs, all pods | %d / %d / %d |\n", restarts, unhealthy, backoff)
	for _, st := range []struct {
		name string
		f    func(*milestones) time.Duration
	}{
		{"create → pod created", func(m *milestones) time.Duration { return m.podCreated }},
		{"pod created → apiserver running", func(m *milestones) time.Duration { return m.apiserverRunning - m.podCreated }},
		{"apiserver running → pod Ready", func(m *milestones) time.Duration { return m.podReady - m.apiserverRunning }},
		{"pod Ready → tenant Ready", func(m *milestones) time.Duration { return m.tenantReady - m.podReady }},
	} {
		med, lo, hi := pick(st.f)
		fmt.Fprintf(&sb, "| %s, median (min–max) | %.1fs (%.1f–%.1f) |\n", st.name, med.Seconds(), lo.Seconds(), hi.Seconds())
	}
	fmt.Fprintf(&sb, "\n## Idle CPU\n\nWith no tenant:\n\n%s\nWith the %d tenants idle:\n\n%s", idle0.table(), n, idleN.table())
	if idleN.tenants > 0 {
		perTenant := (idleN.machine - idle0.machine) / float64(idleN.tenants)
		var othersDelta float64
		for k, v := range idleN.others {
			othersDelta += v - idle0.others[k]
		}
		fmt.Fprintf(&sb, "\nPer idle tenant: control-plane pod %.1f mCPU + everything else in the admin cluster (operator, datastore, gateway: %.1f mCPU ÷ %d) = %.1f mCPU; whole machine's increase ÷ tenants: %.1f mCPU.\n",
			idleN.perTenantPod, othersDelta, idleN.tenants, idleN.perTenantPod+othersDelta/float64(idleN.tenants), perTenant)
	}
	return sb.String()
}

func (m *milestones) row() string {
	s := func(d time.Duration) string { return fmt.Sprintf("%.1fs", d.Seconds()) }
	return strings.Join([]string{s(m.podCreated), s(m.apiserverRunning), s(m.apiserverReady), s(m.addonsReady), s(m.podReady), s(m.deploymentAvailable), s(m.tenantReady), s(m.startCPU),
		strconv.Itoa(m.restarts), strconv.Itoa(m.unhealthy), strconv.Itoa(m.backoff)}, " | ")
}

// containerMemory is the median working set of each control-plane
// container over the tenants, in MiB.
func (b *bench) containerMemory(names []string) map[string]float64 {
	byName := map[string][]float64{}
	for _, n := range names {
		var pods corev1.PodList
		if err := b.c.List(b.ctx, &pods, client.InNamespace("default"), client.MatchingLabels(cp.Labels(n))); err != nil || len(pods.Items) == 0 {
			continue
		}
		p := pods.Items[0]
		dir, err := cgroupDir("memory", string(p.UID))
		if err != nil {
			continue
		}
		for _, cs := range append(append([]corev1.ContainerStatus{}, p.Status.InitContainerStatuses...), p.Status.ContainerStatuses...) {
			id := cs.ContainerID[strings.Index(cs.ContainerID, "://")+3:]
			if ws, err := workingSet(filepath.Join(dir, id)); err == nil {
				byName[cs.Name] = append(byName[cs.Name], float64(ws)/(1<<20))
			}
		}
	}
	out := map[string]float64{}
	for n, v := range byName {
		out[n] = medianF(v)
	}
	return out
}

func memoryTable(m map[string]float64) string {
	var sb strings.Builder
	sb.WriteString("\n## Idle memory per container\n\nMedian working set over the tenants.\n\n| container | MiB |\n|---|---|\n")
	names := make([]string, 0, len(m))
	total := 0.0
	for n, v := range m {
		names = append(names, n)
		total += v
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(&sb, "| %s | %.0f |\n", n, m[n])
	}
	fmt.Fprintf(&sb, "| sum | %.0f |\n", total)
	return sb.String()
}
