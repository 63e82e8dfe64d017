package worker

import (
	"context"
	"fmt"
	"io"
	"os"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"

	"kubinception.dev/kubinception/internal/join"
	"kubinception.dev/kubinception/internal/local/supervisor"
	"kubinception.dev/kubinception/internal/tenantbootstrap"
)

// AddOptions is what adding a worker needs.
type AddOptions struct {
	Layout Layout
	// Tenant is namespace/name; Access reaches it.
	Tenant string
	Access *join.Tenant
	// Node is the node name; empty picks one.
	Node string
	// Reachable lets the admin node connect to the worker; otherwise the
	// worker is behind NAT (see Worker.Reachable).
	Reachable bool
	// Self is the kubinception binary (run as the worker's supervisor).
	Self string
	// Kubelet and Kubeadm are the binaries of the tenant's version.
	Kubelet string
	Kubeadm string
	// PauseImage is the sandbox image the worker's containerd uses.
	PauseImage string
	// ImportImages loads the images workers run into a containerd.
	ImportImages func(ctx context.Context, socket string) error
	// Join, when set, is used instead of a fresh token (a join command a
	// person already has).
	Join *join.Command
	// Nudge asks the operator to reconcile the tenant now, so it approves
	// the new kubelet's serving certificate without waiting for its next
	// periodic pass.
	Nudge func(ctx context.Context) error
	// DiscoveryTimeout bounds kubeadm's search for a signed cluster-info
	// (60 seconds when zero).
	DiscoveryTimeout time.Duration
	Out              io.Writer
}

// hasPodNetworkAddon reports whether the tenant runs a pod network addon
// (Calico, the networkPolicy addon) that configures nodes' pod networks.
func hasPodNetworkAddon(ctx context.Context, cs kubernetes.Interface) (bool, error) {
	_, err := cs.AppsV1().DaemonSets("kube-system").Get(ctx, tenantbootstrap.CalicoNodeName, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("look for the tenant's pod network addon: %w", err)
	}
	return true, nil
}

// Add creates a worker and joins it to its tenant with the upstream
// kubeadm join, then gives it its pod range, routes and waits for Ready.
// A failure tears the worker down again and deletes its Node if it got
// that far, so nothing is left half-made on this machine or in the tenant.
func Add(ctx context.Context, o AddOptions) (w Worker, err error) {
	w, err = o.Layout.Allocate(o.Tenant, o.Node, o.Reachable)
	if err != nil {
		return w, err
	}
	defer func() {
		if err != nil {
			// A join that got as far as registering leaves a Node behind;
			// remove it so the tenant sees no half-joined node.
			if o.Access != nil {
				_ = o.Access.Clientset.CoreV1().Nodes().Delete(context.Background(), w.Node, metav1.DeleteOptions{})
			}
			last, _ := o.Layout.Release(w)
			if terr := w.Teardown(context.Background(), last); terr != nil {
				err = fmt.Errorf("%w (and tearing the worker down failed: %v)", err, terr)
			}
		}
	}()
	out := steps{out: o.Out}
	step := out.run
	out.printf("worker %s for %s at %s (network namespace %s)\n", w.Node, o.Tenant, w.IP(), w.NetNS())
	if err = step("host: namespaces, link, mounts", func() error {
		w.clearStale(ctx)
		return w.SetupHost(ctx)
	}); err != nil {
		return w, err
	}
	if err = step("containerd and kubelet", func() error { return w.StartDaemons(ctx, o.Self, o.Kubelet, o.PauseImage) }); err != nil {
		return w, err
	}
	if err = step("images", func() error { return o.ImportImages(ctx, w.ContainerdSocket()) }); err != nil {
		return w, err
	}
	var cmd join.Command
	if o.Join != nil {
		cmd = *o.Join
	} else if err = step("join token", func() error {
		var e error
		cmd, e = o.Access.NewCommand(ctx, time.Hour, time.Now())
		return e
	}); err != nil {
		return w, err
	}
	timeout := o.DiscoveryTimeout
	if timeout == 0 {
		timeout = time.Minute
	}
	if err = step("kubeadm join", func() error { return w.Join(ctx, o.Kubeadm, cmd, timeout) }); err != nil {
		return w, err
	}
	cs := o.Access.Clientset
	var podCIDR string
	if err = step("pod range", func() error {
		var e error
		podCIDR, e = waitPodCIDR(ctx, cs, w.Node)
		if e != nil {
			return e
		}
		addon, e := hasPodNetworkAddon(ctx, cs)
		if e != nil || addon {
			// The addon's installer writes the node's network
			// configuration; the node turns Ready once it has.
			return e
		}
		return w.WriteCNIConfig(podCIDR)
	}); err != nil {
		return w, err
	}
	if err = step("routes between workers", func() error { return SyncTenantRoutes(ctx, o.Layout, o.Tenant, cs) }); err != nil {
		return w, err
	}
	if err = step("node Ready", func() error { return waitNodeReady(ctx, cs, w.Node, 3*time.Minute) }); err != nil {
		return w, err
	}
	if err = step("kubelet serving certificate (logs, exec)", func() error {
		if o.Nudge != nil {
			if err := o.Nudge(ctx); err != nil {
				return err
			}
		}
		return waitServingCertificate(ctx, cs, w.Node, 2*time.Minute)
	}); err != nil {
		return w, err
	}
	return w, nil
}

// waitServingCertificate waits until the node's kubelet serving
// certificate has been issued, so the API server can reach the kubelet for
// logs, exec and port-forward.
func waitServingCertificate(ctx context.Context, cs kubernetes.Interface, node string, timeout time.Duration) error {
	err := wait.PollUntilContextTimeout(ctx, 300*time.Millisecond, timeout, true, func(ctx context.Context) (bool, error) {
		list, err := cs.CertificatesV1().CertificateSigningRequests().List(ctx, metav1.ListOptions{})
		if err != nil {
			return false, nil
		}
		for _, csr := range list.Items {
			if csr.Spec.SignerName == "kubernetes.io/kubelet-serving" && csr.Spec.Username == "system:node:"+node && len(csr.Status.Certificate) > 0 {
				return true, nil
			}
		}
		return false, nil
	})
	if err != nil {
		return fmt.Errorf("no serving certificate was issued to node %s within %s (%w): is the operator running? (kubectl -n kubinception-system logs deploy/kubinception-manager)", node, timeout, err)
	}
	return nil
}

// Join runs the upstream kubeadm join inside the worker's namespaces,
// with a JoinConfiguration that holds only what the command line would: the
// endpoint, the token and the CA hash, plus the node name, the CRI socket
// and timeouts. The preflight checks that assume a whole machine (systemd,
// swap, kernel modules) are skipped; discovery and TLS bootstrap are
// kubeadm's own.
func (w Worker) Join(ctx context.Context, kubeadm string, cmd join.Command, discoveryTimeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, discoveryTimeout+5*time.Minute)
	defer cancel()
	config := fmt.Sprintf(`apiVersion: kubeadm.k8s.io/v1beta4
kind: JoinConfiguration
discovery:
  bootstrapToken:
    apiServerEndpoint: %q
    token: %q
    caCertHashes: [%q]
nodeRegistration:
  name: %q
  criSocket: unix:///run/containerd/containerd.sock
  ignorePreflightErrors: [all]
skipPhases: [preflight]
timeouts:
  discovery: %s
  tlsBootstrap: 4m0s
`, cmd.Endpoint, cmd.Token, cmd.CAHash, w.Node, discoveryTimeout)
	path := w.Path("config", "join.yaml")
	if err := os.WriteFile(path, []byte(config), 0o600); err != nil {
		return err
	}
	defer os.Remove(path)
	if _, err := w.inNS(ctx, kubeadm, "join", "--config", path); err != nil {
		return fmt.Errorf("%w\nkubelet log:\n%s", err, supervisor.Tail(w.Files().LogPath("kubelet"), 8))
	}
	return nil
}

// waitPodCIDR waits for the tenant's controller manager to give the node
// its pod range.
func waitPodCIDR(ctx context.Context, cs kubernetes.Interface, node string) (string, error) {
	var podCIDR string
	err := wait.PollUntilContextTimeout(ctx, 500*time.Millisecond, 2*time.Minute, true, func(ctx context.Context) (bool, error) {
		n, err := cs.CoreV1().Nodes().Get(ctx, node, metav1.GetOptions{})
		if err != nil {
			return false, nil
		}
		podCIDR = n.Spec.PodCIDR
		return podCIDR != "", nil
	})
	if err != nil {
		return "", fmt.Errorf("node %s got no pod range within 2 minutes (the tenant's controller manager allocates it): %w", node, err)
	}
	return podCIDR, nil
}

// waitNodeReady waits for the node's Ready condition.
func waitNodeReady(ctx context.Context, cs kubernetes.Interface, node string, timeout time.Duration) error {
	last := "not registered"
	err := wait.PollUntilContextTimeout(ctx, 500*time.Millisecond, timeout, true, func(ctx context.Context) (bool, error) {
		n, err := cs.CoreV1().Nodes().Get(ctx, node, metav1.GetOptions{})
		if err != nil {
			return false, nil
		}
		for _, c := range n.Status.Conditions {
			if c.Type == corev1.NodeReady {
				if c.Status == corev1.ConditionTrue {
					return true, nil
				}
				last = c.Reason + ": " + c.Message
			}
		}
		return false, nil
	})
	if err != nil {
		return fmt.Errorf("node %s not Ready within %s: %s (%w)", node, timeout, last, err)
	}
	return nil
}

// SyncTenantRoutes gives every worker of a tenant routes to the others'
// pod ranges.
func SyncTenantRoutes(ctx context.Context, l Layout, tenant string, cs kubernetes.Interface) error {
	workers, err := l.List(tenant)
	if err != nil {
		return err
	}
	var routes []Route
	for _, w := range workers {
		n, err := cs.CoreV1().Nodes().Get(ctx, w.Node, metav1.GetOptions{})
		if err != nil {
			if apierrors.IsNotFound(err) {
				continue
			}
			return err
		}
		if n.Spec.PodCIDR != "" {
			routes = append(routes, Route{PodCIDR: n.Spec.PodCIDR, Via: w.IP().String()})
		}
	}
	for _, w := range workers {
		if err := w.SyncRoutes(ctx, routes); err != nil {
			return err
		}
	}
	return nil
}

// Remove drains a worker's node in the tenant, deletes the node, and tears
// the worker down; the tenant reschedules its pods elsewhere.
func Remove(ctx context.Context, l Layout, w Worker, cs kubernetes.Interface, out io.Writer) error {
	if cs != nil {
		n, err := cs.CoreV1().Nodes().Get(ctx, w.Node, metav1.GetOptions{})
		if err == nil {
			n.Spec.Unschedulable = true
			if _, err := cs.CoreV1().Nodes().Update(ctx, n, metav1.UpdateOptions{}); err != nil && !apierrors.IsNotFound(err) {
				return fmt.Errorf("cordon %s: %w", w.Node, err)
			}
			pods, err := cs.CoreV1().Pods("").List(ctx, metav1.ListOptions{FieldSelector: "spec.nodeName=" + w.Node})
			if err == nil {
				for _, p := range pods.Items {
					if isDaemonPod(p) {
						continue
					}
					_ = cs.CoreV1().Pods(p.Namespace).Delete(ctx, p.Name, metav1.DeleteOptions{})
				}
			}
			if err := cs.CoreV1().Nodes().Delete(ctx, w.Node, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
				return fmt.Errorf("delete node %s: %w", w.Node, err)
			}
			fmt.Fprintf(out, "✓ node %s drained and deleted from %s\n", w.Node, w.Tenant)
		} else if !apierrors.IsNotFound(err) {
			return fmt.Errorf("read node %s: %w", w.Node, err)
		}
	}
	last, err := l.Release(w)
	if err != nil {
		return err
	}
	if err := w.Teardown(ctx, last); err != nil {
		return err
	}
	fmt.Fprintf(out, "✓ worker %s stopped and removed from this machine\n", w.Node)
	if cs != nil {
		return SyncTenantRoutes(ctx, l, w.Tenant, cs)
	}
	return nil
}

func isDaemonPod(p corev1.Pod) bool {
	for _, o := range p.OwnerReferences {
		if o.Kind == "DaemonSet" {
			return true
		}
	}
	return false
}
