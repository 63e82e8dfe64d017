package backupschedule_test

import (
	"context"
	"slices"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	clocktesting "k8s.io/utils/clock/testing"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"

	kv1 "kubinception.dev/kubinception/api/v1alpha1"
	"kubinception.dev/kubinception/internal/backupschedule"
	"kubinception.dev/kubinception/internal/scheme"
)

var t0 = time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)

type env struct {
	c     client.Client
	clock *clocktesting.FakeClock
	r     *backupschedule.Reconciler
}

func newEnv(t *testing.T, funcs interceptor.Funcs, objs ...client.Object) *env {
	t.Helper()
	keep := int32(1)
	tc := &kv1.TenantCluster{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "shop", UID: "u1"},
		Spec: kv1.TenantClusterSpec{Backup: &kv1.BackupScheduleSpec{Schedule: "* * * * *", Keep: &keep, Target: kv1.BackupTargetS3}}}
	c := fake.NewClientBuilder().WithScheme(scheme.New()).
		WithStatusSubresource(&kv1.TenantCluster{}, &kv1.TenantBackup{}, &kv1.TenantRestore{}).
		WithObjects(append([]client.Object{tc}, objs...)...).WithInterceptorFuncs(funcs).Build()
	clock := clocktesting.NewFakeClock(t0.Add(-30 * time.Second))
	return &env{c: c, clock: clock, r: &backupschedule.Reconciler{Client: c, Clock: clock}}
}

func (e *env) reconcile(t *testing.T) ctrl.Result {
	t.Helper()
	res, err := e.r.Reconcile(context.Background(), ctrl.Request{NamespacedName: types.NamespacedName{Namespace: "default", Name: "shop"}})
	if err != nil {
		t.Fatal(err)
	}
	return res
}

func (e *env) backups(t *testing.T) []string {
	t.Helper()
	l := &kv1.TenantBackupList{}
	if err := e.c.List(context.Background(), l); err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, b := range l.Items {
		names = append(names, b.Name)
	}
	slices.Sort(names)
	return names
}

func (e *env) complete(t *testing.T, name string) {
	t.Helper()
	tb := &kv1.TenantBackup{}
	if err := e.c.Get(context.Background(), types.NamespacedName{Namespace: "default", Name: name}, tb); err != nil {
		t.Fatal(err)
	}
	done := metav1.NewTime(e.clock.Now())
	tb.Status.Phase, tb.Status.CompletionTime = kv1.BackupCompleted, &done
	if err := e.c.Status().Update(context.Background(), tb); err != nil {
		t.Fatal(err)
	}
}

func (e *env) status(t *testing.T) kv1.TenantBackupScheduleStatus {
	t.Helper()
	tc := &kv1.TenantCluster{}
	if err := e.c.Get(context.Background(), types.NamespacedName{Namespace: "default", Name: "shop"}, tc); err != nil {
		t.Fatal(err)
	}
	if tc.Status.Backup == nil {
		t.Fatal("no status.backup")
	}
	return *tc.Status.Backup
}

// TestSchedule runs a per-minute schedule with keep 1 through three
// slots: each slot makes one TenantBackup of its own name (a repeated
// reconcile makes no second), the next slot waits while the backup runs,
// and once a newer one completed the older is pruned.
func TestSchedule(t *testing.T) {
	e := newEnv(t, interceptor.Funcs{})
	res := e.reconcile(t)
	if st := e.status(t); st.Since == nil || st.NextScheduleTime == nil || !st.NextScheduleTime.Time.Equal(t0) || len(e.backups(t)) != 0 {
		t.Fatalf("adopting the schedule: %+v, backups %q", st, e.backups(t))
	}
	if res.RequeueAfter != 30*time.Second {
		t.Fatalf("requeue after %v, want the 30 s to the next slot", res.RequeueAfter)
	}

	e.clock.SetTime(t0.Add(time.Second))
	e.reconcile(t)
	e.reconcile(t)
	if got := e.backups(t); !slices.Equal(got, []string{"shop-20261122-100000"}) {
		t.Fatalf("backups after the first slot: %q", got)
	}
	tb := &kv1.TenantBackup{}
	if err := e.c.Get(context.Background(), types.NamespacedName{Namespace: "default", Name: "shop-20261122-100000"}, tb); err != nil {
		t.Fatal(err)
	}
	if tb.Spec.Cluster != "shop" || tb.Spec.Target != kv1.BackupTargetS3 || tb.Labels[kv1.LabelBackupSchedule] != "shop" {
		t.Fatalf("scheduled backup: %+v", tb)
	}

	// The next slot comes while the first still runs: it waits.
	e.clock.SetTime(t0.Add(time.Minute + time.Second))
	e.reconcile(t)
	if got := e.backups(t); len(got) != 1 {
		t.Fatalf("a second backup started while the first ran: %q", got)
	}
	if st := e.status(t); st.Message == "" {
		t.Fatalf("status says nothing of the wait: %+v", st)
	}
	e.complete(t, "shop-20261122-100000")
	e.reconcile(t)
	if got := e.backups(t); !slices.Equal(got, []string{"shop-20261122-100000", "shop-20261122-100100"}) {
		t.Fatalf("backups after the second slot: %q", got)
	}
	e.clock.SetTime(t0.Add(time.Minute + 20*time.Second))
	e.complete(t, "shop-20261122-100100")
	e.reconcile(t)
	if got := e.backups(t); !slices.Equal(got, []string{"shop-20261122-100100"}) {
		t.Fatalf("keep 1: %q", got)
	}
	st := e.status(t)
	if st.LastSuccessfulBackup != "shop-20261122-100100" || st.LastScheduledBackup != "shop-20261122-100100" || st.Kept != 1 || !st.NextScheduleTime.Time.Equal(t0.Add(2*time.Minute)) {
		t.Fatalf("status: %+v", st)
	}
}

// TestScheduleCatchUp: after the operator was down for an hour, one
// backup makes up the missed slots.
func TestScheduleCatchUp(t *testing.T) {
	e := newEnv(t, interceptor.Funcs{})
	e.reconcile(t)
	e.clock.SetTime(t0.Add(time.Hour + 5*time.Second))
	e.reconcile(t)
	e.reconcile(t)
	if got := e.backups(t); !slices.Equal(got, []string{"shop-20261122-110000"}) {
		t.Fatalf("backups after an hour down: %q", got)
	}
}

// TestScheduleKeepsBackupsInUse: a backup a running TenantRestore reads
// is not pruned, and no scheduled backup starts while the cluster is
// being restored.
func TestScheduleKeepsBackupsInUse(t *testing.T) {
	old := scheduled("shop", t0.Add(-2*time.Minute))
	newer := scheduled("shop", t0.Add(-time.Minute))
	tr := &kv1.TenantRestore{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "roll-back"},
		Spec: kv1.TenantRestoreSpec{Backup: old.Name}, Status: kv1.TenantRestoreStatus{Phase: kv1.RestoreRestoring, Cluster: "shop"}}
	e := newEnv(t, interceptor.Funcs{}, old, newer, tr)
	e.reconcile(t)
	e.clock.SetTime(t0.Add(5 * time.Second))
	res := e.reconcile(t)
	if got := e.backups(t); !slices.Equal(got, []string{old.Name, newer.Name}) {
		t.Fatalf("during the restore: %q", got)
	}
	if res.RequeueAfter == 0 || res.RequeueAfter > 15*time.Second {
		t.Fatalf("requeue after %v while a restore runs", res.RequeueAfter)
	}
	tr.Status.Phase = kv1.RestoreCompleted
	if err := e.c.Status().Update(context.Background(), tr); err != nil {
		t.Fatal(err)
	}
	e.reconcile(t)
	if got := e.backups(t); !slices.Equal(got, []string{newer.Name, "shop-20261122-100000"}) {
		t.Fatalf("after the restore: %q", got)
	}
}

// TestScheduleCreateFails: a refused create is returned (retried with
// back-off) and the slot stays due.
func TestScheduleCreateFails(t *testing.T) {
	fail := true
	e := newEnv(t, interceptor.Funcs{Create: func(ctx context.Context, c client.WithWatch, obj client.Object, opts ...client.CreateOption) error {
		if fail {
			return apierrors.NewServiceUnavailable("admin API down")
		}
		return c.Create(ctx, obj, opts...)
	}})
	e.reconcile(t)
	e.clock.SetTime(t0.Add(time.Second))
	if _, err := e.r.Reconcile(context.Background(), ctrl.Request{NamespacedName: types.NamespacedName{Namespace: "default", Name: "shop"}}); err == nil {
		t.Fatal("a refused create was not returned")
	}
	if st := e.status(t); st.LastScheduleTime != nil {
		t.Fatalf("the slot was recorded though its backup was not made: %+v", st)
	}
	fail = false
	e.reconcile(t)
	if got := e.backups(t); !slices.Equal(got, []string{"shop-20261122-100000"}) {
		t.Fatalf("after the retry: %q", got)
	}
}

func scheduled(cluster string, slot time.Time) *kv1.TenantBackup {
	done := metav1.NewTime(slot.Add(10 * time.Second))
	return &kv1.TenantBackup{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: backupschedule.SlotName(cluster, slot),
		Labels:      map[string]string{kv1.LabelBackupSchedule: cluster},
		Annotations: map[string]string{kv1.AnnotationScheduledTime: slot.Format(time.RFC3339)}},
		Spec:   kv1.TenantBackupSpec{Cluster: cluster},
		Status: kv1.TenantBackupStatus{Phase: kv1.BackupCompleted, CompletionTime: &done}}
}
