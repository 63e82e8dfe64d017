package frontdoor

import (
	"context"
	"errors"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
)

// Activity learns that a tenant is used. Touch must not block for long:
// it is called on every connection. wake says a connection waits for the
// tenant's API server, which does not answer: it is always passed on.
type Activity interface {
	Touch(ctx context.Context, lease string, wake bool)
}

// Server is the front door's proxy.
type Server struct {
	// Dial opens connections to backends (a net.Dialer's when nil).
	Dial func(ctx context.Context, network, address string) (net.Conn, error)
	// Activity hears of every connection and of every wait for a
	// backend; nil hears nothing.
	Activity Activity
	// HelloTimeout bounds reading the ClientHello (10 s when zero).
	HelloTimeout time.Duration
	// HoldTimeout is how long a connection is held while its backend
	// does not answer, a hibernated tenant waking (90 s when zero).
	HoldTimeout time.Duration
	// ActiveEvery is how often tenants with open connections are
	// reported active (20 s when zero): a watch held open by a kubelet
	// is use.
	ActiveEvery time.Duration
	Log         logr.Logger
	Metrics     *Metrics

	table  atomic.Pointer[Table]
	open   atomic.Int64
	mu     sync.Mutex
	active map[string]int
}

// Metrics are the front door's Prometheus metrics.
type Metrics struct {
	Connections *prometheus.CounterVec
	Held        prometheus.Histogram
	Open        prometheus.Gauge
}

// NewMetrics registers the front door's metrics with reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		Connections: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "kubinception_frontdoor_connections_total",
			Help: "Connections by outcome: proxied, unknown_name (refused), no_hello, backend_unavailable (held past the hold timeout)."}, []string{"outcome"}),
		Held: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "kubinception_frontdoor_held_seconds",
			Help: "How long connections waited for a backend that did not answer at first (a tenant waking).", Buckets: prometheus.ExponentialBuckets(0.1, 2, 12)}),
		Open: prometheus.NewGauge(prometheus.GaugeOpts{Name: "kubinception_frontdoor_open_connections", Help: "Connections being proxied."}),
	}
	if reg != nil {
		reg.MustRegister(m.Connections, m.Held, m.Open)
	}
	return m
}

// SetTable replaces the routes.
func (s *Server) SetTable(t Table) { s.table.Store(&t) }

// Lookup finds a server name's target in the current routes.
func (s *Server) Lookup(name string) (Target, bool) {
	t := s.table.Load()
	if t == nil {
		return Target{}, false
	}
	return t.Lookup(name)
}

// Serve accepts connections on ln until ctx ends, then closes ln; open
// connections are left to finish.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	if s.Metrics == nil {
		s.Metrics = NewMetrics(nil)
	}
	go func() {
		<-ctx.Done()
		_ = ln.Close()
	}()
	go s.reportActive(ctx)
	for {
		conn, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			return err
		}
		go s.handle(ctx, conn)
	}
}

func (s *Server) handle(ctx context.Context, conn net.Conn) {
	defer conn.Close()
	log := s.Log.WithValues("client", conn.RemoteAddr().String())
	_ = conn.SetReadDeadline(time.Now().Add(orDefault(s.HelloTimeout, 10*time.Second)))
	name, hello, err := ReadServerName(conn)
	if err != nil {
		s.Metrics.Connections.WithLabelValues("no_hello").Inc()
		log.V(1).Info("no TLS ClientHello", "error", err.Error())
		return
	}
	_ = conn.SetReadDeadline(time.Time{})
	target, ok := s.Lookup(name)
	if !ok {
		s.Metrics.Connections.WithLabelValues("unknown_name").Inc()
		log.Info("refused: no tenant has this name", "serverName", name)
		return
	}
	log = log.WithValues("tenant", target.Tenant, "serverName", name)
	s.touch(ctx, target.Lease, false)
	backend, err := s.dialHeld(ctx, target, log)
	if err != nil {
		s.Metrics.Connections.WithLabelValues("backend_unavailable").Inc()
		log.Info("backend did not answer within the hold timeout", "backend", target.Backend, "error", err.Error())
		return
	}
	defer backend.Close()
	s.Metrics.Connections.WithLabelValues("proxied").Inc()
	if _, err := backend.Write(hello); err != nil {
		return
	}
	s.track(target.Lease, 1)
	defer s.track(target.Lease, -1)
	s.open.Add(1)
	defer s.open.Add(-1)
	s.Metrics.Open.Inc()
	defer s.Metrics.Open.Dec()
	join(conn, backend)
}

// Drain waits until no connection is open or timeout passes, and
// returns how many are still open.
func (s *Server) Drain(timeout time.Duration) int64 {
	deadline := time.Now().Add(timeout)
	for s.open.Load() > 0 && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
	}
	return s.open.Load()
}

// dialHeld dials the target's backend. While it does not answer (a
// hibernated tenant has no API server behind its Service) the client's
// connection is held: the tenant is asked to wake, and the dial is
// retried until it answers or the hold timeout passes.
func (s *Server) dialHeld(ctx context.Context, target Target, log logr.Logger) (net.Conn, error) {
	dial := s.Dial
	if dial == nil {
		dial = (&net.Dialer{}).DialContext
	}
	hold := orDefault(s.HoldTimeout, 90*time.Second)
	ctx, cancel := context.WithTimeout(ctx, hold)
	defer cancel()
	var start, lastWake time.Time
	// A refused dial costs a packet (a Service without a ready address
	// is rejected at once), so a held connection tries every 100ms: it
	// reaches a woken API server within that of its address turning
	// ready.
	const retry = 100 * time.Millisecond
	for {
		dctx, dcancel := context.WithTimeout(ctx, 3*time.Second)
		c, err := dial(dctx, "tcp", target.Backend)
		dcancel()
		if err == nil {
			if !start.IsZero() {
				s.Metrics.Held.Observe(time.Since(start).Seconds())
				log.Info("backend answered after holding the connection", "held", time.Since(start).String())
			}
			return c, nil
		}
		now := time.Now()
		if start.IsZero() {
			start = now
			log.Info("backend does not answer: holding the connection and asking for the tenant to wake", "backend", target.Backend, "error", err.Error())
		}
		if now.Sub(lastWake) > 10*time.Second {
			s.touch(ctx, target.Lease, true)
			lastWake = now
		}
		select {
		case <-ctx.Done():
			return nil, err
		case <-time.After(retry):
		}
	}
}

func (s *Server) touch(ctx context.Context, lease string, wake bool) {
	if s.Activity != nil {
		s.Activity.Touch(ctx, lease, wake)
	}
}

func (s *Server) track(lease string, d int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.active == nil {
		s.active = map[string]int{}
	}
	s.active[lease] += d
	if s.active[lease] <= 0 {
		delete(s.active, lease)
	}
}

// reportActive reports the tenants with open connections as active.
func (s *Server) reportActive(ctx context.Context) {
	t := time.NewTicker(orDefault(s.ActiveEvery, 20*time.Second))
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		s.mu.Lock()
		leases := make([]string, 0, len(s.active))
		for l := range s.active {
			leases = append(leases, l)
		}
		s.mu.Unlock()
		for _, l := range leases {
			s.touch(ctx, l, false)
		}
	}
}

// join copies both ways until both directions end, passing on each
// side's end of writing as a half close.
func join(a, b net.Conn) {
	var wg sync.WaitGroup
	copyHalf := func(dst, src net.Conn) {
		defer wg.Done()
		_, _ = io.Copy(dst, src)
		if cw, ok := dst.(interface{ CloseWrite() error }); ok {
			_ = cw.CloseWrite()
		} else {
			_ = dst.Close()
		}
	}
	wg.Add(2)
	go copyHalf(a, b)
	go copyHalf(b, a)
	wg.Wait()
}

func orDefault(d, def time.Duration) time.Duration {
	if d <= 0 {
		return def
	}
	return d
}
