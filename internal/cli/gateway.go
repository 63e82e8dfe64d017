package cli

import (
	"fmt"
	"os"
	"strings"

	"github.com/spf13/cobra"
	"k8s.io/apimachinery/pkg/api/resource"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	"kubinception.dev/kubinception/internal/datastore"
	"kubinception.dev/kubinception/internal/gateway"
	"kubinception.dev/kubinception/internal/gatewaypolicy"
)

func newGatewayCommand() *cobra.Command {
	cfg := gateway.DefaultConfig()
	def := cfg.Policy.(gateway.StaticPolicy).Default
	var endpoints, caFile, certFile, keyFile, datastoreName string
	quota := resource.NewQuantity(def.QuotaBytes, resource.BinarySI).String()
	cmd := &cobra.Command{
		Use:   "gateway",
		Short: "Serve the etcd API to tenant API servers, each confined to its prefix with quota, rate limits and compaction of its own",
		Long: `Runs the etcd gateway in front of one Datastore. Tenant API servers
connect to it (not to the datastore) with a client certificate from the
tenant CA whose common name is tenant-<uid>, and run with the default
--etcd-prefix=/registry: the gateway maps their keys into /tenants/<uid>.
It alone holds a datastore credential (--datastore-*).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			logger := zap.New(zap.UseDevMode(false))
			// The policy's informer cache logs through controller-runtime.
			ctrl.SetLogger(logger)
			cfg.Logger = logger.WithName("gateway")
			creds, err := readCredentials(endpoints, caFile, certFile, keyFile)
			if err != nil {
				return err
			}
			cfg.Datastore = creds
			q, err := resource.ParseQuantity(quota)
			if err != nil {
				return fmt.Errorf("--default-quota-bytes: %w", err)
			}
			def.QuotaBytes = q.Value()
			cfg.Policy = gateway.StaticPolicy{Default: def}
			if datastoreName != "" {
				// In the admin cluster each tenant's limits come from
				// its TenantCluster and the Datastore's defaults.
				rc, err := ctrl.GetConfig()
				if err != nil {
					return fmt.Errorf("--datastore needs the admin cluster's API: %w", err)
				}
				if cfg.Policy, err = gatewaypolicy.Start(cmd.Context(), rc, datastoreName); err != nil {
					return err
				}
			}
			g, err := gateway.New(cfg)
			if err != nil {
				return err
			}
			return g.Run(cmd.Context())
		},
	}
	f := cmd.Flags()
	f.StringVar(&cfg.ListenAddress, "listen-address", cfg.ListenAddress, "address serving tenants (etcd gRPC over TLS)")
	f.StringVar(&cfg.HTTPAddress, "http-address", cfg.HTTPAddress, "address serving /metrics, /usage, /healthz and /readyz over HTTP (empty disables)")
	f.StringVar(&cfg.AdminAddress, "admin-address", "", "address serving the admin API (per-tenant backup and restore) over TLS to the tenant-CA certificate named "+gateway.AdminCommonName+" only (empty disables)")
	f.StringVar(&cfg.ServingCertFile, "tls-cert-file", "", "the gateway's serving certificate (PEM)")
	f.StringVar(&cfg.ServingKeyFile, "tls-key-file", "", "the gateway's serving key (PEM)")
	f.StringVar(&cfg.TenantCAFile, "tenant-ca-file", "", "CA whose client certificates (CN tenant-<uid>) identify tenants; trusted by the gateway only")
	f.StringVar(&endpoints, "datastore-endpoints", "", "comma-separated client URLs of the datastore's members")
	f.StringVar(&caFile, "datastore-ca-file", "", "CA of the datastore members' serving certificates")
	f.StringVar(&certFile, "datastore-cert-file", "", "the gateway's client certificate on the datastore (etcd user root)")
	f.StringVar(&keyFile, "datastore-key-file", "", "key of --datastore-cert-file")
	f.StringVar(&datastoreName, "datastore", "", "name of the Datastore served: limits come from its TenantClusters and defaults in the admin cluster, and tenants without a TenantCluster on it are refused (the --default-* flags apply when empty)")
	f.StringVar(&quota, "default-quota-bytes", quota, "bytes of keys and values each tenant may keep (0: no quota)")
	f.Float64Var(&def.RequestsPerSecond, "default-request-rate", def.RequestsPerSecond, "requests per second each tenant may send (0: no limit)")
	f.Float64Var(&def.BytesPerSecond, "default-byte-rate", def.BytesPerSecond, "bytes per second each tenant may write and read (0: no limit)")
	f.IntVar(&cfg.MaxInFlight, "max-in-flight", cfg.MaxInFlight, "requests sent to the datastore at once; with k tenants active each may hold ceil(max-in-flight/k), and waiting tenants take turns")
	f.IntVar(&cfg.MaxQueuedPerTenant, "max-queued-per-tenant", cfg.MaxQueuedPerTenant, "waiting requests per tenant before 'too many requests'")
	f.DurationVar(&cfg.CompactionInterval, "compaction-interval", cfg.CompactionInterval, "how often the datastore is compacted where every compacting tenant agrees (0: leave it to the datastore)")
	f.DurationVar(&cfg.CompactionStaleAfter, "compaction-stale-after", cfg.CompactionStaleAfter, "a tenant that has not compacted for this long no longer holds back the datastore's compaction")
	for _, name := range []string{"tls-cert-file", "tls-key-file", "tenant-ca-file", "datastore-endpoints", "datastore-ca-file", "datastore-cert-file", "datastore-key-file"} {
		_ = cmd.MarkFlagRequired(name)
	}
	return cmd
}

// readCredentials reads the gateway's datastore credential from files.
func readCredentials(endpoints, caFile, certFile, keyFile string) (datastore.Credentials, error) {
	c := datastore.Credentials{Endpoints: strings.Split(endpoints, ",")}
	for _, f := range []struct {
		path string
		dst  *[]byte
	}{{caFile, &c.CAPEM}, {certFile, &c.CertPEM}, {keyFile, &c.KeyPEM}} {
		b, err := os.ReadFile(f.path)
		if err != nil {
			return c, fmt.Errorf("datastore credential: %w", err)
		}
		*f.dst = b
	}
	return c, nil
}
