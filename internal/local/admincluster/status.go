package admincluster

import (
	"context"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"kubinception.dev/kubinception/internal/datastore"
	"kubinception.dev/kubinception/internal/local/worker"
)

// Status writes, in plain words, what of the admin cluster is running and
// what is not. It returns whether everything is healthy.
func (cl *Cluster) Status(ctx context.Context, w io.Writer) bool {
	c := cl.Config
	files := cl.files()
	healthy := true
	bad := func(format string, args ...any) {
		healthy = false
		fmt.Fprintf(w, "✗ "+format+"\n", args...)
	}
	good := func(format string, args ...any) { fmt.Fprintf(w, "✓ "+format+"\n", args...) }

	if _, err := os.Stat(c.Root); err != nil {
		fmt.Fprintf(w, "✗ no admin cluster here: %s does not exist. Run `kubinception admin up`.\n", c.Root)
		return false
	}
	for _, name := range []string{"supervisor", "containerd", "kubelet", FelixProcess} {
		if pid := files.PID(name); pid != 0 {
			good("%s is running (pid %d)", name, pid)
		} else {
			bad("%s is not running (log: %s)", name, files.LogPath(name))
		}
	}
	if files.PID(FelixProcess) != 0 {
		if felixReady(ctx) {
			good("Felix enforces NetworkPolicy on the pod network (%s)", felixReadinessURL)
		} else {
			bad("Felix is not ready (%s; log: %s)", felixReadinessURL, files.LogPath(FelixProcess))
		}
	}
	if files.PID("supervisor") == 0 && files.PID("containerd") == 0 {
		fmt.Fprintf(w, "\nThe admin cluster is down. Run `kubinception admin up` to start it.\n")
		return false
	}

	client, err := cl.Client()
	if err != nil {
		bad("no admin kubeconfig: %v", err)
		return false
	}
	sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	version, err := client.Discovery().ServerVersion()
	if err != nil {
		bad("admin API server %s does not answer: %v", apiServerURL(c), err)
	} else {
		good("admin API server %s answers (Kubernetes %s)", apiServerURL(c), version.GitVersion)
		if node, err := client.CoreV1().Nodes().Get(sctx, c.NodeName, metav1.GetOptions{}); err != nil {
			bad("node %s is not registered: %v", c.NodeName, err)
		} else if ready, why := nodeReady(node); ready {
			good("node %s is Ready", c.NodeName)
		} else {
			bad("node %s is not Ready: %s", c.NodeName, why)
		}
		if pods, err := client.CoreV1().Pods("kube-system").List(sctx, metav1.ListOptions{LabelSelector: "app.kubernetes.io/managed-by=kubinception"}); err == nil {
			var lines []string
			for _, pod := range pods.Items {
				lines = append(lines, podLine(pod))
			}
			sort.Strings(lines)
			fmt.Fprintf(w, "  pods on the admin node:\n    %s\n", strings.Join(lines, "\n    "))
		}
	}

	for _, ds := range c.datastores() {
		if !cl.datastoreStatus(sctx, ds, w) {
			healthy = false
		}
	}
	if ws, err := (worker.Layout{Root: c.Root}).List(""); err == nil && len(ws) > 0 {
		fmt.Fprintf(w, "  local workers:\n")
		for _, wk := range ws {
			state := "running"
			if wk.Files().PID("supervisor") == 0 {
				state = "not running"
				healthy = false
			}
			fmt.Fprintf(w, "    %-24s %-14s %s (%s)\n", wk.Node, wk.Tenant, wk.IP(), state)
		}
	}
	fmt.Fprintf(w, "\nkubeconfig: %s\n", c.paths().AdminKubeconfig())
	return healthy
}

func nodeReady(node *corev1.Node) (bool, string) {
	for _, cond := range node.Status.Conditions {
		if cond.Type == corev1.NodeReady {
			return cond.Status == corev1.ConditionTrue, cond.Reason + ": " + cond.Message
		}
	}
	return false, "no Ready condition yet"
}

func podLine(pod corev1.Pod) string {
	restarts := int32(0)
	ready := true
	for _, cs := range pod.Status.ContainerStatuses {
		restarts += cs.RestartCount
		ready = ready && cs.Ready
	}
	state := string(pod.Status.Phase)
	if pod.Status.Phase == corev1.PodRunning && !ready {
		state = "Running, not ready"
	}
	return fmt.Sprintf("%-40s %s (restarts %d)", pod.Name, state, restarts)
}

// datastoreStatus writes the health of one datastore's members and of its
// authentication, and returns whether all is well.
func (cl *Cluster) datastoreStatus(ctx context.Context, ds localDatastore, w io.Writer) bool {
	name := ds.name()
	creds, err := cl.datastoreCredentials(ds)
	if err != nil {
		fmt.Fprintf(w, "✗ datastore %s credentials: %v\n", name, err)
		return false
	}
	cli, err := datastore.Connect(creds)
	if err != nil {
		fmt.Fprintf(w, "✗ datastore %s: %v\n", name, err)
		return false
	}
	defer cli.Close()
	members, err := datastore.Health(ctx, cli)
	if err != nil {
		fmt.Fprintf(w, "✗ datastore %s does not answer: %v\n", name, err)
		return false
	}
	up := 0
	for _, m := range members {
		if m.Healthy {
			up++
		}
	}
	healthy := up == DatastoreMembers
	mark := "✓"
	if !healthy {
		mark = "✗"
	}
	fmt.Fprintf(w, "%s datastore %s: %d of %d members healthy\n", mark, name, up, DatastoreMembers)
	for _, m := range members {
		role := ""
		if m.Leader {
			role = ", leader"
		}
		if m.Healthy {
			fmt.Fprintf(w, "    %s %s: healthy%s, applied index %d\n", m.Name, m.Endpoint, role, m.RaftIndex)
		} else {
			fmt.Fprintf(w, "    %s %s: unhealthy: %v\n", m.Name, m.Endpoint, m.Err)
		}
	}
	if st, err := cli.AuthStatus(ctx); err == nil && st.Enabled {
		fmt.Fprintf(w, "✓ datastore %s authentication is enabled; root credential in Secret %s/%s\n", name, SystemNamespace, ds.rootSecret())
	} else if err == nil {
		fmt.Fprintf(w, "✗ datastore %s authentication is not enabled yet; `kubinception admin up` enables it\n", name)
		healthy = false
	}
	return healthy
}
