package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/go-logr/logr"
	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"

	"kubinception.dev/kubinception/internal/datastore"
)

// compactionRecord is the value of a datastore.CompactionKey.
type compactionRecord struct {
	Revision int64     `json:"revision"`
	At       time.Time `json:"at"`
}

// compactions is every tenant's compacted revision, mirrored from the
// datastore so all replicas answer a tenant alike, and the loop that
// compacts the datastore where every compacting tenant agrees.
type compactions struct {
	cli *clientv3.Client
	log logr.Logger
	now func() time.Time

	mu   sync.Mutex
	revs map[string]compactionRecord
	next map[string]compactionRecord
	// done is the revision the gateway last compacted the datastore at.
	done int64

	readyOnce sync.Once
	ready     chan struct{}
}

func newCompactions(cli *clientv3.Client, log logr.Logger) *compactions {
	return &compactions{cli: cli, log: log, now: time.Now, revs: map[string]compactionRecord{}, ready: make(chan struct{})}
}

// compactedAt is the revision below which the tenant's history is gone
// (0 when it never compacted).
func (c *compactions) compactedAt(id string) int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.revs[id].Revision
}

// compact records the tenant's compaction at rev, with etcd's answers:
// a revision not yet written is a future revision, one at or below the
// tenant's last compaction is compacted already.
func (c *compactions) compact(ctx context.Context, id string, rev int64) (*pb.ResponseHeader, error) {
	key := datastore.CompactionKey(id)
	for range 5 {
		resp, err := c.cli.Get(ctx, key)
		if err != nil {
			return nil, fmt.Errorf("read the compaction record: %w", err)
		}
		if rev > resp.Header.Revision {
			return nil, rpctypes.ErrGRPCFutureRev
		}
		cmp := clientv3.Compare(clientv3.CreateRevision(key), "=", 0)
		if len(resp.Kvs) == 1 {
			var old compactionRecord
			if err := json.Unmarshal(resp.Kvs[0].Value, &old); err == nil && rev <= old.Revision {
				return nil, rpctypes.ErrGRPCCompacted
			}
			cmp = clientv3.Compare(clientv3.ModRevision(key), "=", resp.Kvs[0].ModRevision)
		}
		rec := compactionRecord{Revision: rev, At: c.now().UTC()}
		val, _ := json.Marshal(rec)
		txn, err := c.cli.Txn(ctx).If(cmp).Then(clientv3.OpPut(key, string(val))).Commit()
		if err != nil {
			return nil, fmt.Errorf("record the compaction: %w", err)
		}
		if txn.Succeeded {
			c.set(id, rec)
			return txn.Header, nil
		}
		// Another replica recorded a compaction meanwhile; look again.
	}
	return nil, rpctypes.ErrGRPCTimeout
}

func (c *compactions) set(id string, rec compactionRecord) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if rec.Revision > c.revs[id].Revision {
		c.revs[id] = rec
	}
}

func (c *compactions) begin() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.next = map[string]compactionRecord{}
}

func (c *compactions) page(kvs []*mvccpb.KeyValue) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, kv := range kvs {
		if id, ok := datastore.TenantIDOfCompactionKey(kv.Key); ok {
			var rec compactionRecord
			if err := json.Unmarshal(kv.Value, &rec); err == nil {
				c.next[id] = rec
			}
		}
	}
}

func (c *compactions) seeded(int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.revs, c.next = c.next, nil
	c.readyOnce.Do(func() { close(c.ready) })
}

func (c *compactions) apply(_ int64, events []*clientv3.Event) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, ev := range events {
		id, ok := datastore.TenantIDOfCompactionKey(ev.Kv.Key)
		if !ok {
			continue
		}
		if ev.Type == clientv3.EventTypeDelete {
			delete(c.revs, id)
			continue
		}
		var rec compactionRecord
		if err := json.Unmarshal(ev.Kv.Value, &rec); err == nil {
			c.revs[id] = rec
		}
	}
	return nil
}

// target is the revision the datastore may be compacted at: the lowest
// any tenant that compacted within staleAfter has asked for.
func (c *compactions) target(staleAfter time.Duration) int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := c.now()
	var lowest int64
	for _, rec := range c.revs {
		if staleAfter > 0 && now.Sub(rec.At) > staleAfter {
			continue
		}
		if lowest == 0 || rec.Revision < lowest {
			lowest = rec.Revision
		}
	}
	return lowest
}

// run compacts the datastore every interval at target.
func (c *compactions) run(ctx context.Context, interval, staleAfter time.Duration) {
	if interval <= 0 {
		return
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		rev := c.target(staleAfter)
		if rev <= c.done {
			continue
		}
		_, err := c.cli.Compact(ctx, rev)
		switch {
		case err == nil:
			c.log.Info("compacted the datastore", "revision", rev)
		case errors.Is(err, rpctypes.ErrCompacted):
			// Another replica, or the datastore's own schedule, got there.
		default:
			c.log.Error(err, "compact the datastore", "revision", rev)
			continue
		}
		c.done = rev
	}
}
