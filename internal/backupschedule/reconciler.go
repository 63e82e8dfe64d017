package backupschedule

import (
	"context"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/events"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	kv1 "kubinception.dev/kubinception/api/v1alpha1"
)

// restoreRecheck is how soon a slot that waits for a restore is looked
// at again (restores are not watched per cluster).
const restoreRecheck = 15 * time.Second

// Reconciler reconciles the backup schedules of TenantClusters. It
// writes only status.backup of a TenantCluster, with a merge patch, so
// it never overwrites what the TenantCluster reconciler reports.
type Reconciler struct {
	Client   client.Client
	Clock    clock.Clock
	Recorder events.EventRecorder
}

// SetupWithManager registers the reconciler: a TenantCluster is looked
// at when its spec changes, when one of its scheduled backups changes,
// and at its next slot.
func (r *Reconciler) SetupWithManager(mgr ctrl.Manager) error {
	return ctrl.NewControllerManagedBy(mgr).
		Named("backupschedule").
		For(&kv1.TenantCluster{}, builder.WithPredicates(predicate.GenerationChangedPredicate{}, scheduled())).
		Watches(&kv1.TenantBackup{}, handler.EnqueueRequestsFromMapFunc(func(_ context.Context, o client.Object) []reconcile.Request {
			if c := o.GetLabels()[kv1.LabelBackupSchedule]; c != "" {
				return []reconcile.Request{{NamespacedName: types.NamespacedName{Namespace: o.GetNamespace(), Name: c}}}
			}
			return nil
		})).
		Complete(r)
}

// scheduled passes TenantClusters with a schedule, or with the status of
// one that was removed.
func scheduled() predicate.Funcs {
	has := func(o client.Object) bool {
		tc, ok := o.(*kv1.TenantCluster)
		return ok && (tc.Spec.Backup != nil || tc.Status.Backup != nil)
	}
	return predicate.Funcs{
		CreateFunc:  func(e event.CreateEvent) bool { return has(e.Object) },
		UpdateFunc:  func(e event.UpdateEvent) bool { return has(e.ObjectNew) || has(e.ObjectOld) },
		DeleteFunc:  func(event.DeleteEvent) bool { return false },
		GenericFunc: func(e event.GenericEvent) bool { return has(e.Object) },
	}
}

// Reconcile makes the backup a due slot asks for, prunes what retention
// lets go, and reports the schedule.
func (r *Reconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	log := ctrl.LoggerFrom(ctx)
	tc := &kv1.TenantCluster{}
	if err := r.Client.Get(ctx, req.NamespacedName, tc); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	if !tc.DeletionTimestamp.IsZero() {
		return ctrl.Result{}, nil
	}
	base := tc.DeepCopy()
	if tc.Spec.Backup == nil {
		// Schedule removed: its backups stay, nothing is due.
		if st := tc.Status.Backup; st != nil && (st.Schedule != "" || st.NextScheduleTime != nil || st.Message != "") {
			st.Schedule, st.Since, st.NextScheduleTime, st.Message = "", nil, nil, ""
			return ctrl.Result{}, r.patchStatus(ctx, tc, base)
		}
		return ctrl.Result{}, nil
	}
	now := r.Clock.Now()

	all := &kv1.TenantBackupList{}
	if err := r.Client.List(ctx, all, client.InNamespace(tc.Namespace)); err != nil {
		return ctrl.Result{}, err
	}
	restores := &kv1.TenantRestoreList{}
	if err := r.Client.List(ctx, restores, client.InNamespace(tc.Namespace)); err != nil {
		return ctrl.Result{}, err
	}
	in := Input{Cluster: tc.Name, Spec: *tc.Spec.Backup, InUse: map[string]bool{}, Now: now}
	if tc.Status.Backup != nil {
		in.Status = *tc.Status.Backup
	}
	clusterOf := map[string]string{}
	for _, tb := range all.Items {
		clusterOf[tb.Name] = tb.Spec.Cluster
		if tb.Labels[kv1.LabelBackupSchedule] == tc.Name && tb.DeletionTimestamp.IsZero() {
			in.Backups = append(in.Backups, tb)
		}
	}
	for _, tr := range restores.Items {
		if tr.Status.Phase == kv1.RestoreCompleted || tr.Status.Phase == kv1.RestoreFailed {
			continue
		}
		in.InUse[tr.Spec.Backup] = true
		if clusterOf[tr.Spec.Backup] == tc.Name || tr.Status.Cluster == tc.Name {
			in.Restoring = tr.Name
		}
	}

	p := Decide(in)
	if p.Invalid && (tc.Status.Backup == nil || tc.Status.Backup.Message != p.Status.Message) {
		r.event(tc, corev1.EventTypeWarning, "InvalidBackupSchedule", "%s", p.Status.Message)
	}
	if !p.Create.IsZero() {
		if err := r.create(ctx, tc, p.Create, p.Due); err != nil {
			return ctrl.Result{}, err
		}
	}
	for _, name := range p.Prune {
		tb := &kv1.TenantBackup{ObjectMeta: metav1.ObjectMeta{Namespace: tc.Namespace, Name: name}}
		if err := r.Client.Delete(ctx, tb); client.IgnoreNotFound(err) != nil {
			return ctrl.Result{}, fmt.Errorf("prune scheduled backup %s: %w", name, err)
		}
		log.Info("pruned scheduled backup", "backup", name)
		r.event(tc, corev1.EventTypeNormal, "BackupPruned", "deleted scheduled backup %s (retention: keep %s, maxAge %s)", name, keepString(tc.Spec.Backup.Keep), maxAgeString(tc.Spec.Backup.MaxAge))
	}
	st := p.Status
	tc.Status.Backup = &st
	if err := r.patchStatus(ctx, tc, base); err != nil {
		return ctrl.Result{}, err
	}
	var res ctrl.Result
	if st.NextScheduleTime != nil {
		res.RequeueAfter = st.NextScheduleTime.Sub(now)
	}
	if in.Restoring != "" && (res.RequeueAfter == 0 || res.RequeueAfter > restoreRecheck) {
		res.RequeueAfter = restoreRecheck
	}
	return res, nil
}

// create makes the slot's TenantBackup; one made already (by a reconcile
// whose status patch was lost) is the same backup.
func (r *Reconciler) create(ctx context.Context, tc *kv1.TenantCluster, slot time.Time, due int) error {
	tb := &kv1.TenantBackup{
		ObjectMeta: metav1.ObjectMeta{Namespace: tc.Namespace, Name: SlotName(tc.Name, slot),
			Labels:      map[string]string{kv1.LabelBackupSchedule: tc.Name},
			Annotations: map[string]string{kv1.AnnotationScheduledTime: slot.UTC().Format(time.RFC3339)}},
		Spec: kv1.TenantBackupSpec{Cluster: tc.Name, Target: tc.Spec.Backup.Target},
	}
	err := r.Client.Create(ctx, tb)
	if apierrors.IsAlreadyExists(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("create scheduled backup %s: %w", tb.Name, err)
	}
	ctrl.LoggerFrom(ctx).Info("scheduled backup", "backup", tb.Name, "slot", slot, "due", due)
	if due > 1 {
		n := fmt.Sprint(due)
		if due >= maxWalk {
			n = "more than " + n
		}
		r.event(tc, corev1.EventTypeNormal, "ScheduledBackup", "created TenantBackup %s for slot %s: %s slots fell due while no backup was made, one backup makes them up",
			tb.Name, slot.UTC().Format(time.RFC3339), n)
	} else {
		r.event(tc, corev1.EventTypeNormal, "ScheduledBackup", "created TenantBackup %s for slot %s", tb.Name, slot.UTC().Format(time.RFC3339))
	}
	return nil
}

func (r *Reconciler) patchStatus(ctx context.Context, tc, base *kv1.TenantCluster) error {
	if equality.Semantic.DeepEqual(tc.Status.Backup, base.Status.Backup) {
		return nil
	}
	if err := r.Client.Status().Patch(ctx, tc, client.MergeFrom(base)); err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("patch status.backup: %w", err)
	}
	return nil
}

func (r *Reconciler) event(tc *kv1.TenantCluster, typ, reason, format string, args ...any) {
	if r.Recorder != nil {
		r.Recorder.Eventf(tc, nil, typ, reason, "Backup", format, args...)
	}
}

func keepString(k *int32) string {
	if k == nil {
		return "-"
	}
	return fmt.Sprint(*k)
}

func maxAgeString(d *metav1.Duration) string {
	if d == nil {
		return "-"
	}
	return d.Duration.String()
}
