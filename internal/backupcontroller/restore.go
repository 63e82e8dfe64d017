package backupcontroller

import (
	"context"
	"fmt"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/events"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"

	kv1 "kubinception.dev/kubinception/api/v1alpha1"
	"kubinception.dev/kubinception/internal/backup"
	"kubinception.dev/kubinception/internal/controlplane"
	"kubinception.dev/kubinception/internal/gateway"
)

// RestoreReconciler reconciles TenantRestores: it rolls a TenantCluster
// back to a TenantBackup. Each phase is recorded in status before it acts,
// and every step can be repeated, so an operator restart at any point
// carries on where it stopped.
type RestoreReconciler struct {
	Client    client.Client
	APIReader client.Reader
	Clock     clock.Clock
	Recorder  events.EventRecorder
	// Backups gives the target, key and gateway access of the backups.
	Backups *Reconciler
	// Poll is how soon a phase that waits looks again (2 s when zero).
	Poll time.Duration
}

// SetupWithManager registers the reconciler.
func (r *RestoreReconciler) SetupWithManager(mgr ctrl.Manager) error {
	return ctrl.NewControllerManagedBy(mgr).
		For(&kv1.TenantRestore{}).
		WithOptions(controller.Options{MaxConcurrentReconciles: 2}).
		Complete(r)
}

func (r *RestoreReconciler) poll() ctrl.Result {
	if r.Poll == 0 {
		return ctrl.Result{RequeueAfter: 2 * time.Second}
	}
	return ctrl.Result{RequeueAfter: r.Poll}
}

// Reconcile moves a TenantRestore one phase on.
func (r *RestoreReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	tr := &kv1.TenantRestore{}
	if err := r.Client.Get(ctx, req.NamespacedName, tr); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	if tr.Status.Phase == kv1.RestoreCompleted || tr.Status.Phase == kv1.RestoreFailed || !tr.DeletionTimestamp.IsZero() {
		return ctrl.Result{}, nil
	}
	tb := &kv1.TenantBackup{}
	if err := r.Client.Get(ctx, types.NamespacedName{Namespace: tr.Namespace, Name: tr.Spec.Backup}, tb); err != nil {
		if apierrors.IsNotFound(err) {
			return ctrl.Result{}, r.fail(ctx, tr, "BackupNotFound", fmt.Sprintf("spec.backup: TenantBackup %q not found in namespace %q", tr.Spec.Backup, tr.Namespace))
		}
		return ctrl.Result{}, err
	}
	switch tb.Status.Phase {
	case kv1.BackupFailed:
		return ctrl.Result{}, r.fail(ctx, tr, "BackupFailed", fmt.Sprintf("spec.backup: TenantBackup %q failed: %s", tb.Name, tb.Status.Message))
	case kv1.BackupCompleted:
	default:
		return r.poll(), r.setPhase(ctx, tr, kv1.RestorePending, "waiting for TenantBackup "+tb.Name+" to complete", nil)
	}
	clone := tr.Spec.Cluster != "" && tr.Spec.Cluster != tb.Spec.Cluster
	target := tb.Spec.Cluster
	if clone {
		target = tr.Spec.Cluster
	}
	tc := &kv1.TenantCluster{}
	if err := r.Client.Get(ctx, types.NamespacedName{Namespace: tr.Namespace, Name: target}, tc); err != nil {
		switch {
		case apierrors.IsNotFound(err) && clone:
			return ctrl.Result{}, r.fail(ctx, tr, "ClusterNotFound", fmt.Sprintf("spec.cluster: TenantCluster %q not found in namespace %q: create it with spec.paused true (kubinception backup restore %s --into %s does)", target, tr.Namespace, tb.Name, target))
		case apierrors.IsNotFound(err):
			return ctrl.Result{}, r.fail(ctx, tr, "ClusterNotFound", fmt.Sprintf("TenantCluster %q of backup %q no longer exists: restore the backup into a new cluster with spec.cluster (kubinception backup restore %s --into NAME)", tb.Spec.Cluster, tb.Name, tb.Name))
		}
		return ctrl.Result{}, err
	}
	if !clone && string(tc.UID) != tb.Status.TenantUID {
		return ctrl.Result{}, r.fail(ctx, tr, "ClusterReplaced", fmt.Sprintf("TenantCluster %q was deleted and created again since backup %q: a backup rolls back only the cluster it copied; restore it into a new cluster with spec.cluster", tc.Name, tb.Name))
	}

	switch tr.Status.Phase {
	case "", kv1.RestorePending:
		if clone {
			why, err := r.checkCloneTarget(ctx, tc, tb)
			if err != nil {
				return ctrl.Result{}, err
			}
			if why != "" {
				return ctrl.Result{}, r.fail(ctx, tr, "CloneTargetInUse", why)
			}
		}
		// Recorded before the cluster is paused, so a restart knows
		// whether to resume it. A clone is resumed once restored.
		now := metav1.NewTime(r.Clock.Now())
		return ctrl.Result{Requeue: true}, r.setPhase(ctx, tr, kv1.RestoreStopping, "pausing the cluster and stopping its control plane", func(st *kv1.TenantRestoreStatus) {
			st.Cluster = tc.Name
			st.Clone = clone
			st.PausedByRestore = !tc.Spec.Paused || clone
			st.StartTime = &now
		})
	case kv1.RestoreStopping:
		if tr.Status.PausedByRestore && !tc.Spec.Paused {
			if err := r.setPaused(ctx, tc, true); err != nil {
				return ctrl.Result{}, err
			}
		}
		stopped, err := r.stopControlPlane(ctx, tc)
		if err != nil || !stopped {
			return r.poll(), err
		}
		r.event(tr, corev1.EventTypeNormal, "ControlPlaneStopped", "%s is paused with no control-plane pod: replacing its keys", tc.Name)
		return ctrl.Result{Requeue: true}, r.setPhase(ctx, tr, kv1.RestoreRestoring, "replacing the tenant's keys with the backup's", nil)
	case kv1.RestoreRestoring:
		if clone {
			if err := r.cloneEncryption(ctx, tr, tb, tc); err != nil {
				r.event(tr, corev1.EventTypeWarning, "RestoreRetrying", "%v", err)
				return ctrl.Result{}, err
			}
		}
		res, err := r.restore(ctx, tb, tc)
		if err != nil {
			r.event(tr, corev1.EventTypeWarning, "RestoreRetrying", "%v", err)
			return ctrl.Result{}, err
		}
		r.event(tr, corev1.EventTypeNormal, "KeysRestored", "%d objects of backup %s written back, datastore at revision %d", res.Objects, tb.Name, res.Revision)
		return ctrl.Result{Requeue: true}, r.setPhase(ctx, tr, kv1.RestoreStarting, "resuming the cluster", func(st *kv1.TenantRestoreStatus) {
			st.Objects, st.Revision = int64(res.Objects), res.Revision
		})
	case kv1.RestoreStarting:
		msg := ""
		if tr.Status.PausedByRestore && tc.Spec.Paused {
			if err := r.setPaused(ctx, tc, false); err != nil {
				return ctrl.Result{}, err
			}
		} else if tc.Spec.Paused {
			msg = "restored; the TenantCluster was paused before the restore and stays paused: set spec.paused to false to start its control plane"
		}
		done := metav1.NewTime(r.Clock.Now())
		if err := r.setPhase(ctx, tr, kv1.RestoreCompleted, msg, func(st *kv1.TenantRestoreStatus) { st.CompletionTime = &done }); err != nil {
			return ctrl.Result{}, err
		}
		if clone {
			r.event(tr, corev1.EventTypeNormal, "RestoreCompleted", "backup %s of %s cloned into %s (%d objects)", tb.Name, tb.Spec.Cluster, tc.Name, tr.Status.Objects)
		} else {
			r.event(tr, corev1.EventTypeNormal, "RestoreCompleted", "%s rolled back to backup %s (%d objects)", tc.Name, tb.Name, tr.Status.Objects)
		}
	}
	return ctrl.Result{}, nil
}

// stopControlPlane scales the tenant's control plane to zero and reports
// whether none of its pods is left.
func (r *RestoreReconciler) stopControlPlane(ctx context.Context, tc *kv1.TenantCluster) (bool, error) {
	dep := &appsv1.Deployment{}
	err := r.APIReader.Get(ctx, types.NamespacedName{Namespace: tc.Namespace, Name: controlplane.DeploymentName(tc.Name)}, dep)
	switch {
	case apierrors.IsNotFound(err):
	case err != nil:
		return false, err
	case dep.Spec.Replicas == nil || *dep.Spec.Replicas != 0:
		patch := client.RawPatch(types.MergePatchType, []byte(`{"spec":{"replicas":0}}`))
		if err := r.Client.Patch(ctx, dep, patch); err != nil {
			return false, fmt.Errorf("scale the control plane to zero: %w", err)
		}
	}
	pods := &corev1.PodList{}
	if err := r.APIReader.List(ctx, pods, client.InNamespace(tc.Namespace), client.MatchingLabels(controlplane.Labels(tc.Name))); err != nil {
		return false, err
	}
	return len(pods.Items) == 0, nil
}

// restore writes the backup's keys into the tenant of tc, through the
// gateway of tc's Datastore.
func (r *RestoreReconciler) restore(ctx context.Context, tb *kv1.TenantBackup, tc *kv1.TenantCluster) (backup.Result, error) {
	b := r.Backups
	kind := storedTarget(tb)
	if msg := b.missingTarget(kind); msg != "" {
		return backup.Result{}, fmt.Errorf("backup %s is kept in the %s target: %s", tb.Name, kind, msg)
	}
	target, err := b.open(ctx, kind)
	if err != nil {
		return backup.Result{}, err
	}
	id, _, err := b.Key(ctx)
	if err != nil {
		return backup.Result{}, err
	}
	if id == nil {
		return backup.Result{}, fmt.Errorf("Secret %s/%s holds no %q: the backup key's secret half is needed to restore", b.Namespace, KeySecretName, KeyIdentity)
	}
	dial := b.Gateway
	if dial == nil {
		dial = b.dialGateway
	}
	var admin *gateway.AdminClient
	if admin, err = dial(ctx, datastoreOf(tc)); err != nil {
		return backup.Result{}, err
	}
	return backup.RestoreFrom(ctx, target, archiveName(tb), admin.Restorer(string(tc.UID), id, backup.Replace))
}

func (r *RestoreReconciler) setPaused(ctx context.Context, tc *kv1.TenantCluster, paused bool) error {
	patch := client.RawPatch(types.MergePatchType, []byte(fmt.Sprintf(`{"spec":{"paused":%t}}`, paused)))
	if err := r.Client.Patch(ctx, tc, patch); err != nil {
		return fmt.Errorf("set spec.paused=%t on TenantCluster %s: %w", paused, tc.Name, err)
	}
	return nil
}

func (r *RestoreReconciler) setPhase(ctx context.Context, tr *kv1.TenantRestore, phase kv1.TenantRestorePhase, msg string, mutate func(*kv1.TenantRestoreStatus)) error {
	base := tr.DeepCopy()
	tr.Status.Phase, tr.Status.Message = phase, msg
	if mutate != nil {
		mutate(&tr.Status)
	}
	if tr.Status == base.Status {
		return nil
	}
	return r.Client.Status().Patch(ctx, tr, client.MergeFrom(base))
}

// fail ends the restore. A cluster it paused before touching any key is
// resumed; one whose keys it had begun to replace stays paused, since its
// state may be half restored.
func (r *RestoreReconciler) fail(ctx context.Context, tr *kv1.TenantRestore, reason, msg string) error {
	switch {
	case tr.Status.Phase == kv1.RestoreStopping && tr.Status.PausedByRestore:
		tc := &kv1.TenantCluster{}
		err := r.Client.Get(ctx, types.NamespacedName{Namespace: tr.Namespace, Name: tr.Status.Cluster}, tc)
		if err == nil && tc.Spec.Paused {
			err = r.setPaused(ctx, tc, false)
		}
		if client.IgnoreNotFound(err) != nil {
			return err
		}
		msg += "; the cluster was resumed as it was"
	case tr.Status.Phase == kv1.RestoreRestoring || tr.Status.Phase == kv1.RestoreStarting:
		msg += fmt.Sprintf("; TenantCluster %s stays paused: its keys may be partly replaced, restore another backup of it or unpause it to run on what is there", tr.Status.Cluster)
	}
	if err := r.setPhase(ctx, tr, kv1.RestoreFailed, msg, nil); err != nil {
		return err
	}
	r.event(tr, corev1.EventTypeWarning, reason, "%s", msg)
	return nil
}

func (r *RestoreReconciler) event(tr *kv1.TenantRestore, typ, reason, format string, args ...any) {
	if r.Recorder != nil {
		r.Recorder.Eventf(tr, nil, typ, reason, "Restore", format, args...)
	}
}
