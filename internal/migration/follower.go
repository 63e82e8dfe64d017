package migration

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/mirror"

	"kubinception.dev/kubinception/internal/datastore"
)

// maxTxnOps is etcd's default --max-txn-ops.
const maxTxnOps = 128

// follower applies the source's events for the tenant after the copy's
// revision to the destination: its keys (one destination transaction per
// source revision, so a source transaction stays atomic) and its leases
// (granted with the same ID, kept alive until the switch, revoked when
// the source's expire).
type follower struct {
	m   *Migrator
	rev int64

	// keepCtx ends the destination's lease keep-alives.
	keepCtx    context.Context
	keepCancel context.CancelFunc

	wctx   context.Context
	cancel context.CancelFunc
	done   chan struct{}

	mu      sync.Mutex
	leases  map[int64]context.CancelFunc
	applied [2]int64 // data, lease owners
	events  int
	err     error

	// pauseStart is when the pause was asked for.
	pauseStart time.Time
}

func newFollower(m *Migrator, rev int64) *follower {
	kctx, kcancel := context.WithCancel(context.Background())
	return &follower{m: m, rev: rev, keepCtx: kctx, keepCancel: kcancel, leases: map[int64]context.CancelFunc{}, applied: [2]int64{rev, rev}}
}

// ensureLease grants source lease id on the destination (same ID, same
// TTL) unless it is there, and records its owner there. It reports false
// when the lease has expired on the source: the key is then copied
// without it, and the source's deletion follows as an event.
func (f *follower) ensureLease(ctx context.Context, id int64) (bool, error) {
	f.mu.Lock()
	_, ok := f.leases[id]
	f.mu.Unlock()
	if ok {
		return true, nil
	}
	ttl, err := f.m.Source.TimeToLive(ctx, clientv3.LeaseID(id))
	if err != nil {
		if isLeaseNotFound(err) {
			return false, nil
		}
		return false, fmt.Errorf("lease %x on the source: %w", id, err)
	}
	if ttl.TTL <= 0 {
		return false, nil
	}
	resp, err := pb.NewLeaseClient(f.m.Destination.ActiveConnection()).LeaseGrant(ctx, &pb.LeaseGrantRequest{ID: id, TTL: ttl.GrantedTTL})
	switch {
	case err != nil && !errors.Is(rpctypes.Error(err), rpctypes.ErrLeaseExist):
		return false, fmt.Errorf("grant lease %x on the destination: %w", id, err)
	case err == nil && resp.Error != "":
		return false, fmt.Errorf("grant lease %x on the destination: %s", id, resp.Error)
	}
	if _, err := f.m.Destination.Put(ctx, datastore.LeaseOwnerKey(f.m.tn.ID, id), "", clientv3.WithLease(clientv3.LeaseID(id))); err != nil {
		return false, fmt.Errorf("record the owner of lease %x on the destination: %w", id, err)
	}
	kctx, cancel := context.WithCancel(f.keepCtx)
	ch, err := f.m.Destination.KeepAlive(kctx, clientv3.LeaseID(id))
	if err != nil {
		cancel()
		return false, fmt.Errorf("keep lease %x alive on the destination: %w", id, err)
	}
	go func() {
		for range ch {
		}
	}()
	f.mu.Lock()
	f.leases[id] = cancel
	f.mu.Unlock()
	return true, nil
}

// dropLease revokes a lease the source lost.
func (f *follower) dropLease(ctx context.Context, id int64) error {
	f.mu.Lock()
	cancel := f.leases[id]
	delete(f.leases, id)
	f.mu.Unlock()
	if cancel != nil {
		cancel()
	}
	if _, err := f.m.Destination.Revoke(ctx, clientv3.LeaseID(id)); err != nil && !isLeaseNotFound(err) {
		return fmt.Errorf("revoke lease %x on the destination: %w", id, err)
	}
	_, err := f.m.Destination.Delete(ctx, datastore.LeaseOwnerKey(f.m.tn.ID, id))
	return err
}

// putOp is the destination's write of a source key.
func (f *follower) putOp(ctx context.Context, key, value []byte, lease int64) (clientv3.Op, error) {
	if lease != 0 {
		ok, err := f.ensureLease(ctx, lease)
		if err != nil {
			return clientv3.Op{}, err
		}
		if ok {
			return clientv3.OpPut(string(key), string(value), clientv3.WithLease(clientv3.LeaseID(lease))), nil
		}
	}
	return clientv3.OpPut(string(key), string(value)), nil
}

// start watches the tenant's keys and lease owners from the copy's
// revision on.
func (f *follower) start(ctx context.Context) {
	f.wctx, f.cancel = context.WithCancel(clientv3.WithRequireLeader(ctx))
	f.done = make(chan struct{})
	data := mirror.NewSyncer(f.m.Source, f.m.tn.Prefix, f.rev).SyncUpdates(f.wctx)
	owners := mirror.NewSyncer(f.m.Source, datastore.LeaseOwnersPrefix(f.m.tn.ID), f.rev).SyncUpdates(f.wctx)
	go func() {
		defer close(f.done)
		err := f.run(data, owners)
		if err != nil && f.wctx.Err() == nil {
			f.mu.Lock()
			f.err = err
			f.mu.Unlock()
		}
	}()
}

func (f *follower) run(data, owners clientv3.WatchChan) error {
	ctx := f.wctx
	for {
		var resp clientv3.WatchResponse
		var ok bool
		var which int
		select {
		case resp, ok = <-data:
		case resp, ok = <-owners:
			which = 1
		}
		if !ok {
			return errors.New("the source's watch ended")
		}
		if err := resp.Err(); err != nil {
			return fmt.Errorf("the source's watch: %w", err)
		}
		var err error
		if which == 0 {
			err = f.applyData(ctx, resp.Events)
		} else {
			err = f.applyOwners(ctx, resp.Events)
		}
		if err != nil {
			return err
		}
		rev := resp.Header.Revision
		if !resp.IsProgressNotify() {
			rev = f.rev
			if n := len(resp.Events); n > 0 {
				rev = resp.Events[n-1].Kv.ModRevision
			}
		}
		f.mu.Lock()
		f.applied[which] = max(f.applied[which], rev)
		f.events += len(resp.Events)
		f.mu.Unlock()
	}
}

// applyData writes the events of one watch answer, one transaction per
// source revision.
func (f *follower) applyData(ctx context.Context, events []*clientv3.Event) error {
	var ops []clientv3.Op
	var rev int64
	flush := func() error {
		if len(ops) == 0 {
			return nil
		}
		if _, err := f.m.Destination.Txn(ctx).Then(ops...).Commit(); err != nil {
			return fmt.Errorf("apply the source's revision %d: %w", rev, err)
		}
		ops = ops[:0]
		return nil
	}
	for _, ev := range events {
		if ev.Kv.ModRevision != rev || len(ops) == maxTxnOps {
			if err := flush(); err != nil {
				return err
			}
			rev = ev.Kv.ModRevision
		}
		if ev.Type == clientv3.EventTypeDelete {
			ops = append(ops, clientv3.OpDelete(string(ev.Kv.Key)))
			continue
		}
		op, err := f.putOp(ctx, ev.Kv.Key, ev.Kv.Value, ev.Kv.Lease)
		if err != nil {
			return err
		}
		ops = append(ops, op)
	}
	return flush()
}

func (f *follower) applyOwners(ctx context.Context, events []*clientv3.Event) error {
	for _, ev := range events {
		id, err := datastore.LeaseOfOwnerKey(ev.Kv.Key)
		if err != nil {
			return err
		}
		if ev.Type == clientv3.EventTypeDelete {
			err = f.dropLease(ctx, id)
		} else {
			_, err = f.ensureLease(ctx, id)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// waitApplied waits until every source event up to rev is applied, asking
// the source for progress notifications meanwhile.
func (f *follower) waitApplied(ctx context.Context, rev int64, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		f.mu.Lock()
		applied, err := min(f.applied[0], f.applied[1]), f.err
		f.mu.Unlock()
		switch {
		case err != nil:
			return err
		case applied >= rev:
			return nil
		case time.Now().After(deadline):
			return fmt.Errorf("the copy did not catch up with the source's revision %d within %s (at %d)", rev, timeout, applied)
		}
		// Answered once the watches are synced: then the source has
		// sent every event up to its revision.
		_ = f.m.Source.RequestProgress(f.wctx)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-f.done:
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func (f *follower) failed() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.err
}

func (f *follower) eventCount() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.events
}

// stop ends the watches and the destination's keep-alives (the leases
// keep their TTL from the last one).
func (f *follower) stop() {
	if f.cancel != nil {
		f.cancel()
		<-f.done
	}
	f.keepCancel()
}

func isLeaseNotFound(err error) bool {
	return errors.Is(rpctypes.Error(err), rpctypes.ErrLeaseNotFound)
}
