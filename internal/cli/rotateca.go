package cli

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"sigs.k8s.io/controller-runtime/pkg/client"

	kv1 "kubinception.dev/kubinception/api/v1alpha1"
	"kubinception.dev/kubinception/internal/join"
	"kubinception.dev/kubinception/internal/local/admincluster"
	"kubinception.dev/kubinception/internal/local/worker"
	"kubinception.dev/kubinception/internal/nodeca"
)

func newRotateCACommand() *cobra.Command {
	var f adminFlags
	var waitDone, force bool
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:   "ca CLUSTER start|complete",
		Short: "Rotate a tenant's CAs and service-account key with overlap: start, move the nodes, complete",
		Long: `start: the operator mints a new cluster CA, front-proxy CA and service-account
signing key beside the old ones. Every API server trusts both CAs and both
keys, kube-public/cluster-info and kube-root-ca.crt carry both, every
certificate the control plane presents to itself is reissued from the new CA,
and the controller manager signs kubelet certificates with it. The API
server's serving certificate stays with the old CA, so nodes and kubeconfigs
that know only the old CA keep working. Phase Prepared says it is done.

Then move the nodes (kubinception node rotate-ca for local workers, the steps
in docs/operations.md for other machines) and hand out new kubeconfigs.

complete: refused while a node still holds a client certificate of the old CA
(status.certificates.caRotation.pendingNodes), unless --force. The old CAs and
key leave every bundle; certificates they issued are refused.

Both steps are idempotent; the operator also follows the annotation
kubinception.dev/ca-rotation (start, complete, force-complete).`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) != 2 || (args[1] != "start" && args[1] != "complete") {
				return fmt.Errorf("give the cluster and start or complete, e.g. %s demo start", cmd.CommandPath())
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := f.client()
			if err != nil {
				return err
			}
			key := types.NamespacedName{Namespace: f.namespace, Name: args[0]}
			tc := &kv1.TenantCluster{}
			if err := c.Get(cmd.Context(), key, tc); err != nil {
				return clusterError(err, key.Namespace, key.Name)
			}
			value, want := kv1.CARotationStart, kv1.CARotationPrepared
			if args[1] == "complete" {
				if err := checkCompletable(tc.Status.Certificates.CARotation, force); err != nil {
					return err
				}
				value, want = kv1.CARotationComplete, kv1.CARotationCompleted
				if force {
					value = kv1.CARotationForceComplete
				}
			}
			out := cmd.OutOrStdout()
			if st := tc.Status.Certificates.CARotation; st != nil && st.Phase == want && tc.Annotations[kv1.AnnotationCARotation] == value {
				fmt.Fprintf(out, "the CA rotation of %s/%s is already %s (since %s)\n", key.Namespace, key.Name, want, st.LastTransitionTime)
				return nil
			}
			patch := []byte(fmt.Sprintf(`{"metadata":{"annotations":{%q:%q}}}`, kv1.AnnotationCARotation, value))
			if err := c.Patch(cmd.Context(), &kv1.TenantCluster{ObjectMeta: metav1.ObjectMeta{Name: key.Name, Namespace: key.Namespace}}, client.RawPatch(types.MergePatchType, patch)); err != nil {
				return clusterError(err, key.Namespace, key.Name)
			}
			fmt.Fprintf(out, "CA rotation %s requested for %s/%s\n", args[1], key.Namespace, key.Name)
			if !waitDone {
				fmt.Fprintf(out, "  follow it: kubectl get tenantcluster %s -n %s -o jsonpath='{.status.certificates.caRotation}'\n", key.Name, key.Namespace)
				return nil
			}
			return waitCARotation(cmd.Context(), c, key, want, time.Now(), timeout, out)
		},
	}
	f.register(cmd)
	cmd.Flags().BoolVar(&waitDone, "wait", false, "wait until the phase is reached (Prepared after start, Completed after complete), showing each one")
	cmd.Flags().BoolVar(&force, "force", false, "complete even while nodes hold client certificates of the old CA: they are cut off and must re-join")
	cmd.Flags().DurationVar(&timeout, "timeout", 10*time.Minute, "how long --wait waits (the control plane rolls once per step)")
	return cmd
}

// checkCompletable refuses a complete that has nothing to complete, or,
// without force, one that would cut nodes off.
func checkCompletable(st *kv1.CARotationStatus, force bool) error {
	if st == nil || st.Phase == "" {
		return fmt.Errorf("no CA rotation was started: run start first")
	}
	switch st.Phase {
	case kv1.CARotationCompleting, kv1.CARotationCompleted:
		return nil
	case kv1.CARotationPreparing:
		if !force {
			return fmt.Errorf("the CA rotation is still Preparing (the control plane rolls to trust both CAs): wait for Prepared, then move the nodes")
		}
	}
	if len(st.PendingNodes) > 0 && !force {
		return fmt.Errorf("refusing to complete: %d node(s) still hold a client certificate of the old CA and would be cut off: %s; move them with kubinception node rotate-ca (local workers) or the steps in docs/operations.md, or pass --force",
			len(st.PendingNodes), strings.Join(st.PendingNodes, ", "))
	}
	return nil
}

// checkNodeMovable refuses to move a node while the controller manager
// may still sign with the old CA: before start, and while Preparing.
// After complete it is allowed: it leaves the node trusting the new CA
// alone.
func checkNodeMovable(st *kv1.CARotationStatus) error {
	if st == nil || (st.Phase != kv1.CARotationPrepared && st.Phase != kv1.CARotationCompleted) {
		phase := "none"
		if st != nil {
			phase = string(st.Phase)
		}
		return fmt.Errorf("no CA rotation is Prepared (phase %s): nodes move once kubinception rotate ca CLUSTER start --wait has returned", phase)
	}
	return nil
}

// waitCARotation prints the rotation's phases until it reaches want with
// a transition after since.
func waitCARotation(ctx context.Context, c client.Client, key types.NamespacedName, want kv1.CARotationPhase, since time.Time, timeout time.Duration, out io.Writer) error {
	start := time.Now()
	last := ""
	tc := &kv1.TenantCluster{}
	err := wait.PollUntilContextTimeout(ctx, time.Second, timeout, true, func(ctx context.Context) (bool, error) {
		if err := c.Get(ctx, key, tc); err != nil {
			return false, err
		}
		st := tc.Status.Certificates.CARotation
		if st == nil {
			return false, nil
		}
		line := string(st.Phase) + ": " + st.Message
		if line != last {
			last = line
			fmt.Fprintf(out, "[%5.1fs] %s\n", time.Since(start).Seconds(), line)
		}
		return st.Phase == want && st.LastTransitionTime != nil && !st.LastTransitionTime.Time.Before(since.Truncate(time.Second)), nil
	})
	if wait.Interrupted(err) {
		return fmt.Errorf("timed out after %s waiting for phase %s of the CA rotation of %s (last: %s)", timeout, want, key.Name, last)
	}
	return err
}

// newNodeRotateCACommand moves a node to the tenant's new CA.
func newNodeRotateCACommand(root *string) *cobra.Command {
	var f adminFlags
	var thisMachine bool
	var restart string
	cmd := &cobra.Command{
		Use:   "rotate-ca [CLUSTER NODE]",
		Short: "Move a node's kubelet to the tenant's new CA during a CA rotation, without re-joining; its pods keep running",
		Long: `With CLUSTER and NODE: a local worker. With --this-machine, no arguments: the
machine this runs on, as root (a real node joined with kubeadm): it reads the
bundle from kube-public/cluster-info (anonymously, trusting what the kubelet
trusts), obtains new certificates with the kubelet's own credentials, and
restarts the kubelet with --restart-command.

Either way: the bundle goes into /etc/kubernetes/kubelet.conf and
/etc/kubernetes/pki/ca.crt, the kubelet gets a client and a serving
certificate of the new CA, and the kubelet alone restarts.`,
		Args: func(cmd *cobra.Command, args []string) error {
			if thisMachine && len(args) == 0 || !thisMachine && len(args) == 2 {
				return nil
			}
			return fmt.Errorf("give the cluster and the node of a local worker (e.g. %s demo demo-w1), or --this-machine alone", cmd.CommandPath())
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := admincluster.RequireRoot("kubinception node rotate-ca"); err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if thisMachine {
				return rotateThisMachine(cmd.Context(), restart, out)
			}
			w, err := worker.Layout{Root: *root}.Find(f.namespace+"/"+args[0], args[1])
			if err != nil {
				return err
			}
			c, err := f.client()
			if err != nil {
				return err
			}
			tc := &kv1.TenantCluster{}
			if err := c.Get(cmd.Context(), types.NamespacedName{Namespace: f.namespace, Name: args[0]}, tc); err != nil {
				return clusterError(err, f.namespace, args[0])
			}
			if err := checkNodeMovable(tc.Status.Certificates.CARotation); err != nil {
				return err
			}
			access, err := join.ForTenant(cmd.Context(), c, f.namespace, args[0])
			if err != nil {
				return err
			}
			key := types.NamespacedName{Namespace: f.namespace, Name: args[0]}
			nudge := func(ctx context.Context) {
				patch := []byte(fmt.Sprintf(`{"metadata":{"annotations":{%q:%q}}}`, kv1.AnnotationNudge, time.Now().UTC().Format(time.RFC3339Nano)))
				_ = c.Patch(ctx, &kv1.TenantCluster{ObjectMeta: metav1.ObjectMeta{Name: key.Name, Namespace: key.Namespace}}, client.RawPatch(types.MergePatchType, patch))
			}
			return worker.RotateCA(cmd.Context(), w, access.Clientset, nudge, out)
		},
	}
	f.register(cmd)
	cmd.Flags().BoolVar(&thisMachine, "this-machine", false, "move the machine this runs on (a node joined with kubeadm), not a local worker")
	cmd.Flags().StringVar(&restart, "restart-command", "systemctl restart kubelet", "with --this-machine: how the kubelet is restarted")
	return cmd
}

// rotateThisMachine moves the machine it runs on.
func rotateThisMachine(ctx context.Context, restart string, out io.Writer) error {
	anon, err := nodeca.AnonymousClient(nodeca.StandardPaths.KubeletConf)
	if err != nil {
		return err
	}
	bundle, err := nodeca.Bundle(ctx, anon)
	if err != nil {
		return err
	}
	node, err := nodeNameFromKubelet()
	if err != nil {
		return err
	}
	return nodeca.Move(ctx, nodeca.Options{Node: node, Paths: nodeca.StandardPaths, Bundle: bundle, Out: out,
		Restart: func(ctx context.Context) error {
			fields := strings.Fields(restart)
			if len(fields) == 0 {
				return fmt.Errorf("--restart-command is empty")
			}
			b, err := exec.CommandContext(ctx, fields[0], fields[1:]...).CombinedOutput()
			if err != nil {
				return fmt.Errorf("%s: %w: %s", restart, err, b)
			}
			return nil
		}})
}

// nodeNameFromKubelet is the node name in the kubelet's client
// certificate (system:node:NAME).
func nodeNameFromKubelet() (string, error) {
	data, err := os.ReadFile(filepath.Join(nodeca.StandardPaths.PKIDir, "kubelet-client-current.pem"))
	if err != nil {
		return "", err
	}
	certs, err := nodeca.ParseCerts(data)
	if err != nil {
		return "", err
	}
	name, ok := strings.CutPrefix(certs[0].Subject.CommonName, "system:node:")
	if !ok {
		return "", fmt.Errorf("the kubelet's client certificate names %q, not a node", certs[0].Subject.CommonName)
	}
	return name, nil
}
