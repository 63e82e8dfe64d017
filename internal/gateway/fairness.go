package gateway

import (
	"container/list"
	"context"
	"sync"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
)

// fairQueue bounds the requests in flight to the datastore and, when the
// bound is reached, hands each freed slot to the next tenant in turn that
// has a request waiting, whatever the number it has waiting. A tenant
// writing flat out therefore holds at most its turn of the slots, and a
// tenant sending one request waits for at most one slot to free, not for
// the flood ahead of it.
type fairQueue struct {
	mu        sync.Mutex
	free      int
	maxQueued int
	// queues holds each tenant's waiters (chan struct{}), oldest first.
	queues map[string]*list.List
	// ring lists the tenants with waiters in the order they are served.
	ring []string
}

func newFairQueue(slots, maxQueued int) *fairQueue {
	return &fairQueue{free: slots, maxQueued: maxQueued, queues: map[string]*list.List{}}
}

// acquire waits for a slot for tenant id. It fails with etcd's "too many
// requests" when the tenant already has maxQueued requests waiting, and
// with ctx's error when ctx ends first.
func (q *fairQueue) acquire(ctx context.Context, id string) error {
	q.mu.Lock()
	if q.free > 0 && len(q.ring) == 0 {
		q.free--
		q.mu.Unlock()
		return nil
	}
	l := q.queues[id]
	if l == nil {
		l = list.New()
		q.queues[id] = l
		q.ring = append(q.ring, id)
	}
	if l.Len() >= q.maxQueued {
		q.mu.Unlock()
		return rpctypes.ErrGRPCRequestTooManyRequests
	}
	granted := make(chan struct{})
	e := l.PushBack(granted)
	q.mu.Unlock()

	select {
	case <-granted:
		return nil
	case <-ctx.Done():
		q.mu.Lock()
		defer q.mu.Unlock()
		select {
		case <-granted:
			// The slot came as ctx ended: pass it on.
			q.handOff()
		default:
			l.Remove(e)
			if l.Len() == 0 {
				q.drop(id)
			}
		}
		return ctx.Err()
	}
}

// release frees a slot acquired before.
func (q *fairQueue) release() {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.handOff()
}

// handOff gives a freed slot to the tenant at the head of the ring, which
// then goes to the back; with nobody waiting the slot becomes free.
func (q *fairQueue) handOff() {
	if len(q.ring) == 0 {
		q.free++
		return
	}
	id := q.ring[0]
	l := q.queues[id]
	close(l.Remove(l.Front()).(chan struct{}))
	q.ring = q.ring[1:]
	if l.Len() == 0 {
		delete(q.queues, id)
	} else {
		q.ring = append(q.ring, id)
	}
}

func (q *fairQueue) drop(id string) {
	delete(q.queues, id)
	for i, r := range q.ring {
		if r == id {
			q.ring = append(q.ring[:i], q.ring[i+1:]...)
			return
		}
	}
}
