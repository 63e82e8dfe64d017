package e2e

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"kubinception.dev/kubinception/internal/controlplane"
	"kubinception.dev/kubinception/internal/local/hostproc"
)

// TestControlPlaneHardening looks at a running control-plane pod from the
// admin node (its images have no shell to exec into): each container's
// process runs as its own non-root user with no capabilities, no new
// privileges and a seccomp filter, cannot write its root filesystem (the
// kernel answers EROFS even to root on the host), and sees under the PKI
// mount exactly the files its flags name, never the CA key unless it is
// the controller manager.
func TestControlPlaneHardening(t *testing.T) {
	requireE2E(t)
	upAndInstall(t)
	const name = "hard"
	t.Cleanup(func() { removeTenants(t, name) })
	if r := run(t, "create", "cluster", name, "--kubeconfig", adminKubeconfig()); r.err != nil {
		t.Fatalf("create cluster:\n%s", r)
	}
	tc := waitTenantReady(t, name)
	c := adminClient(t)

	type expect struct {
		user  int64
		files []string
	}
	want := map[string]expect{
		"kube-apiserver":          {controlplane.UserAPIServer, controlplane.APIServerFiles},
		"kube-controller-manager": {controlplane.UserControllerManager, controlplane.ControllerManagerFiles},
		"kube-scheduler":          {controlplane.UserScheduler, controlplane.SchedulerFiles},
		"tunnel":                  {controlplane.UserAPIServer, controlplane.TunnelServerFiles},
	}
	var pod corev1.Pod
	var procs map[string]hostproc.Process
	eventually(t, 2*time.Minute, "a running control-plane pod with a process for each container", func(ctx context.Context) error {
		var pods corev1.PodList
		if err := c.List(ctx, &pods, client.InNamespace(tc.Namespace), client.MatchingLabels(controlplane.Labels(name))); err != nil {
			return err
		}
		for _, p := range pods.Items {
			if p.Status.Phase != corev1.PodRunning || p.DeletionTimestamp != nil {
				continue
			}
			pod, procs = p, podProcesses(string(p.UID))
			var missing []string
			for cn := range want {
				if _, ok := procs[cn]; !ok {
					missing = append(missing, cn)
				}
			}
			if len(missing) == 0 {
				return nil
			}
			return fmt.Errorf("pod %s (uid %s): no process found for %v; found %v", p.Name, p.UID, missing, procs)
		}
		return fmt.Errorf("no running control-plane pod among %d", len(pods.Items))
	})
	t.Logf("pod %s: processes %v", pod.Name, procs)

	for cn, w := range want {
		t.Run(cn, func(t *testing.T) {
			p := procs[cn]
			status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", p.PID))
			if err != nil {
				t.Fatalf("%s (pid %d): %v", cn, p.PID, err)
			}
			fields := procStatus(string(status))
			uid := strings.Fields(fields["Uid"])
			if len(uid) != 4 || slices.ContainsFunc(uid, func(u string) bool { return u != strconv.FormatInt(w.user, 10) }) {
				t.Errorf("%s (pid %d) runs as Uid %q, want %d throughout", cn, p.PID, fields["Uid"], w.user)
			}
			for field, value := range map[string]string{"CapEff": "0000000000000000", "CapPrm": "0000000000000000", "CapBnd": "0000000000000000", "NoNewPrivs": "1", "Seccomp": "2"} {
				if fields[field] != value {
					t.Errorf("%s (pid %d): %s is %q, want %q", cn, p.PID, field, fields[field], value)
				}
			}

			root := fmt.Sprintf("/proc/%d/root", p.PID)
			probe := filepath.Join(root, "kubinception-hardening-probe")
			err = os.WriteFile(probe, []byte("x"), 0o600)
			if err == nil {
				_ = os.Remove(probe)
				t.Errorf("%s (pid %d): root on the admin node wrote %s: the root filesystem is writable", cn, p.PID, probe)
			} else if !errors.Is(err, syscall.EROFS) {
				t.Errorf("%s (pid %d): writing its root filesystem failed with %v, want EROFS (read-only file system)", cn, p.PID, err)
			}

			entries, err := os.ReadDir(filepath.Join(root, controlplane.PKIMountPath))
			if err != nil {
				t.Fatalf("%s (pid %d): %v", cn, p.PID, err)
			}
			var seen []string
			for _, e := range entries {
				// The kubelet's atomic-writer bookkeeping: ..data and
				// a timestamped directory.
				if !strings.HasPrefix(e.Name(), "..") {
					seen = append(seen, e.Name())
				}
			}
			sort.Strings(seen)
			expected := slices.Sorted(slices.Values(w.files))
			if !slices.Equal(seen, expected) {
				t.Errorf("%s (pid %d) sees %v under %s, want %v", cn, p.PID, seen, controlplane.PKIMountPath, expected)
			}
			if cn != "kube-controller-manager" && slices.Contains(seen, controlplane.FileCAKey) {
				t.Errorf("%s sees the CA key", cn)
			}
			for _, f := range seen {
				fi, err := os.Stat(filepath.Join(root, controlplane.PKIMountPath, f))
				if err != nil {
					t.Errorf("%s: %v", cn, err)
					continue
				}
				if fi.Mode().Perm()&0o007 != 0 {
					t.Errorf("%s: %s has mode %v: readable by others", cn, f, fi.Mode().Perm())
				}
			}
		})
	}
}

// podProcs finds the processes of a pod from the admin node, by the pod's
// UID in their cgroup (as the cgroupfs and systemd drivers spell it).
func podProcs(uid string) []hostproc.Process {
	forms := []string{uid, strings.ReplaceAll(uid, "-", "_")}
	return hostproc.Find(func(p hostproc.Process) bool {
		cg, err := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", p.PID))
		return err == nil && slices.ContainsFunc(forms, func(f string) bool { return strings.Contains(string(cg), "pod"+f) })
	})
}

// podProcesses finds the processes of a pod keyed by container: the
// Kubernetes components by their command, the tunnel server by its
// arguments.
func podProcesses(uid string) map[string]hostproc.Process {
	out := map[string]hostproc.Process{}
	for _, p := range podProcs(uid) {
		switch cmd := p.Command(); {
		case cmd == "kube-apiserver" || cmd == "kube-controller-manager" || cmd == "kube-scheduler":
			out[cmd] = p
		case slices.ContainsFunc(p.Args[:max(len(p.Args)-1, 0)], func(a string) bool { return a == "tunnel" }) && slices.Contains(p.Args, "server"):
			out["tunnel"] = p
		}
	}
	return out
}

// procStatus parses /proc/PID/status into its fields.
func procStatus(s string) map[string]string {
	out := map[string]string{}
	for _, line := range strings.Split(s, "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok {
			out[k] = strings.TrimSpace(v)
		}
	}
	return out
}
