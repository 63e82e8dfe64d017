package tenantcluster

import (
	"slices"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/types"
)

func TestStartAdmission(t *testing.T) {
	t0 := time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)
	ref := func(n string) types.NamespacedName { return types.NamespacedName{Namespace: "ns", Name: n} }
	uid := func(n string) types.UID { return types.UID("uid-" + n) }
	admit := func(a *startAdmission, n string, at time.Duration, force bool) bool {
		return a.admit(uid(n), ref(n), t0.Add(at), force)
	}

	t.Run("no limit admits everyone", func(t *testing.T) {
		a := newStartAdmission(0, time.Minute)
		for _, n := range []string{"a", "b", "c"} {
			if !admit(a, n, 0, false) {
				t.Errorf("%s refused without a limit", n)
			}
		}
		if next := a.release(uid("a"), t0); next != nil {
			t.Errorf("release without a limit = %v, want nothing", next)
		}
	})

	t.Run("slots go in order of asking and free on release", func(t *testing.T) {
		a := newStartAdmission(2, time.Hour)
		if !admit(a, "a", 0, false) || !admit(a, "b", time.Second, false) {
			t.Fatal("the first two refused with two slots")
		}
		if !admit(a, "a", 2*time.Second, false) {
			t.Error("a holder asking again refused")
		}
		if admit(a, "c", 3*time.Second, false) || admit(a, "d", 4*time.Second, false) {
			t.Fatal("a third and fourth admitted with two slots taken")
		}
		if held, waiting := a.starting(t0); held != 2 || waiting != 2 {
			t.Errorf("starting = %d held, %d waiting; want 2, 2", held, waiting)
		}
		// d asks again before c: c waited longer and comes first.
		if next := a.release(uid("a"), t0.Add(5*time.Second)); !slices.Equal(next, []types.NamespacedName{ref("c")}) {
			t.Errorf("release(a) = %v, want c (waiting longest)", next)
		}
		if admit(a, "d", 6*time.Second, false) {
			t.Error("d admitted ahead of c, which waits longer")
		}
		if !admit(a, "c", 6*time.Second, false) {
			t.Error("c refused the slot a freed")
		}
		if next := a.release(uid("x"), t0); next != nil {
			t.Errorf("release of a tenant holding nothing = %v, want nothing", next)
		}
	})

	t.Run("a control plane already starting is never held back", func(t *testing.T) {
		a := newStartAdmission(1, time.Hour)
		admit(a, "a", 0, false)
		if !admit(a, "b", time.Second, true) {
			t.Fatal("forced admission refused")
		}
		if held, _ := a.starting(t0); held != 2 {
			t.Errorf("held = %d, want 2: a forced slot counts", held)
		}
		if next := a.release(uid("a"), t0); next != nil {
			t.Errorf("release with the forced slot still held = %v, want nothing", next)
		}
	})

	t.Run("a stale slot frees itself", func(t *testing.T) {
		a := newStartAdmission(1, time.Minute)
		admit(a, "a", 0, false)
		if admit(a, "b", 10*time.Second, false) {
			t.Fatal("b admitted while a's slot is fresh")
		}
		if got := a.retryAfter(t0.Add(10 * time.Second)); got != 50*time.Second {
			t.Errorf("retryAfter = %s, want 50s (when a's slot turns stale)", got)
		}
		if !admit(a, "b", time.Minute, false) {
			t.Error("b refused though a's slot is stale")
		}
	})

	t.Run("deletion or hibernation gives up a place in line", func(t *testing.T) {
		a := newStartAdmission(1, time.Hour)
		admit(a, "a", 0, false)
		admit(a, "b", time.Second, false)
		admit(a, "c", 2*time.Second, false)
		a.release(uid("b"), t0.Add(3*time.Second))
		if next := a.release(uid("a"), t0.Add(4*time.Second)); !slices.Equal(next, []types.NamespacedName{ref("c")}) {
			t.Errorf("release(a) = %v, want c: b left the line", next)
		}
	})
}
