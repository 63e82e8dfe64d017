package cli

import (
	"github.com/spf13/cobra"

	"kubinception.dev/kubinception/internal/local/components"
	"kubinception.dev/kubinception/internal/release"
)

func newBuildCommand() *cobra.Command {
	build := &cobra.Command{Use: "build", Short: "Build Kubernetes components and etcd from their upstream Go modules"}
	var version, cache string
	cmd := &cobra.Command{
		Use:   "components",
		Short: "Build kube-apiserver, kube-controller-manager, kube-scheduler, kubelet, kube-proxy, kubectl, kubeadm and etcd",
		Long: `Builds every Kubernetes component at --version from the k8s.io/kubernetes Go
module as one multi-call binary, and etcd from go.etcd.io/etcd/server/v3.
Results are cached by version: a second run with a warm cache takes seconds.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			b := &components.Builder{CacheDir: cache, Out: cmd.OutOrStdout()}
			_, err := b.Build(cmd.Context(), version)
			return err
		},
	}
	cmd.Flags().StringVar(&version, "version", release.DefaultKubernetesVersion, "Kubernetes version to build ("+release.SupportedMinorsText()+")")
	cmd.Flags().StringVar(&cache, "cache", components.DefaultCacheDir(), "directory where builds are cached (env KUBINCEPTION_CACHE)")
	build.AddCommand(cmd)
	return build
}
