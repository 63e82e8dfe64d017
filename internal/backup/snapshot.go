package backup

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"filippo.io/age"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// Source is one tenant's keys and leases, confined to its prefix (etcd's
// namespace wrappers around a datastore client): key "" is the first key
// of the tenant.
type Source struct {
	TenantID string
	KV       clientv3.KV
	Lease    clientv3.Lease
}

// pageSize is the number of keys read per request. Kubernetes objects are
// mostly a few KiB, so a page stays around a few MiB.
const pageSize = 500

// Snapshot writes every key of the tenant, as it was at one datastore
// revision, to w, encrypted to the backup key, and returns the manifest to
// store beside it. Writers may go on while it reads: every page is read at
// the revision of the first. It fails (rather than mixing revisions) when
// the datastore compacts that revision away before the copy ends.
func Snapshot(ctx context.Context, src Source, w io.Writer, to age.Recipient) (Manifest, error) {
	m := Manifest{Format: FormatVersion, Tenant: src.TenantID, Started: time.Now().UTC(), LeaseTTLs: map[int64]int64{}}
	rw, err := newRecordWriter(w, to)
	if err != nil {
		return Manifest{}, err
	}
	opts := []clientv3.OpOption{clientv3.WithFromKey(), clientv3.WithLimit(pageSize), clientv3.WithSerializable()}
	// The first page is a linearizable read: it fixes the revision.
	resp, err := src.KV.Get(ctx, "", clientv3.WithFromKey(), clientv3.WithLimit(pageSize))
	for {
		if err != nil {
			if errors.Is(err, rpctypes.ErrCompacted) {
				return Manifest{}, fmt.Errorf("revision %d was compacted while the copy ran; start the backup again: %w", m.Revision, err)
			}
			return Manifest{}, fmt.Errorf("read the tenant's keys: %w", err)
		}
		if m.Revision == 0 {
			m.Revision = resp.Header.Revision
		}
		for _, kv := range resp.Kvs {
			if kv.Lease != 0 {
				if _, seen := m.LeaseTTLs[kv.Lease]; !seen {
					ttl, err := leaseTTL(ctx, src.Lease, kv.Lease)
					if err != nil {
						return Manifest{}, err
					}
					m.LeaseTTLs[kv.Lease] = ttl
				}
			}
			if err := rw.write(kv); err != nil {
				return Manifest{}, err
			}
		}
		if !resp.More || len(resp.Kvs) == 0 {
			break
		}
		next := string(resp.Kvs[len(resp.Kvs)-1].Key) + "\x00"
		resp, err = src.KV.Get(ctx, next, append(opts, clientv3.WithRev(m.Revision))...)
	}
	m.Objects, m.DataBytes = rw.objects, rw.bytes
	if m.ArchiveBytes, m.SHA256, err = rw.close(); err != nil {
		return Manifest{}, err
	}
	if len(m.LeaseTTLs) == 0 {
		m.LeaseTTLs = nil
	}
	m.Finished = time.Now().UTC()
	return m, nil
}

// leaseTTL is the TTL a lease was granted with. A lease that expired since
// its key was read gets the shortest TTL etcd grants, so the restored key
// expires soon too, as it would have.
func leaseTTL(ctx context.Context, l clientv3.Lease, id int64) (int64, error) {
	resp, err := l.TimeToLive(ctx, clientv3.LeaseID(id))
	if err != nil {
		if errors.Is(err, rpctypes.ErrLeaseNotFound) {
			return minLeaseTTL, nil
		}
		return 0, fmt.Errorf("read lease %x: %w", id, err)
	}
	if resp.TTL < 0 || resp.GrantedTTL <= 0 {
		return minLeaseTTL, nil
	}
	return resp.GrantedTTL, nil
}

// minLeaseTTL is the shortest lease etcd grants (its minimum TTL is a few
// seconds, depending on the election timeout).
const minLeaseTTL = 5
