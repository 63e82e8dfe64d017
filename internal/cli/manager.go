package cli

import (
	"github.com/spf13/cobra"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	kv1 "kubinception.dev/kubinception/api/v1alpha1"
	"kubinception.dev/kubinception/internal/controlplane"
	"kubinception.dev/kubinception/internal/datastore"
	"kubinception.dev/kubinception/internal/datastorecontroller"
	"kubinception.dev/kubinception/internal/images"
	"kubinception.dev/kubinception/internal/tenantcluster"
)

// Scheme holds every type the operator and the CLI read and write.
func Scheme() *runtime.Scheme {
	s := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(s); err != nil {
		panic(err)
	}
	if err := kv1.AddToScheme(s); err != nil {
		panic(err)
	}
	return s
}

func newManagerCommand() *cobra.Command {
	var metricsAddr, probeAddr, registry, leaderNS string
	var leaderElect bool
	var concurrency int
	cmd := &cobra.Command{
		Use:   "manager",
		Short: "Run the operator that reconciles TenantClusters and Datastores (runs in the admin cluster)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctrl.SetLogger(zap.New(zap.UseDevMode(false)))
			managed := labels.SelectorFromSet(labels.Set{tenantcluster.ManagedBy: "kubinception"})
			controlPlanePods := labels.SelectorFromSet(labels.Set{controlplane.LabelComponent: "control-plane"})
			rc := ctrl.GetConfigOrDie()
			// Each tenant's reconcile makes a handful of requests; the
			// client-go default of 5 per second would queue a burst of
			// tenants behind the client rather than the API server.
			rc.QPS, rc.Burst = 100, 200
			mgr, err := ctrl.NewManager(rc, ctrl.Options{
				Scheme:                  Scheme(),
				Metrics:                 metricsserver.Options{BindAddress: metricsAddr},
				HealthProbeBindAddress:  probeAddr,
				LeaderElection:          leaderElect,
				LeaderElectionID:        "kubinception-manager",
				LeaderElectionNamespace: leaderNS,
				// Only what the operator made is cached: memory grows with
				// tenants, not with everything in the admin cluster.
				Cache: cache.Options{ByObject: map[client.Object]cache.ByObject{
					&corev1.Secret{}:     {Label: managed},
					&corev1.Service{}:    {Label: managed},
					&appsv1.Deployment{}: {Label: managed},
					&corev1.Pod{}:        {Label: controlPlanePods},
				}},
			})
			if err != nil {
				return err
			}
			stores := &datastore.ClientCache{}
			defer stores.Close()
			if err := (&tenantcluster.Reconciler{
				Client: mgr.GetClient(), APIReader: mgr.GetAPIReader(), Clock: clock.RealClock{},
				Datastores: stores, Registry: registry, MaxConcurrentReconciles: concurrency,
			}).SetupWithManager(mgr); err != nil {
				return err
			}
			if err := (&datastorecontroller.Reconciler{
				Client: mgr.GetClient(), APIReader: mgr.GetAPIReader(), Clock: clock.RealClock{}, Datastores: stores,
			}).SetupWithManager(mgr); err != nil {
				return err
			}
			if err := mgr.AddHealthzCheck("ping", healthz.Ping); err != nil {
				return err
			}
			if err := mgr.AddReadyzCheck("ping", healthz.Ping); err != nil {
				return err
			}
			return mgr.Start(cmd.Context())
		},
	}
	f := cmd.Flags()
	f.StringVar(&metricsAddr, "metrics-bind-address", ":8080", "address of the metrics endpoint (0 disables it)")
	f.StringVar(&probeAddr, "health-probe-bind-address", ":8081", "address of /healthz and /readyz")
	f.BoolVar(&leaderElect, "leader-elect", true, "elect a leader so only one replica reconciles")
	f.StringVar(&leaderNS, "leader-election-namespace", "", "namespace of the leader-election lease (the pod's own when empty)")
	f.StringVar(&registry, "image-registry", images.LocalRegistry, "registry of tenant control-plane images unless a tenant sets its own")
	f.IntVar(&concurrency, "max-concurrent-reconciles", 10, "tenants reconciled at once")
	return cmd
}
