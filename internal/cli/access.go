package cli

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/spf13/cobra"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"kubinception.dev/kubinception/internal/kubeconfig"
)

// authorizeWait is how long `kubeconfig` waits for the operator to
// authorize the current generation (right after a revocation or a new
// tenant) before it gives up.
const authorizeWait = time.Minute

func newKubeconfigCommand() *cobra.Command {
	var f adminFlags
	var ttl time.Duration
	cmd := &cobra.Command{
		Use:   "kubeconfig NAME",
		Short: "Issue a customer kubeconfig for a tenant cluster (cluster-admin, short-lived, revocable)",
		Long: `Issue a customer kubeconfig: a client certificate of the tenant's CA in the
group of the tenant's current customer generation, which the operator binds
to cluster-admin inside the tenant. It expires after --ttl; "kubinception
revoke kubeconfigs NAME" revokes it, with every other one issued so far.`,
		Args: exactlyOneName("cluster"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := kubeconfig.ValidateTTL(ttl); err != nil {
				return err
			}
			c, err := f.client()
			if err != nil {
				return err
			}
			issued, err := kubeconfig.IssueForTenant(cmd.Context(), c, types.NamespacedName{Namespace: f.namespace, Name: args[0]}, ttl, time.Now(), authorizeWait)
			if err != nil {
				return err
			}
			if _, err := cmd.OutOrStdout().Write(issued.Kubeconfig); err != nil {
				return err
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "kubeconfig for %s as %s, valid until %s; kubinception revoke kubeconfigs %s -n %s revokes it\n",
				args[0], issued.User, issued.Cert.NotAfter.UTC().Format(time.RFC3339), args[0], f.namespace)
			return nil
		},
	}
	f.register(cmd)
	cmd.Flags().DurationVar(&ttl, "ttl", kubeconfig.DefaultCustomerTTL,
		fmt.Sprintf("how long the kubeconfig is valid (%s to %s)", kubeconfig.MinCustomerTTL, kubeconfig.MaxCustomerTTL))
	return cmd
}

func newRevokeCommand() *cobra.Command {
	revoke := &cobra.Command{Use: "revoke", Short: "Revoke credentials"}
	var f adminFlags
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:   "kubeconfigs CLUSTER",
		Short: "Revoke every customer kubeconfig of a tenant cluster issued so far",
		Long: `Revoke every customer kubeconfig of a tenant cluster issued so far, the one in
the Secret NAME-admin-kubeconfig included. The command raises the tenant's
customer generation and waits until the operator has moved the tenant's
cluster-admin binding to the new generation's group: from then on every
earlier kubeconfig still authenticates but is refused (403) everything an
unprivileged user could not do.
New kubeconfigs (kubinception kubeconfig CLUSTER) work at once. The
operator's own credential is not a customer credential and keeps working.`,
		Args: exactlyOneName("cluster"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if timeout <= 0 {
				return fmt.Errorf("--timeout %s: want a positive duration", timeout)
			}
			c, err := f.client()
			if err != nil {
				return err
			}
			return revokeKubeconfigs(cmd.Context(), c, types.NamespacedName{Namespace: f.namespace, Name: args[0]}, timeout, cmd.OutOrStdout())
		},
	}
	f.register(cmd)
	cmd.Flags().DurationVar(&timeout, "timeout", 2*time.Minute, "how long to wait for the operator to carry out the revocation")
	revoke.AddCommand(cmd)
	return revoke
}

// revokeKubeconfigs raises the tenant's customer generation (with the
// object's resource version, so two revocations at once both count) and
// waits until the operator has authorized the new generation, which it
// does only once every earlier one is authorized for nothing.
func revokeKubeconfigs(ctx context.Context, c client.Client, key types.NamespacedName, timeout time.Duration, out io.Writer) error {
	next, err := kubeconfig.RaiseGeneration(ctx, c, key)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "customer generation of %s/%s raised to %d; waiting for the operator\n", key.Namespace, key.Name, next)
	authorized := 0
	err = wait.PollUntilContextTimeout(ctx, 250*time.Millisecond, timeout, true, func(ctx context.Context) (bool, error) {
		tc, err := kubeconfig.GetTenant(ctx, c, key)
		if err != nil {
			return false, err
		}
		if _, authorized, err = kubeconfig.Generations(tc); err != nil {
			return false, err
		}
		return authorized >= next, nil
	})
	if wait.Interrupted(err) {
		return fmt.Errorf("timed out after %s: the operator still authorizes generation %d, so earlier kubeconfigs still work; it applies generation %d when it next reconciles %s (is it running? kubectl -n kubinception-system logs deploy/kubinception-manager)",
			timeout, authorized, next, key.Name)
	}
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "✓ every customer kubeconfig of %s issued so far (generations 1 to %d) is revoked: it authenticates but is authorized for nothing\n  new kubeconfigs: kubinception kubeconfig %s -n %s\n",
		key.Name, next-1, key.Name, key.Namespace)
	return nil
}
