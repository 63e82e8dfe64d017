package gateway

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
)

// hangTimeout turns a queue that never grants into a failed test rather
// than a hung one; nothing is timed against it.
const hangTimeout = time.Minute

// acquireAsync acquires a slot for id in a goroutine and sends id on
// order once granted.
func acquireAsync(t *testing.T, q *fairQueue, id string, order chan<- string) {
	t.Helper()
	go func() {
		if err := q.acquire(context.Background(), id); err != nil {
			t.Errorf("acquire for %s: %v", id, err)
			return
		}
		order <- id
	}()
}

// mustAcquire acquires a slot that must be free now.
func mustAcquire(t *testing.T, q *fairQueue, id string) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := q.acquire(ctx, id); err != nil {
		t.Fatalf("acquire for %s did not get a slot at once: %v", id, err)
	}
}

// state is what the queue holds for each tenant.
type state struct {
	inFlight, waiting int
}

func (q *fairQueue) state() (map[string]state, int) {
	q.mu.Lock()
	defer q.mu.Unlock()
	m := map[string]state{}
	for id, f := range q.flows {
		m[id] = state{f.inFlight, f.waiting.Len()}
	}
	return m, q.inUse
}

// waitQueued waits until tenant id has n waiters.
func waitQueued(t *testing.T, q *fairQueue, id string, n int) {
	t.Helper()
	deadline := time.Now().Add(hangTimeout)
	for time.Now().Before(deadline) {
		if s, _ := q.state(); s[id].waiting == n {
			return
		}
		time.Sleep(time.Millisecond)
	}
	t.Fatalf("tenant %s never had %d waiters", id, n)
}

func receive(t *testing.T, order <-chan string) string {
	t.Helper()
	select {
	case id := <-order:
		return id
	case <-time.After(hangTimeout):
		t.Fatal("no waiter was granted a slot")
		return ""
	}
}

// assertIdle checks that a queue with nothing in flight and nothing
// waiting has forgotten every tenant.
func assertIdle(t *testing.T, q *fairQueue) {
	t.Helper()
	s, inUse := q.state()
	if inUse != 0 || len(s) != 0 || len(q.ring) != 0 {
		t.Fatalf("queue not idle: %d in use, tenants %v, ring %v", inUse, s, q.ring)
	}
}

func TestFairQueueShare(t *testing.T) {
	for _, tc := range []struct{ slots, tenants, want int }{
		{8, 0, 8}, {8, 1, 8}, {8, 2, 4}, {8, 3, 3}, {8, 8, 1}, {8, 20, 1}, {1, 2, 1}, {16, 3, 6},
	} {
		t.Run(fmt.Sprintf("%d slots %d tenants", tc.slots, tc.tenants), func(t *testing.T) {
			q := newFairQueue(tc.slots, 1)
			for i := range tc.tenants {
				q.flows[fmt.Sprint(i)] = &flow{}
			}
			if got := q.share(); got != tc.want {
				t.Fatalf("share %d, want %d", got, tc.want)
			}
		})
	}
}

func TestFairQueueLoneTenantUsesEverySlot(t *testing.T) {
	q := newFairQueue(4, 10)
	for range 4 {
		mustAcquire(t, q, "a")
	}
	order := make(chan string, 1)
	acquireAsync(t, q, "a", order)
	waitQueued(t, q, "a", 1)
	q.release("a")
	if got := receive(t, order); got != "a" {
		t.Fatalf("slot went to %s", got)
	}
	for range 4 {
		q.release("a")
	}
	assertIdle(t, q)
}

func TestFairQueueFlooderKeepsItsShare(t *testing.T) {
	q := newFairQueue(4, 100)
	order := make(chan string, 10)
	// a holds every slot and has more waiting; then b comes.
	for range 4 {
		mustAcquire(t, q, "a")
	}
	for i := range 4 {
		acquireAsync(t, q, "a", order)
		waitQueued(t, q, "a", i+1)
	}
	acquireAsync(t, q, "b", order)
	waitQueued(t, q, "b", 1)

	steps := []struct {
		release string
		granted string // "" when no waiter may start
		want    map[string]state
		inUse   int
	}{
		// a is over its share of 2: the freed slot goes to b.
		{"a", "b", map[string]state{"a": {3, 4}, "b": {1, 0}}, 4},
		// a at 2 may not start more while b is active: the slot stays
		// free.
		{"a", "", map[string]state{"a": {2, 4}, "b": {1, 0}}, 3},
		// b is done: a is alone again and takes every free slot.
		{"b", "aa", map[string]state{"a": {4, 2}}, 4},
	}
	for i, s := range steps {
		q.release(s.release)
		for _, want := range s.granted {
			if got := receive(t, order); got != string(want) {
				t.Fatalf("step %d: slot went to %s, want %c", i, got, want)
			}
		}
		got, inUse := q.state()
		if fmt.Sprint(got) != fmt.Sprint(s.want) || inUse != s.inUse {
			t.Fatalf("step %d: tenants %v with %d in use, want %v with %d", i, got, inUse, s.want, s.inUse)
		}
	}
	for range 2 {
		q.release("a")
		receive(t, order)
	}
	for range 4 {
		q.release("a")
	}
	assertIdle(t, q)
}

func TestFairQueueTakesTurns(t *testing.T) {
	q := newFairQueue(1, 100)
	mustAcquire(t, q, "a")
	order := make(chan string, 10)
	// Tenant a floods, then b sends one request, then c.
	for i := range 4 {
		acquireAsync(t, q, "a", order)
		waitQueued(t, q, "a", i+1)
	}
	acquireAsync(t, q, "b", order)
	waitQueued(t, q, "b", 1)
	acquireAsync(t, q, "c", order)
	waitQueued(t, q, "c", 1)

	var got []string
	holder := "a"
	for range 6 {
		q.release(holder)
		holder = receive(t, order)
		got = append(got, holder)
	}
	q.release(holder)
	// b and c each wait for one slot only, not for a's flood.
	want := []string{"a", "b", "c", "a", "a", "a"}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("slots went to %v, want %v", got, want)
	}
	assertIdle(t, q)
}

func TestFairQueueRefusesBeyondMaxQueued(t *testing.T) {
	q := newFairQueue(1, 1)
	mustAcquire(t, q, "a")
	order := make(chan string, 1)
	acquireAsync(t, q, "a", order)
	waitQueued(t, q, "a", 1)
	if err := q.acquire(context.Background(), "a"); !errors.Is(err, rpctypes.ErrGRPCRequestTooManyRequests) {
		t.Fatalf("a second waiter over the limit: want too many requests, got %v", err)
	}
	q.release("a")
	if got := receive(t, order); got != "a" {
		t.Fatalf("slot went to %s", got)
	}
	q.release("a")
	assertIdle(t, q)
}

func TestFairQueueCancelledWaiterLeaves(t *testing.T) {
	q := newFairQueue(2, 10)
	mustAcquire(t, q, "a")
	mustAcquire(t, q, "a")
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- q.acquire(ctx, "b") }()
	waitQueued(t, q, "b", 1)
	cancel()
	if err := <-errc; !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled waiter: want context.Canceled, got %v", err)
	}
	// b is forgotten, so a is alone and its share is every slot again.
	if s, inUse := q.state(); fmt.Sprint(s) != fmt.Sprint(map[string]state{"a": {2, 0}}) || inUse != 2 {
		t.Fatalf("after b left: tenants %v with %d in use", s, inUse)
	}
	q.release("a")
	mustAcquire(t, q, "a")
	q.release("a")
	q.release("a")
	assertIdle(t, q)
}

// TestFairQueueCancelRacesGrant cancels waiters as their slot is being
// handed to them: whichever wins, the slot is used or passed on, never
// lost.
func TestFairQueueCancelRacesGrant(t *testing.T) {
	for i := range 200 {
		q := newFairQueue(1, 10)
		mustAcquire(t, q, "a")
		ctx, cancel := context.WithCancel(context.Background())
		errc := make(chan error, 1)
		go func() { errc <- q.acquire(ctx, "b") }()
		waitQueued(t, q, "b", 1)
		var wg sync.WaitGroup
		wg.Add(2)
		go func() { defer wg.Done(); cancel() }()
		go func() { defer wg.Done(); q.release("a") }()
		wg.Wait()
		if err := <-errc; err == nil {
			q.release("b")
		} else if !errors.Is(err, context.Canceled) {
			t.Fatalf("iteration %d: %v", i, err)
		}
		assertIdle(t, q)
	}
}

// TestFairQueueUnderLoad runs tenants acquiring, cancelling and
// releasing at once: the slots in use never exceed the bound, every
// tenant is served (no starvation), and the queue ends idle.
func TestFairQueueUnderLoad(t *testing.T) {
	const slots, tenants, perTenant = 3, 5, 300
	q := newFairQueue(slots, 1000)
	var inUse, over atomic.Int32
	served := make([]atomic.Int32, tenants)
	var wg sync.WaitGroup
	for tn := range tenants {
		id := fmt.Sprint("t", tn)
		// Tenant 0 floods with many workers; the others send one
		// request at a time.
		workers := 1
		if tn == 0 {
			workers = 8
		}
		for w := range workers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				rng := rand.New(rand.NewPCG(uint64(tn), uint64(w)))
				for range perTenant / workers {
					ctx, cancel := context.WithCancel(context.Background())
					if rng.IntN(5) == 0 {
						go cancel()
					}
					err := q.acquire(ctx, id)
					cancel()
					if err != nil {
						continue
					}
					if inUse.Add(1) > slots {
						over.Add(1)
					}
					served[tn].Add(1)
					if rng.IntN(2) == 0 {
						time.Sleep(time.Duration(rng.IntN(100)) * time.Microsecond)
					}
					inUse.Add(-1)
					q.release(id)
				}
			}()
		}
	}
	wg.Wait()
	if n := over.Load(); n != 0 {
		t.Fatalf("more than %d slots in use %d times", slots, n)
	}
	for tn := range tenants {
		if served[tn].Load() == 0 {
			t.Errorf("tenant %d was never served", tn)
		}
	}
	assertIdle(t, q)
}
