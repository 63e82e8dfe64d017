package gateway

import (
	"testing"
	"time"

	"golang.org/x/time/rate"
)

func TestLimiterStartsFullAndFollowsThePolicy(t *testing.T) {
	now := time.Now()
	l := newLimiter()
	if got := l.get().Limit(); got != rate.Inf {
		t.Fatalf("a new limiter limits to %v requests/s; want no limit until the policy is read", got)
	}

	l.set(10, 20)
	if !l.get().AllowN(now, 20) {
		t.Fatal("a tenant's first 20 requests (its burst) were held: the bucket must start full")
	}
	if l.get().AllowN(now, 1) {
		t.Fatal("the 21st request at once passed: the burst is 20")
	}

	// A changed rate keeps the bucket's level: the tenant cannot refill
	// it by waiting for a policy change.
	before := l.get()
	l.set(5, 10)
	if l.get() != before || l.get().Limit() != 5 || l.get().Burst() != 10 {
		t.Fatalf("after a change to 5/s bursts of 10: limiter %p (was %p), limit %v, burst %d", l.get(), before, l.get().Limit(), l.get().Burst())
	}
	if l.get().AllowN(now, 1) {
		t.Fatal("a rate change refilled an empty bucket")
	}

	l.set(0, 0)
	for i := range 1000 {
		if !l.get().AllowN(now, 1<<20) {
			t.Fatalf("request %d refused with no limit", i)
		}
	}
	l.set(10, 20)
	if !l.get().AllowN(now, 20) {
		t.Fatal("a limit set again after none did not start with a full bucket")
	}
}
