package cli

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/spf13/cobra"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	kv1 "kubinception.dev/kubinception/api/v1alpha1"
	"kubinception.dev/kubinception/internal/install"
	"kubinception.dev/kubinception/internal/local/admincluster"
)

// installFlags are kubinception install's flags beyond install.Options.
type installFlags struct {
	admin            adminFlags
	root             string
	dryRun           bool
	output           string
	pullPolicy       string
	requests, limits string
	endpoints        []string
	caSecret         string
	rootSecret       string
	noDatastore      bool
}

func newInstallCommand() *cobra.Command {
	var f installFlags
	o := install.DefaultOptions()
	cmd := &cobra.Command{
		Use:   "install",
		Short: "Install the CRDs and the operator into the admin cluster (idempotent), or print them with --dry-run",
		Long: `Installs the TenantCluster and Datastore CRDs, the operator's namespace,
service account, RBAC and Deployment, and the Datastore "default" when one
is described. On the local admin cluster it also imports the operator's
image (this binary) and describes the Datastore "default" from the
credentials admin up stored.

With --dry-run it applies nothing and prints exactly the objects it would
apply (-o yaml or -o json), for GitOps tools or kubectl apply -f -. The Helm
chart in deploy/helm/kubinception renders the same objects.`,
		Example: `  kubinception install
  kubinception install --dry-run -o yaml --image registry.example.com/kubinception:v0.1.0 \
    --image-registry registry.example.com/kubernetes \
    --datastore-endpoints https://10.0.0.1:2379,https://10.0.0.2:2379`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runInstall(cmd, f, o)
		},
	}
	f.admin.register(cmd)
	d := install.DefaultOptions()
	fl := cmd.Flags()
	fl.BoolVar(&f.dryRun, "dry-run", false, "print the objects instead of applying them")
	fl.StringVarP(&f.output, "output", "o", "", "format of --dry-run: "+strings.Join(install.OutputFormats, " or ")+" (default yaml)")
	fl.StringVar(&o.Image, "image", "", "operator image (default: this binary, imported into the local admin cluster)")
	fl.StringVar(&o.LoadBalancerAddressPool, "load-balancer-address-pool", "", "CIDR the operator takes addresses of its LoadBalancer Services from, for admin clusters without a load-balancer implementation (default on the local admin cluster: its load-balancer range)")
	fl.StringSliceVar(&o.ProtectedNetworks, "protected-networks", nil, "IPv4 CIDRs of the admin cluster's own networks (pod ranges, node addresses) that the API server of a tenant without the tunnel may not reach; set it in production (default on the local admin cluster: its pod range and node address; elsewhere none, which leaves that egress open)")
	fl.StringVar(&o.Backup.HostPath, "backup-host-path", "", "directory of the node the operator runs on where TenantBackups keep their archives, for single-node admin clusters; it must exist and be writable by UID 65534 (default on the local admin cluster: ROOT/backups, created)")
	fl.StringVar(&o.Backup.VolumeClaim, "backup-volume-claim", "", "PersistentVolumeClaim in "+install.Namespace+" where TenantBackups keep their archives")
	fl.StringVar(&o.Backup.S3.Endpoint, "backup-s3-endpoint", "", "URL of an S3-compatible server where TenantBackups with target S3 keep their archives (https://host[:port])")
	fl.StringVar(&o.Backup.S3.Bucket, "backup-s3-bucket", "", "bucket of the S3 target; it must exist")
	fl.StringVar(&o.Backup.S3.Prefix, "backup-s3-prefix", "", "prefix of the S3 target's object names, ending with / (one bucket for several admin clusters)")
	fl.StringVar(&o.Backup.S3.Region, "backup-s3-region", "", "region of the S3 bucket (us-east-1 when empty)")
	fl.StringVar(&o.Backup.S3.CredentialsSecret, "backup-s3-credentials-secret", "", "Secret in "+install.Namespace+" holding the S3 credentials: keys accessKeyID, secretAccessKey and optionally ca.crt (default kubinception-backup-s3)")
	fl.StringVar(&o.FrontDoor.Domain, "front-door-domain", d.FrontDoor.Domain, "base domain of tenants' names at the front door (<tenant>.<domain>, tunnels at <tenant>.tunnel.<domain>); empty installs no front door")
	fl.Int32Var(&o.FrontDoor.Replicas, "front-door-replicas", d.FrontDoor.Replicas, "front-door replicas")
	fl.StringVar((*string)(&o.FrontDoor.ServiceType), "front-door-service-type", string(d.FrontDoor.ServiceType), "type of the front door's Service: NodePort or LoadBalancer")
	fl.Int32Var(&o.FrontDoor.Port, "front-door-port", d.FrontDoor.Port, "port of the front door's Service (the one clients use with LoadBalancer)")
	fl.Int32Var(&o.FrontDoor.NodePort, "front-door-node-port", d.FrontDoor.NodePort, "node port of the front door with NodePort (the one clients use then)")
	fl.StringVar(&f.pullPolicy, "image-pull-policy", string(d.ImagePullPolicy), "pull policy of the operator image: Always, IfNotPresent or Never")
	fl.StringVar(&o.Registry, "image-registry", d.Registry, "registry of tenant control-plane images (default on the local admin cluster: the one admin up imported them under)")
	fl.StringSliceVar(&o.AllowedRegistries, "allowed-registries", nil, "registries a TenantCluster may name in spec.controlPlane.imageRegistry, each with the paths below it (default: --image-registry only; on the local admin cluster its own registry)")
	fl.Int32Var(&o.Replicas, "replicas", d.Replicas, "operator replicas (more than one needs --leader-elect)")
	fl.BoolVar(&o.LeaderElection, "leader-elect", d.LeaderElection, "elect a leader so only one replica reconciles")
	fl.StringVar(&f.requests, "requests", quantities(d.Resources.Requests), `resource requests of the operator container, NAME=QUANTITY,... ("" for none)`)
	fl.StringVar(&f.limits, "limits", quantities(d.Resources.Limits), "resource limits of the operator container, NAME=QUANTITY,... such as memory=256Mi")
	fl.StringSliceVar(&f.endpoints, "datastore-endpoints", nil,
		`client URLs of the Datastore "default"'s members (default: the local admin cluster's datastore, when admin up stored its Secrets)`)
	fl.StringVar(&f.caSecret, "datastore-ca-secret", admincluster.SystemNamespace+"/"+admincluster.DatastoreCASecret,
		`NAMESPACE/NAME of the Secret with the Datastore "default"'s CA`)
	fl.StringVar(&f.rootSecret, "datastore-root-secret", admincluster.SystemNamespace+"/"+admincluster.DatastoreRootSecret,
		`NAMESPACE/NAME of the Secret with the Datastore "default"'s root client certificate`)
	fl.BoolVar(&f.noDatastore, "no-default-datastore", false, `do not create the Datastore "default"`)
	fl.StringVar(&f.root, "root", admincluster.DefaultRoot, "state directory of the local admin cluster")
	return cmd
}

// runInstall turns the flags into install.Options, renders the objects
// once, and prints or applies that same list.
func runInstall(cmd *cobra.Command, f installFlags, o install.Options) error {
	ctx := cmd.Context()
	if f.output != "" && !f.dryRun {
		return fmt.Errorf("--output %s prints the objects instead of applying them: add --dry-run", f.output)
	}
	if f.output == "" {
		f.output = "yaml"
	}
	if err := install.CheckOutputFormat(f.output); err != nil {
		return fmt.Errorf("--output: %w", err)
	}
	o.ImagePullPolicy = corev1.PullPolicy(f.pullPolicy)
	var err error
	if o.Resources.Requests, err = parseQuantities("--requests", f.requests); err != nil {
		return err
	}
	if o.Resources.Limits, err = parseQuantities("--limits", f.limits); err != nil {
		return err
	}

	// The cluster is reached only when something must be read from it or
	// applied to it: a dry run with every input given needs no cluster.
	var c client.Client
	connect := func() (client.Client, error) {
		if c != nil {
			return c, nil
		}
		var err error
		c, err = f.admin.client()
		return c, err
	}
	if o.Datastore, err = datastoreFromFlags(ctx, f, connect); err != nil {
		return err
	}

	var self *localImage
	var localBackups string
	if _, err := os.Stat(filepath.Join(f.root, "run", "containerd.sock")); err == nil {
		// The local admin cluster: its images are imported under the
		// registry name admin up was given.
		if !cmd.Flags().Changed("image-registry") {
			if o.Registry, err = localRegistry(f.root); err != nil {
				return err
			}
		}
		// Tenants may name the local registry and nothing else: the admin
		// node pulls nothing from outside.
		if !cmd.Flags().Changed("allowed-registries") {
			o.AllowedRegistries = []string{o.Registry}
		}
		if fl := cmd.Flags(); !fl.Changed("load-balancer-address-pool") || !fl.Changed("protected-networks") {
			lc, err := loadLocal(f.root)
			if err != nil {
				return err
			}
			// The admin node serves its load-balancer range itself: the
			// operator hands out its addresses.
			if !fl.Changed("load-balancer-address-pool") {
				o.LoadBalancerAddressPool = lc.LoadBalancerCIDR.String()
			}
			// The admin cluster's own networks: its pods and its node (the
			// API server, etcd, the kubelet listen on the node address).
			// Its Service range is left out: an admin Service is reached
			// at the pod or node behind it, and tenants use addresses of
			// the same default ranges, which must go on to the fence.
			if !fl.Changed("protected-networks") {
				o.ProtectedNetworks = []string{lc.PodCIDR.String(), lc.NodeIP.String() + "/32"}
			}
		}
		// Backups go to a directory of the admin node, made for the
		// operator's user when applied.
		if !cmd.Flags().Changed("backup-host-path") && !cmd.Flags().Changed("backup-volume-claim") {
			o.Backup.HostPath = filepath.Join(f.root, "backups")
			localBackups = o.Backup.HostPath
		}
		if o.Image == "" {
			img, err := selfImage(f.root)
			if err != nil {
				return err
			}
			self, o.Image = &img, img.ref
		}
	} else if o.Image == "" {
		return fmt.Errorf("--image is required when the admin cluster is not the local one (no containerd socket under %s, see --root)", f.root)
	}
	objs, err := install.Render(o)
	if err != nil {
		return err
	}
	if f.dryRun {
		return install.Write(cmd.OutOrStdout(), objs, f.output)
	}
	if self != nil {
		if err := importSelf(ctx, f.root, *self); err != nil {
			return err
		}
	}
	if localBackups != "" {
		if err := makeBackupDir(localBackups); err != nil {
			return err
		}
	}
	if c, err = connect(); err != nil {
		return err
	}
	if err := install.Apply(ctx, c, objs, cmd.OutOrStdout()); err != nil {
		return err
	}
	if o.Datastore == nil {
		return nil
	}
	return ensureLocalDatastores(ctx, c, cmd.OutOrStdout())
}

// datastoreFromFlags describes the Datastore "default": from
// --datastore-endpoints, from the Secrets the local admin cluster stored,
// or none.
func datastoreFromFlags(ctx context.Context, f installFlags, connect func() (client.Client, error)) (*kv1.DatastoreSpec, error) {
	if f.noDatastore {
		if len(f.endpoints) > 0 {
			return nil, errors.New("--no-default-datastore and --datastore-endpoints contradict each other: give one")
		}
		return nil, nil
	}
	caRef, err := secretRef("--datastore-ca-secret", f.caSecret)
	if err != nil {
		return nil, err
	}
	rootRef, err := secretRef("--datastore-root-secret", f.rootSecret)
	if err != nil {
		return nil, err
	}
	if len(f.endpoints) > 0 {
		return &kv1.DatastoreSpec{Endpoints: f.endpoints, CASecretRef: caRef, RootSecretRef: rootRef}, nil
	}
	c, err := connect()
	if err != nil {
		return nil, fmt.Errorf("%w (or say which Datastore to create without reading the cluster: --datastore-endpoints, or --no-default-datastore)", err)
	}
	return localDatastore(ctx, c, caRef, rootRef)
}

// localDatastore describes the local admin cluster's datastore from the
// Secrets admin up stored, or nil when they are not there.
func localDatastore(ctx context.Context, c client.Client, caRef, rootRef kv1.SecretReference) (*kv1.DatastoreSpec, error) {
	root := &corev1.Secret{}
	err := c.Get(ctx, types.NamespacedName{Namespace: rootRef.Namespace, Name: rootRef.Name}, root)
	if err != nil {
		if err = client.IgnoreNotFound(err); err != nil {
			return nil, fmt.Errorf("read the datastore Secret %s/%s: %w", rootRef.Namespace, rootRef.Name, err)
		}
		return nil, nil
	}
	return &kv1.DatastoreSpec{
		Endpoints:     strings.Split(string(root.Data["endpoints"]), ","),
		CASecretRef:   caRef,
		RootSecretRef: rootRef,
	}, nil
}

// secretRef parses NAMESPACE/NAME.
func secretRef(flag, s string) (kv1.SecretReference, error) {
	ns, name, ok := strings.Cut(s, "/")
	if !ok || ns == "" || name == "" || strings.Contains(name, "/") {
		return kv1.SecretReference{}, fmt.Errorf("%s %q is not NAMESPACE/NAME, such as %s/%s", flag, s, admincluster.SystemNamespace, admincluster.DatastoreCASecret)
	}
	return kv1.SecretReference{Namespace: ns, Name: name}, nil
}

// parseQuantities reads NAME=QUANTITY,... such as cpu=20m,memory=64Mi.
func parseQuantities(flag, s string) (corev1.ResourceList, error) {
	if strings.TrimSpace(s) == "" {
		return nil, nil
	}
	out := corev1.ResourceList{}
	for _, pair := range strings.Split(s, ",") {
		name, v, ok := strings.Cut(strings.TrimSpace(pair), "=")
		if !ok || name == "" {
			return nil, fmt.Errorf("%s: %q is not NAME=QUANTITY; give e.g. %s cpu=20m,memory=64Mi", flag, pair, flag)
		}
		q, err := resource.ParseQuantity(v)
		if err != nil {
			return nil, fmt.Errorf("%s: %s=%q is not a quantity (%w); give e.g. %s cpu=20m,memory=64Mi", flag, name, v, err, flag)
		}
		if _, dup := out[corev1.ResourceName(name)]; dup {
			return nil, fmt.Errorf("%s names %s twice", flag, name)
		}
		out[corev1.ResourceName(name)] = q
	}
	return out, nil
}

// quantities shows a resource list as parseQuantities reads it.
func quantities(l corev1.ResourceList) string {
	names := make([]string, 0, len(l))
	for name := range l {
		names = append(names, string(name))
	}
	sort.Strings(names)
	for i, name := range names {
		q := l[corev1.ResourceName(name)]
		names[i] = name + "=" + q.String()
	}
	return strings.Join(names, ",")
}

// localImage is this binary as the local admin cluster's operator image.
type localImage struct {
	self, tag, ref string
}

// loadLocal reads the local admin cluster's recorded configuration.
func loadLocal(root string) (admincluster.Config, error) {
	c, ok, err := admincluster.LoadSaved(root)
	if err != nil {
		return c, err
	}
	if !ok {
		return c, fmt.Errorf("no local admin cluster configuration under %s: run kubinception admin up, or pass --image and --image-registry", root)
	}
	return c, nil
}

// localRegistry is the registry name the local admin cluster's images are
// imported under.
func localRegistry(root string) (string, error) {
	c, err := loadLocal(root)
	return c.Images.Registry, err
}

// selfImage names the image this binary is imported as into the local
// admin cluster. Nothing is imported yet, so a dry run can name the image
// without changing anything.
func selfImage(root string) (localImage, error) {
	c, err := loadLocal(root)
	if err != nil {
		return localImage{}, err
	}
	self, tag, err := selfBinary()
	if err != nil {
		return localImage{}, err
	}
	c.Images.KubinceptionTag = tag
	return localImage{self: self, tag: tag, ref: c.Images.Kubinception()}, nil
}

// importSelf packs this binary as the kubinception image and imports it
// into the local admin cluster's containerd under the reference selfImage
// named.
func importSelf(ctx context.Context, root string, img localImage) error {
	if err := admincluster.RequireRoot("kubinception install (on the local admin cluster)"); err != nil {
		return err
	}
	c, err := loadLocal(root)
	if err != nil {
		return err
	}
	c.Images.KubinceptionTag = img.tag
	got, err := admincluster.ImportKubinceptionImage(ctx, c, img.self)
	if err != nil {
		return err
	}
	if got != img.ref {
		return fmt.Errorf("imported the operator image as %s, but rendered %s", got, img.ref)
	}
	return nil
}

// operatorUID is the user the operator's container runs as.
const operatorUID = 65534

// makeBackupDir makes the local admin node's backup directory, readable
// and writable by the operator's user only.
func makeBackupDir(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("backup directory: %w", err)
	}
	if err := os.Chown(dir, operatorUID, operatorUID); err != nil {
		return fmt.Errorf("backup directory: %w", err)
	}
	return os.Chmod(dir, 0o700)
}
