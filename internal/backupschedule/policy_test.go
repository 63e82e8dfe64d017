package backupschedule

import (
	"slices"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	kv1 "kubinception.dev/kubinception/api/v1alpha1"
)

var t0 = time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)

func scheduledBackup(cluster string, slot time.Time, phase kv1.TenantBackupPhase) kv1.TenantBackup {
	tb := kv1.TenantBackup{ObjectMeta: metav1.ObjectMeta{Name: SlotName(cluster, slot),
		Labels:      map[string]string{kv1.LabelBackupSchedule: cluster},
		Annotations: map[string]string{kv1.AnnotationScheduledTime: slot.Format(time.RFC3339)}},
		Spec: kv1.TenantBackupSpec{Cluster: cluster}, Status: kv1.TenantBackupStatus{Phase: phase}}
	if phase == kv1.BackupCompleted {
		done := metav1.NewTime(slot.Add(10 * time.Second))
		tb.Status.CompletionTime = &done
	}
	return tb
}

func ptr[T any](v T) *T { return &v }

func TestPrune(t *testing.T) {
	b := func(minutesAgo int, phase kv1.TenantBackupPhase) kv1.TenantBackup {
		return scheduledBackup("c", t0.Add(-time.Duration(minutesAgo)*time.Minute), phase)
	}
	name := func(minutesAgo int) string { return SlotName("c", t0.Add(-time.Duration(minutesAgo)*time.Minute)) }
	done, failed, running := kv1.BackupCompleted, kv1.BackupFailed, kv1.BackupRunning
	for _, tc := range []struct {
		name    string
		backups []kv1.TenantBackup
		keep    *int32
		maxAge  *metav1.Duration
		inUse   []string
		want    []string
	}{
		{name: "keep 2 of 4", backups: []kv1.TenantBackup{b(1, done), b(2, done), b(3, done), b(4, done)}, keep: ptr[int32](2), want: []string{name(3), name(4)}},
		{name: "order of the list does not matter", backups: []kv1.TenantBackup{b(4, done), b(1, done), b(3, done)}, keep: ptr[int32](1), want: []string{name(3), name(4)}},
		{name: "running and pending backups stay and do not count", backups: []kv1.TenantBackup{b(1, running), b(2, ""), b(3, done), b(4, done)}, keep: ptr[int32](1), want: []string{name(4)}},
		{name: "keep 1 with the newest running keeps the last completed", backups: []kv1.TenantBackup{b(1, running), b(2, done)}, keep: ptr[int32](1), want: nil},
		{name: "a backup a restore reads stays", backups: []kv1.TenantBackup{b(1, done), b(2, done), b(3, done)}, keep: ptr[int32](1), inUse: []string{name(3)}, want: []string{name(2)}},
		{name: "maxAge", backups: []kv1.TenantBackup{b(1, done), b(30, done), b(90, done)}, maxAge: &metav1.Duration{Duration: time.Hour}, want: []string{name(90)}},
		{name: "maxAge keeps the newest completed however old", backups: []kv1.TenantBackup{b(120, done), b(180, done)}, maxAge: &metav1.Duration{Duration: time.Hour}, want: []string{name(180)}},
		{name: "keep and maxAge: whichever prunes more", backups: []kv1.TenantBackup{b(1, done), b(2, done), b(90, done)}, keep: ptr[int32](5), maxAge: &metav1.Duration{Duration: time.Hour}, want: []string{name(90)}},
		{name: "failed backups go once a newer one completed", backups: []kv1.TenantBackup{b(1, done), b(2, failed), b(3, failed)}, keep: ptr[int32](5), want: []string{name(2), name(3)}},
		{name: "the latest failure stays while none completed after it", backups: []kv1.TenantBackup{b(1, failed), b(2, done)}, keep: ptr[int32](5), want: nil},
		{name: "old failures go by maxAge", backups: []kv1.TenantBackup{b(90, failed)}, maxAge: &metav1.Duration{Duration: time.Hour}, want: []string{name(90)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			inUse := map[string]bool{}
			for _, n := range tc.inUse {
				inUse[n] = true
			}
			got := Prune(tc.backups, tc.keep, tc.maxAge, inUse, t0)
			slices.Sort(got)
			want := slices.Clone(tc.want)
			slices.Sort(want)
			if !slices.Equal(got, want) {
				t.Fatalf("Prune = %q, want %q", got, want)
			}
		})
	}
}

func TestDecide(t *testing.T) {
	spec := kv1.BackupScheduleSpec{Schedule: "*/10 * * * *", Keep: ptr[int32](2)}
	at := func(tm time.Time) *metav1.Time { return ptr(metav1.NewTime(tm)) }
	adopted := kv1.TenantBackupScheduleStatus{Schedule: spec.Schedule, Since: at(t0.Add(-time.Hour))}

	t.Run("a new schedule counts from now", func(t *testing.T) {
		p := Decide(Input{Cluster: "c", Spec: spec, Now: t0.Add(time.Minute)})
		if !p.Create.IsZero() || p.Status.Since == nil || !p.Status.Since.Time.Equal(t0.Add(time.Minute)) || !p.Status.NextScheduleTime.Time.Equal(t0.Add(10*time.Minute)) {
			t.Fatalf("%+v", p)
		}
	})
	t.Run("a changed schedule counts from now", func(t *testing.T) {
		st := adopted
		st.Schedule = "0 * * * *"
		p := Decide(Input{Cluster: "c", Spec: spec, Status: st, Now: t0.Add(time.Minute)})
		if !p.Create.IsZero() || p.Status.Schedule != spec.Schedule {
			t.Fatalf("%+v", p)
		}
	})
	t.Run("a due slot is backed up once, under its own name", func(t *testing.T) {
		st := adopted
		st.LastScheduleTime = at(t0.Add(-10 * time.Minute))
		p := Decide(Input{Cluster: "c", Spec: spec, Status: st, Now: t0.Add(30 * time.Second)})
		if !p.Create.Equal(t0) || p.Due != 1 || p.Status.LastScheduledBackup != "c-20261122-100000" || !p.Status.NextScheduleTime.Time.Equal(t0.Add(10*time.Minute)) {
			t.Fatalf("%+v", p)
		}
		// The same reconcile again, its status patch lost: the same
		// name, which Create finds made already.
		again := Decide(Input{Cluster: "c", Spec: spec, Status: st, Now: t0.Add(40 * time.Second), Backups: []kv1.TenantBackup{scheduledBackup("c", t0, kv1.BackupRunning)}})
		if !again.Create.Equal(t0) {
			t.Fatalf("%+v", again)
		}
		// With the status patched, nothing more is due in the slot.
		st.LastScheduleTime = at(t0)
		if p := Decide(Input{Cluster: "c", Spec: spec, Status: st, Now: t0.Add(9 * time.Minute)}); !p.Create.IsZero() {
			t.Fatalf("%+v", p)
		}
	})
	t.Run("after downtime, one catch-up for the latest slot", func(t *testing.T) {
		st := adopted
		st.LastScheduleTime = at(t0.Add(-10 * time.Minute))
		p := Decide(Input{Cluster: "c", Spec: spec, Status: st, Now: t0.Add(5*time.Hour + time.Minute)})
		if !p.Create.Equal(t0.Add(5*time.Hour)) || p.Due != 31 {
			t.Fatalf("create %v due %d", p.Create, p.Due)
		}
	})
	t.Run("after a year down under a per-minute schedule, still one", func(t *testing.T) {
		st := kv1.TenantBackupScheduleStatus{Schedule: "* * * * *", Since: at(t0.Add(-365 * 24 * time.Hour))}
		p := Decide(Input{Cluster: "c", Spec: kv1.BackupScheduleSpec{Schedule: "* * * * *", Keep: ptr[int32](1)}, Status: st, Now: t0.Add(30 * time.Second)})
		if !p.Create.Equal(t0) {
			t.Fatalf("%+v", p)
		}
	})
	t.Run("waits for the previous backup", func(t *testing.T) {
		st := adopted
		st.LastScheduleTime = at(t0.Add(-10 * time.Minute))
		p := Decide(Input{Cluster: "c", Spec: spec, Status: st, Now: t0.Add(time.Second),
			Backups: []kv1.TenantBackup{scheduledBackup("c", t0.Add(-10*time.Minute), kv1.BackupRunning)}})
		if !p.Create.IsZero() || !strings.Contains(p.Status.Message, "waits for c-20261122-095000") {
			t.Fatalf("%+v", p)
		}
	})
	t.Run("waits for a restore of the cluster", func(t *testing.T) {
		st := adopted
		p := Decide(Input{Cluster: "c", Spec: spec, Status: st, Now: t0.Add(time.Second), Restoring: "roll-back"})
		if !p.Create.IsZero() || !strings.Contains(p.Status.Message, "TenantRestore roll-back") {
			t.Fatalf("%+v", p)
		}
	})
	t.Run("status names the newest completed backup and counts what is kept", func(t *testing.T) {
		st := adopted
		st.LastScheduleTime = at(t0.Add(-10 * time.Minute))
		backups := []kv1.TenantBackup{scheduledBackup("c", t0.Add(-10*time.Minute), kv1.BackupCompleted), scheduledBackup("c", t0.Add(-20*time.Minute), kv1.BackupCompleted), scheduledBackup("c", t0.Add(-30*time.Minute), kv1.BackupCompleted)}
		p := Decide(Input{Cluster: "c", Spec: spec, Status: st, Now: t0.Add(time.Second), Backups: backups})
		if p.Status.LastSuccessfulBackup != "c-20261122-095000" || p.Status.Kept != 3 || !slices.Equal(p.Prune, []string{"c-20261122-093000"}) {
			t.Fatalf("%+v", p)
		}
	})
	t.Run("an invalid schedule says which field", func(t *testing.T) {
		for _, expr := range []string{"61 * * * *", "@every 10s", "@sometimes"} {
			p := Decide(Input{Cluster: "c", Spec: kv1.BackupScheduleSpec{Schedule: expr, Keep: ptr[int32](1)}, Now: t0})
			if !p.Invalid || !strings.Contains(p.Status.Message, "spec.backup.schedule") || !p.Create.IsZero() {
				t.Errorf("%q: %+v", expr, p)
			}
		}
	})
}

// FuzzParseSchedule: any input parses or is refused naming the field,
// and a parsed schedule's next slot is never sooner than a minute apart
// for @every.
func FuzzParseSchedule(f *testing.F) {
	for _, s := range []string{"0 3 * * *", "*/5 * * * *", "@daily", "@every 1h", "CRON_TZ=Europe/Paris 0 19 * * 1-5", "@every 1s", "x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, expr string) {
		sched, err := ParseSchedule(expr)
		if err != nil {
			if !strings.Contains(err.Error(), "spec.backup.schedule") {
				t.Fatalf("error does not name the field: %v", err)
			}
			return
		}
		if strings.HasPrefix(strings.TrimSpace(expr), "@every") {
			if n := sched.Next(t0); !n.IsZero() && n.Sub(t0) < minInterval {
				t.Fatalf("%q: next slot %v after %v", expr, n, t0)
			}
		}
	})
}
