package migration

import "errors"

// Phase is where a migration is. The phase is recorded before the step
// it names starts, so an interrupted migration knows what may have
// happened.
type Phase string

// Phases, in order; RollingBack and RolledBack end a failed migration.
const (
	// PhasePending: nothing done yet.
	PhasePending Phase = "Pending"
	// PhaseCopying: copying and catching up; the source serves.
	PhaseCopying Phase = "Copying"
	// PhasePausing: the tenant's writes are being held; the source
	// serves.
	PhasePausing Phase = "Pausing"
	// PhaseSwitching: the last events are applied and the move is being
	// written; whether it was written decides between going on and
	// rolling back.
	PhaseSwitching Phase = "Switching"
	// PhaseCleaningUp: the destination serves; the source's copy is being
	// deleted.
	PhaseCleaningUp Phase = "CleaningUp"
	// PhaseCompleted: the destination serves and the source holds nothing
	// of the tenant but the forwarding record.
	PhaseCompleted Phase = "Completed"
	// PhaseRollingBack: the pause is being removed and the destination's
	// copy deleted; the source serves.
	PhaseRollingBack Phase = "RollingBack"
	// PhaseRolledBack: the source serves, the destination holds nothing.
	PhaseRolledBack Phase = "RolledBack"
)

// Done reports whether the phase ends a migration.
func (p Phase) Done() bool { return p == PhaseCompleted || p == PhaseRolledBack }

// Switched reports whether the destination serves in this phase.
func (p Phase) Switched() bool { return p == PhaseCleaningUp || p == PhaseCompleted }

// Resume is the phase an interrupted migration continues from, given the
// phase it recorded and whether the source's gateways forward the tenant
// (the move was written). Before the switch an interrupted migration rolls
// back: its copy may lag the source, and its pause may lapse at any
// moment. Once the move is written only going on is safe: the destination
// has served writes the source never saw.
//
// A migration recorded as switched whose move is gone cannot go on
// (cleaning up would delete the only current copy) nor roll back (the
// destination holds writes the source never saw): Resume returns
// ErrMoveLost and a person decides.
func Resume(recorded Phase, forwarded bool) (Phase, error) {
	switch {
	case recorded == "" || recorded == PhasePending:
		if forwarded {
			// A move written by a migration whose phase was not
			// recorded: finish it.
			return PhaseCleaningUp, nil
		}
		return PhasePending, nil
	case recorded.Done():
		return recorded, nil
	case forwarded:
		return PhaseCleaningUp, nil
	case recorded == PhaseCleaningUp:
		return recorded, ErrMoveLost
	default:
		return PhaseRollingBack, nil
	}
}

// ErrMoveLost says that a switched migration's move record is gone.
var ErrMoveLost = errors.New("the migration had switched, but the source's gateways no longer forward the tenant: the destination holds its latest writes; restore the move record before anything else")

// Next is the phase after step p ended, ok telling whether it succeeded.
// A failure before the switch rolls back; a failure after it repeats the
// step (deleting the source's copy again is harmless). A failed roll back
// is repeated too.
func Next(p Phase, ok bool) Phase {
	if !ok {
		switch p {
		case PhaseCleaningUp, PhaseRollingBack:
			return p
		case PhaseCompleted, PhaseRolledBack:
			return p
		default:
			return PhaseRollingBack
		}
	}
	switch p {
	case PhasePending:
		return PhaseCopying
	case PhaseCopying:
		return PhasePausing
	case PhasePausing:
		return PhaseSwitching
	case PhaseSwitching:
		return PhaseCleaningUp
	case PhaseCleaningUp:
		return PhaseCompleted
	case PhaseRollingBack:
		return PhaseRolledBack
	}
	return p
}
