package cli

import (
	"github.com/spf13/cobra"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	"kubinception.dev/kubinception/internal/operator"
)

func newManagerCommand() *cobra.Command {
	o := operator.DefaultOptions()
	cmd := &cobra.Command{
		Use:   "manager",
		Short: "Run the operator that reconciles TenantClusters and Datastores (runs in the admin cluster)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctrl.SetLogger(zap.New(zap.UseDevMode(false)))
			rc, err := ctrl.GetConfig()
			if err != nil {
				return err
			}
			return operator.Run(cmd.Context(), rc, o)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.MetricsAddr, "metrics-bind-address", o.MetricsAddr, "address of the metrics endpoint (0 disables it)")
	f.StringVar(&o.ProbeAddr, "health-probe-bind-address", o.ProbeAddr, "address of /healthz and /readyz")
	f.BoolVar(&o.LeaderElect, "leader-elect", o.LeaderElect, "elect a leader so only one replica reconciles")
	f.StringVar(&o.LeaderElectionNamespace, "leader-election-namespace", "", "namespace of the leader-election lease (the pod's own when empty)")
	f.StringVar(&o.Registry, "image-registry", o.Registry, "registry of tenant control-plane images unless a tenant sets its own")
	f.StringSliceVar(&o.AllowedRegistries, "allowed-registries", nil, "registries a TenantCluster may name in spec.controlPlane.imageRegistry, each with the paths below it (empty: --image-registry only)")
	f.StringVar(&o.Gateway.Namespace, "gateway-namespace", o.Gateway.Namespace, "namespace of the Datastores' gateways (the operator's own)")
	f.StringVar(&o.Gateway.Image, "gateway-image", "", "image of the Datastores' gateways: the kubinception image (kubinception install sets it)")
	f.StringVar((*string)(&o.Gateway.ImagePullPolicy), "gateway-image-pull-policy", string(o.Gateway.ImagePullPolicy), "pull policy of the gateway image")
	f.StringVar(&o.LoadBalancerAddressPool, "load-balancer-address-pool", "", "CIDR to take the addresses of the operator's LoadBalancer Services from, on admin clusters without a load-balancer implementation (routed to the nodes)")
	f.StringSliceVar(&o.ProtectedNetworks, "protected-networks", nil, "IPv4 CIDRs of the admin cluster's own networks (pod ranges, node addresses) that the API server of a tenant without the tunnel may not reach; empty leaves its egress open to the admin cluster")
	f.StringVar(&o.BackupDir, "backup-dir", "", "directory (a mounted volume) where TenantBackups with target Volume keep their archives")
	f.StringVar(&o.BackupS3.Endpoint, "backup-s3-endpoint", "", "URL of the S3-compatible server where TenantBackups with target S3 keep their archives; empty: no S3 target")
	f.StringVar(&o.BackupS3.Bucket, "backup-s3-bucket", "", "bucket of the S3 target")
	f.StringVar(&o.BackupS3.Prefix, "backup-s3-prefix", "", "prefix of the S3 target's object names, ending with /")
	f.StringVar(&o.BackupS3.Region, "backup-s3-region", "", "region of the S3 bucket (us-east-1 when empty)")
	f.StringVar(&o.BackupS3.CredentialsSecret, "backup-s3-credentials-secret", "kubinception-backup-s3", "Secret in the operator's namespace holding the S3 credentials (accessKeyID, secretAccessKey, optionally ca.crt), read at every use")
	f.StringVar(&o.FrontDoorDomain, "front-door-domain", "", "base domain of tenants' names at the front door (<tenant>.<domain>; exposure.type FrontDoor is refused when empty)")
	f.Int32Var(&o.FrontDoorPort, "front-door-port", 443, "port clients reach the front door on")
	f.IntVar(&o.MaxConcurrentReconciles, "max-concurrent-reconciles", o.MaxConcurrentReconciles, "tenants reconciled at once")
	f.IntVar(&o.MaxStartingControlPlanes, "max-starting-control-planes", o.MaxStartingControlPlanes, "tenant control planes started from nothing (created or woken) at once, the others waiting their turn; about twice the admin nodes' cores keeps them from starving each other (0: no bound)")
	return cmd
}
