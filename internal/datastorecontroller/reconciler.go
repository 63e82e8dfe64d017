package datastorecontroller

import (
	"context"
	"fmt"
	"strings"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/events"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	kv1 "kubinception.dev/kubinception/api/v1alpha1"
	"kubinception.dev/kubinception/internal/datastore"
	"kubinception.dev/kubinception/internal/gatewaydeploy"
	"kubinception.dev/kubinception/internal/objects"
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
	// Gateway says how each Datastore's gateway runs.
	Gateway GatewayOptions
	// Usage reads tenants' usage from the gateways; nil leaves usage out
	// of status.
	Usage *gatewaydeploy.UsageReader
}

// SetupWithManager registers the reconciler.
func (r *Reconciler) SetupWithManager(mgr ctrl.Manager) error {
	return ctrl.NewControllerManagedBy(mgr).For(&kv1.Datastore{}).
		Owns(&appsv1.Deployment{}).
		Complete(r)
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

	status, reason, message := metav1.ConditionFalse, "", ""
	var gatewayErr error
	access, err := datastore.LoadAccess(ctx, r.APIReader, ds)
	if err != nil {
		reason, message = kv1.ReasonDatastoreCredentials, err.Error()
	} else {
		status, reason, message = r.health(ctx, ds, access)
		if gatewayErr = r.reconcileGateway(ctx, ds, access, now); gatewayErr != nil {
			gatewayErr = fmt.Errorf("gateway: %w", gatewayErr)
		}
	}
	r.setCondition(ctx, ds, kv1.ConditionReady, status, reason, message, now)
	gs, greason, gmessage := r.gatewayCondition(ctx, ds, gatewayErr)
	r.setCondition(ctx, ds, kv1.ConditionGatewayAvailable, gs, greason, gmessage, now)
	if gatewayErr != nil {
		// Status is written with what is known; backoff retries.
		if err := r.writeStatus(ctx, before, ds); err != nil {
			return ctrl.Result{}, err
		}
		return ctrl.Result{}, gatewayErr
	}
	ds.Status.ObservedGeneration = ds.Generation
	if err := r.writeStatus(ctx, before, ds); err != nil {
		return ctrl.Result{}, err
	}
	return ctrl.Result{RequeueAfter: healthInterval}, nil
}

func (r *Reconciler) writeStatus(ctx context.Context, before, ds *kv1.Datastore) error {
	if equality.Semantic.DeepEqual(before.Status, ds.Status) {
		return nil
	}
	if err := r.Client.Status().Patch(ctx, ds, client.MergeFrom(before)); err != nil {
		return fmt.Errorf("write status: %w", err)
	}
	return nil
}

// setCondition sets one condition and, when its status or reason changes,
// logs it and emits an Event (a Warning when it is not True).
func (r *Reconciler) setCondition(ctx context.Context, ds *kv1.Datastore, typ string, status metav1.ConditionStatus, reason, message string, now time.Time) {
	if kv1.SetCondition(&ds.Status.Conditions, typ, status, reason, message, ds.Generation, now) {
		objects.AnnounceCondition(ctx, r.Recorder, ds, typ, status, reason, message, status != metav1.ConditionTrue)
	}
}

// gatewayCondition says whether tenants can reach the datastore through
// the gateway, and adds the tenants' total usage to status when it can.
func (r *Reconciler) gatewayCondition(ctx context.Context, ds *kv1.Datastore, gatewayErr error) (metav1.ConditionStatus, string, string) {
	switch {
	case gatewayErr != nil:
		return metav1.ConditionFalse, kv1.ReasonGatewayFailed, gatewayErr.Error()
	case ds.Status.Gateway.ReadyReplicas == 0:
		return metav1.ConditionFalse, kv1.ReasonGatewayStarting, fmt.Sprintf("no gateway replica is ready yet at %s", ds.Status.Gateway.Endpoint)
	}
	if r.Usage != nil {
		if usage, err := r.Usage.Read(ctx, gatewaydeploy.UsageURLFor(ds.Status.Gateway.Endpoint)); err != nil {
			ctrl.LoggerFrom(ctx).V(1).Info("cannot read usage from the gateway", "error", err.Error())
		} else {
			var total int64
			for _, u := range usage {
				total += u.Bytes
			}
			ds.Status.UsedBytes = total
		}
	}
	return metav1.ConditionTrue, kv1.ReasonGatewayAvailable, fmt.Sprintf("%d gateway replicas ready at %s", ds.Status.Gateway.ReadyReplicas, ds.Status.Gateway.Endpoint)
}

// health is the Ready condition of a Datastore: every member healthy, or
// what is wrong and with which member.
func (r *Reconciler) health(ctx context.Context, ds *kv1.Datastore, access datastore.Access) (metav1.ConditionStatus, string, string) {
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
