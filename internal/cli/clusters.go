package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/client"

	kv1 "kubinception.dev/kubinception/api/v1alpha1"
	"kubinception.dev/kubinception/internal/local/admincluster"
	"kubinception.dev/kubinception/internal/release"
	"kubinception.dev/kubinception/internal/scheme"
)

// adminFlags locate the admin cluster.
type adminFlags struct {
	kubeconfig string
	namespace  string
}

func (f *adminFlags) register(cmd *cobra.Command) {
	cmd.Flags().StringVar(&f.kubeconfig, "kubeconfig", "", "admin cluster kubeconfig (default: $KUBECONFIG, else the local admin cluster's)")
	cmd.Flags().StringVarP(&f.namespace, "namespace", "n", "default", "namespace of the TenantCluster in the admin cluster")
}

// client connects to the admin cluster.
func (f *adminFlags) client() (client.Client, error) {
	rc, err := adminConfig(f.kubeconfig, false)
	if err != nil {
		return nil, err
	}
	rc.Timeout = 30 * time.Second
	return client.New(rc, client.Options{Scheme: scheme.New()})
}

// adminConfig is the admin cluster credential of path, else $KUBECONFIG,
// else (when inCluster) the pod's service account, else the local admin
// cluster's admin.conf.
func adminConfig(path string, inCluster bool) (*rest.Config, error) {
	if path == "" {
		path = os.Getenv("KUBECONFIG")
	}
	if path == "" && inCluster {
		if rc, err := rest.InClusterConfig(); err == nil {
			return rc, nil
		}
	}
	if path == "" {
		local := admincluster.Defaults().Root + "/admin.conf"
		if _, err := os.Stat(local); err == nil {
			path = local
		}
	}
	if path == "" {
		return nil, errors.New("no admin cluster kubeconfig: pass --kubeconfig, set KUBECONFIG, or run kubinception admin up")
	}
	rc, err := clientcmd.BuildConfigFromFlags("", path)
	if err != nil {
		return nil, fmt.Errorf("admin kubeconfig %s: %w", path, err)
	}
	return rc, nil
}

func newCreateCommand() *cobra.Command {
	create := &cobra.Command{Use: "create", Short: "Create kubinception objects"}
	var f adminFlags
	var version, exposure, datastore string
	var replicas int32
	var wait bool
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:   "cluster NAME",
		Short: "Create a tenant cluster and, with --wait, show its progress until it is Ready",
		Args:  exactlyOneName("cluster"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := release.ValidateKubernetesVersion(version); err != nil {
				return fmt.Errorf("--version: %w", err)
			}
			c, err := f.client()
			if err != nil {
				return err
			}
			tc := &kv1.TenantCluster{
				ObjectMeta: metav1.ObjectMeta{Name: args[0], Namespace: f.namespace},
				Spec: kv1.TenantClusterSpec{
					Version:      version,
					ControlPlane: kv1.ControlPlaneSpec{Replicas: &replicas},
					Exposure:     kv1.ExposureSpec{Type: kv1.ExposureType(exposure)},
					Datastore:    kv1.DatastorePlacement{Name: datastore},
				},
			}
			if err := c.Create(cmd.Context(), tc); err != nil {
				if apierrors.IsAlreadyExists(err) {
					return fmt.Errorf("tenant cluster %s/%s already exists: pick another name or delete it first (kubinception delete cluster %s)", f.namespace, args[0], args[0])
				}
				return clusterError(err, f.namespace, args[0])
			}
			fmt.Fprintf(cmd.OutOrStdout(), "tenant cluster %s/%s created\n", f.namespace, args[0])
			if !wait {
				return nil
			}
			return waitReady(cmd.Context(), c, types.NamespacedName{Namespace: f.namespace, Name: args[0]}, timeout, cmd.OutOrStdout())
		},
	}
	f.register(cmd)
	cmd.Flags().StringVar(&version, "version", release.DefaultKubernetesVersion, "Kubernetes version ("+release.SupportedMinorsText()+")")
	cmd.Flags().StringVar(&exposure, "exposure", string(kv1.ExposureNodePort), "how the API server is reached: NodePort, LoadBalancer, ClusterIP or FrontDoor (one endpoint for every tenant, by name)")
	cmd.Flags().StringVar(&datastore, "datastore", "default", "Datastore holding the tenant's state")
	cmd.Flags().Int32Var(&replicas, "replicas", 1, "control-plane replicas")
	cmd.Flags().BoolVar(&wait, "wait", false, "wait until the cluster is Ready, showing each phase")
	cmd.Flags().DurationVar(&timeout, "timeout", 5*time.Minute, "how long --wait waits")
	create.AddCommand(cmd)
	return create
}

func exactlyOneName(what string) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) != 1 {
			return fmt.Errorf("give exactly one %s name, e.g. %s demo", what, cmd.CommandPath())
		}
		return nil
	}
}

// waitReady polls the tenant and prints every condition change until it
// is Ready or the timeout passes.
func waitReady(ctx context.Context, c client.Client, key types.NamespacedName, timeout time.Duration, out io.Writer) error {
	start := time.Now()
	seen := map[string]string{}
	tc := &kv1.TenantCluster{}
	err := wait.PollUntilContextTimeout(ctx, 500*time.Millisecond, timeout, true, func(ctx context.Context) (bool, error) {
		if err := c.Get(ctx, key, tc); err != nil {
			return false, err
		}
		for _, typ := range []string{kv1.ConditionDatastoreReady, kv1.ConditionCertificatesReady, kv1.ConditionControlPlaneAvailable, kv1.ConditionReady} {
			cond := meta.FindStatusCondition(tc.Status.Conditions, typ)
			if cond == nil {
				continue
			}
			line := fmt.Sprintf("%s=%s %s: %s", typ, cond.Status, cond.Reason, cond.Message)
			if seen[typ] != line {
				seen[typ] = line
				mark := "…"
				if cond.Status == metav1.ConditionTrue {
					mark = "✓"
				}
				fmt.Fprintf(out, "%s [%5.1fs] %-22s %s\n", mark, time.Since(start).Seconds(), typ, cond.Message)
			}
		}
		return meta.IsStatusConditionTrue(tc.Status.Conditions, kv1.ConditionReady) && tc.Status.ObservedGeneration == tc.Generation, nil
	})
	if wait.Interrupted(err) {
		why := "no status yet: is the operator running? (kubinception install)"
		if ready := meta.FindStatusCondition(tc.Status.Conditions, kv1.ConditionReady); ready != nil {
			why = ready.Reason + ": " + ready.Message
		}
		return fmt.Errorf("timed out after %s waiting for %s to be Ready: %s", timeout, key.Name, why)
	}
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "\n%s is Ready in %.1fs at %s\n  kubinception kubeconfig %s -n %s > %s.kubeconfig\n",
		key.Name, time.Since(start).Seconds(), tc.Status.Endpoint, key.Name, key.Namespace, key.Name)
	return nil
}

func newGetCommand() *cobra.Command {
	get := &cobra.Command{Use: "get", Short: "List kubinception objects"}
	var f adminFlags
	var all bool
	cmd := &cobra.Command{
		Use:     "clusters",
		Aliases: []string{"cluster"},
		Short:   "List tenant clusters",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := f.client()
			if err != nil {
				return err
			}
			var list kv1.TenantClusterList
			opts := []client.ListOption{}
			if !all {
				opts = append(opts, client.InNamespace(f.namespace))
			}
			if err := c.List(cmd.Context(), &list, opts...); err != nil {
				return clusterError(err, f.namespace, "")
			}
			sort.Slice(list.Items, func(i, j int) bool {
				return list.Items[i].Namespace+"/"+list.Items[i].Name < list.Items[j].Namespace+"/"+list.Items[j].Name
			})
			w := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(w, "NAMESPACE\tNAME\tVERSION\tREADY\tREASON\tENDPOINT\tDATASTORE USAGE\tAGE")
			for _, tc := range list.Items {
				ready, reason := "Unknown", ""
				if cond := meta.FindStatusCondition(tc.Status.Conditions, kv1.ConditionReady); cond != nil {
					ready, reason = string(cond.Status), cond.Reason
				}
				usage := tc.Status.Datastore.Usage
				if usage == "" {
					usage = "-"
				}
				fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", tc.Namespace, tc.Name, tc.Spec.Version, ready, reason, tc.Status.Endpoint,
					usage, time.Since(tc.CreationTimestamp.Time).Round(time.Second))
			}
			return w.Flush()
		},
	}
	f.register(cmd)
	cmd.Flags().BoolVarP(&all, "all-namespaces", "A", false, "list tenant clusters in every namespace")
	get.AddCommand(cmd)
	return get
}

func newDeleteCommand() *cobra.Command {
	del := &cobra.Command{Use: "delete", Short: "Delete kubinception objects"}
	var f adminFlags
	var waitGone bool
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:   "cluster NAME",
		Short: "Delete a tenant cluster: its control plane, every key of its state, its etcd user and role",
		Args:  exactlyOneName("cluster"),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := f.client()
			if err != nil {
				return err
			}
			key := types.NamespacedName{Namespace: f.namespace, Name: args[0]}
			tc := &kv1.TenantCluster{ObjectMeta: metav1.ObjectMeta{Name: key.Name, Namespace: key.Namespace}}
			if err := c.Delete(cmd.Context(), tc); err != nil {
				if apierrors.IsNotFound(err) {
					return fmt.Errorf("no tenant cluster %s in namespace %s", key.Name, key.Namespace)
				}
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "tenant cluster %s/%s is being deleted\n", key.Namespace, key.Name)
			if !waitGone {
				return nil
			}
			last := ""
			err = wait.PollUntilContextTimeout(cmd.Context(), 500*time.Millisecond, timeout, true, func(ctx context.Context) (bool, error) {
				err := c.Get(ctx, key, tc)
				if apierrors.IsNotFound(err) {
					return true, nil
				}
				if err != nil {
					return false, err
				}
				if cond := meta.FindStatusCondition(tc.Status.Conditions, kv1.ConditionReady); cond != nil && cond.Message != last {
					last = cond.Message
					fmt.Fprintf(cmd.OutOrStdout(), "… %s\n", strings.TrimPrefix(cond.Message, "deleting: "))
				}
				return false, nil
			})
			if wait.Interrupted(err) {
				return fmt.Errorf("timed out after %s waiting for %s to be deleted: %s", timeout, key.Name, last)
			}
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "✓ %s deleted: control plane, keys, etcd user and role are gone\n", key.Name)
			return nil
		},
	}
	f.register(cmd)
	cmd.Flags().BoolVar(&waitGone, "wait", false, "wait until the cluster and its data are gone")
	cmd.Flags().DurationVar(&timeout, "timeout", 3*time.Minute, "how long --wait waits")
	del.AddCommand(cmd)
	return del
}
