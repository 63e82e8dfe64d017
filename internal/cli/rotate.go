package cli

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/spf13/cobra"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"sigs.k8s.io/controller-runtime/pkg/client"

	kv1 "kubinception.dev/kubinception/api/v1alpha1"
	"kubinception.dev/kubinception/internal/controlplane"
	"kubinception.dev/kubinception/internal/objects"
)

// newRotateCommand groups the rotations of a tenant's keys and
// certificates; each one sets an annotation the operator acts on.
func newRotateCommand() *cobra.Command {
	rotate := &cobra.Command{Use: "rotate", Short: "Rotate a tenant cluster's keys"}
	rotate.AddCommand(newRotateEncryptionKeyCommand(), newRotateCertsCommand(), newRotateCACommand())
	return rotate
}

func newRotateEncryptionKeyCommand() *cobra.Command {
	return rotationCommand("encryption-key", "Encrypt the tenant's Secrets with a new key and drop the old one",
		`Asks the operator to rotate the key the tenant's API servers encrypt Secrets
with: the new key is added as a read key and every API server rolled, then it
becomes the write key and every API server rolled again, then every Secret is
rewritten with it through the tenant's API, then the old key is dropped and the
API servers rolled a last time. The tenant serves throughout. With --wait the
command shows each step until the rotation is done.`,
		kv1.AnnotationEncryptionKeyRotation, "encryption key rotation", "encryption",
		"wait until the rotation is done, showing each step",
		15*time.Minute, "how long --wait waits (the API servers roll three times)", waitRotation)
}

// rotationCommand asks the operator for a rotation by setting annotation
// on the tenant; with --wait, wait follows it until it is done. status is
// the status field that reports it.
func rotationCommand(use, short, long, annotation, what, status, waitUsage string, timeout time.Duration, timeoutUsage string,
	wait func(ctx context.Context, c client.Client, key types.NamespacedName, value string, timeout time.Duration, out io.Writer) error) *cobra.Command {
	var f adminFlags
	var waitDone bool
	cmd := &cobra.Command{
		Use:   use + " CLUSTER",
		Short: short,
		Long:  long,
		Args:  exactlyOneName("cluster"),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := f.client()
			if err != nil {
				return err
			}
			key := types.NamespacedName{Namespace: f.namespace, Name: args[0]}
			value, err := requestRotation(cmd.Context(), c, key, annotation)
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			fmt.Fprintf(out, "%s %s requested for %s/%s\n", what, value, key.Namespace, key.Name)
			if !waitDone {
				fmt.Fprintf(out, "  follow it: kubectl get tenantcluster %s -n %s -o jsonpath='{.status.%s}'\n", key.Name, key.Namespace, status)
				return nil
			}
			return wait(cmd.Context(), c, key, value, timeout, out)
		},
	}
	f.register(cmd)
	cmd.Flags().BoolVar(&waitDone, "wait", false, waitUsage)
	cmd.Flags().DurationVar(&timeout, "timeout", timeout, timeoutUsage)
	return cmd
}

// requestRotation sets a rotation annotation on the tenant to a new value,
// the time, and returns it.
func requestRotation(ctx context.Context, c client.Client, key types.NamespacedName, annotation string) (string, error) {
	value := time.Now().UTC().Format(time.RFC3339Nano)
	patch := []byte(fmt.Sprintf(`{"metadata":{"annotations":{%q:%q}}}`, annotation, value))
	err := c.Patch(ctx, &kv1.TenantCluster{ObjectMeta: metav1.ObjectMeta{Name: key.Name, Namespace: key.Namespace}}, client.RawPatch(types.MergePatchType, patch))
	if err != nil {
		return "", clusterError(err, key.Namespace, key.Name)
	}
	return value, nil
}

// waitRotation prints every step of the encryption key rotation answering
// value until it is done.
func waitRotation(ctx context.Context, c client.Client, key types.NamespacedName, value string, timeout time.Duration, out io.Writer) error {
	start := time.Now()
	last := ""
	tc := &kv1.TenantCluster{}
	err := wait.PollUntilContextTimeout(ctx, time.Second, timeout, true, func(ctx context.Context) (bool, error) {
		if err := c.Get(ctx, key, tc); err != nil {
			return false, err
		}
		st := tc.Status.Encryption
		cond := meta.FindStatusCondition(tc.Status.Conditions, kv1.ConditionSecretsEncrypted)
		line := string(st.Phase)
		if cond != nil {
			line += ": " + cond.Message
		}
		if st.ObservedRotation == value && line != last {
			last = line
			fmt.Fprintf(out, "[%5.1fs] %s\n", time.Since(start).Seconds(), line)
		}
		return st.ObservedRotation == value && st.Phase == kv1.EncryptionIdle, nil
	})
	if wait.Interrupted(err) {
		return fmt.Errorf("timed out after %s waiting for the rotation of %s: status.encryption %+v", timeout, key.Name, tc.Status.Encryption)
	}
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "\nSecrets of %s are encrypted with key %s (%d rewritten) after %.1fs\n", key.Name, tc.Status.Encryption.KeyName, tc.Status.Encryption.SecretsRewritten, time.Since(start).Seconds())
	return nil
}

func newRotateCertsCommand() *cobra.Command {
	return rotationCommand("certs", "Reissue every leaf certificate of a tenant now",
		`Asks the operator to reissue every leaf certificate it holds for the tenant
(the API server's serving and client certificates, the front-proxy client,
the controller manager's and scheduler's kubeconfigs, the tunnel's, the
datastore client's and the customer kubeconfig's) from the tenant's current
CAs; the control plane rolls one pod at a time and keeps a ready API server.
The CAs and the nodes' certificates stay: nothing outside the admin cluster
notices. The operator also does this on its own two thirds into each
certificate's life (spec.certificates.validity). With --wait the command
returns once every control-plane pod runs the new certificates.`,
		kv1.AnnotationCertificateRotation, "certificate rotation", "certificates",
		"wait until every control-plane pod runs the new certificates",
		10*time.Minute, "how long --wait waits", waitCertRotation)
}

// waitCertRotation waits until the operator has reissued the certificates
// for the request value and the control-plane Deployment runs them: its
// pod template carries the PKI Secret's current hash and every replica is
// updated and available.
func waitCertRotation(ctx context.Context, c client.Client, key types.NamespacedName, value string, timeout time.Duration, out io.Writer) error {
	start := time.Now()
	state := "waiting for the operator"
	last := ""
	err := wait.PollUntilContextTimeout(ctx, time.Second, timeout, true, func(ctx context.Context) (bool, error) {
		done, s, err := certRotationState(ctx, c, key, value)
		if err != nil {
			return false, err
		}
		state = s
		if s != last {
			last = s
			fmt.Fprintf(out, "[%5.1fs] %s\n", time.Since(start).Seconds(), s)
		}
		return done, nil
	})
	if wait.Interrupted(err) {
		return fmt.Errorf("timed out after %s waiting for the certificate rotation of %s: %s", timeout, key.Name, state)
	}
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "\ncertificates of %s reissued and rolled out after %.1fs\n", key.Name, time.Since(start).Seconds())
	return nil
}

// certRotationState says whether the rotation answering value is done,
// and where it stands.
func certRotationState(ctx context.Context, c client.Client, key types.NamespacedName, value string) (bool, string, error) {
	tc := &kv1.TenantCluster{}
	if err := c.Get(ctx, key, tc); err != nil {
		return false, "", err
	}
	if tc.Status.Certificates.ObservedRotation != value {
		return false, "waiting for the operator to reissue the certificates", nil
	}
	secret := &corev1.Secret{}
	if err := c.Get(ctx, types.NamespacedName{Namespace: key.Namespace, Name: controlplane.PKISecretName(key.Name)}, secret); err != nil {
		return false, "", err
	}
	dep := &appsv1.Deployment{}
	if err := c.Get(ctx, types.NamespacedName{Namespace: key.Namespace, Name: controlplane.DeploymentName(key.Name)}, dep); err != nil {
		return false, "", err
	}
	if dep.Spec.Template.Annotations[controlplane.AnnotationPKIHash] != objects.HashData(secret.Data) {
		return false, "certificates reissued; waiting for the control plane to be given them", nil
	}
	want := int32(1)
	if dep.Spec.Replicas != nil {
		want = *dep.Spec.Replicas
	}
	st := dep.Status
	if st.ObservedGeneration < dep.Generation || st.UpdatedReplicas < want || st.Replicas > st.UpdatedReplicas || st.AvailableReplicas < want {
		return false, fmt.Sprintf("control plane rolling: %d/%d pods updated, %d available, %d in all", st.UpdatedReplicas, want, st.AvailableReplicas, st.Replicas), nil
	}
	return true, fmt.Sprintf("every control-plane pod (%d) runs the new certificates", want), nil
}
