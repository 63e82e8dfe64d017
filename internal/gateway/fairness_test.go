package gateway

import (
	"context"
	"errors"
	"testing"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
)

// grant records the order in which waiters got their slot.
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

// waitQueued waits until tenant id has n waiters.
func waitQueued(t *testing.T, q *fairQueue, id string, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		q.mu.Lock()
		l := q.queues[id]
		got := 0
		if l != nil {
			got = l.Len()
		}
		q.mu.Unlock()
		if got == n {
			return
		}
		time.Sleep(time.Millisecond)
	}
	t.Fatalf("tenant %s never had %d waiters", id, n)
}

func TestFairQueueTakesTurns(t *testing.T) {
	q := newFairQueue(1, 100)
	if err := q.acquire(context.Background(), "a"); err != nil {
		t.Fatal(err)
	}
	order := make(chan string, 10)
	// Tenant a floods, then b sends one request.
	for i := range 4 {
		acquireAsync(t, q, "a", order)
		waitQueued(t, q, "a", i+1)
	}
	acquireAsync(t, q, "b", order)
	waitQueued(t, q, "b", 1)

	var got []string
	for range 5 {
		q.release()
		got = append(got, <-order)
	}
	q.release()
	// b waits for one slot only, not for a's flood.
	want := []string{"a", "b", "a", "a", "a"}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("slots went to %v, want %v", got, want)
		}
	}
	if q.free != 1 || len(q.ring) != 0 || len(q.queues) != 0 {
		t.Fatalf("after every release: free %d, ring %v, queues %d; want 1 free and nobody waiting", q.free, q.ring, len(q.queues))
	}
}

func TestFairQueueRefusesBeyondMaxQueued(t *testing.T) {
	q := newFairQueue(1, 1)
	if err := q.acquire(context.Background(), "a"); err != nil {
		t.Fatal(err)
	}
	order := make(chan string, 1)
	acquireAsync(t, q, "a", order)
	waitQueued(t, q, "a", 1)
	if err := q.acquire(context.Background(), "a"); !errors.Is(err, rpctypes.ErrGRPCRequestTooManyRequests) {
		t.Fatalf("a second waiter over the limit: want too many requests, got %v", err)
	}
	// Another tenant still queues.
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := q.acquire(ctx, "b"); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("tenant b waiting: want its deadline, got %v", err)
	}
	q.release()
	if got := <-order; got != "a" {
		t.Fatalf("slot went to %s", got)
	}
	q.release()
	if q.free != 1 || len(q.ring) != 0 {
		t.Fatalf("free %d, ring %v: a waiter whose context ended was not removed", q.free, q.ring)
	}
}
