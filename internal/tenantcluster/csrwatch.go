package tenantcluster

import (
	"sync"
	"time"

	certv1 "k8s.io/api/certificates/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/tools/cache"

	kv1 "kubinception.dev/kubinception/api/v1alpha1"
)

// csrWatch follows a tenant's kubelet serving certificate requests, so
// that a joining node's request is decided as soon as it is made rather
// than at the tenant's next periodic reconcile.
type csrWatch struct {
	stop chan struct{}
	once sync.Once
}

func (w *csrWatch) close() { w.once.Do(func() { close(w.stop) }) }

// watchServingCSRs starts, once per tenant client, the watch of the
// tenant's undecided kubelet serving certificate requests.
func (r *Reconciler) watchServingCSRs(tc *kv1.TenantCluster, t tenantClient) {
	r.tenants.mu.Lock()
	defer r.tenants.mu.Unlock()
	cur, ok := r.tenants.clients[tc.UID]
	if !ok || cur.key != t.key || cur.csrs != nil {
		return
	}
	factory := informers.NewSharedInformerFactoryWithOptions(cur.clientset, 10*time.Minute,
		informers.WithTweakListOptions(func(o *metav1.ListOptions) {
			o.FieldSelector = "spec.signerName=" + certv1.KubeletServingSignerName
		}))
	inf := factory.Certificates().V1().CertificateSigningRequests().Informer()
	ref := types.NamespacedName{Namespace: tc.Namespace, Name: tc.Name}
	notify := func(o any) {
		if csr, ok := o.(*certv1.CertificateSigningRequest); ok && !decided(csr) {
			r.enqueue(ref)
		}
	}
	_, _ = inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    notify,
		UpdateFunc: func(_, n any) { notify(n) },
	})
	w := &csrWatch{stop: make(chan struct{})}
	factory.Start(w.stop)
	cur.csrs = w
	r.tenants.clients[tc.UID] = cur
}
