package gateway

import (
	"fmt"
	"sync"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"

	"kubinception.dev/kubinception/internal/datastore"
)

// Usage is what one tenant keeps in the datastore: its keys and the bytes
// of their keys (as stored, with the tenant's prefix) and values.
type Usage struct {
	Keys  int64 `json:"keys"`
	Bytes int64 `json:"bytes"`
}

// usageTracker counts every tenant's keys and bytes from a prefixMirror
// over datastore.TenantsPrefix, and the bytes of writes in flight, so a
// quota check sees writes the watch has not delivered yet.
type usageTracker struct {
	mu      sync.Mutex
	tenants map[string]*tenantUsage
	// next is the view being read by a seed.
	next map[string]*tenantUsage
	// rev is the revision the view is at.
	rev int64
	// waiting are tenants with answered writes the watch has not shown.
	waiting map[string]struct{}

	readyOnce sync.Once
	ready     chan struct{}
}

type tenantUsage struct {
	Usage
	// inflight are bytes reserved by writes not yet answered.
	inflight int64
	// pending are answered writes beyond rev.
	pending []reservation
}

// reservation holds bytes a write may add until the watch shows it.
type reservation struct {
	rev   int64
	bytes int64
}

func newUsageTracker() *usageTracker {
	return &usageTracker{tenants: map[string]*tenantUsage{}, waiting: map[string]struct{}{}, ready: make(chan struct{})}
}

func kvSize(kv *mvccpb.KeyValue) int64 { return int64(len(kv.Key) + len(kv.Value)) }

func (u *usageTracker) begin() {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.next = map[string]*tenantUsage{}
}

func (u *usageTracker) page(kvs []*mvccpb.KeyValue) {
	u.mu.Lock()
	defer u.mu.Unlock()
	for _, kv := range kvs {
		id, ok := datastore.TenantIDOfKey(kv.Key)
		if !ok {
			continue
		}
		t := u.next[id]
		if t == nil {
			t = &tenantUsage{}
			u.next[id] = t
		}
		t.Keys++
		t.Bytes += kvSize(kv)
	}
}

func (u *usageTracker) seeded(rev int64) {
	u.mu.Lock()
	defer u.mu.Unlock()
	// Reservations move to the new view; those the read already counts
	// are released.
	for id, old := range u.tenants {
		if old.inflight == 0 && len(old.pending) == 0 {
			continue
		}
		t := u.next[id]
		if t == nil {
			t = &tenantUsage{}
			u.next[id] = t
		}
		t.inflight = old.inflight
		for _, r := range old.pending {
			if r.rev > rev {
				t.pending = append(t.pending, r)
			}
		}
	}
	u.tenants, u.next, u.rev = u.next, nil, rev
	u.readyOnce.Do(func() { close(u.ready) })
}

func (u *usageTracker) apply(rev int64, events []*clientv3.Event) error {
	u.mu.Lock()
	defer u.mu.Unlock()
	for _, ev := range events {
		id, ok := datastore.TenantIDOfKey(ev.Kv.Key)
		if !ok {
			continue
		}
		t := u.get(id)
		switch {
		case ev.Type == clientv3.EventTypePut && ev.IsCreate():
			t.Keys++
			t.Bytes += kvSize(ev.Kv)
		case ev.PrevKv == nil:
			return fmt.Errorf("event on %q at revision %d lacks the previous value", ev.Kv.Key, ev.Kv.ModRevision)
		case ev.Type == clientv3.EventTypePut:
			t.Bytes += kvSize(ev.Kv) - kvSize(ev.PrevKv)
		default:
			t.Keys--
			t.Bytes -= kvSize(ev.PrevKv)
		}
	}
	if rev > u.rev {
		u.rev = rev
	}
	for id := range u.waiting {
		t := u.tenants[id]
		if t == nil {
			delete(u.waiting, id)
			continue
		}
		i := 0
		for i < len(t.pending) && t.pending[i].rev <= u.rev {
			i++
		}
		t.pending = t.pending[i:]
		if len(t.pending) == 0 {
			delete(u.waiting, id)
		}
	}
	return nil
}

func (u *usageTracker) get(id string) *tenantUsage {
	t := u.tenants[id]
	if t == nil {
		t = &tenantUsage{}
		u.tenants[id] = t
	}
	return t
}

// usage returns a tenant's usage.
func (u *usageTracker) usage(id string) Usage {
	u.mu.Lock()
	defer u.mu.Unlock()
	if t := u.tenants[id]; t != nil {
		return t.Usage
	}
	return Usage{}
}

// all returns every tenant's usage.
func (u *usageTracker) all() map[string]Usage {
	u.mu.Lock()
	defer u.mu.Unlock()
	out := make(map[string]Usage, len(u.tenants))
	for id, t := range u.tenants {
		if t.Keys > 0 || t.Bytes > 0 {
			out[id] = t.Usage
		}
	}
	return out
}

// reserve counts growth bytes against the tenant's quota while a write is
// in flight, if they fit: used + reserved + growth <= quota (quota 0 means
// none). It returns the bytes in use and reserved, for the error message.
func (u *usageTracker) reserve(id string, growth, quota int64) (bool, int64) {
	u.mu.Lock()
	defer u.mu.Unlock()
	t := u.get(id)
	committed := t.Bytes + t.inflight
	for _, r := range t.pending {
		committed += r.bytes
	}
	if quota > 0 && growth > 0 && committed+growth > quota {
		return false, committed
	}
	t.inflight += growth
	return true, committed
}

// settle ends a reservation: a write answered at rev stays counted until
// the watch reaches rev; a failed one (wrote false) is released at once.
func (u *usageTracker) settle(id string, growth, rev int64, wrote bool) {
	u.mu.Lock()
	defer u.mu.Unlock()
	t := u.get(id)
	t.inflight -= growth
	if wrote && growth > 0 && rev > u.rev {
		t.pending = append(t.pending, reservation{rev: rev, bytes: growth})
		u.waiting[id] = struct{}{}
	}
}
