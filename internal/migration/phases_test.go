package migration

import (
	"errors"
	"testing"
)

func TestNext(t *testing.T) {
	for _, c := range []struct {
		from Phase
		ok   bool
		want Phase
	}{
		{PhasePending, true, PhaseCopying},
		{PhaseCopying, true, PhasePausing},
		{PhasePausing, true, PhaseSwitching},
		{PhaseSwitching, true, PhaseCleaningUp},
		{PhaseCleaningUp, true, PhaseCompleted},
		{PhaseRollingBack, true, PhaseRolledBack},
		{PhaseCompleted, true, PhaseCompleted},
		{PhasePending, false, PhaseRollingBack},
		{PhaseCopying, false, PhaseRollingBack},
		{PhasePausing, false, PhaseRollingBack},
		// A failed move write: the move is a compare-and-swap, so it was
		// not written, and rolling back is safe.
		{PhaseSwitching, false, PhaseRollingBack},
		{PhaseCleaningUp, false, PhaseCleaningUp},
		{PhaseRollingBack, false, PhaseRollingBack},
	} {
		if got := Next(c.from, c.ok); got != c.want {
			t.Errorf("Next(%s, %v) = %s, want %s", c.from, c.ok, got, c.want)
		}
	}
}

// TestResume covers every recorded phase with the move written and not:
// before the switch an interrupted migration rolls back, after it goes
// on, so one datastore serves the tenant whatever the interruption.
func TestResume(t *testing.T) {
	for _, c := range []struct {
		recorded  Phase
		forwarded bool
		want      Phase
		err       error
	}{
		{"", false, PhasePending, nil},
		{"", true, PhaseCleaningUp, nil},
		{PhasePending, false, PhasePending, nil},
		{PhaseCopying, false, PhaseRollingBack, nil},
		{PhasePausing, false, PhaseRollingBack, nil},
		{PhaseSwitching, false, PhaseRollingBack, nil},
		{PhaseSwitching, true, PhaseCleaningUp, nil},
		{PhaseCopying, true, PhaseCleaningUp, nil},
		{PhaseCleaningUp, true, PhaseCleaningUp, nil},
		{PhaseCleaningUp, false, PhaseCleaningUp, ErrMoveLost},
		{PhaseRollingBack, false, PhaseRollingBack, nil},
		{PhaseCompleted, true, PhaseCompleted, nil},
		{PhaseCompleted, false, PhaseCompleted, nil},
		{PhaseRolledBack, false, PhaseRolledBack, nil},
	} {
		got, err := Resume(c.recorded, c.forwarded)
		if got != c.want || !errors.Is(err, c.err) {
			t.Errorf("Resume(%q, forwarded %v) = %s, %v; want %s, %v", c.recorded, c.forwarded, got, err, c.want, c.err)
		}
	}
}

// TestPhasesNeverServeTwice walks every path the machine allows and
// checks that the destination serves only after the switch step
// succeeded, and that nothing returns from a switched phase to one where
// the source serves.
func TestPhasesNeverServeTwice(t *testing.T) {
	all := []Phase{PhasePending, PhaseCopying, PhasePausing, PhaseSwitching, PhaseCleaningUp, PhaseCompleted, PhaseRollingBack, PhaseRolledBack}
	for _, p := range all {
		for _, ok := range []bool{true, false} {
			n := Next(p, ok)
			if p.Switched() && !n.Switched() {
				t.Errorf("Next(%s, %v) = %s: back to the source after the switch", p, ok, n)
			}
			if !p.Switched() && n.Switched() && !(p == PhaseSwitching && ok) {
				t.Errorf("Next(%s, %v) = %s: switched without the switch step", p, ok, n)
			}
		}
	}
}
