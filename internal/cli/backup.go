package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"sigs.k8s.io/controller-runtime/pkg/client"

	kv1 "kubinception.dev/kubinception/api/v1alpha1"
)

// newBackupCommand groups the backups of one tenant cluster.
func newBackupCommand() *cobra.Command {
	b := &cobra.Command{Use: "backup", Short: "Back up a tenant cluster, list its backups, roll it back to one"}
	b.AddCommand(newBackupCreateCommand(), newBackupListCommand(), newBackupRestoreCommand())
	return b
}

func newBackupCreateCommand() *cobra.Command {
	var f adminFlags
	var name, target string
	var waitDone bool
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:   "create CLUSTER",
		Short: "Copy a tenant cluster's state to the backup target",
		Long: `Creates a TenantBackup: the operator copies every object of the tenant, as it
was at one datastore revision, through the Datastore's gateway into the
platform's backup target, encrypted to the platform's backup key. The tenant
keeps serving and writing meanwhile. --target picks the operator's volume or
its S3 bucket (default: the volume when it has one). With --wait (the default) the command
waits until the copy is done and prints its size.`,
		Args: exactlyOneName("cluster"),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := f.client()
			if err != nil {
				return err
			}
			if name == "" {
				name = args[0] + "-" + time.Now().UTC().Format("20060102-150405")
			}
			var kind kv1.BackupTarget
			switch strings.ToLower(target) {
			case "":
			case "volume":
				kind = kv1.BackupTargetVolume
			case "s3":
				kind = kv1.BackupTargetS3
			default:
				return fmt.Errorf("--target %q: give volume or s3", target)
			}
			tb := &kv1.TenantBackup{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: f.namespace}, Spec: kv1.TenantBackupSpec{Cluster: args[0], Target: kind}}
			if err := c.Get(cmd.Context(), types.NamespacedName{Namespace: f.namespace, Name: args[0]}, &kv1.TenantCluster{}); err != nil {
				return clusterError(err, f.namespace, args[0])
			}
			if err := c.Create(cmd.Context(), tb); err != nil {
				if apierrors.IsAlreadyExists(err) {
					return fmt.Errorf("a TenantBackup %s/%s already exists: choose another --name", f.namespace, name)
				}
				return clusterError(err, f.namespace, args[0])
			}
			out := cmd.OutOrStdout()
			fmt.Fprintf(out, "backup %s/%s of %s requested\n", f.namespace, name, args[0])
			if !waitDone {
				fmt.Fprintf(out, "  follow it: kubectl get tenantbackup %s -n %s\n", name, f.namespace)
				return nil
			}
			return waitBackup(cmd.Context(), c, client.ObjectKeyFromObject(tb), timeout, out)
		},
	}
	f.register(cmd)
	cmd.Flags().StringVar(&name, "name", "", "name of the TenantBackup (default: CLUSTER-<UTC time>)")
	cmd.Flags().StringVar(&target, "target", "", "where the archive is kept: volume or s3 (default: the operator's volume when it has one, else s3)")
	cmd.Flags().BoolVar(&waitDone, "wait", true, "wait until the copy is done")
	cmd.Flags().DurationVar(&timeout, "timeout", 30*time.Minute, "how long --wait waits")
	return cmd
}

// clusterError says what a failed call on a tenant cluster's objects
// means: the cluster does not exist, or kubinception is not installed.
func clusterError(err error, namespace, name string) error {
	switch {
	case apierrors.IsNotFound(err) && name != "":
		return fmt.Errorf("tenant cluster %s/%s does not exist (kubinception get clusters lists them)", namespace, name)
	case meta.IsNoMatchError(err):
		return errors.New("the admin cluster has no kubinception API (TenantCluster, TenantBackup): run kubinception install first")
	}
	return err
}

// waitBackup waits until the backup is done, and fails with its message
// when it failed.
func waitBackup(ctx context.Context, c client.Client, key types.NamespacedName, timeout time.Duration, out io.Writer) error {
	start := time.Now()
	tb := &kv1.TenantBackup{}
	err := wait.PollUntilContextTimeout(ctx, 500*time.Millisecond, timeout, true, func(ctx context.Context) (bool, error) {
		if err := c.Get(ctx, key, tb); err != nil {
			return false, err
		}
		return tb.Status.Phase == kv1.BackupCompleted || tb.Status.Phase == kv1.BackupFailed, nil
	})
	if wait.Interrupted(err) {
		return fmt.Errorf("timed out after %s waiting for backup %s: phase %q, %s", timeout, key.Name, tb.Status.Phase, tb.Status.Message)
	}
	if err != nil {
		return err
	}
	if tb.Status.Phase == kv1.BackupFailed {
		return fmt.Errorf("backup %s failed: %s", key.Name, tb.Status.Message)
	}
	st := tb.Status
	fmt.Fprintf(out, "backup %s: %d objects at revision %d, %s stored at %s, after %.1fs\n",
		key.Name, st.Objects, st.Revision, size(st.ArchiveBytes), st.Location, time.Since(start).Seconds())
	return nil
}

func size(n int64) string { return resource.NewQuantity(n, resource.BinarySI).String() + "B" }

func newBackupListCommand() *cobra.Command {
	var f adminFlags
	cmd := &cobra.Command{
		Use:   "list CLUSTER",
		Short: "List a tenant cluster's backups, oldest first",
		Args:  exactlyOneName("cluster"),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := f.client()
			if err != nil {
				return err
			}
			list := &kv1.TenantBackupList{}
			if err := c.List(cmd.Context(), list, client.InNamespace(f.namespace)); err != nil {
				return clusterError(err, f.namespace, args[0])
			}
			w := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(w, "NAME\tPHASE\tOBJECTS\tSIZE\tREVISION\tTARGET\tSCHEDULED\tCREATED\tMESSAGE")
			n := 0
			for _, tb := range sortedBackups(list.Items) {
				if tb.Spec.Cluster != args[0] {
					continue
				}
				n++
				st := tb.Status
				scheduled := "-"
				if tb.Labels[kv1.LabelBackupSchedule] != "" {
					scheduled = "yes"
				}
				fmt.Fprintf(w, "%s\t%s\t%d\t%s\t%d\t%s\t%s\t%s\t%s\n", tb.Name, st.Phase, st.Objects, size(st.ArchiveBytes), st.Revision,
					orDash(string(st.Target)), scheduled, tb.CreationTimestamp.UTC().Format(time.RFC3339), st.Message)
			}
			if err := w.Flush(); err != nil {
				return err
			}
			if n == 0 {
				fmt.Fprintf(cmd.ErrOrStderr(), "no backups of %s/%s (kubinception backup create %s makes one)\n", f.namespace, args[0], args[0])
			}
			return nil
		},
	}
	f.register(cmd)
	return cmd
}

// sortedBackups orders backups oldest first, by name within a second.
func sortedBackups(items []kv1.TenantBackup) []kv1.TenantBackup {
	out := slices.Clone(items)
	slices.SortFunc(out, func(a, b kv1.TenantBackup) int {
		if c := a.CreationTimestamp.Time.Compare(b.CreationTimestamp.Time); c != 0 {
			return c
		}
		return strings.Compare(a.Name, b.Name)
	})
	return out
}

func newBackupRestoreCommand() *cobra.Command {
	var f adminFlags
	var waitDone bool
	var timeout time.Duration
	var into string
	cmd := &cobra.Command{
		Use:   "restore BACKUP [--into NEW-CLUSTER]",
		Short: "Roll the backed-up tenant cluster back to a backup, or clone the backup into a new cluster",
		Long: `Creates a TenantRestore: the operator pauses the backup's TenantCluster, stops
its control plane, replaces every object of the tenant with the backup's, and
resumes the cluster, whose API servers start on the restored state. Objects
written after the backup are gone and objects deleted after it are back; the
tenant's API is down while its keys are replaced. Joined nodes keep running
and reconcile with the restored objects.

With --into NEW-CLUSTER the backup is cloned instead: a new TenantCluster of
that name is created paused, with the spec of the backed-up cluster (without
its hostname), receives the backup's objects and encryption keys, and starts
with its own certificates. The backed-up cluster is not touched. Nodes are not
cloned: the clone's Node objects are those of the source and go NotReady.

With --wait (the default) the command waits until the cluster is resumed.`,
		Args: exactlyOneName("backup"),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := f.client()
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			tb := &kv1.TenantBackup{}
			if err := c.Get(ctx, types.NamespacedName{Namespace: f.namespace, Name: args[0]}, tb); err != nil {
				if apierrors.IsNotFound(err) {
					return fmt.Errorf("backup %s/%s does not exist (kubinception backup list CLUSTER lists them)", f.namespace, args[0])
				}
				return clusterError(err, f.namespace, args[0])
			}
			if tb.Status.Phase != kv1.BackupCompleted {
				return fmt.Errorf("backup %s is %s, not Completed: only a completed backup can be restored", args[0], tb.Status.Phase)
			}
			out := cmd.OutOrStdout()
			name := args[0] + "-restore-" + time.Now().UTC().Format("20060102-150405")
			tr := &kv1.TenantRestore{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: f.namespace}, Spec: kv1.TenantRestoreSpec{Backup: args[0]}}
			if into != "" && into != tb.Spec.Cluster {
				if err := createCloneTarget(ctx, c, tb, into); err != nil {
					return err
				}
				tr.Spec.Cluster = into
				fmt.Fprintf(out, "tenant cluster %s/%s created paused, with the spec of %s\n", f.namespace, into, tb.Spec.Cluster)
			}
			if err := c.Create(ctx, tr); err != nil {
				return clusterError(err, f.namespace, tb.Spec.Cluster)
			}
			if tr.Spec.Cluster != "" {
				fmt.Fprintf(out, "restore %s/%s of backup %s (revision %d) into %s requested\n", f.namespace, name, args[0], tb.Status.Revision, into)
			} else {
				fmt.Fprintf(out, "restore %s/%s of %s to backup %s (revision %d) requested\n", f.namespace, name, tb.Spec.Cluster, args[0], tb.Status.Revision)
			}
			if !waitDone {
				fmt.Fprintf(out, "  follow it: kubectl get tenantrestore %s -n %s\n", name, f.namespace)
				return nil
			}
			return waitRestore(ctx, c, client.ObjectKeyFromObject(tr), timeout, out)
		},
	}
	f.register(cmd)
	cmd.Flags().BoolVar(&waitDone, "wait", true, "wait until the cluster is resumed on the restored state")
	cmd.Flags().StringVar(&into, "into", "", "clone the backup into a new tenant cluster of this name instead of rolling its cluster back")
	cmd.Flags().DurationVar(&timeout, "timeout", 30*time.Minute, "how long --wait waits")
	return cmd
}

// waitRestore prints every phase of the restore until it is over.
func waitRestore(ctx context.Context, c client.Client, key types.NamespacedName, timeout time.Duration, out io.Writer) error {
	start := time.Now()
	tr := &kv1.TenantRestore{}
	last := kv1.TenantRestorePhase("")
	err := wait.PollUntilContextTimeout(ctx, 500*time.Millisecond, timeout, true, func(ctx context.Context) (bool, error) {
		if err := c.Get(ctx, key, tr); err != nil {
			return false, err
		}
		if tr.Status.Phase != last {
			last = tr.Status.Phase
			fmt.Fprintf(out, "[%5.1fs] %s %s\n", time.Since(start).Seconds(), last, tr.Status.Message)
		}
		return tr.Status.Phase == kv1.RestoreCompleted || tr.Status.Phase == kv1.RestoreFailed, nil
	})
	if wait.Interrupted(err) {
		return fmt.Errorf("timed out after %s waiting for restore %s: phase %q, %s", timeout, key.Name, tr.Status.Phase, tr.Status.Message)
	}
	if err != nil {
		return err
	}
	if tr.Status.Phase == kv1.RestoreFailed {
		return fmt.Errorf("restore %s failed: %s", key.Name, tr.Status.Message)
	}
	done := "rolled back"
	if tr.Status.Clone {
		done = "cloned"
	}
	fmt.Fprintf(out, "%s %s: %d objects written back, after %.1fs\n", tr.Status.Cluster, done, tr.Status.Objects, time.Since(start).Seconds())
	return nil
}

// createCloneTarget creates the TenantCluster a backup is cloned into:
// paused, with the spec of the backed-up cluster less what names it (its
// hostname). A cluster of that name that already exists is used only if
// it is paused; the restore checks that it never ran.
func createCloneTarget(ctx context.Context, c client.Client, tb *kv1.TenantBackup, name string) error {
	existing := &kv1.TenantCluster{}
	err := c.Get(ctx, types.NamespacedName{Namespace: tb.Namespace, Name: name}, existing)
	switch {
	case err == nil && existing.Spec.Paused:
		return nil
	case err == nil:
		return fmt.Errorf("--into: tenant cluster %s/%s already exists and is not paused: a clone goes into a new cluster; choose another name", tb.Namespace, name)
	case !apierrors.IsNotFound(err):
		return clusterError(err, tb.Namespace, name)
	}
	src := &kv1.TenantCluster{}
	if err := c.Get(ctx, types.NamespacedName{Namespace: tb.Namespace, Name: tb.Spec.Cluster}, src); err != nil {
		if apierrors.IsNotFound(err) {
			return fmt.Errorf("--into: the backed-up cluster %s/%s no longer exists to copy its spec from: create %s yourself with spec.paused: true, then a TenantRestore with spec.backup %s and spec.cluster %s",
				tb.Namespace, tb.Spec.Cluster, name, tb.Name, name)
		}
		return clusterError(err, tb.Namespace, tb.Spec.Cluster)
	}
	spec := *src.Spec.DeepCopy()
	spec.Paused = true
	spec.Exposure.Hostname = ""
	tc := &kv1.TenantCluster{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: tb.Namespace}, Spec: spec}
	if err := c.Create(ctx, tc); err != nil {
		if apierrors.IsInvalid(err) {
			return fmt.Errorf("--into %s: %w", name, err)
		}
		return clusterError(err, tb.Namespace, name)
	}
	return nil
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
