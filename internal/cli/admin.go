package cli

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"log"
	"net"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"kubinception.dev/kubinception/internal/local/admincluster"
	"kubinception.dev/kubinception/internal/local/components"
	"kubinception.dev/kubinception/internal/local/supervisor"
	"kubinception.dev/kubinception/internal/release"
)

func newAdminCommand() *cobra.Command {
	admin := &cobra.Command{
		Use:   "admin",
		Short: "Run the local admin cluster: a single-node Kubernetes and the shared datastore on this machine",
	}
	var root string
	admin.PersistentFlags().StringVar(&root, "root", admincluster.DefaultRoot, "directory holding the admin cluster's state")
	admin.AddCommand(newAdminUpCommand(&root), newAdminDownCommand(&root), newAdminStatusCommand(&root), newSuperviseCommand(&root))
	return admin
}

func newAdminUpCommand(root *string) *cobra.Command {
	d := admincluster.Defaults()
	var nodeIP, podCIDR, serviceCIDR, lbCIDR, cache string
	cmd := &cobra.Command{
		Use:   "up",
		Short: "Build what is missing and bring the admin cluster and the datastore up (idempotent)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := admincluster.RequireRoot("kubinception admin up"); err != nil {
				return err
			}
			c := d
			c.Root = *root
			if c.NodeIP = net.ParseIP(nodeIP).To4(); c.NodeIP == nil {
				return fmt.Errorf("--node-ip %q is not an IPv4 address", nodeIP)
			}
			var err error
			if _, c.PodCIDR, err = net.ParseCIDR(podCIDR); err != nil {
				return fmt.Errorf("--pod-cidr %q is not a CIDR such as 10.200.0.0/16", podCIDR)
			}
			if _, c.ServiceCIDR, err = net.ParseCIDR(serviceCIDR); err != nil {
				return fmt.Errorf("--service-cidr %q is not a CIDR such as 10.201.0.0/16", serviceCIDR)
			}
			if _, c.LoadBalancerCIDR, err = net.ParseCIDR(lbCIDR); err != nil {
				return fmt.Errorf("--load-balancer-cidr %q is not a CIDR such as 10.199.128.0/20", lbCIDR)
			}
			c.Images.KubernetesVersion = c.KubernetesVersion
			if !cmd.Flags().Changed("datastores") {
				// As many as the last up ran: an up without the flag
				// never removes a datastore.
				if saved, _, err := admincluster.LoadSaved(c.Root); err == nil {
					c.Datastores = saved.Datastores
				}
			}
			if err := c.Validate(); err != nil {
				return err
			}
			self, tag, err := selfBinary()
			if err != nil {
				return err
			}
			c.Self, c.Images.KubinceptionTag = self, tag
			b := &components.Builder{CacheDir: cache, Out: cmd.OutOrStdout()}
			if c.Binaries, err = b.Build(cmd.Context(), c.KubernetesVersion); err != nil {
				return err
			}
			c.OtherVersions = b.Built()
			if err := c.Save(); err != nil {
				return err
			}
			cl := &admincluster.Cluster{Config: c, Out: cmd.OutOrStdout()}
			return cl.Up(cmd.Context())
		},
	}
	f := cmd.Flags()
	f.StringVar(&d.KubernetesVersion, "version", d.KubernetesVersion, "Kubernetes version of the admin node ("+release.SupportedMinorsText()+")")
	f.StringVar(&d.NodeName, "node-name", d.NodeName, "name of the admin node")
	f.StringVar(&nodeIP, "node-ip", d.NodeIP.String(), "node address, put on an interface of its own, "+admincluster.NodeInterface)
	f.StringVar(&podCIDR, "pod-cidr", d.PodCIDR.String(), "pod network of the admin node")
	f.StringVar(&serviceCIDR, "service-cidr", d.ServiceCIDR.String(), "Service addresses of the admin cluster")
	f.StringVar(&lbCIDR, "load-balancer-cidr", d.LoadBalancerCIDR.String(), "addresses of the admin cluster's LoadBalancer Services (tenants' load balancers), served on the admin node")
	f.IntVar(&d.Ports.APIServer, "apiserver-port", d.Ports.APIServer, "admin API server port")
	f.IntVar(&d.Datastores, "datastores", 1, fmt.Sprintf("how many shared datastores (3-member etcd clusters) to run, 1 to %d: \"default\", then \"datastore-2\", ... to move tenants between (default: as many as the last up ran, else 1)", admincluster.MaxDatastores))
	f.StringVar(&d.Images.Registry, "image-registry", release.LocalRegistry, "registry name the locally built images are imported under")
	f.StringVar(&cache, "cache", components.DefaultCacheDir(), "directory where builds are cached (env KUBINCEPTION_CACHE)")
	return cmd
}

// loadCluster returns the cluster recorded under root, with its binaries
// when they are built.
func loadCluster(root string, out io.Writer) (*admincluster.Cluster, error) {
	c, _, err := admincluster.LoadSaved(root)
	if err != nil {
		return nil, err
	}
	return &admincluster.Cluster{Config: c, Out: out}, nil
}

func newAdminDownCommand(root *string) *cobra.Command {
	var purge bool
	cmd := &cobra.Command{
		Use:   "down",
		Short: "Stop the admin cluster and undo its host changes, keeping its data (unless --purge)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := admincluster.RequireRoot("kubinception admin down"); err != nil {
				return err
			}
			cl, err := loadCluster(*root, cmd.OutOrStdout())
			if err != nil {
				return err
			}
			return cl.Down(cmd.Context(), purge)
		},
	}
	cmd.Flags().BoolVar(&purge, "purge", false, "also delete all state: PKI, the admin etcd's and the datastore's data")
	return cmd
}

func newAdminStatusCommand(root *string) *cobra.Command {
	return &cobra.Command{
		Use:   "status",
		Short: "Say what of the admin cluster and the datastore is running and what is not",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cl, err := loadCluster(*root, cmd.OutOrStdout())
			if err != nil {
				return err
			}
			if !cl.Status(cmd.Context(), cmd.OutOrStdout()) {
				return fmt.Errorf("the admin cluster is not healthy")
			}
			return nil
		},
	}
}

func newSuperviseCommand(root *string) *cobra.Command {
	return &cobra.Command{
		Use:    "supervise",
		Short:  "Keep containerd and the kubelet running (started by admin up)",
		Hidden: true,
		Args:   cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			files := supervisor.Files{RunDir: filepath.Join(*root, "run"), LogDir: filepath.Join(*root, "logs")}
			logger := log.New(os.Stderr, "", log.LstdFlags)
			return supervisor.Run(cmd.Context(), files, logger.Printf)
		},
	}
}

// selfBinary is this executable and a tag naming its contents, for the
// kubinception image.
func selfBinary() (string, string, error) {
	self, err := os.Executable()
	if err != nil {
		return "", "", err
	}
	if self, err = filepath.EvalSymlinks(self); err != nil {
		return "", "", err
	}
	f, err := os.Open(self)
	if err != nil {
		return "", "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", "", err
	}
	return self, Version + "-" + hex.EncodeToString(h.Sum(nil))[:12], nil
}
