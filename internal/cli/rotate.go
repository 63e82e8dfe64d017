package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/spf13/cobra"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"sigs.k8s.io/controller-runtime/pkg/client"

	kv1 "kubinception.dev/kubinception/api/v1alpha1"
)

// newRotateCommand groups the rotations of a tenant's keys and
// certificates; each one sets an annotation the operator acts on.
func newRotateCommand() *cobra.Command {
	rotate := &cobra.Command{Use: "rotate", Short: "Rotate a tenant cluster's keys"}
	rotate.AddCommand(newRotateEncryptionKeyCommand())
	return rotate
}

func newRotateEncryptionKeyCommand() *cobra.Command {
	var f adminFlags
	var waitDone bool
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:   "encryption-key CLUSTER",
		Short: "Encrypt the tenant's Secrets with a new key and drop the old one",
		Long: `Asks the operator to rotate the key the tenant's API servers encrypt Secrets
with: the new key is added as a read key and every API server rolled, then it
becomes the write key and every API server rolled again, then every Secret is
rewritten with it through the tenant's API, then the old key is dropped and the
API servers rolled a last time. The tenant serves throughout. With --wait the
command shows each step until the rotation is done.`,
		Args: exactlyOneName("cluster"),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := f.client()
			if err != nil {
				return err
			}
			key := types.NamespacedName{Namespace: f.namespace, Name: args[0]}
			value, err := requestRotation(cmd.Context(), c, key, kv1.AnnotationEncryptionKeyRotation)
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			fmt.Fprintf(out, "encryption key rotation %s requested for %s/%s\n", value, key.Namespace, key.Name)
			if !waitDone {
				fmt.Fprintf(out, "  follow it: kubectl get tenantcluster %s -n %s -o jsonpath='{.status.encryption}'\n", key.Name, key.Namespace)
				return nil
			}
			return waitRotation(cmd.Context(), c, key, value, timeout, out)
		},
	}
	f.register(cmd)
	cmd.Flags().BoolVar(&waitDone, "wait", false, "wait until the rotation is done, showing each step")
	cmd.Flags().DurationVar(&timeout, "timeout", 15*time.Minute, "how long --wait waits (the API servers roll three times)")
	return cmd
}

// requestRotation sets a rotation annotation on the tenant to a new value,
// the time, and returns it.
func requestRotation(ctx context.Context, c client.Client, key types.NamespacedName, annotation string) (string, error) {
	value := time.Now().UTC().Format(time.RFC3339Nano)
	patch := []byte(fmt.Sprintf(`{"metadata":{"annotations":{%q:%q}}}`, annotation, value))
	err := c.Patch(ctx, &kv1.TenantCluster{ObjectMeta: metav1.ObjectMeta{Name: key.Name, Namespace: key.Namespace}}, client.RawPatch(types.MergePatchType, patch))
	switch {
	case apierrors.IsNotFound(err):
		return "", fmt.Errorf("tenant cluster %s/%s does not exist (kubinception get clusters lists them)", key.Namespace, key.Name)
	case meta.IsNoMatchError(err):
		return "", errors.New("the admin cluster has no TenantCluster API: run kubinception install first")
	case err != nil:
		return "", err
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
