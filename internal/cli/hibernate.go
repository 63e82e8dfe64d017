package cli

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/spf13/cobra"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"sigs.k8s.io/controller-runtime/pkg/client"

	kv1 "kubinception.dev/kubinception/api/v1alpha1"
)

func newHibernateCommand() *cobra.Command {
	return hibernationCommand("hibernate", "Scale a tenant's control plane to zero, keeping its state in the datastore (spec.hibernation.enabled must be true)",
		kv1.AnnotationHibernateRequested, true)
}

func newWakeCommand() *cobra.Command {
	return hibernationCommand("wake", "Wake a hibernated tenant (a request through the front door wakes it too)", kv1.AnnotationWakeRequested, false)
}

// hibernationCommand asks the operator to hibernate or wake a tenant by
// setting the request annotation to now; with --wait it waits until
// status says the tenant is in that state (and, woken, Ready).
func hibernationCommand(use, short, annotation string, hibernate bool) *cobra.Command {
	var f adminFlags
	var waitFor bool
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:   use + " CLUSTER",
		Short: short,
		Args:  exactlyOneName("cluster"),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := f.client()
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			key := types.NamespacedName{Namespace: f.namespace, Name: args[0]}
			tc := &kv1.TenantCluster{}
			if err := c.Get(ctx, key, tc); err != nil {
				return fmt.Errorf("tenant cluster %s: %w", key, err)
			}
			if hibernate && !tc.Spec.Hibernation.Enabled {
				return fmt.Errorf("tenant cluster %s does not allow hibernation: set spec.hibernation.enabled to true (kubectl patch tenantcluster %s -n %s --type merge -p '{\"spec\":{\"hibernation\":{\"enabled\":true}}}')", key, key.Name, key.Namespace)
			}
			now := time.Now()
			patch := client.MergeFrom(tc.DeepCopy())
			if tc.Annotations == nil {
				tc.Annotations = map[string]string{}
			}
			tc.Annotations[annotation] = now.UTC().Format(time.RFC3339Nano)
			if err := c.Patch(ctx, tc, patch); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "asked tenant cluster %s to %s\n", key, use)
			if !waitFor {
				return nil
			}
			return waitHibernation(ctx, c, key, hibernate, now, timeout, cmd.OutOrStdout())
		},
	}
	f.register(cmd)
	cmd.Flags().BoolVar(&waitFor, "wait", false, "wait until the tenant is in that state")
	cmd.Flags().DurationVar(&timeout, "timeout", 3*time.Minute, "how long --wait waits")
	return cmd
}

// waitHibernation waits until status says the tenant entered the state
// after the request (woken: and Ready again).
func waitHibernation(ctx context.Context, c client.Client, key types.NamespacedName, hibernated bool, asked time.Time, timeout time.Duration, out io.Writer) error {
	start := time.Now()
	err := wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, timeout, true, func(ctx context.Context) (bool, error) {
		tc := &kv1.TenantCluster{}
		if err := c.Get(ctx, key, tc); err != nil {
			return false, nil
		}
		h := tc.Status.Hibernation
		if h.Hibernated != hibernated || h.Since == nil || h.Since.Time.Before(asked.Add(-time.Second)) {
			return false, nil
		}
		return hibernated || meta.IsStatusConditionTrue(tc.Status.Conditions, kv1.ConditionReady), nil
	})
	if err != nil {
		return fmt.Errorf("tenant cluster %s did not get there within %s (kubinception get clusters and its events show why): %w", key, timeout, err)
	}
	state := "awake and Ready"
	if hibernated {
		state = "hibernated"
	}
	fmt.Fprintf(out, "tenant cluster %s is %s (%.1fs)\n", key, state, time.Since(start).Seconds())
	return nil
}
