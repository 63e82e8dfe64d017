package gateway

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
)

// Services and methods a tenant may call; every other method of the etcd
// API is refused with "permission denied" before it reaches a handler.
// A tenant's API server needs only these; the rest (members, auth,
// defragment, snapshot, hashes, leader moves, downgrades) act on the
// whole shared datastore.
var allowedServices = []string{"/etcdserverpb.KV/", "/etcdserverpb.Watch/", "/etcdserverpb.Lease/", "/grpc.health.v1.Health/"}

var allowedMethods = map[string]bool{
	"/etcdserverpb.Maintenance/Status": true,
	"/etcdserverpb.Maintenance/Alarm":  true, // reading only, see Alarm
}

func allowed(fullMethod string) bool {
	for _, s := range allowedServices {
		if strings.HasPrefix(fullMethod, s) {
			return true
		}
	}
	return allowedMethods[fullMethod]
}

// maintenanceServer answers the two maintenance calls a tenant may make.
type maintenanceServer struct {
	pb.UnimplementedMaintenanceServer
	g *Gateway

	mu     sync.Mutex
	status *pb.StatusResponse
	readAt time.Time
}

// statusTTL is how long the datastore's status is reused: every tenant
// API server polls it for its storage-size metric.
const statusTTL = 5 * time.Second

// Status answers with the datastore's version and raft state, and the
// tenant's own usage and quota as the database size, which is what
// kube-apiserver reports as its storage size.
func (s *maintenanceServer) Status(ctx context.Context, _ *pb.StatusRequest) (*pb.StatusResponse, error) {
	t := tenantOf(ctx)
	st, err := s.datastoreStatus(ctx)
	if err != nil {
		return nil, err
	}
	u := s.g.usage.usage(t.ID)
	return &pb.StatusResponse{
		Header:           st.Header,
		Version:          st.Version,
		StorageVersion:   st.StorageVersion,
		Leader:           st.Leader,
		RaftIndex:        st.RaftIndex,
		RaftTerm:         st.RaftTerm,
		RaftAppliedIndex: st.RaftAppliedIndex,
		Errors:           st.Errors,
		IsLearner:        st.IsLearner,
		DbSize:           u.Bytes,
		DbSizeInUse:      u.Bytes,
		DbSizeQuota:      t.quota(),
	}, nil
}

func (s *maintenanceServer) datastoreStatus(ctx context.Context) (*pb.StatusResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.status != nil && time.Since(s.readAt) < statusTTL {
		return s.status, nil
	}
	var errs []string
	for _, ep := range s.g.cli.Endpoints() {
		sctx, cancel := context.WithTimeout(ctx, 3*time.Second)
		st, err := s.g.cli.Status(sctx, ep)
		cancel()
		if err != nil {
			errs = append(errs, fmt.Sprintf("%s: %v", ep, err))
			continue
		}
		s.status, s.readAt = (*pb.StatusResponse)(st), time.Now()
		return s.status, nil
	}
	return nil, grpcError(fmt.Errorf("no datastore member answered: %s", strings.Join(errs, "; ")))
}

// Alarm lists the datastore's alarms; raising or clearing one is the
// platform's, not a tenant's.
func (s *maintenanceServer) Alarm(ctx context.Context, r *pb.AlarmRequest) (*pb.AlarmResponse, error) {
	if r.Action != pb.AlarmRequest_GET {
		return nil, rpctypes.ErrGRPCPermissionDenied
	}
	resp, err := s.g.cli.AlarmList(ctx)
	if err != nil {
		return nil, grpcError(err)
	}
	return (*pb.AlarmResponse)(resp), nil
}
