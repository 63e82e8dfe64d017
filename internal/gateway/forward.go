package gateway

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"math"
	"strings"
	"sync"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// ForwardTarget is where a moved tenant's calls go: the gateway of the
// datastore that now holds its keys, reached with a client certificate
// that gateway's CA issued for the tenant (common name tenant-<uid>).
//
// Forwarding lets a migration switch a tenant between datastores without
// restarting its API servers: the switch is one write of the tenant's
// pause record, seen by every replica, and the write pause ends as soon
// as it is written. The record holds the certificate's key; it lives
// under the gateway's own prefix in the datastore, which only the
// gateways and the operator can read.
type ForwardTarget struct {
	// Endpoint is host:port of the destination gateway.
	Endpoint string `json:"endpoint"`
	// CAPEM is the destination gateway's CA; CertPEM and KeyPEM the
	// tenant's client certificate there.
	CAPEM   []byte `json:"ca"`
	CertPEM []byte `json:"cert"`
	KeyPEM  []byte `json:"key"`
}

// forwarder is one moved tenant's connection to its new gateway.
type forwarder struct {
	conn *grpc.ClientConn
	once sync.Once
}

func newForwarder(t ForwardTarget) (*forwarder, error) {
	cert, err := tls.X509KeyPair(t.CertPEM, t.KeyPEM)
	if err != nil {
		return nil, fmt.Errorf("the tenant's certificate at %s: %w", t.Endpoint, err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(t.CAPEM) {
		return nil, fmt.Errorf("no CA certificate for %s", t.Endpoint)
	}
	tc := &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	if host, _, ok := strings.Cut(t.Endpoint, ":"); ok {
		tc.ServerName = host
	}
	conn, err := grpc.NewClient("passthrough:///"+t.Endpoint,
		grpc.WithTransportCredentials(credentials.NewTLS(tc)),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(math.MaxInt32)))
	if err != nil {
		return nil, fmt.Errorf("connect to %s: %w", t.Endpoint, err)
	}
	return &forwarder{conn: conn}, nil
}

func (f *forwarder) close() { f.once.Do(func() { _ = f.conn.Close() }) }

// unaryReplies are the answers of the unary calls a tenant may make.
var unaryReplies = map[string]func() any{
	"/etcdserverpb.KV/Range":              func() any { return &pb.RangeResponse{} },
	"/etcdserverpb.KV/Put":                func() any { return &pb.PutResponse{} },
	"/etcdserverpb.KV/DeleteRange":        func() any { return &pb.DeleteRangeResponse{} },
	"/etcdserverpb.KV/Txn":                func() any { return &pb.TxnResponse{} },
	"/etcdserverpb.KV/Compact":            func() any { return &pb.CompactionResponse{} },
	"/etcdserverpb.Lease/LeaseGrant":      func() any { return &pb.LeaseGrantResponse{} },
	"/etcdserverpb.Lease/LeaseRevoke":     func() any { return &pb.LeaseRevokeResponse{} },
	"/etcdserverpb.Lease/LeaseTimeToLive": func() any { return &pb.LeaseTimeToLiveResponse{} },
	"/etcdserverpb.Lease/LeaseLeases":     func() any { return &pb.LeaseLeasesResponse{} },
	"/etcdserverpb.Maintenance/Status":    func() any { return &pb.StatusResponse{} },
	"/etcdserverpb.Maintenance/Alarm":     func() any { return &pb.AlarmResponse{} },
}

// streamMessages are the request and answer types of the streams a
// tenant may open.
var streamMessages = map[string][2]func() any{
	"/etcdserverpb.Watch/Watch": {func() any { return &pb.WatchRequest{} }, func() any { return &pb.WatchResponse{} }},
	"/etcdserverpb.Lease/LeaseKeepAlive": {
		func() any { return &pb.LeaseKeepAliveRequest{} }, func() any { return &pb.LeaseKeepAliveResponse{} }},
}

// unary forwards one call and returns the destination's answer.
func (f *forwarder) unary(ctx context.Context, method string, req any) (any, error) {
	newReply, ok := unaryReplies[method]
	if !ok {
		return nil, status.Errorf(codes.PermissionDenied, "etcdserver: permission denied: %s", method)
	}
	reply := newReply()
	// The tenant's own metadata (require-leader) travels on.
	if err := f.conn.Invoke(outgoing(ctx), method, req, reply); err != nil {
		return nil, err
	}
	return reply, nil
}

// stream forwards one stream both ways until either side ends it.
func (f *forwarder) stream(ss grpc.ServerStream, method string) error {
	types, ok := streamMessages[method]
	if !ok {
		return status.Errorf(codes.PermissionDenied, "etcdserver: permission denied: %s", method)
	}
	ctx, cancel := context.WithCancel(ss.Context())
	defer cancel()
	cs, err := f.conn.NewStream(outgoing(ctx), &grpc.StreamDesc{ServerStreams: true, ClientStreams: true}, method)
	if err != nil {
		return err
	}
	errc := make(chan error, 2)
	go func() {
		for {
			m := types[0]()
			if err := ss.RecvMsg(m); err != nil {
				if errors.Is(err, io.EOF) {
					_ = cs.CloseSend()
					return
				}
				errc <- err
				return
			}
			if err := cs.SendMsg(m); err != nil {
				errc <- err
				return
			}
		}
	}()
	go func() {
		for {
			m := types[1]()
			if err := cs.RecvMsg(m); err != nil {
				errc <- err
				return
			}
			if err := ss.SendMsg(m); err != nil {
				errc <- err
				return
			}
		}
	}()
	err = <-errc
	if errors.Is(err, io.EOF) {
		return nil
	}
	return err
}

// isWrite reports whether a call writes: a pause holds it.
func isWrite(method string, req any) bool {
	switch method {
	case "/etcdserverpb.KV/Put", "/etcdserverpb.KV/DeleteRange", "/etcdserverpb.KV/Compact",
		"/etcdserverpb.Lease/LeaseGrant", "/etcdserverpb.Lease/LeaseRevoke":
		return true
	case "/etcdserverpb.KV/Txn":
		r, ok := req.(*pb.TxnRequest)
		return ok && writesAny(r)
	}
	return false
}

// errMoved ends a moved tenant's streams, so its clients reconnect and
// are forwarded.
var errMoved = errors.New("the tenant moved to another datastore")

// movedStatus is what a stream ended by a move answers: Unavailable, which
// etcd's client retries on a new stream.
var movedStatus = status.Error(codes.Unavailable, "etcdserver: the tenant moved to another datastore; reconnect")

// outgoing carries the tenant's require-leader metadata on to the
// destination.
func outgoing(ctx context.Context) context.Context {
	if md, ok := metadata.FromIncomingContext(ctx); ok && len(md.Get(rpctypes.MetadataRequireLeaderKey)) > 0 {
		return metadata.AppendToOutgoingContext(ctx, rpctypes.MetadataRequireLeaderKey, rpctypes.MetadataHasLeader)
	}
	return ctx
}

// trackStream registers a tenant stream so a move can end it; the
// returned function forgets it.
func (t *tenant) trackStream(cancel context.CancelCauseFunc) func() {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.streams == nil {
		t.streams = map[int64]context.CancelCauseFunc{}
	}
	t.nextStream++
	id := t.nextStream
	t.streams[id] = cancel
	return func() {
		t.mu.Lock()
		defer t.mu.Unlock()
		delete(t.streams, id)
	}
}

// endStreams ends every stream tenant id has open on this replica.
func (ts *tenants) endStreams(id string) {
	ts.mu.Lock()
	t := ts.m[id]
	ts.mu.Unlock()
	if t == nil {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, cancel := range t.streams {
		cancel(errMoved)
	}
}
