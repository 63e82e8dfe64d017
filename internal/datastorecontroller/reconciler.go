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
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	kv1 "kubinception.dev/kubinception/api/v1alpha1"
	"kubinception.dev/kubinception/internal/datastore"
	"kubinception.dev/kubinception/internal/pki"
)

// healthInterval is how often a Datastore's members are asked for health.
const healthInterval = 30 * time.Second

// Reconciler keeps Datastore status current.
type Reconciler struct {
	Client     client.Client
	APIReader  client.Reader
	Clock      clock.PassiveClock
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
	status, reason, message := metav1.ConditionFalse, kv1.ReasonDatastoreUnreachable, ""

	var tenants kv1.TenantClusterList
	if err := r.Client.List(ctx, &tenants); err == nil {
		n := int32(0)
		for _, tc := range tenants.Items {
			if tc.Spec.Datastore.Name == ds.Name {
				n++
			}
		}
		ds.Status.Tenants = n
	}

	creds, err := r.credentials(ctx, ds)
	if err != nil {
		reason, message = kv1.ReasonDatastoreCredentials, err.Error()
	} else if cli, err := r.Datastores.Get(ds.Name, creds); err != nil {
		reason, message = kv1.ReasonDatastoreCredentials, err.Error()
	} else {
		hctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		members, err := datastore.Health(hctx, cli)
		cancel()
		if err != nil {
			message = fmt.Sprintf("no member answers at %s: %v", strings.Join(ds.Spec.Endpoints, ","), err)
		} else {
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
			if len(bad) == 0 {
				status, reason, message = metav1.ConditionTrue, kv1.ReasonAllMembersHealthy, fmt.Sprintf("%d members healthy", healthy)
			} else {
				reason, message = kv1.ReasonMembersUnhealthy, strings.Join(bad, "; ")
			}
		}
	}
	cond := metav1.Condition{Type: kv1.ConditionReady, Status: status, Reason: reason, Message: message, ObservedGeneration: ds.Generation, LastTransitionTime: metav1.NewTime(now)}
	if old := meta.FindStatusCondition(ds.Status.Conditions, kv1.ConditionReady); old != nil && old.Status == status {
		cond.LastTransitionTime = old.LastTransitionTime
	}
	meta.SetStatusCondition(&ds.Status.Conditions, cond)
	ds.Status.ObservedGeneration = ds.Generation
	if !equality.Semantic.DeepEqual(before.Status, ds.Status) {
		if err := r.Client.Status().Patch(ctx, ds, client.MergeFrom(before)); err != nil {
			return ctrl.Result{}, err
		}
	}
	return ctrl.Result{RequeueAfter: healthInterval}, nil
}

func (r *Reconciler) credentials(ctx context.Context, ds *kv1.Datastore) (datastore.Credentials, error) {
	ca, root := &corev1.Secret{}, &corev1.Secret{}
	if err := r.APIReader.Get(ctx, types.NamespacedName{Namespace: ds.Spec.CASecretRef.Namespace, Name: ds.Spec.CASecretRef.Name}, ca); err != nil {
		return datastore.Credentials{}, fmt.Errorf("read CA Secret %s/%s: %w", ds.Spec.CASecretRef.Namespace, ds.Spec.CASecretRef.Name, err)
	}
	if err := r.APIReader.Get(ctx, types.NamespacedName{Namespace: ds.Spec.RootSecretRef.Namespace, Name: ds.Spec.RootSecretRef.Name}, root); err != nil {
		return datastore.Credentials{}, fmt.Errorf("read root Secret %s/%s: %w", ds.Spec.RootSecretRef.Namespace, ds.Spec.RootSecretRef.Name, err)
	}
	if _, err := pki.ParseKeyPair(ca.Data["ca.crt"], ca.Data["ca.key"]); err != nil {
		return datastore.Credentials{}, fmt.Errorf("CA Secret %s/%s: %w", ds.Spec.CASecretRef.Namespace, ds.Spec.CASecretRef.Name, err)
	}
	return datastore.Credentials{Endpoints: ds.Spec.Endpoints, CAPEM: ca.Data["ca.crt"], CertPEM: root.Data["tls.crt"], KeyPEM: root.Data["tls.key"]}, nil
}
