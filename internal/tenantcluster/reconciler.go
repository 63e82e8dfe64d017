package tenantcluster

import (
	"context"
	"fmt"
	"sync"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	kv1 "kubinception.dev/kubinception/api/v1alpha1"
	"kubinception.dev/kubinception/internal/datastore"
)

// FieldOwner is the server-side apply field manager of everything the
// operator writes.
const FieldOwner = client.FieldOwner("kubinception")

// ManagedBy labels every object the operator creates; the operator's cache
// only holds objects with it.
const ManagedBy = "app.kubernetes.io/managed-by"

// Reconciler reconciles TenantClusters.
type Reconciler struct {
	Client client.Client
	// APIReader reads objects the cache does not hold (Datastore
	// credentials, which a platform team creates without our label).
	APIReader client.Reader
	Clock     clock.PassiveClock
	// Datastores shares etcd clients between tenants.
	Datastores *datastore.ClientCache
	// Registry is the default image registry of control-plane images.
	Registry string
	// MaxConcurrentReconciles bounds how many tenants reconcile at once.
	MaxConcurrentReconciles int

	tenants tenantClients
	// ensured records when each tenant's etcd user and role were last
	// checked.
	ensuredMu sync.Mutex
	ensured   map[types.UID]time.Time
}

// SetupWithManager registers the reconciler.
func (r *Reconciler) SetupWithManager(mgr ctrl.Manager) error {
	return ctrl.NewControllerManagedBy(mgr).
		For(&kv1.TenantCluster{}, builder.WithPredicates(predicate.Or(predicate.GenerationChangedPredicate{}, predicate.AnnotationChangedPredicate{}, deletionStarted))).
		Owns(&appsv1.Deployment{}).
		Owns(&corev1.Service{}).
		Owns(&corev1.Secret{}).
		Watches(&kv1.Datastore{}, handler.EnqueueRequestsFromMapFunc(r.tenantsOfDatastore)).
		WithOptions(controller.Options{MaxConcurrentReconciles: max(r.MaxConcurrentReconciles, 1)}).
		Complete(r)
}

// deletionStarted passes the update that marks a tenant for deletion;
// status writes (which do not change the generation) are filtered out.
var deletionStarted = predicate.Funcs{UpdateFunc: func(e event.UpdateEvent) bool {
	return e.ObjectOld.GetDeletionTimestamp().IsZero() != e.ObjectNew.GetDeletionTimestamp().IsZero()
}}

// tenantsOfDatastore enqueues every tenant placed on a datastore, so that
// tenants waiting for it go on as soon as it appears or recovers.
func (r *Reconciler) tenantsOfDatastore(ctx context.Context, obj client.Object) []reconcile.Request {
	var list kv1.TenantClusterList
	if err := r.Client.List(ctx, &list); err != nil {
		return nil
	}
	var reqs []reconcile.Request
	for _, tc := range list.Items {
		if tc.Spec.Datastore.Name == obj.GetName() {
			reqs = append(reqs, reconcile.Request{NamespacedName: types.NamespacedName{Namespace: tc.Namespace, Name: tc.Name}})
		}
	}
	return reqs
}

// state is what one reconcile learns and passes from phase to phase.
type state struct {
	tc  *kv1.TenantCluster
	now time.Time
	// Filled by the phases, in order.
	tenancy  datastore.Tenancy
	etcd     datastoreConn
	exposure exposure
	pkiHash  string
	// pki is the PKI Secret's data as the certificates phase left it.
	pki map[string][]byte
}

// phase is one ordered step. It returns a non-zero result to stop the
// reconcile there (waiting for something) or an error for a real failure.
type phase func(ctx context.Context, s *state) (ctrl.Result, error)

// Reconcile brings one TenantCluster towards its spec.
func (r *Reconciler) Reconcile(ctx context.Context, req ctrl.Request) (res ctrl.Result, retErr error) {
	logger := log.FromContext(ctx)
	tc := &kv1.TenantCluster{}
	if err := r.Client.Get(ctx, req.NamespacedName, tc); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	before := tc.DeepCopy()
	s := &state{tc: tc, now: r.Clock.Now()}

	// One status write per reconcile, whatever happened.
	defer func() {
		tc.Status.ObservedGeneration = tc.Generation
		if equality.Semantic.DeepEqual(before.Status, tc.Status) {
			return
		}
		if err := r.Client.Status().Patch(ctx, tc, client.MergeFrom(before)); err != nil && !apierrors.IsNotFound(err) {
			logger.Error(err, "write status")
			if retErr == nil {
				retErr = err
			}
		}
	}()

	if !tc.DeletionTimestamp.IsZero() {
		return r.reconcileDelete(ctx, s)
	}
	if !controllerutil.ContainsFinalizer(tc, kv1.Finalizer) {
		patch := client.MergeFrom(tc.DeepCopy())
		controllerutil.AddFinalizer(tc, kv1.Finalizer)
		if err := r.Client.Patch(ctx, tc, patch); err != nil {
			return ctrl.Result{}, fmt.Errorf("add finalizer: %w", err)
		}
		before.Finalizers = tc.Finalizers
		before.ResourceVersion = tc.ResourceVersion
	}
	if tc.Spec.Paused {
		r.setCondition(s, kv1.ConditionReady, metav1.ConditionFalse, kv1.ReasonPaused, "spec.paused is true: the operator changes nothing until it is false")
		return ctrl.Result{}, nil
	}

	for _, p := range []phase{r.reconcileDatastore, r.reconcileExposure, r.reconcileCertificates, r.reconcileControlPlane, r.reconcileBootstrap} {
		res, err := p(ctx, s)
		if err != nil || !res.IsZero() {
			r.summarize(s)
			return res, err
		}
	}
	r.summarize(s)
	return ctrl.Result{RequeueAfter: addonResync}, nil
}

// setCondition records a condition with the reconcile's clock.
func (r *Reconciler) setCondition(s *state, typ string, status metav1.ConditionStatus, reason, message string) {
	cond := metav1.Condition{Type: typ, Status: status, Reason: reason, Message: message, ObservedGeneration: s.tc.Generation}
	if existing := meta.FindStatusCondition(s.tc.Status.Conditions, typ); existing == nil || existing.Status != status {
		cond.LastTransitionTime = metav1.NewTime(s.now)
	} else {
		cond.LastTransitionTime = existing.LastTransitionTime
	}
	meta.SetStatusCondition(&s.tc.Status.Conditions, cond)
}

// summarize sets Ready from the phase conditions: true when all are true,
// otherwise the first that is not, with its reason and message.
func (r *Reconciler) summarize(s *state) {
	for _, typ := range []string{kv1.ConditionDatastoreReady, kv1.ConditionCertificatesReady, kv1.ConditionControlPlaneAvailable, kv1.ConditionAddonsReady} {
		c := meta.FindStatusCondition(s.tc.Status.Conditions, typ)
		if c == nil {
			r.setCondition(s, kv1.ConditionReady, metav1.ConditionFalse, kv1.ReasonWaiting, "waiting for "+typ)
			return
		}
		if c.Status != metav1.ConditionTrue {
			r.setCondition(s, kv1.ConditionReady, metav1.ConditionFalse, c.Reason, c.Message)
			return
		}
	}
	r.setCondition(s, kv1.ConditionReady, metav1.ConditionTrue, kv1.ReasonReady, "control plane available at "+s.tc.Status.Endpoint)
}
