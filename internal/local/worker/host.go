package worker

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"

	"k8s.io/apimachinery/pkg/util/wait"

	"kubinception.dev/kubinception/internal/calico"
	"kubinception.dev/kubinception/internal/local/hostproc"
	"kubinception.dev/kubinception/internal/local/nodeconfig"
	"kubinception.dev/kubinception/internal/local/supervisor"
)

func run(ctx context.Context, name string, args ...string) (string, error) {
	out, err := exec.CommandContext(ctx, name, args...).CombinedOutput()
	if err != nil {
		return strings.TrimSpace(string(out)), fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return strings.TrimSpace(string(out)), nil
}

// InNS builds a command that runs inside the worker's network and mount
// namespaces.
func (w Worker) InNS(ctx context.Context, name string, args ...string) *exec.Cmd {
	return exec.CommandContext(ctx, "nsenter", append([]string{"--net=/run/netns/" + w.NetNS(), "--mount=" + w.MountNS(), "--", name}, args...)...)
}

func (w Worker) inNS(ctx context.Context, name string, args ...string) (string, error) {
	out, err := w.InNS(ctx, name, args...).CombinedOutput()
	if err != nil {
		return strings.TrimSpace(string(out)), fmt.Errorf("in %s: %s %s: %w: %s", w.NetNS(), name, strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return strings.TrimSpace(string(out)), nil
}

// SetupHost creates the worker's segment bridge, network namespace, link
// and address, and its mount namespace with the worker's own directories
// bound over the standard paths. Each step checks what exists first.
func (w Worker) SetupHost(ctx context.Context) error {
	for _, b := range w.Binds() {
		if err := os.MkdirAll(b[0], 0o755); err != nil {
			return err
		}
		if err := os.MkdirAll(b[1], 0o755); err != nil {
			return fmt.Errorf("create mount point %s: %w", b[1], err)
		}
	}
	for _, d := range []string{"ns", "logs", "run", "config"} {
		if err := os.MkdirAll(w.Path(d), 0o755); err != nil {
			return err
		}
	}
	if err := w.linkCNIPlugins(); err != nil {
		return err
	}
	// Segment bridge on the host.
	if _, err := run(ctx, "ip", "link", "show", w.Bridge()); err != nil {
		if _, err := run(ctx, "ip", "link", "add", w.Bridge(), "type", "bridge"); err != nil {
			return err
		}
	}
	if out, _ := run(ctx, "ip", "-o", "addr", "show", "dev", w.Bridge()); !strings.Contains(out, " "+w.Gateway().String()+"/24 ") {
		if _, err := run(ctx, "ip", "addr", "add", w.Gateway().String()+"/24", "dev", w.Bridge()); err != nil {
			return err
		}
	}
	if _, err := run(ctx, "ip", "link", "set", w.Bridge(), "address", SegmentMAC(w.Segment), "up"); err != nil {
		return err
	}
	// Network namespace with a link to the segment.
	if _, err := os.Stat("/run/netns/" + w.NetNS()); err != nil {
		if _, err := run(ctx, "ip", "netns", "add", w.NetNS()); err != nil {
			return err
		}
	}
	if _, err := run(ctx, "ip", "link", "show", w.HostVeth()); err != nil {
		if _, err := run(ctx, "ip", "link", "add", w.HostVeth(), "type", "veth", "peer", "name", "eth0", "netns", w.NetNS()); err != nil {
			return err
		}
	}
	for _, args := range [][]string{
		{"link", "set", w.HostVeth(), "master", w.Bridge()},
		{"link", "set", w.HostVeth(), "up"},
	} {
		if _, err := run(ctx, "ip", args...); err != nil {
			return err
		}
	}
	ns := []string{"netns", "exec", w.NetNS()}
	if out, _ := run(ctx, "ip", append(ns, "ip", "-o", "addr", "show", "dev", "eth0")...); !strings.Contains(out, " "+w.IP().String()+"/24 ") {
		if _, err := run(ctx, "ip", append(ns, "ip", "addr", "add", w.IP().String()+"/24", "dev", "eth0")...); err != nil {
			return err
		}
	}
	for _, args := range [][]string{
		{"ip", "link", "set", "lo", "up"},
		{"ip", "link", "set", "eth0", "up"},
		{"ip", "route", "replace", "default", "via", w.Gateway().String()},
		{"sysctl", "-qw", "net.ipv4.ip_forward=1"},
	} {
		if _, err := run(ctx, "ip", append(ns, args...)...); err != nil {
			return err
		}
	}
	if err := w.ensureNAT(ctx); err != nil {
		return err
	}
	if err := ensureCgroup(w.CgroupRoot()); err != nil {
		return err
	}
	return w.setupMountNS(ctx)
}

// NATChain holds, inside a worker's network namespace, the rules that put
// it behind NAT.
const NATChain = "KUBI-NAT"

// natRules is the iptables-restore input (for --noflush) that fills the
// worker's NAT chain: a new connection arriving from the admin node (any
// frame from the segment bridge's address: the host itself or anything it
// forwards) is dropped, as a NAT gateway drops unsolicited inbound
// connections; answers to the worker's own connections, and everything
// from the tenant's other nodes and their pods, pass. A reachable worker
// gets an empty chain.
func (w Worker) natRules() string {
	var b strings.Builder
	fmt.Fprintf(&b, "*filter\n:%s - [0:0]\n", NATChain)
	if !w.Reachable {
		fmt.Fprintf(&b, "-A %s -i eth0 -m mac --mac-source %s -m conntrack --ctstate NEW -m comment --comment %q -j DROP\n",
			NATChain, SegmentMAC(w.Segment), "kubinception: behind NAT, the admin side connects to nothing")
	}
	b.WriteString("COMMIT\n")
	return b.String()
}

// ensureNAT fills the NAT chain and makes it the first rule of INPUT and
// FORWARD inside the worker's network namespace.
func (w Worker) ensureNAT(ctx context.Context) error {
	restore := exec.CommandContext(ctx, "ip", "netns", "exec", w.NetNS(), "iptables-restore", "--noflush")
	restore.Stdin = strings.NewReader(w.natRules())
	if out, err := restore.CombinedOutput(); err != nil {
		return fmt.Errorf("NAT rules in %s: %w: %s", w.NetNS(), err, out)
	}
	for _, from := range []string{"INPUT", "FORWARD"} {
		if _, err := run(ctx, "ip", "netns", "exec", w.NetNS(), "iptables", "-C", from, "-j", NATChain); err == nil {
			continue
		}
		if _, err := run(ctx, "ip", "netns", "exec", w.NetNS(), "iptables", "-I", from, "1", "-j", NATChain); err != nil {
			return fmt.Errorf("jump from %s to %s in %s: %w", from, NATChain, w.NetNS(), err)
		}
	}
	return nil
}

// ensureCgroup creates a cgroup in every v1 controller, as the kubelet
// requires of its --cgroup-root; cpuset needs its CPUs and memory nodes
// copied from the parent before it can hold a process.
func ensureCgroup(root string) error {
	ctrls, _ := filepath.Glob("/sys/fs/cgroup/*")
	for _, ctrl := range ctrls {
		if info, err := os.Lstat(ctrl); err != nil || !info.IsDir() || filepath.Base(ctrl) == "unified" {
			continue
		}
		dir := filepath.Join(ctrl, root)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return fmt.Errorf("create cgroup %s: %w", dir, err)
		}
		if filepath.Base(ctrl) == "cpuset" {
			for _, f := range []string{"cpuset.cpus", "cpuset.mems"} {
				if cur, _ := os.ReadFile(filepath.Join(dir, f)); strings.TrimSpace(string(cur)) != "" {
					continue
				}
				v, err := os.ReadFile(filepath.Join(ctrl, f))
				if err != nil {
					return err
				}
				if err := os.WriteFile(filepath.Join(dir, f), v, 0o644); err != nil {
					return fmt.Errorf("set %s of %s: %w", f, dir, err)
				}
			}
		}
	}
	return nil
}

// clearStale removes what a worker of the same name left on this machine
// when its processes were killed without a teardown (a crash, or another
// state directory's cluster): its network namespace, link and pod cgroups.
// A newly allocated worker must not inherit their routes and rules.
func (w Worker) clearStale(ctx context.Context) {
	if _, err := os.Stat("/run/netns/" + w.NetNS()); err == nil {
		_, _ = run(ctx, "ip", "netns", "del", w.NetNS())
	}
	if _, err := run(ctx, "ip", "link", "show", w.HostVeth()); err == nil {
		_, _ = run(ctx, "ip", "link", "del", w.HostVeth())
	}
	_ = hostproc.KillCgroup(ctx, w.CgroupRoot(), 10*time.Second)
	_ = hostproc.RemoveCgroup(w.CgroupRoot())
}

// setupMountNS creates the worker's persistent mount namespace (bound to a
// file) unless it exists, with the worker's directories bound over the
// standard paths and its own /run/xtables.lock.
func (w Worker) setupMountNS(ctx context.Context) error {
	if hostproc.IsMountPoint(w.MountNS()) {
		return nil
	}
	nsDir := w.Path("ns")
	// A namespace can only be bound to a file on a private mount.
	if !hostproc.IsMountPoint(nsDir) {
		if _, err := run(ctx, "mount", "--bind", nsDir, nsDir); err != nil {
			return err
		}
	}
	if _, err := run(ctx, "mount", "--make-private", nsDir); err != nil {
		return err
	}
	if err := os.WriteFile(w.MountNS(), nil, 0o644); err != nil {
		return err
	}
	var script []string
	for _, b := range w.Binds() {
		script = append(script, fmt.Sprintf("mount --bind %q %q", b[0], b[1]))
	}
	if _, err := run(ctx, "unshare", "--mount="+w.MountNS(), "--propagation", "private", "sh", "-ec", strings.Join(script, "\n")); err != nil {
		return fmt.Errorf("create mount namespace: %w", err)
	}
	return nil
}

// Files are the worker supervisor's files.
func (w Worker) Files() supervisor.Files {
	return supervisor.Files{RunDir: w.Path("run"), LogDir: w.Path("logs")}
}

// StartDaemons writes the worker's containerd and kubelet configuration
// and starts its supervisor (containerd, then the kubelet) inside the
// worker's namespaces. The kubelet exits until kubeadm join has written its
// configuration; the supervisor retries it every two seconds.
func (w Worker) StartDaemons(ctx context.Context, self, kubelet, pauseImage string) error {
	const socket = "/run/containerd/containerd.sock"
	if err := os.WriteFile(w.Path("config", "containerd.toml"), []byte(w.containerdConfig(pauseImage)), 0o644); err != nil {
		return err
	}
	// What this machine needs, whatever the tenant's kubelet
	// configuration (written by kubeadm join) says.
	dropIns := w.Path("config", "kubelet.conf.d")
	if err := os.MkdirAll(dropIns, 0o755); err != nil {
		return err
	}
	machine := nodeconfig.Kubelet{RuntimeEndpoint: socket, CgroupRoot: w.CgroupRoot()}.Render("")
	if err := os.WriteFile(filepath.Join(dropIns, "50-machine.conf"), []byte(machine), 0o644); err != nil {
		return err
	}
	containerd, err := exec.LookPath("containerd")
	if err != nil {
		return err
	}
	spec := supervisor.Spec{Processes: []supervisor.Process{
		{Name: "containerd", Path: containerd, Args: []string{"--config", w.Path("config", "containerd.toml")}, ReadySocket: socket},
		{Name: "kubelet", Path: kubelet, MaxBackoffSeconds: 2, Args: []string{
			"--bootstrap-kubeconfig=/etc/kubernetes/bootstrap-kubelet.conf",
			"--kubeconfig=/etc/kubernetes/kubelet.conf",
			"--config=/var/lib/kubelet/config.yaml",
			"--config-dir=" + dropIns,
			"--hostname-override=" + w.Node,
			"--node-ip=" + w.IP().String(),
		}},
	}}
	files := w.Files()
	if err := files.WriteSpec(spec); err != nil {
		return err
	}
	if files.PID("supervisor") != 0 {
		return supervisor.Reload(files)
	}
	if err := supervisor.Start(ctx, files, w.InNS(context.Background(), self, "admin", "supervise", "--root", w.Dir)); err != nil {
		return err
	}
	err = wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
		c, err := os.Stat(w.ContainerdSocket())
		if err != nil || c.Mode()&os.ModeSocket == 0 {
			return false, nil
		}
		_, err = run(ctx, "ctr", "--address", w.ContainerdSocket(), "version")
		return err == nil, nil
	})
	if err != nil {
		return fmt.Errorf("worker containerd did not start (%w); see %s and %s", err, files.LogPath("supervisor"), files.LogPath("containerd"))
	}
	return nil
}

func (w Worker) containerdConfig(pauseImage string) string {
	return nodeconfig.Containerd{
		Root: w.Path("containerd", "root"), State: w.Path("containerd", "state"), Socket: "/run/containerd/containerd.sock",
		Opt: w.Path("containerd", "opt"), RuncRoot: w.Path("containerd", "runc"), SandboxImage: pauseImage,
		CNIConfDir: "/etc/cni/net.d", CNIBinDir: CNIBinDir,
	}.Render()
}

// CNIBinDir is the worker's CNI plugin directory, as on a kubeadm node: it
// starts with links to the host's standard plugins, and a pod network
// addon (Calico's installer) adds its own plugin there.
const CNIBinDir = "/opt/cni/bin"

// linkCNIPlugins links the host's standard CNI plugins into the worker's
// own plugin directory.
func (w Worker) linkCNIPlugins() error {
	plugins, err := os.ReadDir(nodeconfig.DefaultCNIBinDir)
	if err != nil {
		return fmt.Errorf("CNI plugins: %w (apt-get install -y containernetworking-plugins)", err)
	}
	for _, p := range plugins {
		link := w.Path("cni-bin", p.Name())
		target := filepath.Join(nodeconfig.DefaultCNIBinDir, p.Name())
		if cur, err := os.Readlink(link); err == nil && cur == target {
			continue
		}
		_ = os.Remove(link)
		if err := os.Symlink(target, link); err != nil {
			return err
		}
	}
	return nil
}

// WriteCNIConfig gives the worker's pods its node's pod range on a bridge,
// for tenants without a pod network addon. The network shares its name, and
// so host-local's record of given addresses, with Calico's, so pods wired
// before and after the addon is switched on never get the same address.
func (w Worker) WriteCNIConfig(podCIDR string) error {
	conf := fmt.Sprintf(`{
  "cniVersion": "0.4.0",
  "name": %q,
  "plugins": [
    {
      "type": "bridge",
      "bridge": "cni0",
      "isGateway": true,
      "ipMasq": true,
      "hairpinMode": true,
      "ipam": {
        "type": "host-local",
        "ranges": [[{"subnet": %q}]],
        "routes": [{"dst": "0.0.0.0/0"}]
      }
    },
    {"type": "portmap", "capabilities": {"portMappings": true}}
  ]
}
`, calico.NetworkName, podCIDR)
	path := w.Path("cni-conf", "10-kubinception.conflist")
	if old, err := os.ReadFile(path); err == nil && string(old) == conf {
		return nil
	}
	return os.WriteFile(path, []byte(conf), 0o644)
}

// Route is a pod range reached through a worker's address.
type Route struct {
	PodCIDR string
	Via     string
}

// SyncRoutes makes the worker route every other worker's pod range
// through that worker, and drops routes to ranges no longer listed.
func (w Worker) SyncRoutes(ctx context.Context, routes []Route) error {
	want := map[string]string{}
	for _, r := range routes {
		if r.Via != w.IP().String() {
			want[r.PodCIDR] = r.Via
		}
	}
	ns := []string{"netns", "exec", w.NetNS()}
	out, err := run(ctx, "ip", append(ns, "ip", "-o", "route", "show", "proto", "static")...)
	if err != nil {
		return err
	}
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) >= 3 && f[1] == "via" {
			if via, ok := want[f[0]]; !ok || via != f[2] {
				_, _ = run(ctx, "ip", append(ns, "ip", "route", "del", f[0])...)
			}
		}
	}
	cidrs := make([]string, 0, len(want))
	for c := range want {
		cidrs = append(cidrs, c)
	}
	sort.Strings(cidrs)
	for _, c := range cidrs {
		if _, err := run(ctx, "ip", append(ns, "ip", "route", "replace", c, "via", want[c], "proto", "static")...); err != nil {
			return err
		}
	}
	return nil
}

// Teardown stops the worker and removes what it made on the host: its
// processes, mount namespace, network namespace and link, pod cgroups,
// and, when last is set, the segment's bridge. It keeps going past
// failures and reports them all.
func (w Worker) Teardown(ctx context.Context, last bool) error {
	var errs []error
	if err := supervisor.Stop(ctx, w.Files(), 60*time.Second); err != nil {
		errs = append(errs, err)
	}
	// Pod processes, then what is left of the worker's own: above all
	// containerd's shims, which nothing stops once containerd is gone.
	if err := hostproc.KillCgroup(ctx, w.CgroupRoot(), 10*time.Second); err != nil {
		errs = append(errs, err)
	}
	if err := hostproc.KillMatching(ctx, 10*time.Second, func(p hostproc.Process) bool {
		return p.OwnedBy(w.Dir) || p.NamesPath(w.Dir)
	}); err != nil {
		errs = append(errs, err)
	}
	if hostproc.IsMountPoint(w.MountNS()) {
		if err := syscall.Unmount(w.MountNS(), syscall.MNT_DETACH); err != nil {
			errs = append(errs, fmt.Errorf("unmount %s: %w", w.MountNS(), err))
		}
	}
	if hostproc.IsMountPoint(w.Path("ns")) {
		_ = syscall.Unmount(w.Path("ns"), syscall.MNT_DETACH)
	}
	if _, err := os.Stat("/run/netns/" + w.NetNS()); err == nil {
		if _, err := run(ctx, "ip", "netns", "del", w.NetNS()); err != nil {
			errs = append(errs, err)
		}
	}
	if _, err := run(ctx, "ip", "link", "show", w.HostVeth()); err == nil {
		_, _ = run(ctx, "ip", "link", "del", w.HostVeth())
	}
	if err := hostproc.RemoveCgroup(w.CgroupRoot()); err != nil {
		errs = append(errs, err)
	}
	if last {
		if _, err := run(ctx, "ip", "link", "show", w.Bridge()); err == nil {
			if _, err := run(ctx, "ip", "link", "del", w.Bridge()); err != nil {
				errs = append(errs, err)
			}
		}
	}
	if len(errs) == 0 {
		if err := os.RemoveAll(w.Dir); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
