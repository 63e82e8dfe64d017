package tenantcluster

import (
	"context"
	"errors"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	kv1 "kubinception.dev/kubinception/api/v1alpha1"
	"kubinception.dev/kubinception/internal/objects"
)

// phaseConditions are the conditions the phases own, in phase order; Ready
// summarises them.
var phaseConditions = []string{
	kv1.ConditionDatastoreReady, kv1.ConditionCertificatesReady,
	kv1.ConditionControlPlaneAvailable, kv1.ConditionAddonsReady,
}

// expectedWait are the reasons of a condition that is False only because
// something it waits for takes time; they are Normal events, not Warnings.
var expectedWait = map[string]bool{
	kv1.ReasonWaiting: true, kv1.ReasonControlPlaneStarting: true, kv1.ReasonWaitingForEndpoint: true,
	kv1.ReasonNotDeleting: true, kv1.ReasonEncryptingSecrets: true,
	// A sleeping or awake control plane is what the tenant asked for.
	kv1.ReasonHibernated: true, kv1.ReasonAwake: true,
	// Upgrading is False when no upgrade runs: the normal state.
	kv1.ReasonVersionCurrent: true,
}

// updateStatus is the one place that sets conditions: the phases' results,
// Deleting, and Ready as their summary. ObservedGeneration moves only when
// the reconcile acted on the spec without an error. Every condition that
// changes status emits an Event, as does a failed reconcile.
func (r *Reconciler) updateStatus(ctx context.Context, s *scope, reconcileErr error) {
	if s.skipStatus {
		return
	}
	tc := s.tc
	set := func(typ string, status metav1.ConditionStatus, reason, message string) {
		if kv1.SetCondition(&tc.Status.Conditions, typ, status, reason, message, tc.Generation, s.now) {
			warning := status == metav1.ConditionFalse && !s.deleting && !expectedWait[reason]
			objects.AnnounceCondition(ctx, r.Recorder, tc, typ, status, reason, message, warning)
		}
	}
	for _, typ := range append(phaseConditions, kv1.ConditionQuotaAvailable, kv1.ConditionNetworkFenced, kv1.ConditionSecretsEncrypted,
		kv1.ConditionUpgrading, kv1.ConditionNodeVersionsSupported) {
		if res, ok := s.results[typ]; ok {
			set(typ, boolStatus(res.ok), res.reason, res.message)
		}
	}
	if res, ok := s.results[kv1.ConditionHibernated]; ok {
		set(kv1.ConditionHibernated, boolStatus(res.ok), res.reason, res.message)
	}
	if s.deleting {
		res := s.results[kv1.ConditionDeleting]
		set(kv1.ConditionDeleting, metav1.ConditionTrue, res.reason, res.message)
	} else if !s.paused {
		set(kv1.ConditionDeleting, metav1.ConditionFalse, kv1.ReasonNotDeleting, "the TenantCluster is not being deleted")
	}

	switch {
	case s.paused:
		set(kv1.ConditionReady, metav1.ConditionFalse, kv1.ReasonPaused, "spec.paused is true: the operator changes nothing, deletion included, until it is false")
	case s.deleting:
		res := s.results[kv1.ConditionDeleting]
		set(kv1.ConditionReady, metav1.ConditionFalse, res.reason, "deleting: "+res.message)
	default:
		r.summarize(s, reconcileErr, set)
	}

	if reconcileErr != nil {
		r.event(tc, corev1.EventTypeWarning, kv1.ReasonReconcileFailed, "Reconcile", reconcileErr.Error())
		return
	}
	if !s.paused {
		tc.Status.ObservedGeneration = tc.Generation
	}
}

// summarize sets Ready: true when every phase condition is; otherwise the
// first phase condition that is False, with its reason and message (a
// phase may wait before an earlier condition was ever set: the exposure
// phase waits for an address before certificates exist); then the
// reconcile's error; then the first condition not set yet.
func (r *Reconciler) summarize(s *scope, reconcileErr error, set func(string, metav1.ConditionStatus, string, string)) {
	missing := ""
	for _, typ := range phaseConditions {
		c := meta.FindStatusCondition(s.tc.Status.Conditions, typ)
		switch {
		case c == nil:
			if missing == "" {
				missing = typ
			}
		case c.Status != metav1.ConditionTrue:
			set(kv1.ConditionReady, metav1.ConditionFalse, c.Reason, c.Message)
			return
		}
	}
	switch {
	case reconcileErr != nil:
		set(kv1.ConditionReady, metav1.ConditionFalse, failureReason(reconcileErr), reconcileErr.Error())
	case missing != "":
		set(kv1.ConditionReady, metav1.ConditionFalse, kv1.ReasonWaiting, "waiting for "+missing)
	default:
		set(kv1.ConditionReady, metav1.ConditionTrue, kv1.ReasonReady, "control plane available at "+s.tc.Status.Endpoint)
	}
}

// failureReason tells an invalid spec (which retrying cannot fix) from a
// failure that backoff retries.
func failureReason(err error) string {
	if errors.Is(err, reconcile.TerminalError(nil)) {
		return kv1.ReasonInvalidSpec
	}
	return kv1.ReasonReconcileFailed
}

func boolStatus(ok bool) metav1.ConditionStatus {
	if ok {
		return metav1.ConditionTrue
	}
	return metav1.ConditionFalse
}

// event emits an Event when a recorder is set (unit tests may leave it out).
func (r *Reconciler) event(tc *kv1.TenantCluster, eventType, reason, action, message string) {
	if r.Recorder != nil {
		r.Recorder.Eventf(tc, nil, eventType, reason, action, "%s", message)
	}
}
