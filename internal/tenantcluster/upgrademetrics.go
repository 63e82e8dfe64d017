package tenantcluster

import (
	"github.com/prometheus/client_golang/prometheus"
	"sigs.k8s.io/controller-runtime/pkg/metrics"

	kv1 "kubinception.dev/kubinception/api/v1alpha1"
)

// What a platform follows a fleet upgrade by: which version each tenant's
// control plane runs, which tenants are rolling, and how many nodes run a
// kubelet outside the supported skew.
var (
	runningVersion = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "kubinception_tenant_version_info",
		Help: "1 for the Kubernetes version a tenant's control plane runs (status.version).",
	}, []string{"namespace", "tenant", "version"})
	upgradeInProgress = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "kubinception_tenant_upgrading",
		Help: "1 while a tenant's control plane or addons move to a new spec.version (its Upgrading condition is True), else 0.",
	}, []string{"namespace", "tenant"})
	nodesOutsideSkew = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "kubinception_tenant_nodes_outside_version_skew",
		Help: "Nodes of a tenant whose kubelet is newer than its API server or more than three minors older.",
	}, []string{"namespace", "tenant"})
)

func init() { metrics.Registry.MustRegister(runningVersion, upgradeInProgress, nodesOutsideSkew) }

// recordVersion exports the running version and whether an upgrade runs.
func recordVersion(tc *kv1.TenantCluster, upgrading bool) {
	if tc.Status.Version == "" {
		return
	}
	runningVersion.DeletePartialMatch(prometheus.Labels{"namespace": tc.Namespace, "tenant": tc.Name})
	runningVersion.WithLabelValues(tc.Namespace, tc.Name, tc.Status.Version).Set(1)
	v := 0.0
	if upgrading {
		v = 1
	}
	upgradeInProgress.WithLabelValues(tc.Namespace, tc.Name).Set(v)
}

// forgetVersion drops a deleted tenant's series.
func forgetVersion(tc *kv1.TenantCluster) {
	for _, g := range []*prometheus.GaugeVec{runningVersion, upgradeInProgress, nodesOutsideSkew} {
		g.DeletePartialMatch(prometheus.Labels{"namespace": tc.Namespace, "tenant": tc.Name})
	}
}
