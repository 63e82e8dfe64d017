// Package addresspool gives the operator's own Services of type
// LoadBalancer (tenants' load balancers, API servers exposed as
// LoadBalancer) addresses from a pool, on admin clusters without a
// load-balancer implementation: the pool must be routed to the admin
// cluster's nodes, where kube-proxy serves each address. With a
// load-balancer implementation (a cloud's, MetalLB), leave the pool unset.
package addresspool

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"

	corev1 "k8s.io/api/core/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
)

// Reconciler assigns addresses to Services of type LoadBalancer that have
// none. It lists every Service its cache holds (the operator's own) to
// know which addresses are taken, and runs one reconcile at a time, so
// two Services never get the same address.
type Reconciler struct {
	Client client.Client
	Pool   *net.IPNet
}

// Parse reads a pool CIDR (IPv4).
func Parse(cidr string) (*net.IPNet, error) {
	_, n, err := net.ParseCIDR(cidr)
	if err != nil || n.IP.To4() == nil {
		return nil, fmt.Errorf("--load-balancer-address-pool %q must be an IPv4 CIDR such as 10.199.128.0/20", cidr)
	}
	return n, nil
}

func wantsAddress(svc *corev1.Service) bool {
	return svc.Spec.Type == corev1.ServiceTypeLoadBalancer && svc.Spec.LoadBalancerClass == nil && svc.DeletionTimestamp.IsZero()
}

// SetupWithManager registers the reconciler.
func (r *Reconciler) SetupWithManager(mgr ctrl.Manager) error {
	if r.Pool == nil {
		return errors.New("an address pool is required")
	}
	return ctrl.NewControllerManagedBy(mgr).
		Named("addresspool").
		For(&corev1.Service{}, builder.WithPredicates(predicate.NewPredicateFuncs(func(o client.Object) bool {
			svc, ok := o.(*corev1.Service)
			return ok && wantsAddress(svc)
		}))).
		WithOptions(controller.Options{MaxConcurrentReconciles: 1}).
		Complete(r)
}

// Reconcile gives one Service the lowest free address of the pool.
func (r *Reconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	svc := &corev1.Service{}
	if err := r.Client.Get(ctx, req.NamespacedName, svc); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	if !wantsAddress(svc) || len(svc.Status.LoadBalancer.Ingress) > 0 {
		return ctrl.Result{}, nil
	}
	var all corev1.ServiceList
	if err := r.Client.List(ctx, &all); err != nil {
		return ctrl.Result{}, err
	}
	var taken []string
	for _, s := range all.Items {
		for _, ing := range s.Status.LoadBalancer.Ingress {
			taken = append(taken, ing.IP)
		}
	}
	ip, err := Free(r.Pool, taken)
	if err != nil {
		return ctrl.Result{}, fmt.Errorf("Service %s: %w", req.NamespacedName, err)
	}
	patch := client.MergeFrom(svc.DeepCopy())
	vip := corev1.LoadBalancerIPModeVIP
	svc.Status.LoadBalancer.Ingress = []corev1.LoadBalancerIngress{{IP: ip, IPMode: &vip}}
	if err := r.Client.Status().Patch(ctx, svc, patch); err != nil {
		return ctrl.Result{}, err
	}
	ctrl.LoggerFrom(ctx).Info("load-balancer address assigned", "address", ip)
	return ctrl.Result{}, nil
}

// Free is the lowest address of pool, past its network address and
// before its broadcast address, that is not taken.
func Free(pool *net.IPNet, taken []string) (string, error) {
	base, _ := netip.AddrFromSlice(pool.IP.To4())
	ones, _ := pool.Mask.Size()
	prefix := netip.PrefixFrom(base, ones).Masked()
	for a := prefix.Addr().Next(); prefix.Contains(a.Next()); a = a.Next() {
		if !slices.Contains(taken, a.String()) {
			return a.String(), nil
		}
	}
	return "", fmt.Errorf("the load-balancer address pool %s is exhausted", pool)
}
