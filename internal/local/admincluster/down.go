package admincluster

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/util/wait"

	"kubinception.dev/kubinception/internal/calico"
	"kubinception.dev/kubinception/internal/local/hostproc"
	"kubinception.dev/kubinception/internal/local/supervisor"
	"kubinception.dev/kubinception/internal/local/worker"
)

// Down stops everything Up started and undoes its changes to the host.
// The admin etcd's data, the datastore's data and the PKI are kept unless
// purge is set, so a later Up resumes with every object and key. Down
// does as much as it can and reports every step that failed.
func (cl *Cluster) Down(ctx context.Context, purge bool) error {
	if err := RequireRoot("kubinception admin down"); err != nil {
		return err
	}
	c := cl.Config
	p := c.paths()
	files := cl.files()
	var failed []error
	steps := []struct {
		name string
		fn   func() error
	}{
		{"workers", func() error { return stopWorkers(ctx, c.Root) }},
		// Felix first: stopped, it no longer rewrites what teardown
		// removes. Its rules keep policing until then.
		{"stop Felix", func() error { return cl.stopProcess(ctx, FelixProcess) }},
		// The kubelet next, leaving containerd running, so the pods can
		// be removed through the CRI as the kubelet would.
		{"stop kubelet", func() error { return cl.stopProcess(ctx, "kubelet") }},
		{"remove pods", func() error {
			if files.PID("containerd") == 0 {
				return nil
			}
			cri, err := dialCRI(p.ContainerdSocket())
			if err != nil {
				return err
			}
			defer cri.Close()
			_, left, err := cri.removeAllPods(ctx)
			for _, l := range left {
				cl.printf("  pod %s: its network could not be released; its containers were stopped, and its interface and state go with the rest\n", l)
			}
			return err
		}},
		{"stop containerd and the supervisor", func() error { return supervisor.Stop(ctx, files, 60*time.Second) }},
		{"stop leftover processes", func() error { return stopLeftovers(ctx, c) }},
		{"unmount", func() error { return unmountAll(c.Root) }},
		{"iptables rules", func() error { return cleanIptables(ctx) }},
		{"IP sets", func() error { return destroyIPSets(ctx) }},
		{"interfaces", func() error { return deleteInterfaces(ctx) }},
		{"Calico state", func() error { return os.RemoveAll(CalicoStateDir) }},
		{"sysctls", func() error { return restoreSysctls(c) }},
		{"cgroups", func() error { return hostproc.RemoveCgroup(podCgroup) }},
		{"runtime state", func() error {
			// Generated or run-time only: Up writes them again. Data,
			// PKI and the image store stay.
			var errs []error
			for _, d := range []string{p.Manifests(), p.CNIState(), p.CNIConf(), p.ContainerdState(), p.Run()} {
				if err := os.RemoveAll(d); err != nil {
					errs = append(errs, err)
				}
			}
			return errors.Join(errs...)
		}},
	}
	if purge {
		steps = append(steps, struct {
			name string
			fn   func() error
		}{"purge " + c.Root, func() error { return os.RemoveAll(c.Root) }})
	}
	for _, s := range steps {
		if err := cl.step(s.name, s.fn); err != nil {
			failed = append(failed, err)
		}
	}
	if len(failed) > 0 {
		return fmt.Errorf("admin down left work undone (run it again after fixing the cause): %w", errors.Join(failed...))
	}
	if purge {
		cl.printf("\nadmin cluster is down; all its state was removed\n")
	} else {
		cl.printf("\nadmin cluster is down; data is kept in %s (kubinception admin up resumes it)\n", c.Root)
	}
	return nil
}

// stopWorkers tears down every local worker machine: they run apart from
// the admin node's containerd and kubelet, in namespaces of their own.
func stopWorkers(ctx context.Context, root string) error {
	l := worker.Layout{Root: root}
	ws, err := l.List("")
	if err != nil {
		return err
	}
	var errs []error
	for _, w := range ws {
		last, err := l.Release(w)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if err := w.Teardown(ctx, last); err != nil {
			errs = append(errs, fmt.Errorf("worker %s: %w", w.Node, err))
		}
	}
	return errors.Join(errs...)
}

// stopProcess takes name out of the supervisor's spec and waits until it
// has stopped; the other processes keep running.
func (cl *Cluster) stopProcess(ctx context.Context, name string) error {
	files := cl.files()
	if files.PID("supervisor") == 0 || files.PID(name) == 0 {
		return nil
	}
	spec, err := files.ReadSpec()
	if err != nil {
		return err
	}
	var keep []supervisor.Process
	for _, proc := range spec.Processes {
		if proc.Name != name {
			keep = append(keep, proc)
		}
	}
	if err := files.WriteSpec(supervisor.Spec{Processes: keep}); err != nil {
		return err
	}
	if err := supervisor.Reload(files); err != nil {
		return err
	}
	err = wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 40*time.Second, true, func(context.Context) (bool, error) {
		return files.PID(name) == 0, nil
	})
	if err != nil {
		return fmt.Errorf("%s did not stop within 40s: %w", name, err)
	}
	return nil
}

// leftoverBinaries are the executables Up's processes run from; only these
// are taken for ours by their command line naming our directories.
var leftoverBinaries = map[string]bool{
	"containerd": true, "containerd-shim-runc-v2": true, "containerd-shim": true, "runc": true,
	"kube": true, "kubelet": true, "etcd": true, "tinyhost": true, "kubinception": true, "calico": true,
}

// isShim reports whether p is a containerd shim, which outlives the
// containerd that started it.
func isShim(p hostproc.Process) bool { return strings.HasPrefix(p.Name(), "containerd-shim") }

// ourProcess says why p belongs to the admin cluster under root or to one
// of its workers, or returns "" when it does not. hostMountNS is the mount
// namespace of the machine (this process's).
func ourProcess(p hostproc.Process, root, hostMountNS string) string {
	switch {
	case p.OwnedBy(root):
		return "started under " + root + " by a supervisor of ours"
	case p.RunsFrom(root):
		return "runs a binary from " + root
	case isShim(p) && p.NamesPath(root):
		return "a container shim of our containerd"
	case isShim(p) && p.MountNS != "" && hostMountNS != "" && p.MountNS != hostMountNS:
		// Only a worker's containerd runs in a mount namespace of its
		// own; its shims name nothing of ours.
		return "a container shim in a worker's mount namespace"
	case leftoverBinaries[p.Name()] && p.NamesPath(root):
		return "names " + root
	}
	return ""
}

// ourProcesses lists the live processes of the admin cluster under root
// and of its workers, other than pod processes (see podCgroup).
func ourProcesses(root string) []hostproc.Process {
	host := hostproc.Self().MountNS
	return hostproc.Find(func(p hostproc.Process) bool { return ourProcess(p, root, host) != "" })
}

// stopLeftovers kills pod processes and any process of ours still running
// after the supervisor stopped: container shims, or daemons of a
// supervisor that was killed.
func stopLeftovers(ctx context.Context, c Config) error {
	host := hostproc.Self().MountNS
	return errors.Join(
		hostproc.KillCgroup(ctx, podCgroup, 10*time.Second),
		hostproc.KillMatching(ctx, 10*time.Second, func(p hostproc.Process) bool { return ourProcess(p, c.Root, host) != "" }),
	)
}

// leftoverProcesses describes processes of ours still running.
func leftoverProcesses(c Config) []string {
	var out []string
	host := hostproc.Self().MountNS
	for _, p := range ourProcesses(c.Root) {
		out = append(out, fmt.Sprintf("%s (%s)", p, ourProcess(p, c.Root, host)))
	}
	if pids := hostproc.CgroupPIDs(podCgroup); len(pids) > 0 {
		out = append(out, fmt.Sprintf("pod processes in cgroup %s: %v", podCgroup, pids))
	}
	return out
}

// Leftovers lists every host object of ours that exists: processes,
// mounts, interfaces, network namespaces, iptables chains and rules, IP
// sets, Felix's state directory and pod cgroups. After Down it is empty.
func Leftovers(ctx context.Context, c Config) []string {
	out := leftoverProcesses(c)
	if mounts, err := hostproc.MountPoints(c.Root); err == nil {
		for _, m := range mounts {
			out = append(out, "mount "+m)
		}
	}
	all, _ := run(ctx, "ip", "-o", "link", "show")
	for _, name := range linkNames(all, "kubi", calico.InterfacePrefix) {
		out = append(out, "interface "+name)
	}
	if nss, err := os.ReadDir("/run/netns"); err == nil {
		for _, ns := range nss {
			if strings.HasPrefix(ns.Name(), "kubi-") {
				out = append(out, "network namespace "+ns.Name())
			}
		}
	}
	for _, cmd := range iptablesCommands {
		save, err := run(ctx, cmd+"-save")
		if err != nil {
			continue
		}
		for table, lines := range parseIptablesSave(save) {
			chains, rules := ourIptables(lines)
			for _, name := range chains {
				out = append(out, fmt.Sprintf("%s chain %s/%s", cmd, table, name))
			}
			for _, r := range rules {
				out = append(out, fmt.Sprintf("%s rule %s: %s", cmd, table, r))
			}
		}
	}
	sets, err := ourIPSets(ctx)
	if err != nil {
		out = append(out, err.Error())
	}
	for _, name := range sets {
		out = append(out, "IP set "+name)
	}
	if _, err := os.Stat(CalicoStateDir); err == nil {
		out = append(out, "directory "+CalicoStateDir)
	}
	for _, dir := range hostproc.CgroupDirs(podCgroup) {
		out = append(out, "cgroup "+dir)
	}
	return out
}
