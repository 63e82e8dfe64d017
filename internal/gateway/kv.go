package gateway

import (
	"context"
	"errors"
	"fmt"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"go.etcd.io/etcd/server/v3/proxy/grpcproxy"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// kvServer serves a tenant's KV requests on its namespaced KV. Requests
// are turned into client operations with the grpc-proxy's converters; the
// proxy's own KV server is not used because it caches every range answer
// per replica (serializable reads would go stale across replicas, and the
// cache grows with every tenant).
type kvServer struct {
	pb.UnimplementedKVServer
	g *Gateway
}

func (s *kvServer) Range(ctx context.Context, r *pb.RangeRequest) (*pb.RangeResponse, error) {
	t := tenantOf(ctx)
	done, err := s.g.admit(ctx, t, r.Size())
	if err != nil {
		return nil, err
	}
	var answer int
	defer func() { done(answer) }()
	if err := s.g.checkRevision(t, r.Revision); err != nil {
		return nil, err
	}
	resp, err := t.kv.Do(ctx, grpcproxy.RangeRequestToOp(r))
	if err != nil {
		return nil, grpcError(err)
	}
	out := (*pb.RangeResponse)(resp.Get())
	answer = out.Size()
	return out, nil
}

func (s *kvServer) Put(ctx context.Context, r *pb.PutRequest) (*pb.PutResponse, error) {
	t := tenantOf(ctx)
	done, err := s.g.admit(ctx, t, r.Size())
	if err != nil {
		return nil, err
	}
	defer done(0)
	if err := s.g.checkLeases(ctx, t, []int64{r.Lease}); err != nil {
		return nil, err
	}
	growth, err := s.g.reserve(ctx, t, writes{puts: []*pb.PutRequest{r}})
	if err != nil {
		return nil, err
	}
	resp, err := t.kv.Do(ctx, grpcproxy.PutRequestToOp(r))
	if err != nil {
		s.g.usage.settle(t.ID, growth, 0, false)
		return nil, grpcError(err)
	}
	out := (*pb.PutResponse)(resp.Put())
	s.g.usage.settle(t.ID, growth, out.Header.Revision, true)
	return out, nil
}

func (s *kvServer) DeleteRange(ctx context.Context, r *pb.DeleteRangeRequest) (*pb.DeleteRangeResponse, error) {
	t := tenantOf(ctx)
	done, err := s.g.admit(ctx, t, r.Size())
	if err != nil {
		return nil, err
	}
	defer done(0)
	// Deletes are never held to the quota: they are how a tenant frees
	// space.
	resp, err := t.kv.Do(ctx, grpcproxy.DelRequestToOp(r))
	if err != nil {
		return nil, grpcError(err)
	}
	return (*pb.DeleteRangeResponse)(resp.Del()), nil
}

func (s *kvServer) Txn(ctx context.Context, r *pb.TxnRequest) (*pb.TxnResponse, error) {
	t := tenantOf(ctx)
	done, err := s.g.admit(ctx, t, r.Size())
	if err != nil {
		return nil, err
	}
	var answer int
	defer func() { done(answer) }()
	var w writes
	w.collect(r)
	for _, rev := range w.revisions {
		if err := s.g.checkRevision(t, rev); err != nil {
			return nil, err
		}
	}
	if err := s.g.checkLeases(ctx, t, w.leases); err != nil {
		return nil, err
	}
	growth, err := s.g.reserve(ctx, t, w)
	if err != nil {
		return nil, err
	}
	resp, err := t.kv.Do(ctx, grpcproxy.TxnRequestToOp(r))
	if err != nil {
		s.g.usage.settle(t.ID, growth, 0, false)
		return nil, grpcError(err)
	}
	out := (*pb.TxnResponse)(resp.Txn())
	s.g.usage.settle(t.ID, growth, out.Header.Revision, wrote(out))
	answer = out.Size()
	return out, nil
}

// Compact records the tenant's compaction; the datastore itself is
// compacted later, where every compacting tenant agrees.
func (s *kvServer) Compact(ctx context.Context, r *pb.CompactionRequest) (*pb.CompactionResponse, error) {
	t := tenantOf(ctx)
	done, err := s.g.admit(ctx, t, r.Size())
	if err != nil {
		return nil, err
	}
	defer done(0)
	h, err := s.g.compactions.compact(ctx, t.ID, r.Revision)
	if err != nil {
		return nil, grpcError(err)
	}
	s.g.log.V(1).Info("tenant compacted", "tenant", t.ID, "revision", r.Revision)
	return &pb.CompactionResponse{Header: h}, nil
}

// checkRevision refuses a read at a revision the tenant has compacted.
func (g *Gateway) checkRevision(t *tenant, rev int64) error {
	if rev > 0 && rev < g.compactions.compactedAt(t.ID) {
		return rpctypes.ErrGRPCCompacted
	}
	return nil
}

// writes are what a request may write and read at a revision, collected
// through nested transactions.
type writes struct {
	puts      []*pb.PutRequest
	leases    []int64
	revisions []int64
}

func (w *writes) collect(r *pb.TxnRequest) {
	for _, ops := range [][]*pb.RequestOp{r.Success, r.Failure} {
		for _, op := range ops {
			switch {
			case op.GetRequestPut() != nil:
				w.puts = append(w.puts, op.GetRequestPut())
				w.leases = append(w.leases, op.GetRequestPut().Lease)
			case op.GetRequestRange() != nil:
				w.revisions = append(w.revisions, op.GetRequestRange().Revision)
			case op.GetRequestTxn() != nil:
				w.collect(op.GetRequestTxn())
			}
		}
	}
}

// writesAny reports whether a transaction may write in either branch (a
// pause holds it).
func writesAny(r *pb.TxnRequest) bool {
	for _, ops := range [][]*pb.RequestOp{r.Success, r.Failure} {
		for _, op := range ops {
			switch {
			case op.GetRequestPut() != nil, op.GetRequestDeleteRange() != nil:
				return true
			case op.GetRequestTxn() != nil && writesAny(op.GetRequestTxn()):
				return true
			}
		}
	}
	return false
}

// wrote reports whether the branch a transaction took wrote anything, so
// that the watch will show a write at its revision.
func wrote(resp *pb.TxnResponse) bool {
	for _, op := range resp.Responses {
		switch {
		case op.GetResponsePut() != nil:
			return true
		case op.GetResponseDeleteRange() != nil && op.GetResponseDeleteRange().Deleted > 0:
			return true
		case op.GetResponseTxn() != nil && wrote(op.GetResponseTxn()):
			return true
		}
	}
	return false
}

// reserve holds the bytes a write may add against the tenant's quota. It
// first assumes every put adds its whole key and value; only when that
// would not fit does it read the keys' current sizes to count exactly
// what the write grows by. A write that does not fit is refused with
// etcd's own "database space exceeded".
func (g *Gateway) reserve(ctx context.Context, t *tenant, w writes) (int64, error) {
	quota := t.quota()
	var growth int64
	for _, p := range w.puts {
		if !p.IgnoreValue {
			growth += int64(len(t.Prefix) + len(p.Key) + len(p.Value))
		}
	}
	if ok, _ := g.usage.reserve(t.ID, growth, quota); ok {
		return growth, nil
	}
	exact, err := g.exactGrowth(ctx, t, w.puts)
	if err != nil {
		return 0, err
	}
	ok, used := g.usage.reserve(t.ID, exact, quota)
	if !ok {
		g.metrics.refused.WithLabelValues(t.ID, "quota").Inc()
		g.log.V(1).Info("write over quota refused", "tenant", t.ID, "usedBytes", used, "growth", exact, "quotaBytes", quota)
		return 0, rpctypes.ErrGRPCNoSpace
	}
	return exact, nil
}

// exactGrowth is what puts add over the current values of their keys (a
// key written twice counts once, at its larger size).
func (g *Gateway) exactGrowth(ctx context.Context, t *tenant, puts []*pb.PutRequest) (int64, error) {
	largest := map[string]int64{}
	for _, p := range puts {
		if p.IgnoreValue {
			continue
		}
		largest[string(p.Key)] = max(largest[string(p.Key)], int64(len(p.Value)))
	}
	var growth int64
	for key, size := range largest {
		resp, err := t.kv.Get(ctx, key)
		if err != nil {
			return 0, grpcError(err)
		}
		if len(resp.Kvs) == 0 {
			growth += int64(len(t.Prefix)+len(key)) + size
		} else {
			growth += size - int64(len(resp.Kvs[0].Value))
		}
	}
	return max(growth, 0), nil
}

// grpcError turns a client error back into the gRPC status etcd would
// have answered, so tenants' clients recognise it.
func grpcError(err error) error {
	if err == nil {
		return nil
	}
	if _, ok := status.FromError(err); ok {
		return err
	}
	var ee rpctypes.EtcdError
	if errors.As(err, &ee) {
		return status.Error(ee.Code(), ee.Error())
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return status.FromContextError(err).Err()
	}
	return status.Error(codes.Unavailable, fmt.Sprintf("datastore: %v", err))
}
