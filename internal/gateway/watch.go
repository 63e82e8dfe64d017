package gateway

import (
	"context"
	"errors"
	"io"
	"strconv"
	"sync"
	"sync/atomic"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc/metadata"
)

// watchServer serves a tenant's watch streams on its namespaced Watcher.
//
// The grpc-proxy's watch server is not used: it does not answer progress
// requests (etcd issue 19710), which kube-apiserver sends to serve
// consistent lists from its watch cache. Instead each tenant stream gets
// one stream of its own on the shared client (the client groups watches
// by their context's metadata), so a progress request is forwarded to
// exactly the datastore stream that carries the tenant's watches, and the
// datastore's answer reaches each of them after every event before it.
type watchServer struct {
	pb.UnimplementedWatchServer
	g       *Gateway
	streams atomic.Int64
}

// streamKey is the metadata that keeps each tenant stream on a datastore
// stream of its own.
const streamKey = "kubinception-gateway-watch-stream"

func (s *watchServer) Watch(stream pb.Watch_WatchServer) error {
	t := tenantOf(stream.Context())
	ctx, cancel := context.WithCancel(stream.Context())
	defer cancel()
	if md, ok := metadata.FromIncomingContext(stream.Context()); ok && len(md.Get(rpctypes.MetadataRequireLeaderKey)) > 0 {
		ctx = clientv3.WithRequireLeader(ctx)
	}
	ctx = metadata.AppendToOutgoingContext(ctx, streamKey, strconv.FormatInt(s.streams.Add(1), 10))
	ws := &watchStream{
		g:       s.g,
		t:       t,
		ctx:     ctx,
		sendc:   make(chan *pb.WatchResponse, 128),
		cancels: map[int64]context.CancelFunc{},
	}
	// The handler may return while recvLoop still waits in Recv (gRPC
	// ends that Recv when the handler returns), but never while sendLoop
	// may still call Send: it is waited for.
	recvDone, sendDone := make(chan error, 1), make(chan error, 1)
	go func() { recvDone <- ws.recvLoop(stream) }()
	go func() { sendDone <- ws.sendLoop(stream) }()
	var err error
	select {
	case err = <-recvDone:
		cancel()
		if serr := <-sendDone; err == nil {
			err = serr
		}
	case err = <-sendDone:
		cancel()
	}
	ws.wg.Wait()
	return err
}

// watchStream is one tenant watch stream.
type watchStream struct {
	g   *Gateway
	t   *tenant
	ctx context.Context
	// sendc carries responses to the tenant, in order.
	sendc chan *pb.WatchResponse
	wg    sync.WaitGroup

	mu      sync.Mutex
	cancels map[int64]context.CancelFunc
	nextID  int64
}

func (ws *watchStream) send(r *pb.WatchResponse) bool {
	select {
	case ws.sendc <- r:
		return true
	case <-ws.ctx.Done():
		return false
	}
}

func (ws *watchStream) sendLoop(stream pb.Watch_WatchServer) error {
	for {
		select {
		case r := <-ws.sendc:
			if err := stream.Send(r); err != nil {
				return err
			}
		case <-ws.ctx.Done():
			return nil
		}
	}
}

func (ws *watchStream) recvLoop(stream pb.Watch_WatchServer) error {
	for {
		req, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		if err := ws.t.requests.get().Wait(ws.ctx); err != nil {
			return grpcError(err)
		}
		switch r := req.RequestUnion.(type) {
		case *pb.WatchRequest_CreateRequest:
			ws.g.metrics.requests.WithLabelValues(ws.t.ID, "WatchCreate").Inc()
			if err := ws.create(r.CreateRequest); err != nil {
				return err
			}
		case *pb.WatchRequest_CancelRequest:
			ws.mu.Lock()
			if cancel, ok := ws.cancels[r.CancelRequest.WatchId]; ok {
				cancel()
			}
			ws.mu.Unlock()
		case *pb.WatchRequest_ProgressRequest:
			ws.g.metrics.requests.WithLabelValues(ws.t.ID, "WatchProgress").Inc()
			if err := ws.t.watcher.RequestProgress(ws.ctx); err != nil {
				return grpcError(err)
			}
		}
	}
}

// create opens a watch and waits until the datastore has created it, so
// that creations are answered in the order they were asked, as etcd
// does.
func (ws *watchStream) create(cr *pb.WatchCreateRequest) error {
	ws.mu.Lock()
	id := cr.WatchId
	if id == clientv3.AutoWatchID {
		for ws.cancels[ws.nextID] != nil {
			ws.nextID++
		}
		id = ws.nextID
		ws.nextID++
	}
	_, taken := ws.cancels[id]
	ws.mu.Unlock()
	if taken {
		ws.send(&pb.WatchResponse{Header: &pb.ResponseHeader{}, WatchId: id, Created: true, Canceled: true, CancelReason: "etcdserver: duplicate watch ID"})
		return nil
	}

	if compacted := ws.g.compactions.compactedAt(ws.t.ID); cr.StartRevision > 0 && cr.StartRevision < compacted {
		h := &pb.ResponseHeader{Revision: compacted}
		ws.send(&pb.WatchResponse{Header: h, WatchId: id, Created: true})
		ws.send(&pb.WatchResponse{Header: h, WatchId: id, Canceled: true, CompactRevision: compacted})
		return nil
	}

	opts := []clientv3.OpOption{clientv3.WithRev(cr.StartRevision), clientv3.WithCreatedNotify()}
	if len(cr.RangeEnd) > 0 {
		opts = append(opts, clientv3.WithRange(string(cr.RangeEnd)))
	}
	if cr.PrevKv {
		opts = append(opts, clientv3.WithPrevKV())
	}
	if cr.ProgressNotify {
		opts = append(opts, clientv3.WithProgressNotify())
	}
	for _, f := range cr.Filters {
		switch f {
		case pb.WatchCreateRequest_NOPUT:
			opts = append(opts, clientv3.WithFilterPut())
		case pb.WatchCreateRequest_NODELETE:
			opts = append(opts, clientv3.WithFilterDelete())
		}
	}
	wctx, cancel := context.WithCancel(ws.ctx)
	wch := ws.t.watcher.Watch(wctx, string(cr.Key), opts...)
	created, ok := <-wch
	if !ok || created.Err() != nil || !created.Created {
		cancel()
		reason := "etcdserver: watch was not created"
		if ok && created.Err() != nil {
			reason = created.Err().Error()
		}
		ws.send(&pb.WatchResponse{Header: &pb.ResponseHeader{}, WatchId: id, Created: true, Canceled: true, CancelReason: reason})
		return nil
	}
	ws.mu.Lock()
	ws.cancels[id] = cancel
	ws.mu.Unlock()
	h := created.Header
	ws.send(&pb.WatchResponse{Header: &h, WatchId: id, Created: true})
	ws.wg.Add(1)
	go ws.forward(id, wch, cancel)
	return nil
}

// forward relays one watch's responses until it ends, then tells the
// tenant it was canceled unless the datastore already did.
func (ws *watchStream) forward(id int64, wch clientv3.WatchChan, cancel context.CancelFunc) {
	defer ws.wg.Done()
	defer func() {
		cancel()
		ws.mu.Lock()
		delete(ws.cancels, id)
		ws.mu.Unlock()
	}()
	var last pb.ResponseHeader
	for wr := range wch {
		last = wr.Header
		resp := &pb.WatchResponse{
			Header:          &wr.Header,
			WatchId:         id,
			CompactRevision: wr.CompactRevision,
			Canceled:        wr.Canceled,
			Events:          make([]*mvccpb.Event, len(wr.Events)),
		}
		for i, ev := range wr.Events {
			resp.Events[i] = (*mvccpb.Event)(ev)
		}
		if err := wr.Err(); err != nil && wr.CompactRevision == 0 {
			resp.Canceled, resp.CancelReason = true, err.Error()
		}
		if !ws.send(resp) || resp.Canceled {
			return
		}
	}
	ws.send(&pb.WatchResponse{Header: &last, WatchId: id, Canceled: true})
}
