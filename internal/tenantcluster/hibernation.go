package tenantcluster

import (
	"context"
	"fmt"
	"time"

	"github.com/robfig/cron/v3"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	ctrl "sigs.k8s.io/controller-runtime"

	kv1 "kubinception.dev/kubinception/api/v1alpha1"
	"kubinception.dev/kubinception/internal/controlplane"
)

// hibernatedRecheck is how often a hibernated tenant with nothing
// scheduled is looked at again; a request through the front door, the
// wake annotation or a spec change reconciles it at once.
const hibernatedRecheck = 10 * time.Minute

// hibernationState is where a tenant's hibernation stands.
type hibernationState struct {
	hibernated bool
	since      time.Time
	reason     string
}

// hibernationDecision is decideHibernation's answer: the state to be in
// and when to look again (zero: nothing is due).
type hibernationDecision struct {
	next    hibernationState
	changed bool
	recheck time.Time
}

// parseSchedule parses a cron expression as crontab does (robfig/cron's
// standard parser: five fields, descriptors such as @daily, CRON_TZ=).
func parseSchedule(field, expr string) (cron.Schedule, error) {
	if expr == "" {
		return nil, nil
	}
	sched, err := cron.ParseStandard(expr)
	if err != nil {
		return nil, fmt.Errorf("%s %q is not a cron expression (%v): give five fields, minute first, such as \"0 19 * * 1-5\" (optionally after CRON_TZ=Europe/Paris)", field, expr, err)
	}
	return sched, nil
}

// requestedAfter says the annotation holds a request (an RFC 3339 time)
// made after t. An unreadable value is no request.
func requestedAfter(annotations map[string]string, key string, t time.Time) bool {
	v, ok := annotations[key]
	if !ok {
		return false
	}
	at, err := time.Parse(time.RFC3339Nano, v)
	return err == nil && at.After(t)
}

// decideHibernation is the pure policy: from the spec, the state the
// tenant is in, its annotations, the front door's last report of use and
// now, it returns the state to be in and when the decision may change.
// Asleep, it wakes on use after it fell asleep, on a wake request, on its
// wake schedule, or when hibernation is switched off; awake, it sleeps on
// a hibernate request, on its schedule, or after IdleAfterMinutes without
// use (counted from its last use, or from its waking).
func decideHibernation(spec kv1.HibernationSpec, cur hibernationState, annotations map[string]string, activity, now time.Time) (hibernationDecision, error) {
	sleep, err := parseSchedule("spec.hibernation.schedule", spec.Schedule)
	if err != nil {
		return hibernationDecision{next: cur}, err
	}
	wake, err := parseSchedule("spec.hibernation.wakeSchedule", spec.WakeSchedule)
	if err != nil {
		return hibernationDecision{next: cur}, err
	}
	to := func(hibernated bool, reason string) (hibernationDecision, error) {
		return hibernationDecision{next: hibernationState{hibernated: hibernated, since: now, reason: reason}, changed: true}, nil
	}
	switch {
	case !spec.Enabled:
		if cur.hibernated {
			return to(false, "Disabled")
		}
		return hibernationDecision{next: cur}, nil
	case cur.since.IsZero():
		// Just enabled: schedules count from now, not from before.
		if cur.hibernated {
			return hibernationDecision{next: hibernationState{hibernated: true, since: now, reason: cur.reason}, changed: true}, nil
		}
		return to(false, "Enabled")
	}
	d := hibernationDecision{next: cur}
	earliest := func(t time.Time) {
		if !t.IsZero() && (d.recheck.IsZero() || t.Before(d.recheck)) {
			d.recheck = t
		}
	}
	if cur.hibernated {
		switch {
		case activity.After(cur.since):
			return to(false, "Request")
		case requestedAfter(annotations, kv1.AnnotationWakeRequested, cur.since):
			return to(false, "Requested")
		case wake != nil && !wake.Next(cur.since).After(now):
			return to(false, "WakeSchedule")
		}
		if wake != nil {
			earliest(wake.Next(cur.since))
		}
		return d, nil
	}
	switch {
	case requestedAfter(annotations, kv1.AnnotationHibernateRequested, cur.since):
		return to(true, "Requested")
	case sleep != nil && !sleep.Next(cur.since).After(now):
		return to(true, "Schedule")
	}
	if sleep != nil {
		earliest(sleep.Next(cur.since))
	}
	if spec.IdleAfterMinutes > 0 {
		last := cur.since
		if activity.After(last) {
			last = activity
		}
		deadline := last.Add(time.Duration(spec.IdleAfterMinutes) * time.Minute)
		if !deadline.After(now) {
			return to(true, "Idle")
		}
		earliest(deadline)
	}
	return d, nil
}

// hibernationMessage says what a state means to whoever reads status.
func hibernationMessage(st hibernationState, frontDoor bool) string {
	if !st.hibernated {
		return fmt.Sprintf("awake since %s (%s)", st.since.UTC().Format(time.RFC3339), st.reason)
	}
	how := "kubinception wake or spec.hibernation.wakeSchedule wakes it"
	if frontDoor {
		how = "the first request through the front door (or kubinception wake) wakes it, and is answered once the API server is up"
	}
	return fmt.Sprintf("hibernated since %s (%s): the control plane is scaled to zero, its state kept in the datastore; %s", st.since.UTC().Format(time.RFC3339), st.reason, how)
}

// reconcileHibernation decides whether the control plane sleeps. Asleep,
// it scales the control plane to zero and ends the reconcile there (the
// addons, customer access and load balancers need a running API server);
// awake, it lets the phases after it run and asks to be reconciled when
// the idle deadline or the schedule falls due.
func (r *Reconciler) reconcileHibernation(ctx context.Context, s *scope) (ctrl.Result, error) {
	tc := s.tc
	st := &tc.Status.Hibernation
	if !tc.Spec.Hibernation.Enabled && !st.Hibernated {
		if st.Since != nil {
			// Switched off while awake: nothing to keep.
			*st = kv1.TenantHibernationStatus{}
		}
		return ctrl.Result{}, nil
	}
	activity, err := r.lastActivity(ctx, tc)
	if err != nil {
		return ctrl.Result{}, fmt.Errorf("read activity lease: %w", err)
	}
	if !activity.IsZero() && (st.LastActivity == nil || activity.After(st.LastActivity.Time)) {
		at := metav1.NewMicroTime(activity)
		st.LastActivity = &at
	}
	cur := hibernationState{hibernated: st.Hibernated, reason: st.Reason}
	if st.Since != nil {
		cur.since = st.Since.Time
	}
	d, err := decideHibernation(tc.Spec.Hibernation, cur, tc.Annotations, activity, s.now)
	if err != nil {
		s.fail(kv1.ConditionHibernated, kv1.ReasonInvalidSchedule, err.Error())
		return ctrl.Result{}, nil
	}
	if d.changed {
		since := metav1.NewMicroTime(d.next.since)
		st.Hibernated, st.Since, st.Reason = d.next.hibernated, &since, d.next.reason
		if cur.hibernated != d.next.hibernated {
			action := "Wake"
			if d.next.hibernated {
				action = "Hibernate"
			}
			ctrl.LoggerFrom(ctx).Info("hibernation", "hibernated", d.next.hibernated, "reason", d.next.reason)
			r.event(tc, corev1.EventTypeNormal, map[bool]string{true: kv1.ReasonHibernated, false: kv1.ReasonAwake}[d.next.hibernated], action,
				hibernationMessage(d.next, tc.Spec.Exposure.Type == kv1.ExposureFrontDoor))
		}
	}
	message := hibernationMessage(d.next, tc.Spec.Exposure.Type == kv1.ExposureFrontDoor)
	if !d.next.hibernated {
		if tc.Spec.Hibernation.Enabled {
			s.fail(kv1.ConditionHibernated, kv1.ReasonAwake, message)
		}
		if !d.recheck.IsZero() {
			s.recheckAt(d.recheck)
		}
		return ctrl.Result{}, nil
	}
	s.succeed(kv1.ConditionHibernated, kv1.ReasonHibernated, message)
	r.releaseStart(s)
	p := r.params(s)
	p.Replicas = 0
	// With no pod left, the probe of a faster start costs no rollout;
	// the control plane has run, so its bootstrap objects are written.
	p.FastStart = tc.Status.Version != ""
	if err := r.apply(ctx, tc, controlplane.Deployment(p)); err != nil {
		return ctrl.Result{}, fmt.Errorf("scale the control plane to zero: %w", err)
	}
	s.fail(kv1.ConditionControlPlaneAvailable, kv1.ReasonHibernated, message)
	wait := hibernatedRecheck
	if !d.recheck.IsZero() {
		wait = min(wait, max(d.recheck.Sub(s.now), time.Second))
	}
	return ctrl.Result{RequeueAfter: wait}, nil
}

// recheckAt asks for the tenant to be reconciled by t at the latest.
func (s *scope) recheckAt(t time.Time) {
	if s.recheck.IsZero() || t.Before(s.recheck) {
		s.recheck = t
	}
}

// resyncAfter is the requeue of a reconcile that went through every
// phase: the periodic resync, or sooner when a phase asked.
func (s *scope) resyncAfter(resync time.Duration) time.Duration {
	if s.recheck.IsZero() {
		return resync
	}
	return min(resync, max(s.recheck.Sub(s.now), time.Second))
}
