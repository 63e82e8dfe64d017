package worker

import (
	"context"
	"fmt"
	"io"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/version"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"

	"kubinception.dev/kubinception/internal/local/supervisor"
)

// UpgradeOptions is what moving a worker's kubelet to another version
// needs.
type UpgradeOptions struct {
	// Clientset reaches the tenant as its admin.
	Clientset kubernetes.Interface
	// Version is the kubelet's new version; ControlPlane is the version
	// the tenant's control plane runs (its status.version), which a
	// kubelet may not pass.
	Version      string
	ControlPlane string
	// Kubelet and Kubeadm are the binaries of Version.
	Kubelet, Kubeadm string
	// ImportImages loads the images a worker runs at Version (kube-proxy
	// above all: the tenant's kube-proxy follows the control plane).
	ImportImages func(ctx context.Context, socket string) error
	Out          io.Writer
}

// CheckUpgrade refuses a kubelet version the version skew policy forbids:
// newer than the control plane, or more than three minors older.
func CheckUpgrade(target, controlPlane string) error {
	t, err := version.ParseGeneric(target)
	if err != nil {
		return fmt.Errorf("--version %q is not a Kubernetes version (v1.MINOR.PATCH): %w", target, err)
	}
	c, err := version.ParseGeneric(controlPlane)
	if err != nil {
		return fmt.Errorf("the tenant's control plane reports no running version (status.version %q): wait until it is Ready", controlPlane)
	}
	if t.Major() != c.Major() || t.Minor() > c.Minor() || t.Minor() == c.Minor() && t.Patch() > c.Patch() {
		return fmt.Errorf("--version %s is newer than the control plane (%s): a kubelet may not be newer than its API server; upgrade the TenantCluster's spec.version first", target, controlPlane)
	}
	if c.Minor()-t.Minor() > 3 {
		return fmt.Errorf("--version %s is more than 3 minors older than the control plane (%s): choose a version from %d.%d on", target, controlPlane, c.Major(), c.Minor()-3)
	}
	return nil
}

// Upgrade moves a joined worker to another Kubernetes version the way a
// machine is upgraded: the new version's images, the upstream `kubeadm
// upgrade node` (which writes the kubelet configuration the cluster
// holds), then the kubelet binary, restarted alone. containerd and every
// pod keep running; the node is not drained and never re-joins.
func Upgrade(ctx context.Context, w Worker, o UpgradeOptions) error {
	if err := CheckUpgrade(o.Version, o.ControlPlane); err != nil {
		return err
	}
	s := steps{out: o.Out}
	s.printf("upgrading worker %s of %s to %s (control plane %s)\n", w.Node, w.Tenant, o.Version, o.ControlPlane)
	if err := s.run("images", func() error { return o.ImportImages(ctx, w.ContainerdSocket()) }); err != nil {
		return err
	}
	if err := s.run("kubeadm upgrade node", func() error {
		ctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
		defer cancel()
		out, err := w.inNS(ctx, o.Kubeadm, "upgrade", "node", "--ignore-preflight-errors=all")
		if err == nil {
			// kubeadm's last line says what it did to this node.
			lines := strings.Split(out, "\n")
			s.printf("  %s\n", lines[len(lines)-1])
		}
		return err
	}); err != nil {
		return err
	}
	if err := s.run("kubelet "+o.Version, func() error { return w.replaceKubelet(o.Kubelet) }); err != nil {
		return err
	}
	if err := s.run("node reports "+o.Version, func() error {
		return waitKubeletVersion(ctx, o.Clientset, w.Node, o.Version, 3*time.Minute)
	}); err != nil {
		return err
	}
	return s.run("pods waiting for an image restarted", func() error {
		return restartPodsWaitingForImage(ctx, o.Clientset, w.Node)
	})
}

// replaceKubelet points the worker's supervisor at another kubelet
// binary; the supervisor restarts the kubelet alone.
func (w Worker) replaceKubelet(kubelet string) error {
	files := w.Files()
	spec, err := files.ReadSpec()
	if err != nil {
		return err
	}
	found := false
	for i := range spec.Processes {
		if spec.Processes[i].Name == "kubelet" {
			spec.Processes[i].Path = kubelet
			found = true
		}
	}
	if !found {
		return fmt.Errorf("the worker's supervisor runs no kubelet (%s)", files.SpecPath())
	}
	if err := files.WriteSpec(spec); err != nil {
		return err
	}
	if files.PID("supervisor") == 0 {
		return fmt.Errorf("the worker's supervisor is not running (see %s)", files.LogPath("supervisor"))
	}
	return supervisor.Reload(files)
}

// waitKubeletVersion waits until the node reports the kubelet version and
// is Ready.
func waitKubeletVersion(ctx context.Context, cs kubernetes.Interface, node, want string, timeout time.Duration) error {
	last := "not read"
	err := wait.PollUntilContextTimeout(ctx, 500*time.Millisecond, timeout, true, func(ctx context.Context) (bool, error) {
		n, err := cs.CoreV1().Nodes().Get(ctx, node, metav1.GetOptions{})
		if err != nil {
			last = err.Error()
			return false, nil
		}
		last = "kubelet " + n.Status.NodeInfo.KubeletVersion
		if n.Status.NodeInfo.KubeletVersion != want {
			return false, nil
		}
		for _, c := range n.Status.Conditions {
			if c.Type == corev1.NodeReady {
				last += ", Ready " + string(c.Status)
				return c.Status == corev1.ConditionTrue, nil
			}
		}
		return false, nil
	})
	if err != nil {
		return fmt.Errorf("node %s does not report a Ready kubelet %s within %s (last: %s): %w", node, want, timeout, last, err)
	}
	return nil
}

// restartPodsWaitingForImage deletes the node's pods of a DaemonSet that
// wait for an image the worker did not hold before (kube-proxy, moved to
// the control plane's version while the worker had only the old one), so
// they start now instead of after the kubelet's pull backoff.
func restartPodsWaitingForImage(ctx context.Context, cs kubernetes.Interface, node string) error {
	pods, err := cs.CoreV1().Pods("").List(ctx, metav1.ListOptions{FieldSelector: "spec.nodeName=" + node})
	if err != nil {
		return err
	}
	for _, p := range pods.Items {
		if !isDaemonPod(p) {
			continue
		}
		for _, st := range p.Status.ContainerStatuses {
			if w := st.State.Waiting; w != nil && (w.Reason == "ImagePullBackOff" || w.Reason == "ErrImagePull" || w.Reason == "ErrImageNeverPull") {
				if err := cs.CoreV1().Pods(p.Namespace).Delete(ctx, p.Name, metav1.DeleteOptions{}); err != nil {
					return fmt.Errorf("restart pod %s/%s: %w", p.Namespace, p.Name, err)
				}
				break
			}
		}
	}
	return nil
}

// steps prints each step of a long operation with its duration.
type steps struct{ out io.Writer }

func (s steps) printf(format string, args ...any) {
	if s.out != nil {
		fmt.Fprintf(s.out, format, args...)
	}
}

func (s steps) run(name string, fn func() error) error {
	start := time.Now()
	if err := fn(); err != nil {
		s.printf("✗ %s: %v\n", name, err)
		return fmt.Errorf("%s: %w", name, err)
	}
	s.printf("✓ %s (%s)\n", name, time.Since(start).Round(10*time.Millisecond))
	return nil
}
