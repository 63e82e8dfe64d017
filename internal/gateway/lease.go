package gateway

import (
	"bytes"
	"context"
	"fmt"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"

	"kubinception.dev/kubinception/internal/datastore"
)

// leaseServer serves tenants' lease calls through one grpc-proxy lease
// server on the shared client, admitting only calls on leases the calling
// tenant granted. Who granted a lease is recorded in the datastore
// (datastore.LeaseOwnerKey, attached to the lease so it expires with it),
// so every replica and a restarted gateway know it.
type leaseServer struct {
	g     *Gateway
	proxy pb.LeaseServer
}

func (s *leaseServer) LeaseGrant(ctx context.Context, r *pb.LeaseGrantRequest) (*pb.LeaseGrantResponse, error) {
	t := tenantOf(ctx)
	done, err := s.g.admit(ctx, t, r.Size())
	if err != nil {
		return nil, err
	}
	defer done(0)
	resp, err := s.proxy.LeaseGrant(ctx, r)
	if err != nil {
		return nil, grpcError(err)
	}
	if resp.Error != "" {
		return resp, nil
	}
	if _, err := s.g.cli.Put(ctx, datastore.LeaseOwnerKey(t.ID, resp.ID), "", clientv3.WithLease(clientv3.LeaseID(resp.ID))); err != nil {
		// A lease nobody owns would be refused to its grantor: take it back.
		if _, rerr := s.g.cli.Revoke(context.WithoutCancel(ctx), clientv3.LeaseID(resp.ID)); rerr != nil {
			s.g.log.Error(rerr, "revoke a lease whose owner could not be recorded", "tenant", t.ID, "lease", resp.ID)
		}
		return nil, grpcError(fmt.Errorf("record the owner of lease %x: %w", resp.ID, err))
	}
	t.mu.Lock()
	t.leases[resp.ID] = struct{}{}
	t.mu.Unlock()
	return resp, nil
}

func (s *leaseServer) LeaseRevoke(ctx context.Context, r *pb.LeaseRevokeRequest) (*pb.LeaseRevokeResponse, error) {
	t := tenantOf(ctx)
	done, err := s.g.admit(ctx, t, r.Size())
	if err != nil {
		return nil, err
	}
	defer done(0)
	if err := s.g.checkLeases(ctx, t, []int64{r.ID}); err != nil {
		return nil, err
	}
	resp, err := s.proxy.LeaseRevoke(ctx, r)
	if err != nil {
		return nil, grpcError(err)
	}
	t.mu.Lock()
	delete(t.leases, r.ID)
	t.mu.Unlock()
	return resp, nil
}

func (s *leaseServer) LeaseTimeToLive(ctx context.Context, r *pb.LeaseTimeToLiveRequest) (*pb.LeaseTimeToLiveResponse, error) {
	t := tenantOf(ctx)
	done, err := s.g.admit(ctx, t, r.Size())
	if err != nil {
		return nil, err
	}
	defer done(0)
	if err := s.g.checkLeases(ctx, t, []int64{r.ID}); err != nil {
		return nil, err
	}
	resp, err := s.proxy.LeaseTimeToLive(ctx, r)
	if err != nil {
		return nil, grpcError(err)
	}
	// Attached keys are shown as the tenant sees them; the owner record
	// is the gateway's.
	keys := resp.Keys[:0]
	for _, k := range resp.Keys {
		if rest, ok := bytes.CutPrefix(k, []byte(t.Prefix)); ok {
			keys = append(keys, rest)
		}
	}
	resp.Keys = keys
	return resp, nil
}

// LeaseLeases lists the tenant's own leases, from their owner records.
func (s *leaseServer) LeaseLeases(ctx context.Context, r *pb.LeaseLeasesRequest) (*pb.LeaseLeasesResponse, error) {
	t := tenantOf(ctx)
	done, err := s.g.admit(ctx, t, r.Size())
	if err != nil {
		return nil, err
	}
	defer done(0)
	resp, err := s.g.cli.Get(ctx, datastore.LeaseOwnersPrefix(t.ID), clientv3.WithPrefix(), clientv3.WithKeysOnly())
	if err != nil {
		return nil, grpcError(err)
	}
	out := &pb.LeaseLeasesResponse{Header: resp.Header}
	for _, kv := range resp.Kvs {
		id, err := datastore.LeaseOfOwnerKey(kv.Key)
		if err != nil {
			continue
		}
		out.Leases = append(out.Leases, &pb.LeaseStatus{ID: id})
	}
	return out, nil
}

// LeaseKeepAlive serves the stream with the grpc-proxy, refusing it as
// soon as it names a lease the tenant did not grant.
func (s *leaseServer) LeaseKeepAlive(stream pb.Lease_LeaseKeepAliveServer) error {
	t := tenantOf(stream.Context())
	return s.proxy.LeaseKeepAlive(&ownedKeepAlives{Lease_LeaseKeepAliveServer: stream, g: s.g, t: t})
}

type ownedKeepAlives struct {
	pb.Lease_LeaseKeepAliveServer
	g *Gateway
	t *tenant
}

func (o *ownedKeepAlives) Recv() (*pb.LeaseKeepAliveRequest, error) {
	r, err := o.Lease_LeaseKeepAliveServer.Recv()
	if err != nil {
		return nil, err
	}
	if err := o.t.requests.get().Wait(o.Context()); err != nil {
		return nil, grpcError(err)
	}
	if err := o.g.checkLeases(o.Context(), o.t, []int64{r.ID}); err != nil {
		return nil, err
	}
	return r, nil
}

// checkLeases refuses leases (other than 0, no lease) the tenant did not
// grant. A lease that does not exist at all gets etcd's own answer.
func (g *Gateway) checkLeases(ctx context.Context, t *tenant, leases []int64) error {
	for _, id := range leases {
		if id == 0 {
			continue
		}
		t.mu.Lock()
		_, known := t.leases[id]
		t.mu.Unlock()
		if known {
			continue
		}
		resp, err := g.cli.Get(ctx, datastore.LeaseOwnerKey(t.ID, id), clientv3.WithCountOnly())
		if err != nil {
			return grpcError(err)
		}
		if resp.Count == 1 {
			t.mu.Lock()
			t.leases[id] = struct{}{}
			t.mu.Unlock()
			continue
		}
		ttl, err := g.cli.TimeToLive(ctx, clientv3.LeaseID(id))
		if err != nil {
			return grpcError(err)
		}
		if ttl.TTL == -1 {
			return rpctypes.ErrGRPCLeaseNotFound
		}
		g.metrics.refused.WithLabelValues(t.ID, "lease").Inc()
		g.log.V(1).Info("call on another tenant's lease refused", "tenant", t.ID, "lease", id)
		return rpctypes.ErrGRPCPermissionDenied
	}
	return nil
}

// forgetLeases drops the leases tenants are known to own; they are looked
// up again on use, so leases that expired do not accumulate.
func (ts *tenants) forgetLeases() {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	for _, t := range ts.m {
		t.mu.Lock()
		t.leases = map[int64]struct{}{}
		t.mu.Unlock()
	}
}
