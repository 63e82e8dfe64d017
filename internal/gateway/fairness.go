package gateway

import (
	"container/list"
	"context"
	"sync"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
)

// fairQueue bounds the requests in flight to the datastore and shares
// those slots among the tenants, as Kubernetes' API Priority and Fairness
// shares a priority level's seats among its flows: with k tenants active
// (a request in flight or waiting), a tenant starts a request only while
// it holds fewer than ceil(slots/k). A lone tenant therefore uses every
// slot, and a tenant writing flat out keeps at most its share while
// others have work, so their requests meet a datastore that is not
// already full of its own. Waiting tenants that may start are served in
// turn (FIFO within one), so none starves.
//
// A tenant over its share keeps the slots it holds (requests are not
// preempted) but gets no new one until it is back under its share, even
// when slots are free: the free slots are the other tenants' headroom.
type fairQueue struct {
	mu        sync.Mutex
	slots     int
	inUse     int
	maxQueued int
	// flows holds the active tenants.
	flows map[string]*flow
	// ring lists the tenants with waiters in the order they are served.
	ring []string
}

// flow is one active tenant's requests.
type flow struct {
	inFlight int
	// waiting holds the waiters' grant channels, oldest first.
	waiting list.List
}

func newFairQueue(slots, maxQueued int) *fairQueue {
	return &fairQueue{slots: slots, maxQueued: maxQueued, flows: map[string]*flow{}}
}

// share is the most slots a tenant may hold while len(flows) tenants are
// active.
func (q *fairQueue) share() int {
	k := max(len(q.flows), 1)
	return (q.slots + k - 1) / k
}

// acquire waits for a slot for tenant id. It fails with etcd's "too many
// requests" when the tenant already has maxQueued requests waiting, and
// with ctx's error when ctx ends first. A nil error must be followed by
// release(id).
func (q *fairQueue) acquire(ctx context.Context, id string) error {
	q.mu.Lock()
	f := q.flows[id]
	if f == nil {
		f = &flow{}
		q.flows[id] = f
	}
	if f.waiting.Len() == 0 && q.inUse < q.slots && f.inFlight < q.share() {
		// Nobody who may start is waiting: dispatch keeps it so.
		f.inFlight++
		q.inUse++
		q.mu.Unlock()
		return nil
	}
	if f.waiting.Len() >= q.maxQueued {
		q.mu.Unlock()
		return rpctypes.ErrGRPCRequestTooManyRequests
	}
	granted := make(chan struct{})
	e := f.waiting.PushBack(granted)
	if f.waiting.Len() == 1 {
		q.ring = append(q.ring, id)
	}
	// A new active tenant only lowers the others' share, so nobody else
	// may start now.
	q.mu.Unlock()

	select {
	case <-granted:
		return nil
	case <-ctx.Done():
		q.mu.Lock()
		defer q.mu.Unlock()
		select {
		case <-granted:
			// The slot came as ctx ended: give it back.
			q.releaseLocked(id, f)
		default:
			f.waiting.Remove(e)
			if f.waiting.Len() == 0 {
				q.leaveRing(id)
				q.forgetIfIdle(id, f)
				// One tenant fewer may raise the others' share.
				q.dispatch()
			}
		}
		return ctx.Err()
	}
}

// release frees a slot tenant id acquired.
func (q *fairQueue) release(id string) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.releaseLocked(id, q.flows[id])
}

func (q *fairQueue) releaseLocked(id string, f *flow) {
	f.inFlight--
	q.inUse--
	q.forgetIfIdle(id, f)
	q.dispatch()
}

// dispatch starts waiting requests while slots are free, each time for
// the first tenant in the ring that is under its share, which then goes
// to the back of the ring.
func (q *fairQueue) dispatch() {
	for q.inUse < q.slots {
		share := q.share()
		i := 0
		for i < len(q.ring) && q.flows[q.ring[i]].inFlight >= share {
			i++
		}
		if i == len(q.ring) {
			return
		}
		id := q.ring[i]
		f := q.flows[id]
		close(f.waiting.Remove(f.waiting.Front()).(chan struct{}))
		f.inFlight++
		q.inUse++
		q.ring = append(q.ring[:i], q.ring[i+1:]...)
		if f.waiting.Len() > 0 {
			q.ring = append(q.ring, id)
		}
	}
}

// forgetIfIdle drops tenant id from the active tenants once it has
// nothing in flight and nothing waiting.
func (q *fairQueue) forgetIfIdle(id string, f *flow) {
	if f.inFlight == 0 && f.waiting.Len() == 0 {
		delete(q.flows, id)
	}
}

func (q *fairQueue) leaveRing(id string) {
	for i, r := range q.ring {
		if r == id {
			q.ring = append(q.ring[:i], q.ring[i+1:]...)
			return
		}
	}
}
