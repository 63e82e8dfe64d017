package gateway

import (
	"context"
	"errors"
	"fmt"
	"math"
	"sync"
	"sync/atomic"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/namespace"
	"golang.org/x/time/rate"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"kubinception.dev/kubinception/internal/datastore"
)

// tenant is one tenant's view of the datastore: the shared client's KV and
// Watcher confined to its prefix by etcd's namespace wrappers, and its
// limiters.
type tenant struct {
	datastore.Tenancy
	kv      clientv3.KV
	watcher clientv3.Watcher

	mu       sync.Mutex
	limits   Limits
	readAt   time.Time
	requests *limiter
	bytes    *limiter
	// leases are leases known to be the tenant's own.
	leases map[int64]struct{}
	// writes counts the tenant's writes in flight, which a pause waits
	// for.
	writes writeGate
	// streams are the tenant's open streams, which a move ends.
	streams    map[int64]context.CancelCauseFunc
	nextStream int64
}

// maxByteBurst is the most bytes one request is charged at once, so a
// large response never exceeds the byte limiter's burst.
const maxByteBurst = 8 << 20

// tenants holds the tenants that have sent requests.
type tenants struct {
	g  *Gateway
	mu sync.Mutex
	m  map[string]*tenant
}

type tenantKey struct{}

// tenantOf is the tenant an interceptor identified for the request.
func tenantOf(ctx context.Context) *tenant {
	t, _ := ctx.Value(tenantKey{}).(*tenant)
	return t
}

// identify finds the tenant of a request from the client certificate it
// was verified with, and checks that the policy knows it.
func (ts *tenants) identify(ctx context.Context) (*tenant, error) {
	p, ok := peer.FromContext(ctx)
	if !ok {
		return nil, status.Error(codes.Unauthenticated, "no peer")
	}
	info, ok := p.AuthInfo.(credentials.TLSInfo)
	if !ok || len(info.State.VerifiedChains) == 0 || len(info.State.VerifiedChains[0]) == 0 {
		return nil, status.Error(codes.Unauthenticated, "a verified tenant client certificate is required")
	}
	cn := info.State.VerifiedChains[0][0].Subject.CommonName
	tn, err := datastore.TenancyForUser(cn)
	if err != nil {
		return nil, status.Error(codes.PermissionDenied, fmt.Sprintf("etcdserver: permission denied: certificate %q does not name a tenant", cn))
	}
	t := ts.get(tn)
	if _, err := t.currentLimits(ts.g.cfg.Policy, ts.g.cfg.PolicyRefresh, time.Now()); err != nil {
		if errors.Is(err, ErrUnknownTenant) {
			return nil, rpctypes.ErrGRPCPermissionDenied
		}
		return nil, status.Error(codes.Unavailable, fmt.Sprintf("limits of tenant %s: %v", tn.ID, err))
	}
	return t, nil
}

func (ts *tenants) get(tn datastore.Tenancy) *tenant {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	if t := ts.m[tn.ID]; t != nil {
		return t
	}
	cli := ts.g.cli
	t := &tenant{
		Tenancy: tn,
		kv:      namespace.NewKV(cli.KV, tn.Prefix),
		// Never closed: closing it would close the shared watcher.
		watcher:  namespace.NewWatcher(cli.Watcher, tn.Prefix),
		requests: newLimiter(),
		bytes:    newLimiter(),
		leases:   map[int64]struct{}{},
	}
	ts.m[tn.ID] = t
	return t
}

// currentLimits returns the tenant's limits, reading the policy again
// when the last read is older than refresh.
func (t *tenant) currentLimits(p Policy, refresh time.Duration, now time.Time) (Limits, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if !t.readAt.IsZero() && now.Sub(t.readAt) < refresh {
		return t.limits, nil
	}
	l, err := p.Limits(t.ID)
	if err != nil {
		return Limits{}, err
	}
	t.limits, t.readAt = l, now
	t.requests.set(l.RequestsPerSecond, int(math.Ceil(2*l.RequestsPerSecond)))
	t.bytes.set(l.BytesPerSecond, maxByteBurst)
	return l, nil
}

// limiter is a token bucket whose rate the policy may change while
// requests wait on it.
type limiter struct{ p atomic.Pointer[rate.Limiter] }

// newLimiter is a limiter without a limit until the first set.
func newLimiter() *limiter {
	l := &limiter{}
	l.p.Store(rate.NewLimiter(rate.Inf, 0))
	return l
}

func (l *limiter) get() *rate.Limiter { return l.p.Load() }

// set applies a rate of perSecond (0: no limit) with bursts of burst. A
// bucket that had no limit starts full, as a new tenant's does: its
// first requests may burst.
func (l *limiter) set(perSecond float64, burst int) {
	cur := l.p.Load()
	switch {
	case perSecond <= 0:
		if cur.Limit() != rate.Inf {
			l.p.Store(rate.NewLimiter(rate.Inf, 0))
		}
	case cur.Limit() == rate.Inf:
		l.p.Store(rate.NewLimiter(rate.Limit(perSecond), max(burst, 1)))
	default:
		cur.SetLimit(rate.Limit(perSecond))
		cur.SetBurst(max(burst, 1))
	}
}

func (t *tenant) quota() int64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.limits.QuotaBytes
}

// admit waits until the tenant's rates allow a request carrying n bytes
// and the fair queue gives it a slot. The returned function frees the
// slot and charges the bytes of the answer.
func (g *Gateway) admit(ctx context.Context, t *tenant, n int) (func(answer int), error) {
	start := time.Now()
	err := t.requests.get().Wait(ctx)
	if err == nil && n > 0 {
		err = t.bytes.get().WaitN(ctx, min(n, maxByteBurst))
	}
	if err == nil {
		err = g.queue.acquire(ctx, t.ID)
	}
	if waited := time.Since(start); waited > time.Millisecond {
		g.metrics.throttled.WithLabelValues(t.ID).Add(waited.Seconds())
	}
	if err != nil {
		g.metrics.refused.WithLabelValues(t.ID, "rate").Inc()
		if ctx.Err() != nil {
			return nil, status.FromContextError(ctx.Err()).Err()
		}
		if _, ok := status.FromError(err); ok {
			return nil, err
		}
		// The limiter saw that the wait would outlast the deadline.
		return nil, rpctypes.ErrGRPCRequestTooManyRequests
	}
	return func(answer int) {
		g.queue.release(t.ID)
		if answer > 0 {
			// Charged after the fact: the next request waits for it.
			r := t.bytes.get().ReserveN(time.Now(), min(answer, maxByteBurst))
			if !r.OK() {
				r.Cancel()
			}
		}
	}, nil
}
