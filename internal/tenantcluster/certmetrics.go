package tenantcluster

import (
	"github.com/prometheus/client_golang/prometheus"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/metrics"

	kv1 "kubinception.dev/kubinception/api/v1alpha1"
)

// certificateTimes is what a platform alerts on before a tenant's
// certificates run out: when the first leaf and when the CA expire, and
// when the operator next renews a leaf. A renewal that keeps failing shows
// as a renewal time in the past.
var certificateTimes = prometheus.NewGaugeVec(prometheus.GaugeOpts{
	Name: "kubinception_tenant_certificate_timestamp_seconds",
	Help: "Times of a tenant's certificates, in Unix seconds: what=leaf_not_after (the first leaf certificate expires), leaf_renewal (the operator next renews one), ca_not_after (the tenant CA expires).",
}, []string{"namespace", "tenant", "what"})

func init() { metrics.Registry.MustRegister(certificateTimes) }

// recordCertificateTimes exports the times of status.certificates.
func recordCertificateTimes(tc *kv1.TenantCluster) {
	st := tc.Status.Certificates
	for what, t := range map[string]*metav1.Time{"leaf_not_after": st.NotAfter, "leaf_renewal": st.RenewalTime, "ca_not_after": st.CANotAfter} {
		if t != nil {
			certificateTimes.WithLabelValues(tc.Namespace, tc.Name, what).Set(float64(t.Unix()))
		}
	}
}

// forgetCertificateTimes drops a deleted tenant's series.
func forgetCertificateTimes(tc *kv1.TenantCluster) {
	certificateTimes.DeletePartialMatch(prometheus.Labels{"namespace": tc.Namespace, "tenant": tc.Name})
}
