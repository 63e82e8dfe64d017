package datastorecontroller

import (
	"context"
	"fmt"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/events"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	kv1 "kubinception.dev/kubinception/api/v1alpha1"
	"kubinception.dev/kubinception/internal/datastore"
)

// healthInterval is how often a Datastore's members are asked for health.
const healthInterval = 30 * time.Second

// Reconciler keeps Datastore status current.
type Reconciler struct {
	Client    client.Client
	APIReader client.Reader
	Clock     clock.PassiveClock
	// Recorder emits an Event when the Datastore's health changes.
	Recorder   events.EventRecorder
	Datastores *datastore.ClientCache
}

// SetupWithManager registers the reconciler.
func (r *Reconciler) SetupWithManager(mgr ctrl.Manager) error {
	return ctrl.NewControllerManagedBy(mgr).For(&kv1.Datastore{}).Complete(r)
}

// Reconcile asks every member for its status and counts the tenants.
func (r *Reconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	ds := &kv1.Datastore{}
	if err := r.Client.Get(ctx, req.NamespacedName, ds); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	before := ds.DeepCopy()
	now := r.Clock.Now()

	var tenants kv1.TenantClusterList
	if err := r.Client.List(ctx, &tenants); err != nil {
		return ctrl.Result{}, fmt.Errorf("list tenants: %w", err)
	}
	n := int32(0)
	for _, tc := range tenants.Items {
		name := tc.Spec.Datastore.Name
		if name == "" {
			name = "default"
		}
		if name == ds.Name {
			n++
		}
	}
	ds.Status.Tenants = n

	status, reason, message := r.health(ctx, ds)
	old := meta.FindStatusCondition(ds.Status.Conditions, kv1.ConditionReady)
	kv1.SetCondition(&ds.Status.Conditions, kv1.ConditionReady, status, reason, message, ds.Generation, now)
	if old == nil || old.Status != status || old.Reason != reason {
		eventType := corev1.EventTypeNormal
		if status != metav1.ConditionTrue {
			eventType = corev1.EventTypeWarning
		}
		ctrl.LoggerFrom(ctx).Info("datastore health changed", "status", status, "reason", reason, "message", message)
		if r.Recorder != nil {
			r.Recorder.Eventf(ds, nil, eventType, reason, "CheckHealth", "%s", message)
		}
	}
	ds.Status.ObservedGeneration = ds.Generation
	if !equality.Semantic.DeepEqual(before.Status, ds.Status) {
		if err := r.Client.Status().Patch(ctx, ds, client.MergeFrom(before)); err != nil {
			return ctrl.Result{}, fmt.Errorf("write status: %w", err)
		}
	}
	return ctrl.Result{RequeueAfter: healthInterval}, nil
}

// health is the Ready condition of a Datastore: every member healthy, or
// what is wrong and with which member.
func (r *Reconciler) health(ctx context.Context, ds *kv1.Datastore) (metav1.ConditionStatus, string, string) {
	access, err := datastore.LoadAccess(ctx, r.APIReader, ds)
	if err != nil {
		return metav1.ConditionFalse, kv1.ReasonDatastoreCredentials, err.Error()
	}
	cli, err := r.Datastores.Get(ds.Name, access.Credentials)
	if err != nil {
		return metav1.ConditionFalse, kv1.ReasonDatastoreCredentials, err.Error()
	}
	hctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	members, err := datastore.Health(hctx, cli)
	if err != nil {
		return metav1.ConditionFalse, kv1.ReasonDatastoreUnreachable, fmt.Sprintf("no member answers at %s: %v", strings.Join(ds.Spec.Endpoints, ","), err)
	}
	healthy := int32(0)
	var bad []string
	for _, m := range members {
		if m.Healthy {
			healthy++
		} else {
			bad = append(bad, fmt.Sprintf("%s: %v", m.Name, m.Err))
		}
	}
	ds.Status.Members, ds.Status.HealthyMembers = int32(len(members)), healthy
	if len(bad) > 0 {
		return metav1.ConditionFalse, kv1.ReasonMembersUnhealthy, strings.Join(bad, "; ")
	}
	return metav1.ConditionTrue, kv1.ReasonAllMembersHealthy, fmt.Sprintf("%d members healthy", healthy)
}
