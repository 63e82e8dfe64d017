package operator

import (
	"context"
	"fmt"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/rest"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	"sigs.k8s.io/controller-runtime/pkg/metrics/filters"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"kubinception.dev/kubinception/internal/addresspool"
	"kubinception.dev/kubinception/internal/backup"
	"kubinception.dev/kubinception/internal/backupcontroller"
	"kubinception.dev/kubinception/internal/backupschedule"
	"kubinception.dev/kubinception/internal/controlplane"
	"kubinception.dev/kubinception/internal/datastore"
	"kubinception.dev/kubinception/internal/datastorecontroller"
	"kubinception.dev/kubinception/internal/gatewaydeploy"
	"kubinception.dev/kubinception/internal/migrationcontroller"
	"kubinception.dev/kubinception/internal/netpolicy"
	"kubinception.dev/kubinception/internal/objects"
	"kubinception.dev/kubinception/internal/release"
	"kubinception.dev/kubinception/internal/scheme"
	"kubinception.dev/kubinception/internal/tenantcluster"
)

// Options configure the operator. The zero value of a field means its
// default.
type Options struct {
	// MetricsAddr serves Prometheus metrics ("0" disables them).
	MetricsAddr string
	// ProbeAddr serves /healthz and /readyz.
	ProbeAddr string
	// LeaderElect makes replicas elect one leader; LeaderElectionNamespace
	// holds the lease (the pod's own namespace when empty).
	LeaderElect             bool
	LeaderElectionNamespace string
	// Registry is the default registry of tenant control-plane images.
	Registry string
	// AllowedRegistries are the registries a TenantCluster may name;
	// empty allows Registry only.
	AllowedRegistries []string
	// MaxConcurrentReconciles bounds how many tenants reconcile at once.
	MaxConcurrentReconciles int
	// Gateway says where and from which image each Datastore's gateway
	// runs: the operator's own namespace and image.
	Gateway datastorecontroller.GatewayOptions
	// LoadBalancerAddressPool, when set, is the CIDR the operator takes
	// the addresses of its own LoadBalancer Services from (admin clusters
	// without a load-balancer implementation).
	LoadBalancerAddressPool string
	// ProtectedNetworks are the admin cluster's own networks (its pod
	// ranges, its nodes' addresses), IPv4 CIDRs that the API server of a
	// tenant without the tunnel may not reach. Empty leaves that API
	// server free to dial anything, the admin cluster included.
	ProtectedNetworks []string
	// MaxStartingControlPlanes bounds how many tenant control planes
	// start from nothing (created or woken) at once; 0 is no bound.
	MaxStartingControlPlanes int
	// FrontDoorDomain is the base domain of tenants' front-door names
	// (<tenant>.<domain>); empty when no front door is installed.
	FrontDoorDomain string
	// FrontDoorPort is the port clients reach the front door on.
	FrontDoorPort int32
	// BackupDir is where TenantBackups with target Volume keep their
	// archives (a mounted volume); empty: no Volume target.
	BackupDir string
	// BackupS3 is the S3 target; an empty Endpoint: none. With neither
	// target, every TenantBackup fails saying so.
	BackupS3 backupcontroller.S3Settings
}

// DefaultOptions are the options `kubinception manager` starts with.
func DefaultOptions() Options {
	return Options{
		MetricsAddr: ":8080", ProbeAddr: ":8081", LeaderElect: true,
		Registry: release.LocalRegistry, MaxConcurrentReconciles: 10, MaxStartingControlPlanes: 4,
		Gateway: datastorecontroller.GatewayOptions{Namespace: "kubinception-system", ImagePullPolicy: corev1.PullIfNotPresent},
	}
}

// NewManager builds the manager with every reconciler registered. The
// returned cleanup closes the datastore clients the reconcilers share.
func NewManager(rc *rest.Config, o Options) (ctrl.Manager, func(), error) {
	managed := labels.SelectorFromSet(labels.Set{objects.ManagedBy: objects.ManagedByValue})
	controlPlanePods := labels.SelectorFromSet(labels.Set{controlplane.LabelComponent: "control-plane"})
	protected, err := netpolicy.ParseProtectedNetworks(o.ProtectedNetworks)
	if err != nil {
		return nil, nil, err
	}
	if err := validateFrontDoor(o); err != nil {
		return nil, nil, err
	}
	log := ctrl.Log.WithName("operator")
	// Said once at start: the setting changes only with the operator's
	// flags.
	if len(protected) == 0 {
		log.Info("no protected networks given: the egress of control planes without the tunnel is not fenced off the admin cluster's pods and nodes",
			"flag", netpolicy.ProtectedNetworksFlag)
	} else {
		nets := make([]string, len(protected))
		for i, n := range protected {
			nets[i] = n.String()
		}
		log.Info("control planes without the tunnel may not reach the admin cluster's protected networks", "protectedNetworks", nets)
	}
	rc = rest.CopyConfig(rc)
	// Each tenant's reconcile makes a handful of requests; the client-go
	// default of 5 per second would queue a burst of tenants behind the
	// client rather than the API server.
	rc.QPS, rc.Burst = 100, 200
	mgr, err := ctrl.NewManager(rc, ctrl.Options{
		Scheme: scheme.New(),
		// Metrics over https, to bearer tokens the admin cluster
		// authenticates and allows to get /metrics (the ClusterRole
		// kubinception-metrics-reader): they name tenants, and nothing
		// unauthenticated should learn them.
		Metrics: metricsserver.Options{BindAddress: o.MetricsAddr, SecureServing: true,
			FilterProvider: filters.WithAuthenticationAndAuthorization},
		HealthProbeBindAddress:  o.ProbeAddr,
		LeaderElection:          o.LeaderElect,
		LeaderElectionID:        "kubinception-manager",
		LeaderElectionNamespace: o.LeaderElectionNamespace,
		// Only what the operator made is cached: memory grows with
		// tenants, not with everything in the admin cluster.
		Cache: cache.Options{ByObject: map[client.Object]cache.ByObject{
			&corev1.Secret{}:        {Label: managed},
			&corev1.Service{}:       {Label: managed},
			&appsv1.Deployment{}:    {Label: managed},
			&corev1.Pod{}:           {Label: controlPlanePods},
			&corev1.ConfigMap{}:     {Namespaces: frontDoorNamespace()},
			&coordinationv1.Lease{}: {Namespaces: frontDoorNamespace()},
		}},
	})
	if err != nil {
		return nil, nil, fmt.Errorf("create manager: %w", err)
	}
	stores := &datastore.ClientCache{}
	// One read of a gateway's usage serves every reconcile for a while.
	usage := gatewaydeploy.NewUsageReader(10 * time.Second)
	if err := (&tenantcluster.Reconciler{
		Client: mgr.GetClient(), APIReader: mgr.GetAPIReader(), Clock: clock.RealClock{},
		Recorder:   mgr.GetEventRecorder("kubinception"),
		Datastores: stores, Registry: o.Registry, AllowedRegistries: o.AllowedRegistries, Image: o.Gateway.Image, MaxConcurrentReconciles: o.MaxConcurrentReconciles,
		GatewayNamespace: o.Gateway.Namespace, Usage: usage, ProtectedNetworks: protected, MaxStartingControlPlanes: o.MaxStartingControlPlanes,
		FrontDoor: tenantcluster.FrontDoorSettings{Domain: o.FrontDoorDomain, Port: o.FrontDoorPort},
	}).SetupWithManager(mgr); err != nil {
		stores.Close()
		return nil, nil, fmt.Errorf("set up TenantCluster reconciler: %w", err)
	}
	if err := (&datastorecontroller.Reconciler{
		Client: mgr.GetClient(), APIReader: mgr.GetAPIReader(), Clock: clock.RealClock{},
		Recorder: mgr.GetEventRecorder("kubinception"), Datastores: stores,
		Gateway: o.Gateway, Usage: usage,
	}).SetupWithManager(mgr); err != nil {
		stores.Close()
		return nil, nil, fmt.Errorf("set up Datastore reconciler: %w", err)
	}
	br := &backupcontroller.Reconciler{
		Client: mgr.GetClient(), APIReader: mgr.GetAPIReader(), Clock: clock.RealClock{},
		Recorder: mgr.GetEventRecorder("kubinception"), Namespace: o.Gateway.Namespace, GatewayNamespace: o.Gateway.Namespace,
	}
	if o.BackupDir != "" {
		br.Target, br.TargetName = backup.Dir{Path: o.BackupDir}, "dir:"+o.BackupDir
	}
	if o.BackupS3.Endpoint != "" {
		s3 := o.BackupS3
		br.S3 = &s3
	}
	if err := br.SetupWithManager(mgr); err != nil {
		stores.Close()
		return nil, nil, fmt.Errorf("set up TenantBackup reconciler: %w", err)
	}
	if err := (&backupcontroller.RestoreReconciler{
		Client: mgr.GetClient(), APIReader: mgr.GetAPIReader(), Clock: clock.RealClock{},
		Recorder: mgr.GetEventRecorder("kubinception"), Backups: br,
	}).SetupWithManager(mgr); err != nil {
		stores.Close()
		return nil, nil, fmt.Errorf("set up TenantRestore reconciler: %w", err)
	}
	if err := (&backupschedule.Reconciler{
		Client: mgr.GetClient(), Clock: clock.RealClock{}, Recorder: mgr.GetEventRecorder("kubinception"),
	}).SetupWithManager(mgr); err != nil {
		stores.Close()
		return nil, nil, fmt.Errorf("set up the backup schedule reconciler: %w", err)
	}
	if err := (&migrationcontroller.Reconciler{
		Client: mgr.GetClient(), APIReader: mgr.GetAPIReader(), Clock: clock.RealClock{},
		Recorder: mgr.GetEventRecorder("kubinception"), GatewayNamespace: o.Gateway.Namespace,
	}).SetupWithManager(mgr); err != nil {
		stores.Close()
		return nil, nil, fmt.Errorf("set up the migration reconciler: %w", err)
	}
	if o.LoadBalancerAddressPool != "" {
		pool, err := addresspool.Parse(o.LoadBalancerAddressPool)
		if err == nil {
			err = (&addresspool.Reconciler{Client: mgr.GetClient(), Pool: pool}).SetupWithManager(mgr)
		}
		if err != nil {
			stores.Close()
			return nil, nil, fmt.Errorf("set up the load-balancer address pool: %w", err)
		}
	}
	if err := mgr.AddHealthzCheck("ping", healthz.Ping); err != nil {
		stores.Close()
		return nil, nil, err
	}
	if err := mgr.AddReadyzCheck("ping", healthz.Ping); err != nil {
		stores.Close()
		return nil, nil, err
	}
	return mgr, stores.Close, nil
}

// Run runs the operator until ctx is done.
func Run(ctx context.Context, rc *rest.Config, o Options) error {
	mgr, cleanup, err := NewManager(rc, o)
	if err != nil {
		return err
	}
	defer cleanup()
	return mgr.Start(ctx)
}
