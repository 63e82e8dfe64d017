package cli

import (
	"context"
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	kv1 "kubinception.dev/kubinception/api/v1alpha1"
	"kubinception.dev/kubinception/internal/join"
	"kubinception.dev/kubinception/internal/local/admincluster"
	"kubinception.dev/kubinception/internal/local/components"
	"kubinception.dev/kubinception/internal/local/images"
	"kubinception.dev/kubinception/internal/local/worker"
	"kubinception.dev/kubinception/internal/release"
)

func newJoinCommand() *cobra.Command {
	var f adminFlags
	var ttl time.Duration
	cmd := &cobra.Command{
		Use:   "join-command CLUSTER",
		Short: "Create a bootstrap token in a tenant cluster and print the kubeadm join command for a worker",
		Args:  exactlyOneName("cluster"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if ttl < time.Minute {
				return fmt.Errorf("--ttl %s is too short: a token must live at least a minute", ttl)
			}
			c, err := f.client()
			if err != nil {
				return err
			}
			t, err := join.ForTenant(cmd.Context(), c, f.namespace, args[0])
			if err != nil {
				return err
			}
			jc, err := t.NewCommand(cmd.Context(), ttl, time.Now())
			if err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), jc.String())
			return nil
		},
	}
	f.register(cmd)
	cmd.Flags().DurationVar(&ttl, "ttl", join.DefaultTTL, "how long the token stays valid")
	return cmd
}

func newNodeCommand() *cobra.Command {
	node := &cobra.Command{Use: "node", Short: "Local worker machines of tenant clusters (network namespaces on this machine)"}
	var root string
	node.PersistentFlags().StringVar(&root, "root", admincluster.DefaultRoot, "state directory of the local admin cluster")

	var addFlags adminFlags
	var name, token, caHash string
	var reachable bool
	var discoveryTimeout time.Duration
	add := &cobra.Command{
		Use:   "add CLUSTER",
		Short: "Start a worker on this machine and join it to the tenant cluster with kubeadm join",
		Args:  exactlyOneName("cluster"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := admincluster.RequireRoot("kubinception node add"); err != nil {
				return err
			}
			c, err := addFlags.client()
			if err != nil {
				return err
			}
			tc := &kv1.TenantCluster{}
			if err := c.Get(cmd.Context(), types.NamespacedName{Namespace: addFlags.namespace, Name: args[0]}, tc); err != nil {
				return fmt.Errorf("tenant cluster %s/%s: %w", addFlags.namespace, args[0], err)
			}
			// Here no DNS knows a FrontDoor tenant's names: /etc/hosts,
			// which the worker shares, does.
			if tc.Spec.Exposure.Type == kv1.ExposureFrontDoor {
				if _, _, err := syncFrontDoorHosts(cmd.Context(), c, "", "/etc/hosts"); err != nil {
					return err
				}
			}
			access, err := join.ForTenant(cmd.Context(), c, addFlags.namespace, args[0])
			if err != nil {
				return err
			}
			cfg, _, err := admincluster.LoadSaved(root)
			if err != nil {
				return err
			}
			b := &components.Builder{CacheDir: components.DefaultCacheDir()}
			bins, err := b.Lookup(tc.Spec.Version)
			if err != nil {
				return err
			}
			self, _, err := selfBinary()
			if err != nil {
				return err
			}
			names := cfg.Images
			names.KubernetesVersion = tc.Spec.Version
			var jc *join.Command
			if token != "" || caHash != "" {
				if token == "" || caHash == "" {
					return fmt.Errorf("--token and --discovery-token-ca-cert-hash go together (kubinception join-command %s prints both)", args[0])
				}
				jc = &join.Command{Endpoint: strings.TrimPrefix(access.Endpoint, "https://"), Token: token, CAHash: caHash}
			}
			key := client.ObjectKeyFromObject(tc)
			_, err = worker.Add(cmd.Context(), worker.AddOptions{
				Join: jc, DiscoveryTimeout: discoveryTimeout,
				Nudge: func(ctx context.Context) error {
					patch := []byte(fmt.Sprintf(`{"metadata":{"annotations":{%q:%q}}}`, kv1.AnnotationNudge, time.Now().UTC().Format(time.RFC3339Nano)))
					return c.Patch(ctx, &kv1.TenantCluster{ObjectMeta: metav1.ObjectMeta{Name: key.Name, Namespace: key.Namespace}}, client.RawPatch(types.MergePatchType, patch))
				},
				Layout: worker.Layout{Root: root}, Tenant: addFlags.namespace + "/" + args[0], Access: access, Node: name, Reachable: reachable,
				Self: self, Kubelet: bins.Component("kubelet"), Kubeadm: bins.Component("kubeadm"), PauseImage: names.Pause(),
				ImportImages: func(ctx context.Context, socket string) error {
					return importWorkerImages(ctx, cfg, bins, names, socket)
				},
				Out: cmd.OutOrStdout(),
			})
			return err
		},
	}
	addFlags.register(add)
	add.Flags().StringVar(&name, "name", "", "node name (default CLUSTER-w<N>)")
	add.Flags().BoolVar(&reachable, "reachable", false, "let the admin node connect to the worker, as a routed private network would (by default the worker is behind NAT, as customers' machines usually are: it connects out, nothing connects in)")
	add.Flags().StringVar(&token, "token", "", "join with this bootstrap token instead of a new one")
	add.Flags().StringVar(&caHash, "discovery-token-ca-cert-hash", "", "with --token: the CA public key hash (sha256:...)")
	add.Flags().DurationVar(&discoveryTimeout, "discovery-timeout", time.Minute, "how long kubeadm looks for a cluster-info signed for the token")

	var rmFlags adminFlags
	remove := &cobra.Command{
		Use:   "remove CLUSTER NODE",
		Short: "Drain a worker's node, delete it from the tenant cluster and stop the worker",
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) != 2 {
				return fmt.Errorf("give the cluster and the node, e.g. %s demo demo-w1 (kubinception node list shows them)", cmd.CommandPath())
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := admincluster.RequireRoot("kubinception node remove"); err != nil {
				return err
			}
			l := worker.Layout{Root: root}
			w, err := l.Find(rmFlags.namespace+"/"+args[0], args[1])
			if err != nil {
				return err
			}
			c, err := rmFlags.client()
			if err != nil {
				return err
			}
			access, err := join.ForTenant(cmd.Context(), c, rmFlags.namespace, args[0])
			if err != nil {
				fmt.Fprintf(cmd.ErrOrStderr(), "warning: cannot reach the tenant (%v); removing the worker from this machine only\n", err)
				return worker.Remove(cmd.Context(), l, w, nil, cmd.OutOrStdout())
			}
			return worker.Remove(cmd.Context(), l, w, access.Clientset, cmd.OutOrStdout())
		},
	}
	rmFlags.register(remove)

	list := &cobra.Command{
		Use:   "list [CLUSTER]",
		Short: "List the local workers",
		Args:  cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			tenant := ""
			if len(args) == 1 {
				tenant = args[0]
				if !strings.Contains(tenant, "/") {
					tenant = "default/" + tenant
				}
			}
			ws, err := worker.Layout{Root: root}.List(tenant)
			if err != nil {
				return err
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "TENANT\tNODE\tADDRESS\tNETNS")
			for _, w := range ws {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", w.Tenant, w.Node, w.IP(), w.NetNS())
			}
			return tw.Flush()
		},
	}
	var upFlags adminFlags
	var upVersion string
	upgrade := &cobra.Command{
		Use:   "upgrade CLUSTER NODE",
		Short: "Move a worker's kubelet to the version the tenant's control plane runs, without re-joining; its pods keep running",
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) != 2 {
				return fmt.Errorf("give the cluster and the node, e.g. %s demo demo-w1 (kubinception node list shows them)", cmd.CommandPath())
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := admincluster.RequireRoot("kubinception node upgrade"); err != nil {
				return err
			}
			w, err := worker.Layout{Root: root}.Find(upFlags.namespace+"/"+args[0], args[1])
			if err != nil {
				return err
			}
			c, err := upFlags.client()
			if err != nil {
				return err
			}
			tc := &kv1.TenantCluster{}
			if err := c.Get(cmd.Context(), types.NamespacedName{Namespace: upFlags.namespace, Name: args[0]}, tc); err != nil {
				return fmt.Errorf("tenant cluster %s/%s: %w", upFlags.namespace, args[0], err)
			}
			target := upVersion
			if target == "" {
				target = tc.Status.Version
			}
			if err := worker.CheckUpgrade(target, tc.Status.Version); err != nil {
				return err
			}
			access, err := join.ForTenant(cmd.Context(), c, upFlags.namespace, args[0])
			if err != nil {
				return err
			}
			cfg, _, err := admincluster.LoadSaved(root)
			if err != nil {
				return err
			}
			bins, err := (&components.Builder{CacheDir: components.DefaultCacheDir()}).Lookup(target)
			if err != nil {
				return err
			}
			names := cfg.Images
			names.KubernetesVersion = target
			return worker.Upgrade(cmd.Context(), w, worker.UpgradeOptions{
				Clientset: access.Clientset, Version: target, ControlPlane: tc.Status.Version,
				Kubelet: bins.Component("kubelet"), Kubeadm: bins.Component("kubeadm"),
				ImportImages: func(ctx context.Context, socket string) error {
					return importWorkerImages(ctx, cfg, bins, names, socket)
				},
				Out: cmd.OutOrStdout(),
			})
		},
	}
	upFlags.register(upgrade)
	upgrade.Flags().StringVar(&upVersion, "version", "", "the kubelet's new version (default: the version the control plane runs, status.version)")

	node.AddCommand(add, remove, list, upgrade, newNodeRotateCACommand(&root))
	return node
}

// importWorkerImages loads what a worker runs: the sandbox, kube-proxy at
// the tenant's version, CoreDNS, Calico (the networkPolicy addon) and the
// test workload.
func importWorkerImages(ctx context.Context, cfg admincluster.Config, bins components.Binaries, names release.Names, socket string) error {
	b := &components.Builder{CacheDir: components.DefaultCacheDir()}
	admin, err := b.Lookup(cfg.KubernetesVersion)
	if err != nil {
		return err
	}
	all, err := images.LocalImages(images.Sources{Binaries: admin, OtherVersions: []components.Binaries{bins}}, cfg.Images, cfg.LayerDir())
	if err != nil {
		return err
	}
	want := map[string]bool{names.Pause(): true, names.Component("kube-proxy"): true, names.CoreDNS(): true, names.Tinyhost(): true, names.Calico(): true}
	var pick []images.Tagged
	for _, t := range all {
		if want[t.Ref] {
			pick = append(pick, t)
		}
	}
	// The tunnel agent runs from the kubinception image: this binary, as
	// install imports it for the operator.
	self, tag, err := selfBinary()
	if err != nil {
		return err
	}
	own := cfg.Images
	own.KubinceptionTag = tag
	agent, err := images.KubinceptionImage(self, own, cfg.LayerDir())
	if err != nil {
		return err
	}
	pick = append(pick, agent...)
	_, err = images.Importer{Address: socket, Dir: cfg.ImagesDir()}.Import(ctx, pick)
	return err
}
