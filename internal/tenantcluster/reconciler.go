package tenantcluster

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/events"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	"sigs.k8s.io/controller-runtime/pkg/source"

	kv1 "kubinception.dev/kubinception/api/v1alpha1"
	"kubinception.dev/kubinception/internal/controlplane"
	"kubinception.dev/kubinception/internal/datastore"
	"kubinception.dev/kubinception/internal/gatewaydeploy"
)

// Reconciler reconciles TenantClusters.
type Reconciler struct {
	Client client.Client
	// APIReader reads objects the cache does not hold (Datastore
	// credentials, which a platform team creates without our label).
	APIReader client.Reader
	Clock     clock.PassiveClock
	// Recorder emits an Event for every phase transition and failure.
	Recorder events.EventRecorder
	// Datastores shares etcd clients between tenants.
	Datastores *datastore.ClientCache
	// Registry is the default image registry of control-plane images.
	Registry string
	// AllowedRegistries are the registries a TenantCluster may name in
	// spec.controlPlane.imageRegistry (each also allows its paths); empty
	// allows Registry only. Whoever may edit a TenantCluster would
	// otherwise run any image beside the tenant's keys.
	AllowedRegistries []string
	// Image is the kubinception image: the tunnel server beside each API
	// server and the tunnel agent on tenant nodes run from it.
	Image string
	// MaxConcurrentReconciles bounds how many tenants reconcile at once.
	MaxConcurrentReconciles int
	// MaxStartingControlPlanes bounds how many control planes start from
	// nothing (created or woken) at once; 0 is no bound (see
	// startAdmission).
	MaxStartingControlPlanes int
	// GatewayNamespace holds the Datastores' gateways and their CAs.
	GatewayNamespace string
	// Usage reads tenants' usage from the gateways; nil leaves usage at
	// zero in status.
	Usage *gatewaydeploy.UsageReader
	// FrontDoor says where the front door is (no front door when its
	// domain is empty).
	FrontDoor FrontDoorSettings
	// ProtectedNetworks are the admin cluster's own networks, which a
	// control plane without the tunnel may not reach (see netpolicy).
	ProtectedNetworks []netip.Prefix

	tenants  tenantClients
	tenancy  tenancyChecks
	rewrites rewrites
	starts   startAdmissionOnce
	// events reconciles a tenant when one of its Services of type
	// LoadBalancer changes.
	events chan event.GenericEvent
}

// SetupWithManager registers the reconciler.
func (r *Reconciler) SetupWithManager(mgr ctrl.Manager) error {
	if r.Image == "" {
		return errors.New("the kubinception image is required: tenants' tunnel servers and agents run from it")
	}
	r.events = make(chan event.GenericEvent, 256)
	if err := r.setupFrontDoor(mgr); err != nil {
		return err
	}
	return ctrl.NewControllerManagedBy(mgr).
		WatchesRawSource(source.Channel(r.events, &handler.EnqueueRequestForObject{})).
		For(&kv1.TenantCluster{}, builder.WithPredicates(predicate.Or(predicate.GenerationChangedPredicate{}, predicate.AnnotationChangedPredicate{}, finalizersOrDeletionChanged))).
		Owns(&appsv1.Deployment{}).
		Owns(&corev1.Service{}).
		Owns(&corev1.Secret{}).
		// The control plane's pods (the operator caches only those): a
		// pod turning ready moves a starting tenant on at once.
		Watches(&corev1.Pod{}, handler.EnqueueRequestsFromMapFunc(tenantOfPod)).
		Watches(&kv1.Datastore{}, handler.EnqueueRequestsFromMapFunc(r.tenantsOfDatastore)).
		WithOptions(controller.Options{MaxConcurrentReconciles: max(r.MaxConcurrentReconciles, 1)}).
		Complete(r)
}

// tenantOfPod maps a control-plane pod to its tenant.
func tenantOfPod(_ context.Context, obj client.Object) []reconcile.Request {
	name := obj.GetLabels()[controlplane.LabelTenant]
	if name == "" {
		return nil
	}
	return []reconcile.Request{{NamespacedName: types.NamespacedName{Namespace: obj.GetNamespace(), Name: name}}}
}

// finalizersOrDeletionChanged passes the updates that add the finalizer
// (Reconcile returns right after adding it and goes on from this event) and
// that mark a tenant for deletion; status writes, which change neither the
// generation nor these, are filtered out.
var finalizersOrDeletionChanged = predicate.Funcs{UpdateFunc: func(e event.UpdateEvent) bool {
	return e.ObjectOld.GetDeletionTimestamp().IsZero() != e.ObjectNew.GetDeletionTimestamp().IsZero() ||
		!equality.Semantic.DeepEqual(e.ObjectOld.GetFinalizers(), e.ObjectNew.GetFinalizers())
}}

// tenantsOfDatastore enqueues every tenant placed on a datastore, so that
// tenants waiting for it go on as soon as it appears or recovers.
func (r *Reconciler) tenantsOfDatastore(ctx context.Context, obj client.Object) []reconcile.Request {
	var list kv1.TenantClusterList
	if err := r.Client.List(ctx, &list); err != nil {
		ctrl.LoggerFrom(ctx).Error(err, "list tenants of a datastore", "datastore", obj.GetName())
		return nil
	}
	var reqs []reconcile.Request
	for _, tc := range list.Items {
		if datastoreName(&tc) == obj.GetName() {
			reqs = append(reqs, reconcile.Request{NamespacedName: types.NamespacedName{Namespace: tc.Namespace, Name: tc.Name}})
		}
	}
	return reqs
}

// datastoreName is the Datastore serving a tenant: the one recorded in
// its status (where its control plane reaches its keys), which differs
// from the spec while the tenant migrates (internal/migrationcontroller
// changes it once the move is done), else the one its spec names.
func datastoreName(tc *kv1.TenantCluster) string {
	if tc.Status.Datastore.Name != "" {
		return tc.Status.Datastore.Name
	}
	if tc.Spec.Datastore.Name == "" {
		return "default"
	}
	return tc.Spec.Datastore.Name
}

// Reconcile brings one TenantCluster towards its spec: it reads it, stops
// if it is paused, makes sure the finalizer is there (and returns, to go on
// from the update), then runs the deletion or the ordered phases, and
// writes status once, at the end, from what the phases recorded.
func (r *Reconciler) Reconcile(ctx context.Context, req ctrl.Request) (res ctrl.Result, retErr error) {
	log := ctrl.LoggerFrom(ctx)
	tc := &kv1.TenantCluster{}
	if err := r.Client.Get(ctx, req.NamespacedName, tc); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	s := newScope(tc, r.Clock.Now())
	before := tc.DeepCopy()
	defer func() {
		r.updateStatus(ctx, s, retErr)
		if equality.Semantic.DeepEqual(before.Status, tc.Status) {
			return
		}
		if err := r.Client.Status().Patch(ctx, tc, client.MergeFrom(before)); err != nil && !apierrors.IsNotFound(err) {
			log.Error(err, "write status")
			if retErr == nil {
				retErr = fmt.Errorf("write status: %w", err)
			}
		}
	}()

	// Paused comes first: a paused tenant is not even deleted, so a
	// platform team can hold its keys while it investigates.
	if tc.Spec.Paused {
		log.V(1).Info("paused: changing nothing")
		s.paused = true
		return ctrl.Result{}, nil
	}
	if tc.DeletionTimestamp.IsZero() && !controllerutil.ContainsFinalizer(tc, kv1.Finalizer) {
		patch := client.MergeFrom(tc.DeepCopy())
		controllerutil.AddFinalizer(tc, kv1.Finalizer)
		if err := r.Client.Patch(ctx, tc, patch); err != nil {
			return ctrl.Result{}, fmt.Errorf("add finalizer: %w", err)
		}
		log.Info("added finalizer")
		// The update event brings the next reconcile; status waits for it.
		s.skipStatus = true
		return ctrl.Result{}, nil
	}
	if !tc.DeletionTimestamp.IsZero() {
		return r.reconcileDelete(ctx, s)
	}
	return r.reconcileNormal(ctx, s)
}

// phase is one ordered step. It records what it found in the scope and
// returns a non-zero result to stop the reconcile there (waiting for
// something) or an error for a real failure.
type phase struct {
	name string
	run  func(ctx context.Context, s *scope) (ctrl.Result, error)
}

// reconcileNormal runs the phases in order and stops at the first that
// waits or fails.
func (r *Reconciler) reconcileNormal(ctx context.Context, s *scope) (ctrl.Result, error) {
	for _, p := range []phase{
		{"spec", r.checkSpec},
		{"datastore", r.reconcileDatastore},
		{"exposure", r.reconcileExposure},
		{"certificates", r.reconcileCertificates},
		{"network policies", r.reconcileNetworkPolicies},
		{"encryption", r.reconcileEncryption},
		{"hibernation", r.reconcileHibernation},
		{"control plane", r.reconcileControlPlane},
		{"bootstrap", r.reconcileBootstrap},
		{"CA rotation", r.reconcileCARotation},
		{"customer access", r.reconcileCustomerAccess},
		{"load balancers", r.reconcileLoadBalancers},
		{"encryption rewrite", r.reconcileEncryptionRewrite},
	} {
		res, err := p.run(ctx, s)
		if err != nil {
			return ctrl.Result{}, fmt.Errorf("%s phase: %w", p.name, err)
		}
		if !res.IsZero() {
			ctrl.LoggerFrom(ctx).V(1).Info("waiting", "phase", p.name, "requeueAfter", res.RequeueAfter)
			return res, nil
		}
	}
	s.done = true
	return ctrl.Result{RequeueAfter: s.resyncAfter(readyResync)}, nil
}

// scope is what one reconcile knows. Each field says which step sets it;
// a later step may rely on it only if the earlier one ran.
type scope struct {
	tc  *kv1.TenantCluster
	now time.Time

	// Set by the datastore phase (and by deletion, to delete the keys).
	etcd    datastoreConn
	tenancy datastore.Tenancy
	// Set by the exposure phase.
	exposure exposure
	// Set by the certificates phase: the PKI Secret's data and its hash.
	pki     map[string][]byte
	pkiHash string
	// Set by the encryption phase.
	encryption encryptionScope
	// Set by the control-plane phase when a first start's API server is
	// ready before its pod: the version it runs, which the phases after it
	// use while status.version is still empty.
	startingVersion string

	// results are what the phases found, by condition type; the status
	// function turns them into conditions.
	results map[string]result
	// paused, deleting and done say how the reconcile ended.
	paused, deleting, done bool
	// skipStatus leaves status alone (the finalizer was just added).
	skipStatus bool
	// recheck, when set, is when a phase needs the tenant reconciled
	// again at the latest (hibernation's idle deadline or schedule).
	recheck time.Time
}

// result is one condition's outcome as a phase recorded it.
type result struct {
	ok              bool
	reason, message string
}

// runningVersion is the version the control plane runs: status.version,
// or on a first start whose API server is ready, the version it starts.
func (s *scope) runningVersion() string {
	if s.tc.Status.Version != "" {
		return s.tc.Status.Version
	}
	return s.startingVersion
}

func newScope(tc *kv1.TenantCluster, now time.Time) *scope {
	return &scope{tc: tc, now: now, results: map[string]result{}}
}

// succeed and fail record a condition's outcome.
func (s *scope) succeed(condition, reason, message string) {
	s.results[condition] = result{ok: true, reason: reason, message: message}
}

func (s *scope) fail(condition, reason, message string) {
	s.results[condition] = result{reason: reason, message: message}
}
