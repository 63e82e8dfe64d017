package cli

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	kv1 "kubinception.dev/kubinception/api/v1alpha1"
	"kubinception.dev/kubinception/internal/install"
	"kubinception.dev/kubinception/internal/local/admincluster"
	"kubinception.dev/kubinception/internal/release"
)

func newInstallCommand() *cobra.Command {
	var f adminFlags
	var image, registry, root string
	cmd := &cobra.Command{
		Use:   "install",
		Short: "Install the CRDs and the operator into the admin cluster (idempotent)",
		Long: `Installs the TenantCluster and Datastore CRDs, the operator's namespace,
service account, RBAC and Deployment. On the local admin cluster it also
imports the operator's image (this binary) and creates the Datastore
"default" from the credentials admin up stored.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := f.client()
			if err != nil {
				return err
			}
			opts := install.Options{Image: image, Registry: registry}
			local := false
			if _, err := os.Stat(filepath.Join(root, "run", "containerd.sock")); err == nil {
				local = true
			}
			if image == "" {
				if !local {
					return fmt.Errorf("--image is required when the admin cluster is not the local one (no containerd socket under %s)", root)
				}
				if opts.Image, err = importSelf(cmd.Context(), root); err != nil {
					return err
				}
			}
			if opts.Datastore, err = localDatastore(cmd.Context(), c); err != nil {
				return err
			}
			return install.Apply(cmd.Context(), c, opts, cmd.OutOrStdout())
		},
	}
	f.register(cmd)
	cmd.Flags().StringVar(&image, "image", "", "operator image (default: this binary, imported into the local admin cluster)")
	cmd.Flags().StringVar(&registry, "image-registry", release.LocalRegistry, "registry of tenant control-plane images")
	cmd.Flags().StringVar(&root, "root", admincluster.DefaultRoot, "state directory of the local admin cluster")
	return cmd
}

// importSelf packs this binary as the kubinception image and imports it
// into the local admin cluster's containerd.
func importSelf(ctx context.Context, root string) (string, error) {
	if err := admincluster.RequireRoot("kubinception install (on the local admin cluster)"); err != nil {
		return "", err
	}
	self, tag, err := selfBinary()
	if err != nil {
		return "", err
	}
	c, _, err := admincluster.LoadSaved(root)
	if err != nil {
		return "", err
	}
	c.Images.KubinceptionTag = tag
	return admincluster.ImportKubinceptionImage(ctx, c, self)
}

// localDatastore describes the local admin cluster's datastore from the
// Secrets admin up stored, or nil when they are not there.
func localDatastore(ctx context.Context, c client.Client) (*kv1.DatastoreSpec, error) {
	root := &corev1.Secret{}
	err := c.Get(ctx, types.NamespacedName{Namespace: admincluster.SystemNamespace, Name: admincluster.DatastoreRootSecret}, root)
	if err != nil {
		return nil, client.IgnoreNotFound(err)
	}
	endpoints := strings.Split(string(root.Data["endpoints"]), ",")
	return &kv1.DatastoreSpec{
		Endpoints:     endpoints,
		CASecretRef:   kv1.SecretReference{Namespace: admincluster.SystemNamespace, Name: admincluster.DatastoreCASecret},
		RootSecretRef: kv1.SecretReference{Namespace: admincluster.SystemNamespace, Name: admincluster.DatastoreRootSecret},
	}, nil
}
