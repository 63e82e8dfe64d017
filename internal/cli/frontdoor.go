package cli

import (
	"context"
	"fmt"
	"net"
	"net/url"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/spf13/cobra"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/kubernetes"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	kv1 "kubinception.dev/kubinception/api/v1alpha1"
	"kubinception.dev/kubinception/internal/frontdoor"
	"kubinception.dev/kubinception/internal/local/hostsfile"
)

func newFrontDoorCommand() *cobra.Command {
	cmd := &cobra.Command{Use: "frontdoor", Short: "The one TLS endpoint of every tenant API server exposed as FrontDoor"}
	cmd.AddCommand(newFrontDoorServeCommand(), newFrontDoorHostsCommand())
	return cmd
}

func newFrontDoorServeCommand() *cobra.Command {
	o := frontdoor.Options{Address: ":8443", HTTPAddress: ":8444", Namespace: frontdoor.Namespace}
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Route TLS connections by server name to tenants' API servers, holding them while a hibernated tenant wakes (runs in the admin cluster)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			o.Log = zap.New(zap.UseDevMode(false)).WithName("frontdoor")
			if o.Identity == "" {
				o.Identity = os.Getenv("POD_NAME")
			}
			rc, err := ctrl.GetConfig()
			if err != nil {
				return err
			}
			cs, err := kubernetes.NewForConfig(rc)
			if err != nil {
				return err
			}
			return frontdoor.Run(cmd.Context(), cs, o)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.Address, "address", o.Address, "address the proxy listens on")
	f.StringVar(&o.HTTPAddress, "http-address", o.HTTPAddress, "address of /healthz, /readyz and /metrics (plain HTTP)")
	f.StringVar(&o.Namespace, "namespace", o.Namespace, "namespace of the routes and activity Leases")
	f.StringVar(&o.Identity, "identity", "", "this replica's name in the Leases it renews (default $POD_NAME)")
	f.DurationVar(&o.HoldTimeout, "hold-timeout", 90*time.Second, "how long a connection waits for a tenant's API server that does not answer (a hibernated tenant waking)")
	f.DurationVar(&o.ActiveEvery, "active-every", 20*time.Second, "how often a tenant in use is reported active")
	f.DurationVar(&o.ShutdownDelay, "shutdown-delay", 5*time.Second, "how long to keep accepting after SIGTERM, while /readyz fails, so new connections go to other replicas first")
	f.DurationVar(&o.DrainTimeout, "drain-timeout", 20*time.Second, "how long open connections may finish after the listener closes")
	return cmd
}

func newFrontDoorHostsCommand() *cobra.Command {
	var f adminFlags
	var address, path string
	cmd := &cobra.Command{
		Use:   "hosts",
		Short: "Resolve every FrontDoor tenant's names to the front door in /etc/hosts (where no DNS carries them, as on the local admin cluster)",
		Long: `Writes, between marker lines of /etc/hosts, the front-door names of every
tenant exposed as FrontDoor (its API server's and its tunnel's) with the
admin node's address, where the front door's node port listens. Local
workers share the host's /etc/hosts, so kubeadm join, their kubelets and
their host-network pods resolve the names too. Lines outside the block
are left alone; with no such tenant the block is removed. In production
a wildcard DNS record (*.<domain> and *.tunnel.<domain>) pointing at the
front door's load balancer does this instead.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := f.client()
			if err != nil {
				return err
			}
			names, changed, err := syncFrontDoorHosts(cmd.Context(), c, address, path)
			if err != nil {
				return err
			}
			sorted := make([]string, 0, len(names))
			for n := range names {
				sorted = append(sorted, n)
			}
			sort.Strings(sorted)
			verb := "unchanged"
			if changed {
				verb = "written"
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s %s: %d names %s\n", path, verb, len(names), strings.Join(sorted, " "))
			return nil
		},
	}
	f.register(cmd)
	cmd.Flags().StringVar(&address, "address", "", "the front door's address (default: the admin node's InternalIP)")
	cmd.Flags().StringVar(&path, "hosts-file", "/etc/hosts", "the hosts file to write")
	return cmd
}

// syncFrontDoorHosts writes every FrontDoor tenant's names, with address
// (the first Ready admin node's when empty), into the hosts file at path,
// and returns them and whether the file changed.
func syncFrontDoorHosts(ctx context.Context, c client.Client, address, path string) (map[string]string, bool, error) {
	if address == "" {
		var nodes corev1.NodeList
		if err := c.List(ctx, &nodes); err != nil {
			return nil, false, err
		}
		address = firstNodeAddress(nodes.Items)
		if address == "" {
			return nil, false, fmt.Errorf("no admin node has an InternalIP: pass --address, the front door's address")
		}
	} else if net.ParseIP(address) == nil {
		return nil, false, fmt.Errorf("--address %q is not an IP address: give the front door's address, such as 10.199.0.1", address)
	}
	var list kv1.TenantClusterList
	if err := c.List(ctx, &list); err != nil {
		return nil, false, err
	}
	names := map[string]string{}
	for _, tc := range list.Items {
		for _, n := range frontDoorNames(&tc) {
			names[n] = address
		}
	}
	changed, err := hostsfile.Sync(path, names)
	return names, changed, err
}

// frontDoorNames are a FrontDoor tenant's names, read from its endpoint
// (https://<name>.<domain>:<port>): the API server's, and the tunnel's
// when the tunnel runs.
func frontDoorNames(tc *kv1.TenantCluster) []string {
	if tc.Spec.Exposure.Type != kv1.ExposureFrontDoor || tc.Status.Endpoint == "" {
		return nil
	}
	u, err := url.Parse(tc.Status.Endpoint)
	if err != nil {
		return nil
	}
	host := u.Hostname()
	domain, ok := strings.CutPrefix(host, tc.Name+".")
	if !ok {
		return nil
	}
	names := []string{host}
	if tc.Spec.Addons.Tunnel.IsEnabled() {
		names = append(names, frontdoor.TunnelHostName(tc.Name, domain))
	}
	return names
}

// firstNodeAddress is the IPv4 InternalIP of the first Ready node by
// name, as the operator picks it for NodePort endpoints.
func firstNodeAddress(nodes []corev1.Node) string {
	sort.Slice(nodes, func(i, j int) bool { return nodes[i].Name < nodes[j].Name })
	for _, n := range nodes {
		ready := false
		for _, c := range n.Status.Conditions {
			ready = ready || c.Type == corev1.NodeReady && c.Status == corev1.ConditionTrue
		}
		for _, a := range n.Status.Addresses {
			if ready && a.Type == corev1.NodeInternalIP && net.ParseIP(a.Address).To4() != nil {
				return a.Address
			}
		}
	}
	return ""
}
