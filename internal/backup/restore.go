package backup

import (
	"context"
	"errors"
	"fmt"
	"io"

	"filippo.io/age"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// RestoreMode says what a restore does with keys the target already has.
type RestoreMode int

const (
	// IntoEmpty refuses a target that holds any key: a clone into a new
	// tenant.
	IntoEmpty RestoreMode = iota
	// Replace deletes every key of the target first: a roll back. Run it
	// only while nothing writes to the tenant (its control plane stopped),
	// or writes made meanwhile are lost or mixed in.
	Replace
)

// ErrNotEmpty refuses a clone into a tenant that holds keys.
var ErrNotEmpty = errors.New("the target tenant is not empty")

// Result is what a restore wrote.
type Result struct {
	Objects int
	Leases  int
	// Revision is the datastore revision after the last write: every
	// restored key has a higher revision than anything a client of the
	// tenant saw before, so no resourceVersion goes backwards.
	Revision int64
}

// maxTxnOps and maxTxnBytes keep each write under etcd's default limits
// (--max-txn-ops 128, --max-request-bytes 1.5 MiB).
const (
	maxTxnOps   = 128
	maxTxnBytes = 1 << 20
)

// Restore writes the archive's keys into dst (a tenant's namespaced KV and
// Lease), checking the archive against its manifest. Keys that were
// attached to a lease get a fresh lease of the same TTL. A failure part
// way leaves some keys written: the caller runs it again (Replace) or
// deletes the target.
func Restore(ctx context.Context, dst Source, r io.Reader, id age.Identity, m Manifest, mode RestoreMode) (Result, error) {
	rr, err := newRecordReader(r, id, m)
	if err != nil {
		return Result{}, err
	}
	switch mode {
	case IntoEmpty:
		resp, err := dst.KV.Get(ctx, "", clientv3.WithFromKey(), clientv3.WithCountOnly())
		if err != nil {
			return Result{}, fmt.Errorf("check the target is empty: %w", err)
		}
		if resp.Count != 0 {
			return Result{}, fmt.Errorf("%w: it holds %d keys; restore into a new tenant, or roll back (replace)", ErrNotEmpty, resp.Count)
		}
	case Replace:
		if _, err := dst.KV.Delete(ctx, "", clientv3.WithFromKey()); err != nil {
			return Result{}, fmt.Errorf("delete the target's keys: %w", err)
		}
	default:
		return Result{}, fmt.Errorf("unknown restore mode %d", mode)
	}

	var res Result
	leases := map[int64]clientv3.LeaseID{}
	var ops []clientv3.Op
	size := 0
	flush := func() error {
		if len(ops) == 0 {
			return nil
		}
		resp, err := dst.KV.Txn(ctx).Then(ops...).Commit()
		if err != nil {
			return fmt.Errorf("write restored keys: %w", err)
		}
		res.Revision = resp.Header.Revision
		ops, size = ops[:0], 0
		return nil
	}
	for {
		kv, err := rr.next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return res, err
		}
		var opts []clientv3.OpOption
		if kv.Lease != 0 {
			lid, ok := leases[kv.Lease]
			if !ok {
				ttl := m.LeaseTTLs[kv.Lease]
				if ttl <= 0 {
					ttl = minLeaseTTL
				}
				g, err := dst.Lease.Grant(ctx, ttl)
				if err != nil {
					return res, fmt.Errorf("grant a lease for restored keys: %w", err)
				}
				lid, leases[kv.Lease] = g.ID, g.ID
				res.Leases++
			}
			opts = append(opts, clientv3.WithLease(lid))
		}
		if len(ops) == maxTxnOps || size+len(kv.Key)+len(kv.Value) > maxTxnBytes {
			if err := flush(); err != nil {
				return res, err
			}
		}
		ops = append(ops, clientv3.OpPut(string(kv.Key), string(kv.Value), opts...))
		size += len(kv.Key) + len(kv.Value)
		res.Objects++
	}
	if err := flush(); err != nil {
		return res, err
	}
	if res.Revision == 0 {
		// Nothing written: report where the datastore is.
		resp, err := dst.KV.Get(ctx, "", clientv3.WithFromKey(), clientv3.WithCountOnly())
		if err != nil {
			return res, err
		}
		res.Revision = resp.Header.Revision
	}
	return res, nil
}
