package admincluster

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

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
		{"stop kubelet", func() error { return cl.stopKubelet() }},
		{"remove pods", func() error {
			if files.PID("containerd") == 0 {
				return nil
			}
			cri, err := dialCRI(p.ContainerdSocket())
			if err != nil {
				return err
			}
			defer cri.Close()
			_, err = cri.removeAllPods(ctx)
			return err
		}},
		{"stop containerd and the supervisor", func() error { return supervisor.Stop(files, 60*time.Second) }},
		{"stop leftover processes", func() error { return stopLeftovers(c) }},
		{"unmount", func() error { return unmountAll(c.Root) }},
		{"iptables rules", func() error { return cleanIptables(ctx) }},
		{"interfaces", func() error { return deleteInterfaces(ctx) }},
		{"sysctls", func() error { return restoreSysctls(c) }},
		{"cgroups", func() error { return removeCgroups() }},
		{"runtime state", func() error {
			// Generated or run-time only: Up writes them again. Data,
			// PKI and the image store stay.
			var errs []error
			for _, d := range []string{p.Manifests(), p.CNIState(), p.ContainerdState(), p.Run()} {
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

// stopKubelet stops the kubelet and leaves containerd running, so the pods
// can be removed through the CRI as the kubelet would.
func (cl *Cluster) stopKubelet() error {
	files := cl.files()
	if files.PID("supervisor") == 0 || files.PID("kubelet") == 0 {
		return nil
	}
	spec, err := files.ReadSpec()
	if err != nil {
		return err
	}
	var keep []supervisor.Process
	for _, proc := range spec.Processes {
		if proc.Name != "kubelet" {
			keep = append(keep, proc)
		}
	}
	if err := files.WriteSpec(supervisor.Spec{Processes: keep}); err != nil {
		return err
	}
	if err := supervisor.Reload(files); err != nil {
		return err
	}
	deadline := time.Now().Add(40 * time.Second)
	for files.PID("kubelet") != 0 {
		if time.Now().After(deadline) {
			return errors.New("the kubelet did not stop within 40s")
		}
		time.Sleep(100 * time.Millisecond)
	}
	return nil
}

// leftoverBinaries are the executables Up's processes run from; only these
// are stopped by their command line naming our directories.
var leftoverBinaries = map[string]bool{
	"containerd": true, "containerd-shim-runc-v2": true, "containerd-shim": true, "runc": true,
	"kube": true, "etcd": true, "tinyhost": true, "kubinception": true,
}

// stopLeftovers kills pod processes and any process of ours still running
// after the supervisor stopped: container shims, or daemons of a
// supervisor that was killed.
func stopLeftovers(c Config) error {
	for attempt := 0; attempt < 50; attempt++ {
		pids := leftoverPIDs(c)
		n := killPods()
		if len(pids) == 0 && n == 0 {
			return nil
		}
		for _, pid := range pids {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if pids := leftoverPIDs(c); len(pids) > 0 {
		return fmt.Errorf("processes %v did not stop", pids)
	}
	return nil
}

// LeftoverProcesses describes processes of ours still running, for status
// and for tests that check a teardown.
func LeftoverProcesses(c Config) []string {
	var out []string
	for _, pid := range leftoverPIDs(c) {
		cmdline, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		out = append(out, fmt.Sprintf("pid %d: %s", pid, strings.ReplaceAll(strings.TrimRight(string(cmdline), "\x00"), "\x00", " ")))
	}
	for _, dir := range kubepodsCgroups() {
		data, _ := os.ReadFile(filepath.Join(dir, "cgroup.procs"))
		if s := strings.TrimSpace(string(data)); s != "" {
			out = append(out, fmt.Sprintf("pod processes in %s: %s", dir, strings.Join(strings.Fields(s), " ")))
		}
	}
	return out
}

func leftoverPIDs(c Config) []int {
	seen := map[int]bool{}
	var pids []int
	for _, needle := range []string{c.Root, c.paths().ContainerdSocket()} {
		for _, pid := range processesMentioning(needle) {
			exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid))
			if err != nil || seen[pid] {
				continue
			}
			if leftoverBinaries[filepath.Base(strings.TrimSuffix(exe, " (deleted)"))] {
				seen[pid] = true
				pids = append(pids, pid)
			}
		}
	}
	return pids
}

// Leftovers lists every host object of ours that exists: processes,
// mounts, interfaces, iptables chains and pod cgroups. After Down it is
// empty.
func Leftovers(ctx context.Context, c Config) []string {
	out := LeftoverProcesses(c)
	if mounts, err := ourMounts(c.Root); err == nil {
		for _, m := range mounts {
			out = append(out, "mount "+m)
		}
	}
	for _, name := range []string{NodeInterface, BridgeInterface} {
		if _, err := run(ctx, "ip", "link", "show", name); err == nil {
			out = append(out, "interface "+name)
		}
	}
	all, _ := run(ctx, "ip", "-o", "link", "show")
	for _, line := range strings.Split(all, "\n") {
		if f := strings.Fields(line); len(f) > 1 && (strings.HasPrefix(f[1], "kubi-t") || strings.HasPrefix(f[1], "kubiv")) {
			out = append(out, "interface "+strings.TrimSuffix(f[1], ":"))
		}
	}
	if nss, err := os.ReadDir("/run/netns"); err == nil {
		for _, ns := range nss {
			if strings.HasPrefix(ns.Name(), "kubi-") {
				out = append(out, "network namespace "+ns.Name())
			}
		}
	}
	links, _ := run(ctx, "ip", "-o", "link", "show", "type", "veth")
	for _, line := range strings.Split(links, "\n") {
		if strings.Contains(line, "master "+BridgeInterface) {
			out = append(out, "veth "+strings.TrimSpace(line))
		}
	}
	for _, cmd := range iptablesCommands {
		save, err := run(ctx, cmd+"-save")
		if err != nil {
			continue
		}
		for table, lines := range parseIptablesSave(save) {
			for _, l := range lines {
				if strings.HasPrefix(l, ":") && isOurChain(strings.Fields(l[1:])[0]) {
					out = append(out, fmt.Sprintf("%s chain %s/%s", cmd, table, strings.Fields(l[1:])[0]))
				}
			}
		}
	}
	for _, dir := range kubepodsCgroups() {
		out = append(out, "cgroup "+dir)
	}
	return out
}
