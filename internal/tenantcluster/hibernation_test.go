package tenantcluster

import (
	"strings"
	"testing"
	"time"

	kv1 "kubinception.dev/kubinception/api/v1alpha1"
)

func TestDecideHibernation(t *testing.T) {
	t0 := time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)
	awake := hibernationState{since: t0, reason: "Enabled"}
	asleep := hibernationState{hibernated: true, since: t0, reason: "Idle"}
	on := func(f func(*kv1.HibernationSpec)) kv1.HibernationSpec {
		s := kv1.HibernationSpec{Enabled: true}
		if f != nil {
			f(&s)
		}
		return s
	}
	idle := func(m int32) func(*kv1.HibernationSpec) {
		return func(s *kv1.HibernationSpec) { s.IdleAfterMinutes = m }
	}
	ann := func(k string, at time.Time) map[string]string {
		return map[string]string{k: at.Format(time.RFC3339Nano)}
	}
	for _, tc := range []struct {
		name        string
		spec        kv1.HibernationSpec
		cur         hibernationState
		annotations map[string]string
		activity    time.Time
		now         time.Time
		wantSleep   bool
		wantReason  string // empty: unchanged
		wantRecheck time.Time
	}{
		{name: "disabled and awake stays", spec: kv1.HibernationSpec{}, cur: hibernationState{}, now: t0},
		{name: "disabled wakes a sleeper", spec: kv1.HibernationSpec{}, cur: asleep, now: t0.Add(time.Hour), wantReason: "Disabled"},
		{name: "enabled starts the clock", spec: on(idle(5)), cur: hibernationState{}, now: t0, wantReason: "Enabled"},
		{name: "idle not yet", spec: on(idle(5)), cur: awake, now: t0.Add(4 * time.Minute), wantRecheck: t0.Add(5 * time.Minute)},
		{name: "idle since waking", spec: on(idle(5)), cur: awake, now: t0.Add(5 * time.Minute), wantSleep: true, wantReason: "Idle"},
		{name: "use pushes idleness back", spec: on(idle(5)), cur: awake, activity: t0.Add(3 * time.Minute), now: t0.Add(6 * time.Minute),
			wantRecheck: t0.Add(8 * time.Minute)},
		{name: "idle after last use", spec: on(idle(5)), cur: awake, activity: t0.Add(3 * time.Minute), now: t0.Add(8 * time.Minute), wantSleep: true, wantReason: "Idle"},
		{name: "no idle setting never idles", spec: on(nil), cur: awake, now: t0.Add(100 * time.Hour)},
		{name: "schedule due", spec: on(func(s *kv1.HibernationSpec) { s.Schedule = "30 10 * * *" }), cur: awake, now: t0.Add(30 * time.Minute), wantSleep: true, wantReason: "Schedule"},
		{name: "schedule not yet", spec: on(func(s *kv1.HibernationSpec) { s.Schedule = "30 10 * * *" }), cur: awake, now: t0.Add(29 * time.Minute), wantRecheck: t0.Add(30 * time.Minute)},
		{name: "schedule in a time zone", spec: on(func(s *kv1.HibernationSpec) { s.Schedule = "CRON_TZ=Europe/Paris 30 11 * * *" }), cur: awake, now: t0.Add(31 * time.Minute), wantSleep: true, wantReason: "Schedule"},
		{name: "earliest of idle and schedule", spec: on(func(s *kv1.HibernationSpec) { s.Schedule = "30 10 * * *"; s.IdleAfterMinutes = 10 }), cur: awake, now: t0.Add(time.Minute), wantRecheck: t0.Add(10 * time.Minute)},
		{name: "hibernate request", spec: on(nil), cur: awake, annotations: ann(kv1.AnnotationHibernateRequested, t0.Add(time.Second)), now: t0.Add(2 * time.Second), wantSleep: true, wantReason: "Requested"},
		{name: "old hibernate request is answered", spec: on(nil), cur: awake, annotations: ann(kv1.AnnotationHibernateRequested, t0.Add(-time.Second)), now: t0.Add(time.Minute)},
		{name: "use wakes", spec: on(idle(5)), cur: asleep, activity: t0.Add(time.Millisecond), now: t0.Add(time.Hour), wantReason: "Request"},
		{name: "use before sleeping does not wake", spec: on(idle(5)), cur: asleep, activity: t0.Add(-time.Millisecond), now: t0.Add(time.Hour), wantSleep: true},
		{name: "wake request", spec: on(nil), cur: asleep, annotations: ann(kv1.AnnotationWakeRequested, t0.Add(time.Second)), now: t0.Add(time.Minute), wantReason: "Requested"},
		{name: "wake schedule", spec: on(func(s *kv1.HibernationSpec) { s.WakeSchedule = "0 7 * * *" }), cur: asleep, now: t0.Add(21 * time.Hour), wantReason: "WakeSchedule"},
		{name: "wake schedule not yet", spec: on(func(s *kv1.HibernationSpec) { s.WakeSchedule = "0 7 * * *" }), cur: asleep, now: t0.Add(20 * time.Hour), wantSleep: true,
			wantRecheck: t0.Add(21 * time.Hour)},
		{name: "sleeping schedule does not re-wake", spec: on(func(s *kv1.HibernationSpec) { s.Schedule = "* * * * *" }), cur: asleep, now: t0.Add(time.Hour), wantSleep: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d, err := decideHibernation(tc.spec, tc.cur, tc.annotations, tc.activity, tc.now)
			if err != nil {
				t.Fatal(err)
			}
			if d.next.hibernated != tc.wantSleep {
				t.Errorf("hibernated = %t, want %t", d.next.hibernated, tc.wantSleep)
			}
			if tc.wantReason == "" {
				if d.changed {
					t.Errorf("changed to %+v, want unchanged", d.next)
				}
			} else if !d.changed || d.next.reason != tc.wantReason || !d.next.since.Equal(tc.now) {
				t.Errorf("decision %+v (changed %t), want reason %s since now", d.next, d.changed, tc.wantReason)
			}
			if !d.recheck.Equal(tc.wantRecheck) {
				t.Errorf("recheck = %v, want %v", d.recheck, tc.wantRecheck)
			}
		})
	}
}

func TestDecideHibernationRejectsBadSchedules(t *testing.T) {
	for _, tc := range []struct{ field, schedule, wake string }{
		{"spec.hibernation.schedule", "every evening", ""},
		{"spec.hibernation.schedule", "0 19 * *", ""},
		{"spec.hibernation.wakeSchedule", "", "61 * * * *"},
	} {
		_, err := decideHibernation(kv1.HibernationSpec{Enabled: true, Schedule: tc.schedule, WakeSchedule: tc.wake}, hibernationState{since: time.Now()}, nil, time.Time{}, time.Now())
		if err == nil || !strings.Contains(err.Error(), tc.field) || !strings.Contains(err.Error(), "five fields") {
			t.Errorf("%q/%q: error %v, want one naming %s and the syntax", tc.schedule, tc.wake, err, tc.field)
		}
	}
}
