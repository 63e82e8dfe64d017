// Package lb is a tenant Service's load balancer, run in the admin
// cluster: it accepts TCP connections on the Service's ports and carries
// each to the Service's node port on a healthy tenant node, through the
// tenant's node tunnel (the nodes may be behind NAT).
//
// The nodes are those whose tunnel agents are connected; a node is
// healthy for a port while a connection to its node port through the
// tunnel succeeds (checked every few seconds). A connection that cannot
// reach its node is tried on the next healthy one.
package lb

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"

	"kubinception.dev/kubinception/internal/tunnel"
)

// Port is one TCP port of the Service: the load balancer listens on
// Listen and forwards to NodePort on the nodes.
type Port struct {
	Name     string
	Listen   int32
	NodePort int32
}

// ParsePort reads NAME:LISTEN:NODEPORT.
func ParsePort(s string) (Port, error) {
	var p Port
	var listen, node string
	parts := strings.SplitN(s, ":", 3)
	if len(parts) != 3 {
		return p, fmt.Errorf("port %q: want NAME:LISTEN:NODEPORT, such as http:80:31080", s)
	}
	p.Name, listen, node = parts[0], parts[1], parts[2]
	l, err1 := strconv.ParseInt(listen, 10, 32)
	n, err2 := strconv.ParseInt(node, 10, 32)
	if err1 != nil || err2 != nil || l < 1 || l > 65535 || n < 1 || n > 65535 {
		return p, fmt.Errorf("port %q: LISTEN and NODEPORT must be port numbers", s)
	}
	p.Listen, p.NodePort = int32(l), int32(n)
	return p, nil
}

// Dialer reaches tenant nodes: the tunnel's client.
type Dialer interface {
	Dial(ctx context.Context, address string) (io.ReadWriteCloser, error)
	Nodes(ctx context.Context) ([]tunnel.Node, error)
}

// Config configures a load balancer.
type Config struct {
	Tunnel Dialer
	Ports  []Port
	// CheckEvery is how often the nodes and their health are read again
	// (2 seconds when zero).
	CheckEvery time.Duration
	Logger     logr.Logger
	// Registerer takes the load balancer's metrics when not nil.
	Registerer prometheus.Registerer
}

// Balancer forwards the Service's ports to healthy nodes.
type Balancer struct {
	cfg Config

	mu sync.Mutex
	// healthy holds, by node port, the addresses of the nodes that
	// answered on it at the last check.
	healthy map[int32][]string
	next    int

	connections *prometheus.CounterVec
	nodes       *prometheus.GaugeVec
}

// New checks the configuration.
func New(cfg Config) (*Balancer, error) {
	if cfg.Tunnel == nil {
		return nil, errors.New("a tunnel client is required")
	}
	if len(cfg.Ports) == 0 {
		return nil, errors.New("at least one --port is required")
	}
	if cfg.CheckEvery == 0 {
		cfg.CheckEvery = 2 * time.Second
	}
	b := &Balancer{
		cfg: cfg, healthy: map[int32][]string{},
		connections: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "kubinception_lb_connections_total",
			Help: "Connections accepted, by port and result: ok, no_node (no healthy node), failed (no node could be reached)."}, []string{"port", "result"}),
		nodes: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "kubinception_lb_healthy_nodes",
			Help: "Nodes answering on the port's node port at the last check."}, []string{"port"}),
	}
	if cfg.Registerer != nil {
		if err := errors.Join(cfg.Registerer.Register(b.connections), cfg.Registerer.Register(b.nodes)); err != nil {
			return nil, err
		}
	}
	return b, nil
}

// Healthy returns the addresses of the nodes healthy for a node port.
func (b *Balancer) Healthy(nodePort int32) []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return slices.Clone(b.healthy[nodePort])
}

// Run checks the nodes and serves listeners (by listen port) until ctx
// ends.
func (b *Balancer) Run(ctx context.Context, listeners map[int32]net.Listener) error {
	var wg sync.WaitGroup
	defer wg.Wait()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	wg.Go(func() { b.checkLoop(ctx) })
	errc := make(chan error, len(b.cfg.Ports))
	for _, p := range b.cfg.Ports {
		l := listeners[p.Listen]
		if l == nil {
			return fmt.Errorf("no listener for port %s (%d)", p.Name, p.Listen)
		}
		stop := context.AfterFunc(ctx, func() { _ = l.Close() })
		defer stop()
		wg.Go(func() { errc <- b.serve(ctx, l, p) })
	}
	select {
	case <-ctx.Done():
		return nil
	case err := <-errc:
		return err
	}
}

func (b *Balancer) checkLoop(ctx context.Context) {
	t := time.NewTicker(b.cfg.CheckEvery)
	defer t.Stop()
	for {
		b.check(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// check reads the nodes and tries each node port on each, at once.
func (b *Balancer) check(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, max(b.cfg.CheckEvery, 5*time.Second))
	defer cancel()
	nodes, err := b.cfg.Tunnel.Nodes(ctx)
	if err != nil {
		b.cfg.Logger.Info("cannot list the tenant's nodes; keeping the last health", "error", err.Error())
		return
	}
	type probe struct {
		port int32
		addr string
	}
	var mu sync.Mutex
	ok := map[probe]bool{}
	var wg sync.WaitGroup
	for _, n := range nodes {
		if len(n.Addresses) == 0 {
			continue
		}
		for _, p := range b.cfg.Ports {
			pr := probe{p.NodePort, n.Addresses[0]}
			wg.Go(func() {
				c, err := b.cfg.Tunnel.Dial(ctx, net.JoinHostPort(pr.addr, strconv.Itoa(int(pr.port))))
				if err == nil {
					_ = c.Close()
				}
				mu.Lock()
				ok[pr] = err == nil
				mu.Unlock()
			})
		}
	}
	wg.Wait()
	healthy := map[int32][]string{}
	for _, n := range nodes {
		for _, p := range b.cfg.Ports {
			if len(n.Addresses) > 0 && ok[probe{p.NodePort, n.Addresses[0]}] {
				healthy[p.NodePort] = append(healthy[p.NodePort], n.Addresses[0])
			}
		}
	}
	b.mu.Lock()
	for _, p := range b.cfg.Ports {
		if !slices.Equal(b.healthy[p.NodePort], healthy[p.NodePort]) {
			b.cfg.Logger.Info("healthy nodes changed", "port", p.Name, "nodePort", p.NodePort, "nodes", healthy[p.NodePort])
		}
		b.nodes.WithLabelValues(p.Name).Set(float64(len(healthy[p.NodePort])))
	}
	b.healthy = healthy
	b.mu.Unlock()
}

// pick returns the healthy nodes for a node port, starting with the next
// in turn.
func (b *Balancer) pick(nodePort int32) []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	h := b.healthy[nodePort]
	if len(h) == 0 {
		return nil
	}
	b.next++
	start := b.next % len(h)
	return append(slices.Clone(h[start:]), h[:start]...)
}

func (b *Balancer) serve(ctx context.Context, l net.Listener, p Port) error {
	for {
		c, err := l.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			return fmt.Errorf("port %s: %w", p.Name, err)
		}
		go b.forward(ctx, c, p)
	}
}

// forward carries one connection to the first healthy node that accepts
// it.
func (b *Balancer) forward(ctx context.Context, c net.Conn, p Port) {
	defer c.Close()
	nodes := b.pick(p.NodePort)
	if len(nodes) == 0 {
		b.connections.WithLabelValues(p.Name, "no_node").Inc()
		return
	}
	for _, addr := range nodes {
		dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		up, err := b.cfg.Tunnel.Dial(dctx, net.JoinHostPort(addr, strconv.Itoa(int(p.NodePort))))
		cancel()
		if err != nil {
			b.cfg.Logger.V(1).Info("node did not accept a connection; trying the next", "node", addr, "port", p.Name, "error", err.Error())
			continue
		}
		b.connections.WithLabelValues(p.Name, "ok").Inc()
		tunnel.Join(c, up)
		return
	}
	b.connections.WithLabelValues(p.Name, "failed").Inc()
}
