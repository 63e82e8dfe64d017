package tenantcluster

import (
	"context"
	"fmt"
	"net"
	"slices"
	"strconv"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	kv1 "kubinception.dev/kubinception/api/v1alpha1"
	cp "kubinception.dev/kubinception/internal/controlplane"
	"kubinception.dev/kubinception/internal/frontdoor"
	"kubinception.dev/kubinception/internal/objects"
)

// FrontDoorSettings say where the front door is: tenants exposed through
// it are reached at https://<name>.<Domain>:<Port>.
type FrontDoorSettings struct {
	// Domain is the base domain of tenants' names; empty means there is
	// no front door, and exposure.type FrontDoor is refused.
	Domain string
	// Port is the port clients reach the front door on (its
	// LoadBalancer's port, or its node port).
	Port int32
}

// frontDoorConfigured says whether this operator has a front door.
func (r *Reconciler) frontDoorConfigured() bool { return r.FrontDoor.Domain != "" }

// extraSANs are the names the API server's certificate carries beyond
// its own: the tenant's extra SANs and its front-door names.
func (e exposure) extraSANs(tc *kv1.TenantCluster) []string {
	return append(slices.Clone(tc.Spec.Exposure.ExtraSANs), e.frontDoorNames...)
}

// exposeThroughFrontDoor publishes the tenant's route to the front door,
// makes sure its activity Lease exists, and makes the front-door name the
// tenant's endpoint: kubeconfigs, the join command and the kubelets use
// it. The API server's Service stays a NodePort one: clients inside the
// tenant (its pods, through the kubernetes Service) send no server name
// and reach the API server at its advertised node address.
func (r *Reconciler) exposeThroughFrontDoor(ctx context.Context, s *scope, ex *exposure) (ctrl.Result, error) {
	tc := s.tc
	if !r.frontDoorConfigured() {
		s.fail(kv1.ConditionControlPlaneAvailable, kv1.ReasonFrontDoorNotConfigured,
			"spec.exposure.type is FrontDoor but this operator has no front door: install with --front-door-domain (kubinception install) or frontDoor.domain (Helm), or choose NodePort or LoadBalancer")
		return ctrl.Result{RequeueAfter: 10 * time.Minute}, nil
	}
	host := frontdoor.HostName(tc.Name, r.FrontDoor.Domain)
	if other, err := r.frontDoorNameHolder(ctx, tc); err != nil {
		return ctrl.Result{}, err
	} else if other != "" {
		s.fail(kv1.ConditionControlPlaneAvailable, kv1.ReasonHostnameTaken,
			fmt.Sprintf("the front-door name %s belongs to the older tenant %s: front-door names are <name>.%s, unique across namespaces; rename this tenant or choose another exposure.type", host, other, r.FrontDoor.Domain))
		return ctrl.Result{RequeueAfter: time.Minute}, nil
	}
	port := strconv.Itoa(int(r.FrontDoor.Port))
	route := frontdoor.Route{Host: host, APIServer: net.JoinHostPort(ex.serviceIP, strconv.Itoa(cp.DefaultPort))}
	ex.frontDoorNames = []string{host}
	ex.endpoint = "https://" + net.JoinHostPort(host, port)
	if ex.tunnel != "" {
		route.TunnelHost = frontdoor.TunnelHostName(tc.Name, r.FrontDoor.Domain)
		route.Tunnel = net.JoinHostPort(ex.serviceIP, strconv.Itoa(cp.TunnelPort))
		ex.frontDoorNames = append(ex.frontDoorNames, route.TunnelHost)
		ex.tunnel = net.JoinHostPort(route.TunnelHost, port)
	}
	cm := frontdoor.RouteConfigMap(tc.Namespace, tc.Name, route)
	cm.Labels[objects.ManagedBy] = objects.ManagedByValue
	//nolint:staticcheck // typed objects with server-side apply
	if err := r.Client.Patch(ctx, cm, client.Apply, client.ForceOwnership, objects.FieldOwner); err != nil {
		return ctrl.Result{}, fmt.Errorf("apply front-door route: %w", err)
	}
	if err := r.ensureActivityLease(ctx, tc); err != nil {
		return ctrl.Result{}, err
	}
	return ctrl.Result{}, nil
}

// frontDoorNameHolder returns namespace/name of an older tenant of the
// same name in another namespace that holds the front-door name, or "".
func (r *Reconciler) frontDoorNameHolder(ctx context.Context, tc *kv1.TenantCluster) (string, error) {
	var list kv1.TenantClusterList
	if err := r.Client.List(ctx, &list); err != nil {
		return "", err
	}
	for _, o := range list.Items {
		if o.Name != tc.Name || o.Namespace == tc.Namespace || o.Spec.Exposure.Type != kv1.ExposureFrontDoor || !o.DeletionTimestamp.IsZero() {
			continue
		}
		if o.CreationTimestamp.Before(&tc.CreationTimestamp) || (o.CreationTimestamp.Equal(&tc.CreationTimestamp) && o.Namespace < tc.Namespace) {
			return o.Namespace + "/" + o.Name, nil
		}
	}
	return "", nil
}

// ensureActivityLease creates the tenant's activity Lease, which the
// front door renews and may not create. An existing one is left as it
// is: its renew time is the front door's to set.
func (r *Reconciler) ensureActivityLease(ctx context.Context, tc *kv1.TenantCluster) error {
	name := frontdoor.ObjectName(tc.Namespace, tc.Name)
	l := &coordinationv1.Lease{}
	err := r.Client.Get(ctx, types.NamespacedName{Namespace: frontdoor.Namespace, Name: name}, l)
	if err == nil || !apierrors.IsNotFound(err) {
		return err
	}
	l = &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: frontdoor.Namespace, Labels: map[string]string{
		objects.ManagedBy: objects.ManagedByValue, frontdoor.LabelTenantNamespace: tc.Namespace, frontdoor.LabelTenantName: tc.Name}}}
	if err := r.Client.Create(ctx, l); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("create activity lease: %w", err)
	}
	return nil
}

// lastActivity is when the front door last reported a request to the
// tenant (zero without a Lease or a front door).
func (r *Reconciler) lastActivity(ctx context.Context, tc *kv1.TenantCluster) (time.Time, error) {
	if !r.frontDoorConfigured() {
		return time.Time{}, nil
	}
	l := &coordinationv1.Lease{}
	err := r.Client.Get(ctx, types.NamespacedName{Namespace: frontdoor.Namespace, Name: frontdoor.ObjectName(tc.Namespace, tc.Name)}, l)
	if apierrors.IsNotFound(err) {
		return time.Time{}, nil
	}
	if err != nil {
		return time.Time{}, err
	}
	return frontdoor.LastActivity(l), nil
}

// removeFrontDoor deletes the tenant's route and activity Lease: they
// live in the front door's namespace, where no owner reference reaches.
func (r *Reconciler) removeFrontDoor(ctx context.Context, tc *kv1.TenantCluster) error {
	if !r.frontDoorConfigured() {
		return nil
	}
	name := frontdoor.ObjectName(tc.Namespace, tc.Name)
	for _, obj := range []client.Object{
		&corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: frontdoor.Namespace, Name: name}},
		&coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Namespace: frontdoor.Namespace, Name: name}},
	} {
		if err := r.Client.Delete(ctx, obj); err != nil && !apierrors.IsNotFound(err) {
			return fmt.Errorf("delete front-door %T %s: %w", obj, name, err)
		}
	}
	return nil
}

// setupFrontDoor watches the activity Leases: a renewal of a hibernated
// tenant's Lease is a request waiting for it, and reconciles it at once.
// Renewals of awake tenants are not events: their idle deadline is a
// requeue of their own.
func (r *Reconciler) setupFrontDoor(mgr ctrl.Manager) error {
	if !r.frontDoorConfigured() {
		return nil
	}
	return ctrl.NewControllerManagedBy(mgr).Named("frontdoor-activity").
		For(&coordinationv1.Lease{}, builder.WithPredicates(predicate.NewPredicateFuncs(func(o client.Object) bool {
			return o.GetNamespace() == frontdoor.Namespace && o.GetLabels()[frontdoor.LabelTenantName] != ""
		}))).
		Complete(reconcile.Func(func(ctx context.Context, req reconcile.Request) (reconcile.Result, error) {
			l := &coordinationv1.Lease{}
			if err := r.Client.Get(ctx, req.NamespacedName, l); err != nil {
				return reconcile.Result{}, client.IgnoreNotFound(err)
			}
			tc := &kv1.TenantCluster{}
			key := types.NamespacedName{Namespace: l.Labels[frontdoor.LabelTenantNamespace], Name: l.Labels[frontdoor.LabelTenantName]}
			if err := r.Client.Get(ctx, key, tc); err != nil {
				return reconcile.Result{}, client.IgnoreNotFound(err)
			}
			if wakeRequested(tc, frontdoor.LastActivity(l)) {
				r.events <- event.GenericEvent{Object: tc}
			}
			return reconcile.Result{}, nil
		}))
}

// wakeRequested says a hibernated tenant was used after it hibernated.
func wakeRequested(tc *kv1.TenantCluster, activity time.Time) bool {
	h := tc.Status.Hibernation
	return h.Hibernated && h.Since != nil && activity.After(h.Since.Time)
}
