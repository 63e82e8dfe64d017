package worker

import (
	"context"
	"fmt"
	"io"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"

	"kubinception.dev/kubinception/internal/nodeca"
)

// RotateCA moves a local worker to its tenant's new CA during a CA
// rotation, the way nodeca moves any machine: the bundle from
// cluster-info, client and serving certificates of the new CA, and the
// kubelet restarted alone by the worker's supervisor. It waits until the
// node is Ready again.
func RotateCA(ctx context.Context, w Worker, cs kubernetes.Interface, nudge func(context.Context), out io.Writer) error {
	bundle, err := nodeca.Bundle(ctx, cs)
	if err != nil {
		return err
	}
	err = nodeca.Move(ctx, nodeca.Options{
		Node:   w.Node,
		Paths:  nodeca.Paths{KubeletConf: w.Path("etc-kubernetes", "kubelet.conf"), CAFile: w.Path("etc-kubernetes", "pki", "ca.crt"), PKIDir: w.Path("kubelet", "pki")},
		Bundle: bundle,
		Nudge:  nudge,
		Out:    out,
		Restart: func(ctx context.Context) error {
			pid := w.Files().PID("kubelet")
			if pid == 0 {
				return fmt.Errorf("the worker's kubelet is not running (see %s)", w.Files().LogPath("kubelet"))
			}
			// The supervisor starts it again at once.
			return syscall.Kill(pid, syscall.SIGTERM)
		},
	})
	if err != nil {
		return err
	}
	restarted := time.Now().Add(-time.Second)
	return steps{out: out}.run("node Ready", func() error {
		return waitHeartbeat(ctx, cs, w.Node, restarted, 3*time.Minute)
	})
}

// waitHeartbeat waits until the node reports Ready with a heartbeat after
// since: the restarted kubelet, with its new certificate, reached the API
// server.
func waitHeartbeat(ctx context.Context, cs kubernetes.Interface, node string, since time.Time, timeout time.Duration) error {
	last := "no heartbeat yet"
	err := wait.PollUntilContextTimeout(ctx, 500*time.Millisecond, timeout, true, func(ctx context.Context) (bool, error) {
		n, err := cs.CoreV1().Nodes().Get(ctx, node, metav1.GetOptions{})
		if err != nil {
			last = err.Error()
			return false, nil
		}
		for _, c := range n.Status.Conditions {
			if c.Type == corev1.NodeReady {
				last = fmt.Sprintf("Ready %s at %s", c.Status, c.LastHeartbeatTime.UTC().Format(time.RFC3339))
				return c.Status == corev1.ConditionTrue && !c.LastHeartbeatTime.Time.Before(since.Truncate(time.Second)), nil
			}
		}
		return false, nil
	})
	if err != nil {
		return fmt.Errorf("node %s: no Ready heartbeat from the restarted kubelet within %s (last: %s): %w", node, timeout, last, err)
	}
	return nil
}
