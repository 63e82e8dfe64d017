package gateway

import (
	"testing"
	"time"
)

// TestMirrorStatus checks when a mirror counts as current: not before its
// first read, for mirrorStaleChecks check intervals after it was last
// known current, and not while a stall is being repaired.
func TestMirrorStatus(t *testing.T) {
	now := time.Unix(1000, 0)
	m := &prefixMirror{checkEvery: time.Second, now: func() time.Time { return now }}
	if s := m.status(); s.Current {
		t.Fatal("current before the first read")
	}
	m.seededOnce, m.rev, m.currentAt = true, 10, now
	if s := m.status(); !s.Current || s.Revision != 10 {
		t.Fatalf("after the read: %+v", s)
	}
	// A check finds the datastore ahead; the view catches up later.
	if m.advance(0, 15) {
		t.Fatal("a view at 10 counted as caught up with 15")
	}
	if s := m.status(); s.DatastoreRevision != 15 {
		t.Fatalf("datastore revision %d, want 15", s.DatastoreRevision)
	}
	now = now.Add(2 * time.Second)
	if !m.advance(15, 15) {
		t.Fatal("a view at 15 did not count as caught up with 15")
	}
	now = now.Add(mirrorStaleChecks * time.Second)
	if s := m.status(); !s.Current || s.Staleness != mirrorStaleChecks*time.Second {
		t.Fatalf("%d intervals after it was current: %+v", mirrorStaleChecks, s)
	}
	now = now.Add(time.Millisecond)
	if s := m.status(); s.Current {
		t.Fatalf("current though not known current for more than %d intervals: %+v", mirrorStaleChecks, s)
	}
	m.advance(0, 20)
	m.advance(20, 20)
	m.lagging = true
	if s := m.status(); s.Current {
		t.Fatal("current while a stall is being repaired")
	}
}
