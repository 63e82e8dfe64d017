package tenantcluster

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/informers"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/event"

	kv1 "kubinception.dev/kubinception/api/v1alpha1"
	cp "kubinception.dev/kubinception/internal/controlplane"
	"kubinception.dev/kubinception/internal/tenantlb"
)

func ingressText(ingress []corev1.LoadBalancerIngress) string {
	var out []string
	for _, i := range ingress {
		if i.IP != "" {
			out = append(out, i.IP)
		} else {
			out = append(out, i.Hostname)
		}
	}
	return strings.Join(out, ", ")
}

// loadBalancerReplicas run each tenant load balancer.
const loadBalancerReplicas = 2

// serviceWatch follows a tenant's Services, so that a new or changed
// Service of type LoadBalancer reconciles its tenant at once.
type serviceWatch struct {
	lister corelisters.ServiceLister
	synced cache.InformerSynced
	stop   chan struct{}
	once   sync.Once
}

func (w *serviceWatch) close() { w.once.Do(func() { close(w.stop) }) }

// tenantServices starts (once per tenant client) the watch of the
// tenant's Services and returns it.
func (r *Reconciler) tenantServices(tc *kv1.TenantCluster, t tenantClient) *serviceWatch {
	r.tenants.mu.Lock()
	defer r.tenants.mu.Unlock()
	cur, ok := r.tenants.clients[tc.UID]
	if !ok || cur.key != t.key {
		// The client was replaced meanwhile (new address or
		// credentials): the next reconcile uses the new one.
		return nil
	}
	if cur.services != nil {
		return cur.services
	}
	factory := informers.NewSharedInformerFactory(cur.clientset, 10*time.Minute)
	inf := factory.Core().V1().Services()
	ref := types.NamespacedName{Namespace: tc.Namespace, Name: tc.Name}
	notify := func(objs ...any) {
		for _, o := range objs {
			if svc, ok := o.(*corev1.Service); ok && svc.Spec.Type != corev1.ServiceTypeLoadBalancer {
				continue
			}
			r.enqueue(ref)
			return
		}
	}
	_, _ = inf.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(o any) { notify(o) },
		UpdateFunc: func(o, n any) { notify(o, n) },
		// A deleted Service (or its tombstone): always look again.
		DeleteFunc: func(any) { r.enqueue(ref) },
	})
	w := &serviceWatch{lister: inf.Lister(), synced: inf.Informer().HasSynced, stop: make(chan struct{})}
	factory.Start(w.stop)
	cur.services = w
	r.tenants.clients[tc.UID] = cur
	return w
}

// enqueue asks for a reconcile of a tenant, without blocking: the
// periodic resync catches up if the queue is full.
func (r *Reconciler) enqueue(ref types.NamespacedName) {
	if r.events == nil {
		return
	}
	select {
	case r.events <- event.GenericEvent{Object: &kv1.TenantCluster{ObjectMeta: metav1.ObjectMeta{Namespace: ref.Namespace, Name: ref.Name}}}:
	default:
	}
}

// reconcileLoadBalancers serves the tenant's Services of type
// LoadBalancer from the admin cluster: for each, a load balancer (a
// Deployment of `kubinception lb` reaching the Service's node ports on
// the tenant's nodes through the tunnel) behind an admin-cluster Service
// of type LoadBalancer, whose address goes into the tenant Service's
// status. Load balancers whose tenant Service is gone are removed. Without
// the tunnel the admin cluster cannot reach node ports, so nothing is
// served.
func (r *Reconciler) reconcileLoadBalancers(ctx context.Context, s *scope) (ctrl.Result, error) {
	tc := s.tc
	if !tc.Spec.Addons.Tunnel.IsEnabled() || s.exposure.tunnelClients == "" {
		return ctrl.Result{}, r.pruneLoadBalancers(ctx, tc, nil)
	}
	t, err := r.tenantClient(s)
	if err != nil {
		return ctrl.Result{}, err
	}
	w := r.tenantServices(tc, t)
	if w == nil || !w.synced() {
		return ctrl.Result{RequeueAfter: time.Second}, nil
	}
	svcs, err := w.lister.List(labels.Everything())
	if err != nil {
		return ctrl.Result{}, err
	}
	log := ctrl.LoggerFrom(ctx)
	keep := map[string]bool{}
	for _, svc := range svcs {
		if svc.Spec.Type != corev1.ServiceTypeLoadBalancer || svc.Spec.LoadBalancerClass != nil || !svc.DeletionTimestamp.IsZero() {
			continue
		}
		key := types.NamespacedName{Namespace: svc.Namespace, Name: svc.Name}
		ports, skipped := tenantlb.Ports(svc)
		if len(skipped) > 0 {
			log.Info("tenant Service ports not load-balanced", "service", key.String(), "ports", skipped)
		}
		if len(ports) == 0 {
			continue
		}
		p := tenantlb.Params{
			Tenant: tc.Name, Namespace: tc.Namespace, Service: key, Ports: ports, Image: r.Image,
			Tunnel: s.exposure.tunnelClients, ServerName: cp.ServiceName(tc.Name) + "." + tc.Namespace + ".svc",
			PKISecret: cp.PKISecretName(tc.Name), Replicas: loadBalancerReplicas,
		}
		keep[tenantlb.Name(tc.Name, key)] = true
		if err := r.apply(ctx, tc, tenantlb.Deployment(p)); err != nil {
			return ctrl.Result{}, fmt.Errorf("load balancer of Service %s: %w", key, err)
		}
		front := tenantlb.Service(p)
		if err := r.apply(ctx, tc, front); err != nil {
			return ctrl.Result{}, fmt.Errorf("load balancer of Service %s: %w", key, err)
		}
		ingress := front.Status.LoadBalancer.Ingress
		if len(ingress) == 0 || apiequality.Semantic.DeepEqual(svc.Status.LoadBalancer.Ingress, ingress) {
			continue
		}
		updated := svc.DeepCopy()
		updated.Status.LoadBalancer.Ingress = ingress
		if _, err := t.clientset.CoreV1().Services(svc.Namespace).UpdateStatus(ctx, updated, metav1.UpdateOptions{}); err != nil {
			return ctrl.Result{}, fmt.Errorf("write the address of Service %s: %w", key, err)
		}
		msg := fmt.Sprintf("Service %s of type LoadBalancer is served from the admin cluster at %s", key, ingressText(ingress))
		if len(skipped) > 0 {
			msg += fmt.Sprintf("; not served: %s", strings.Join(skipped, ", "))
		}
		log.Info("tenant load balancer has an address", "service", key.String(), "ingress", ingress)
		r.event(tc, corev1.EventTypeNormal, kv1.ReasonLoadBalancerAddress, "ServeLoadBalancer", msg)
	}
	return ctrl.Result{}, r.pruneLoadBalancers(ctx, tc, keep)
}

// pruneLoadBalancers deletes the tenant's load balancers not in keep.
func (r *Reconciler) pruneLoadBalancers(ctx context.Context, tc *kv1.TenantCluster, keep map[string]bool) error {
	sel := client.MatchingLabels(tenantlb.Labels(tc.Name, ""))
	var deps appsv1.DeploymentList
	if err := r.Client.List(ctx, &deps, client.InNamespace(tc.Namespace), sel); err != nil {
		return err
	}
	var svcs corev1.ServiceList
	if err := r.Client.List(ctx, &svcs, client.InNamespace(tc.Namespace), sel); err != nil {
		return err
	}
	var objs []client.Object
	for i := range deps.Items {
		objs = append(objs, &deps.Items[i])
	}
	for i := range svcs.Items {
		objs = append(objs, &svcs.Items[i])
	}
	for _, o := range objs {
		if keep[o.GetName()] {
			continue
		}
		if err := r.Client.Delete(ctx, o); err != nil && !apierrors.IsNotFound(err) {
			return fmt.Errorf("remove load balancer %s: %w", o.GetName(), err)
		}
		ctrl.LoggerFrom(ctx).Info("tenant load balancer removed", "name", o.GetName(), "service", o.GetAnnotations()[tenantlb.AnnotationService])
	}
	return nil
}
