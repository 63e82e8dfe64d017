package backupschedule

import (
	"fmt"
	"slices"
	"time"

	"github.com/robfig/cron/v3"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	kv1 "kubinception.dev/kubinception/api/v1alpha1"
)

// minInterval is the shortest @every a schedule may use: a backup is a
// stream of the whole tenant through its gateway.
const minInterval = time.Minute

// ParseSchedule parses spec.backup.schedule as crontab does (robfig/cron's
// standard parser: five fields, descriptors such as @daily, CRON_TZ=).
func ParseSchedule(expr string) (cron.Schedule, error) {
	sched, err := cron.ParseStandard(expr)
	if err != nil {
		return nil, fmt.Errorf("spec.backup.schedule %q is not a cron expression (%v): give five fields, minute first, such as \"0 3 * * *\" (optionally after CRON_TZ=Europe/Paris)", expr, err)
	}
	if every, ok := sched.(cron.ConstantDelaySchedule); ok && every.Delay < minInterval {
		return nil, fmt.Errorf("spec.backup.schedule %q: backups may not be more frequent than every %s", expr, minInterval)
	}
	return sched, nil
}

// SlotName is the TenantBackup made for a slot: the cluster's name and the
// slot's UTC time, so the same slot always gets the same name.
func SlotName(cluster string, slot time.Time) string {
	return cluster + "-" + slot.UTC().Format("20060102-150405")
}

// latestSlot returns the latest slot of s in (after, now] and how many
// slots fell in it, zero when none is due. Past maxWalk slots the count
// stops there and the latest slot is found from windows growing back
// from now, so a long downtime under a frequent schedule does not walk
// every missed slot.
func latestSlot(s cron.Schedule, after, now time.Time) (latest time.Time, due int) {
	t := s.Next(after)
	for ; !t.IsZero() && !t.After(now) && due < maxWalk; t = s.Next(t) {
		latest, due = t, due+1
	}
	if due < maxWalk || t.IsZero() || t.After(now) {
		return latest, due
	}
	for d := minInterval; d < 800*24*time.Hour; d *= 2 {
		lo := now.Add(-d)
		if !lo.After(latest) {
			break
		}
		if t := s.Next(lo); !t.IsZero() && !t.After(now) {
			for ; !t.IsZero() && !t.After(now); t = s.Next(t) {
				latest = t
			}
			break
		}
	}
	return latest, due
}

// maxWalk bounds the slots latestSlot counts one by one.
const maxWalk = 1000

// slotOf is the slot a scheduled backup was made for (its annotation),
// or its creation time when the annotation is unreadable.
func slotOf(tb *kv1.TenantBackup) time.Time {
	if t, err := time.Parse(time.RFC3339, tb.Annotations[kv1.AnnotationScheduledTime]); err == nil {
		return t
	}
	return tb.CreationTimestamp.Time
}

func finished(tb *kv1.TenantBackup) bool {
	return tb.Status.Phase == kv1.BackupCompleted || tb.Status.Phase == kv1.BackupFailed
}

// newestFirst sorts scheduled backups by slot, newest first.
func newestFirst(backups []kv1.TenantBackup) []kv1.TenantBackup {
	out := slices.Clone(backups)
	slices.SortStableFunc(out, func(a, b kv1.TenantBackup) int { return slotOf(&b).Compare(slotOf(&a)) })
	return out
}

// Prune returns the scheduled backups retention deletes, given backups
// of one cluster's schedule that are not being deleted. Only finished
// backups go, never one that inUse names (a running TenantRestore reads
// it). Completed backups beyond the newest keep, or older than maxAge,
// go, but the newest completed backup stays whatever its age, so a
// schedule that stopped making backups never leaves none. A failed
// backup goes once a newer one completed, or past maxAge.
func Prune(backups []kv1.TenantBackup, keep *int32, maxAge *metav1.Duration, inUse map[string]bool, now time.Time) []string {
	var out []string
	completed := 0
	for _, tb := range newestFirst(backups) {
		if !finished(&tb) || inUse[tb.Name] {
			if tb.Status.Phase == kv1.BackupCompleted {
				completed++
			}
			continue
		}
		old := maxAge != nil && now.Sub(slotOf(&tb)) > maxAge.Duration
		switch tb.Status.Phase {
		case kv1.BackupCompleted:
			completed++
			if completed > 1 && (old || (keep != nil && completed > int(*keep))) {
				out = append(out, tb.Name)
			}
		case kv1.BackupFailed:
			if completed > 0 || old {
				out = append(out, tb.Name)
			}
		}
	}
	return out
}

// Input is what Decide reads: the cluster's spec and status, its
// scheduled backups (none being deleted), the backups running restores
// read, whether one of them restores this cluster, and now.
type Input struct {
	Cluster   string
	Spec      kv1.BackupScheduleSpec
	Status    kv1.TenantBackupScheduleStatus
	Backups   []kv1.TenantBackup
	InUse     map[string]bool
	Restoring string
	Now       time.Time
}

// Plan is Decide's answer.
type Plan struct {
	// Create is the slot to back up now (zero: none), Due how many
	// slots it stands for (more than one after downtime).
	Create time.Time
	Due    int
	// Prune names the backups to delete.
	Prune []string
	// Status is the schedule's status after the plan is carried out.
	Status kv1.TenantBackupScheduleStatus
	// Invalid says the schedule does not parse.
	Invalid bool
}

// Decide is the schedule's policy, a pure function of its input.
func Decide(in Input) (p Plan) {
	p.Status = in.Status
	st := &p.Status
	st.Message = ""
	now := metav1.NewTime(in.Now)
	remaining := in.Backups
	defer func() {
		st.Kept = int32(len(remaining))
		if !p.Create.IsZero() && !slices.ContainsFunc(remaining, func(tb kv1.TenantBackup) bool { return tb.Name == st.LastScheduledBackup }) {
			st.Kept++
		}
		st.LastSuccessfulBackup, st.LastSuccessfulTime = "", nil
		for _, tb := range newestFirst(remaining) {
			if tb.Status.Phase == kv1.BackupCompleted {
				st.LastSuccessfulBackup, st.LastSuccessfulTime = tb.Name, tb.Status.CompletionTime
				break
			}
		}
		if in.Status.LastSuccessfulBackup != "" && st.LastSuccessfulBackup == "" {
			// Keep what was last reported while nothing newer completed.
			st.LastSuccessfulBackup, st.LastSuccessfulTime = in.Status.LastSuccessfulBackup, in.Status.LastSuccessfulTime
		}
	}()

	p.Prune = Prune(in.Backups, in.Spec.Keep, in.Spec.MaxAge, in.InUse, in.Now)
	remaining = slices.DeleteFunc(slices.Clone(in.Backups), func(tb kv1.TenantBackup) bool { return slices.Contains(p.Prune, tb.Name) })

	sched, err := ParseSchedule(in.Spec.Schedule)
	if err != nil {
		p.Invalid = true
		st.Message = err.Error()
		st.NextScheduleTime = nil
		return p
	}
	if st.Schedule != in.Spec.Schedule || st.Since == nil {
		// A new or changed schedule counts from now: slots before it
		// are not made up.
		st.Schedule, st.Since = in.Spec.Schedule, &now
		st.NextScheduleTime = timePtr(sched.Next(in.Now))
		return p
	}
	after := st.Since.Time
	if st.LastScheduleTime != nil && st.LastScheduleTime.After(after) {
		after = st.LastScheduleTime.Time
	}
	st.NextScheduleTime = timePtr(sched.Next(in.Now))
	slot, due := latestSlot(sched, after, in.Now)
	if slot.IsZero() {
		return p
	}
	for _, tb := range in.Backups {
		if !finished(&tb) && tb.Name != SlotName(in.Cluster, slot) {
			st.Message = fmt.Sprintf("the backup of slot %s waits for %s to finish", slot.UTC().Format(time.RFC3339), tb.Name)
			return p
		}
	}
	if in.Restoring != "" {
		st.Message = fmt.Sprintf("the backup of slot %s waits for TenantRestore %s to finish", slot.UTC().Format(time.RFC3339), in.Restoring)
		return p
	}
	p.Create, p.Due = slot, due
	st.LastScheduleTime = timePtr(slot)
	st.LastScheduledBackup = SlotName(in.Cluster, slot)
	return p
}

func timePtr(t time.Time) *metav1.Time {
	if t.IsZero() {
		return nil
	}
	mt := metav1.NewTime(t)
	return &mt
}
