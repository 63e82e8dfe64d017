package gateway

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net"
	"net/http"
	"path"
	"sync"
	"time"

	"github.com/go-logr/logr"
	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/proxy/grpcproxy"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/status"

	"kubinception.dev/kubinception/internal/datastore"
)

// Gateway is one etcd gateway: New prepares it (connects to the datastore
// and binds its listeners), Run serves until its context ends.
type Gateway struct {
	cfg Config
	log logr.Logger
	// cli is the one datastore client every tenant's requests go through.
	cli *clientv3.Client

	tls         *tlsFiles
	tenants     *tenants
	usage       *usageTracker
	compactions *compactions
	pauses      *pauses
	queue       *fairQueue
	metrics     *metrics

	// usageMirror and compactionMirror keep usage and compactions up to
	// date with the datastore.
	usageMirror, compactionMirror *prefixMirror
	// pauseMirror keeps the tenants' pauses up to date.
	pauseMirror *prefixMirror

	lis      net.Listener
	httpLis  net.Listener
	adminLis net.Listener
}

// seedPageSize is the number of keys read per page while counting usage.
const seedPageSize = 1000

// leaseSweep is how often the leases tenants are known to own are
// forgotten (and looked up again on use).
const leaseSweep = 10 * time.Minute

// New checks cfg, reads the certificates, connects to the datastore and
// binds the listeners (so Addr and HTTPAddr are known before Run).
func New(cfg Config) (*Gateway, error) {
	if err := cfg.validate(); err != nil {
		return nil, fmt.Errorf("gateway configuration: %w", err)
	}
	files := &tlsFiles{certFile: cfg.ServingCertFile, keyFile: cfg.ServingKeyFile, caFile: cfg.TenantCAFile}
	if err := files.load(); err != nil {
		return nil, err
	}
	cli, err := datastore.Connect(cfg.Datastore)
	if err != nil {
		return nil, fmt.Errorf("connect to the datastore: %w", err)
	}
	g := &Gateway{
		cfg:         cfg,
		log:         cfg.Logger,
		cli:         cli,
		tls:         files,
		usage:       newUsageTracker(),
		compactions: newCompactions(cli, cfg.Logger.WithName("compaction")),
		pauses:      newPauses(cli, cfg.Logger.WithName("pause")),
		queue:       newFairQueue(cfg.MaxInFlight, cfg.MaxQueuedPerTenant),
	}
	g.tenants = &tenants{g: g, m: map[string]*tenant{}}
	g.pauses.endStreams = g.tenants.endStreams
	g.usageMirror = &prefixMirror{cli: cli, prefix: datastore.TenantsPrefix, pageSize: seedPageSize, sink: g.usage, log: cfg.Logger.WithName("usage"), name: "usage"}
	g.compactionMirror = &prefixMirror{cli: cli, prefix: datastore.CompactionsPrefix, pageSize: seedPageSize, sink: g.compactions, log: cfg.Logger.WithName("compaction"), name: "compactions"}
	g.pauseMirror = &prefixMirror{cli: cli, prefix: datastore.PausesPrefix, pageSize: seedPageSize, sink: g.pauses, log: cfg.Logger.WithName("pause"), name: "pauses"}
	g.metrics = newMetrics(g)
	g.lis, err = net.Listen("tcp", cfg.ListenAddress)
	if err != nil {
		cli.Close()
		return nil, fmt.Errorf("listen for tenants: %w", err)
	}
	if cfg.HTTPAddress != "" {
		g.httpLis, err = net.Listen("tcp", cfg.HTTPAddress)
		if err != nil {
			g.lis.Close()
			cli.Close()
			return nil, fmt.Errorf("listen for metrics and probes: %w", err)
		}
	}
	if cfg.AdminAddress != "" {
		g.adminLis, err = net.Listen("tcp", cfg.AdminAddress)
		if err != nil {
			g.lis.Close()
			if g.httpLis != nil {
				g.httpLis.Close()
			}
			cli.Close()
			return nil, fmt.Errorf("listen for the admin API: %w", err)
		}
	}
	return g, nil
}

// Addr is the address tenants reach the gateway at.
func (g *Gateway) Addr() string { return g.lis.Addr().String() }

// HTTPAddr is the address of the metrics, usage and probe endpoints
// (empty when they are off).
func (g *Gateway) HTTPAddr() string {
	if g.httpLis == nil {
		return ""
	}
	return g.httpLis.Addr().String()
}

// AdminAddr is the address of the admin API (empty when it is off).
func (g *Gateway) AdminAddr() string {
	if g.adminLis == nil {
		return ""
	}
	return g.adminLis.Addr().String()
}

// Ready reports whether usage and compactions have been read from the
// datastore and their mirrors keep up with it, so quotas and compactions
// can be enforced: a replica whose watch stalled is not ready until it has
// read the datastore again.
func (g *Gateway) Ready() bool {
	return g.readiness() == nil
}

// readiness explains why the gateway is not ready (nil when it is).
func (g *Gateway) readiness() error {
	for _, m := range []*prefixMirror{g.usageMirror, g.compactionMirror, g.pauseMirror} {
		s := m.status()
		switch {
		case s.Revision == 0:
			return fmt.Errorf("%s: still reading %s from the datastore", m.name, m.prefix)
		case !s.Current:
			return fmt.Errorf("%s: the view of %s is at revision %d, the datastore at %d, last known current %s ago",
				m.name, m.prefix, s.Revision, s.DatastoreRevision, s.Staleness.Truncate(time.Second))
		}
	}
	return nil
}

func (g *Gateway) waitReady(ctx context.Context) error {
	for _, ch := range []chan struct{}{g.usage.ready, g.compactions.ready, g.pauses.ready} {
		select {
		case <-ch:
		case <-ctx.Done():
			return status.Error(codes.Unavailable, "the gateway is still reading usage from the datastore")
		}
	}
	return nil
}

// Run serves tenants until ctx ends, then stops gracefully (briefly) and
// closes the datastore client. It returns the first error that stopped a
// server.
func (g *Gateway) Run(ctx context.Context) error {
	defer g.cli.Close()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	var wg sync.WaitGroup
	background := func(f func()) {
		wg.Add(1)
		go func() { defer wg.Done(); f() }()
	}
	background(func() { g.usageMirror.run(ctx) })
	background(func() { g.compactionMirror.run(ctx) })
	background(func() { g.pauseMirror.run(ctx) })
	background(func() { g.runPauses(ctx) })
	background(func() { g.compactions.run(ctx, g.cfg.CompactionInterval, g.cfg.CompactionStaleAfter) })
	background(func() {
		t := time.NewTicker(leaseSweep)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				g.tenants.forgetLeases()
			}
		}
	})

	srv := g.grpcServer(ctx)
	errc := make(chan error, 3)
	go func() {
		g.log.Info("serving tenants", "address", g.Addr())
		errc <- srv.Serve(g.lis)
	}()
	var httpSrv *http.Server
	if g.httpLis != nil {
		httpSrv = &http.Server{Handler: g.Handler(), ReadHeaderTimeout: 10 * time.Second}
		go func() {
			g.log.Info("serving metrics, usage and probes", "address", g.HTTPAddr())
			if err := httpSrv.Serve(g.httpLis); !errors.Is(err, http.ErrServerClosed) {
				errc <- err
			}
		}()
	}

	var adminSrv *http.Server
	if g.adminLis != nil {
		adminSrv = &http.Server{Handler: g.adminHandler(), TLSConfig: g.tls.config("h2", "http/1.1"), ReadHeaderTimeout: 10 * time.Second}
		go func() {
			g.log.Info("serving the admin API", "address", g.AdminAddr())
			if err := adminSrv.ServeTLS(g.adminLis, "", ""); !errors.Is(err, http.ErrServerClosed) {
				errc <- err
			}
		}()
	}

	var err error
	select {
	case <-ctx.Done():
	case err = <-errc:
		err = fmt.Errorf("serve: %w", err)
	}
	cancel()
	stopped := make(chan struct{})
	go func() { srv.GracefulStop(); close(stopped) }()
	select {
	case <-stopped:
	case <-time.After(5 * time.Second):
		srv.Stop()
	}
	if httpSrv != nil {
		_ = httpSrv.Close()
	}
	if adminSrv != nil {
		_ = adminSrv.Close()
	}
	wg.Wait()
	return err
}

func (g *Gateway) grpcServer(ctx context.Context) *grpc.Server {
	srv := grpc.NewServer(
		grpc.Creds(credentials.NewTLS(g.tls.config("h2"))),
		grpc.UnaryInterceptor(g.unaryInterceptor),
		grpc.StreamInterceptor(g.streamInterceptor),
		// As etcd: requests up to its limit plus gRPC's overhead,
		// answers as large as a list needs.
		grpc.MaxRecvMsgSize(4<<20),
		grpc.MaxSendMsgSize(math.MaxInt32),
		grpc.MaxConcurrentStreams(math.MaxUint32),
		// Long-lived workers keep their grown stacks; a goroutine per
		// request grew one each time (with workers, bench/gateway's
		// profile shows 30 % less CPU under the request handlers).
		// Beyond 64 concurrent requests each gets a goroutine of its
		// own, as without it.
		grpc.NumStreamWorkers(64),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 5 * time.Second, PermitWithoutStream: true}),
		grpc.KeepaliveParams(keepalive.ServerParameters{Time: 2 * time.Hour, Timeout: 20 * time.Second}),
	)
	leaseProxy, _ := grpcproxy.NewLeaseProxy(ctx, g.cli)
	pb.RegisterKVServer(srv, &kvServer{g: g})
	pb.RegisterWatchServer(srv, &watchServer{g: g})
	pb.RegisterLeaseServer(srv, &leaseServer{g: g, proxy: leaseProxy})
	pb.RegisterMaintenanceServer(srv, &maintenanceServer{g: g})
	// Registered so the calls are known; the interceptors refuse them.
	pb.RegisterClusterServer(srv, &pb.UnimplementedClusterServer{})
	pb.RegisterAuthServer(srv, &pb.UnimplementedAuthServer{})
	hs := health.NewServer()
	healthpb.RegisterHealthServer(srv, hs)
	return srv
}

// admitCall identifies the tenant of a call and refuses what a tenant may
// not do.
func (g *Gateway) admitCall(ctx context.Context, fullMethod string) (context.Context, error) {
	t, err := g.tenants.identify(ctx)
	if err != nil {
		return nil, err
	}
	method := path.Base(fullMethod)
	g.metrics.requests.WithLabelValues(t.ID, method).Inc()
	if !allowed(fullMethod) {
		g.metrics.refused.WithLabelValues(t.ID, "permission").Inc()
		g.log.V(1).Info("call refused", "tenant", t.ID, "method", fullMethod)
		return nil, rpctypes.ErrGRPCPermissionDenied
	}
	if err := g.waitReady(ctx); err != nil {
		return nil, err
	}
	return context.WithValue(ctx, tenantKey{}, t), nil
}

// unaryInterceptor admits a call, holds a write while the tenant is
// paused, and forwards the calls of a tenant that moved to another
// datastore.
func (g *Gateway) unaryInterceptor(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	ctx, err := g.admitCall(ctx, info.FullMethod)
	if err != nil {
		return nil, err
	}
	t := tenantOf(ctx)
	if isWrite(info.FullMethod, req) {
		release, fwd, err := g.holdWrite(ctx, t)
		if err != nil {
			return nil, err
		}
		defer release()
		if fwd != nil {
			return fwd.unary(ctx, info.FullMethod, req)
		}
	} else if fwd := g.pauses.forward(t.ID); fwd != nil {
		return fwd.unary(ctx, info.FullMethod, req)
	}
	return handler(ctx, req)
}

func (g *Gateway) streamInterceptor(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	ctx, err := g.admitCall(ss.Context(), info.FullMethod)
	if err != nil {
		return err
	}
	t := tenantOf(ctx)
	if fwd := g.pauses.forward(t.ID); fwd != nil {
		return fwd.stream(&tenantStream{ServerStream: ss, ctx: ctx}, info.FullMethod)
	}
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	defer t.trackStream(cancel)()
	// A move between the check above and the registration would leave
	// this stream on the old datastore: check again.
	if g.pauses.forward(t.ID) != nil {
		return movedStatus
	}
	err = handler(srv, &tenantStream{ServerStream: ss, ctx: ctx})
	if errors.Is(context.Cause(ctx), errMoved) {
		return movedStatus
	}
	return err
}

// tenantStream carries the identified tenant in its context.
type tenantStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (s *tenantStream) Context() context.Context { return s.ctx }
