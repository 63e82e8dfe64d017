package tunnel

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"golang.org/x/net/http2"
)

// ServerConfig configures one tunnel server replica.
type ServerConfig struct {
	// ID names this replica (its pod name); Count is the number of
	// replicas, which agents try to connect to.
	ID    string
	Count int
	// AgentTLS serves agents: the server's certificate, and the CA that
	// issued agents' certificates with client certificates required.
	AgentTLS *tls.Config
	// ClientTLS serves platform clients (Listeners.Clients): client
	// certificates with common name ClientCommonName are required.
	ClientTLS *tls.Config
	// WaitForAgent bounds how long a connection waits for an agent of
	// its node to connect (10 seconds when zero).
	WaitForAgent time.Duration
	Logger       logr.Logger
}

// Server accepts agents and carries the API server's connections to
// them.
type Server struct {
	cfg       ServerConfig
	transport *http2.Transport
	metrics   *serverMetrics

	mu     sync.Mutex
	agents []*agentConn
	// changed is closed and replaced whenever an agent connects.
	changed chan struct{}
	next    int
	ready   chan struct{}
}

// agentConn is one agent's connection to this server.
type agentConn struct {
	node      string
	addresses []string
	cc        *http2.ClientConn
	conn      *bufferedConn
	since     time.Time
}

// NewServer checks the configuration and prepares a server.
func NewServer(cfg ServerConfig) (*Server, error) {
	var errs []error
	if cfg.ID == "" {
		errs = append(errs, errors.New("a server ID (--id, the pod name) is required"))
	}
	if cfg.Count < 1 {
		errs = append(errs, fmt.Errorf("--server-count %d: there is at least one server", cfg.Count))
	}
	if cfg.AgentTLS == nil || len(cfg.AgentTLS.Certificates) == 0 && cfg.AgentTLS.GetCertificate == nil {
		errs = append(errs, errors.New("a serving certificate for agents is required"))
	}
	if cfg.AgentTLS != nil && (cfg.AgentTLS.ClientAuth != tls.RequireAndVerifyClientCert || cfg.AgentTLS.ClientCAs == nil) {
		errs = append(errs, errors.New("agents must present a client certificate: set the CA that issues them"))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	if cfg.WaitForAgent == 0 {
		cfg.WaitForAgent = 10 * time.Second
	}
	cfg.AgentTLS = withProtos(cfg.AgentTLS, "http/1.1")
	return &Server{
		cfg: cfg,
		// Pings find a dead agent connection (a node that vanished
		// without closing it) within ReadIdleTimeout + PingTimeout.
		transport: &http2.Transport{ReadIdleTimeout: 15 * time.Second, PingTimeout: 10 * time.Second},
		metrics:   newServerMetrics(),
		changed:   make(chan struct{}),
		ready:     make(chan struct{}),
	}, nil
}

// Listeners are where a server serves.
type Listeners struct {
	// Agents takes agents' connections (TLS is added here).
	Agents net.Listener
	// Socket takes the API server's CONNECT requests.
	Socket net.Listener
	// Clients, when not nil, takes platform components' CONNECT requests
	// and GET /v1/nodes (TLS is added here, with ServerConfig.ClientTLS):
	// the tenant's load balancers reach node ports through it.
	Clients net.Listener
	// HTTP, when not nil, serves /healthz and /metrics.
	HTTP net.Listener
}

// Serve serves on l until ctx ends.
func (s *Server) Serve(ctx context.Context, l Listeners) error {
	if l.Clients != nil && s.cfg.ClientTLS == nil {
		return errors.New("a client listener needs ServerConfig.ClientTLS")
	}
	// Agents switch to our own protocol, and clients use CONNECT, over
	// HTTP/1.1: no HTTP/2 on either listener.
	noH2 := map[string]func(*http.Server, *tls.Conn, http.Handler){}
	agentMux := http.NewServeMux()
	agentMux.HandleFunc(ConnectPath, s.handleAgent)
	agentSrv := &http.Server{Handler: agentMux, ReadHeaderTimeout: 10 * time.Second, TLSNextProto: noH2}
	socketSrv := &http.Server{Handler: http.HandlerFunc(s.handleConnect), ReadHeaderTimeout: 10 * time.Second}
	servers := []*http.Server{agentSrv, socketSrv}
	errc := make(chan error, 4)
	go func() { errc <- agentSrv.Serve(tls.NewListener(l.Agents, s.cfg.AgentTLS)) }()
	go func() { errc <- socketSrv.Serve(l.Socket) }()
	if l.Clients != nil {
		// Clients speak HTTP/2, so that one connection carries all their
		// streams (a TLS handshake per connection would cost each
		// connection a load balancer forwards); HTTP/1.1 CONNECT works
		// too.
		clientSrv := &http.Server{Handler: http.HandlerFunc(s.handleClient), ReadHeaderTimeout: 10 * time.Second}
		if err := http2.ConfigureServer(clientSrv, &http2.Server{}); err != nil {
			return err
		}
		clientTLS := withProtos(s.cfg.ClientTLS, "h2", "http/1.1")
		servers = append(servers, clientSrv)
		go func() { errc <- clientSrv.Serve(tls.NewListener(l.Clients, clientTLS)) }()
	}
	if l.HTTP != nil {
		mux := http.NewServeMux()
		mux.Handle("/metrics", promhttp.HandlerFor(s.metrics.registry, promhttp.HandlerOpts{}))
		mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) {
			select {
			case <-s.ready:
				_, _ = io.WriteString(w, "ok")
			default:
				http.Error(w, "not serving yet", http.StatusServiceUnavailable)
			}
		})
		httpSrv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
		servers = append(servers, httpSrv)
		go func() { errc <- httpSrv.Serve(l.HTTP) }()
	}
	close(s.ready)
	s.cfg.Logger.Info("tunnel server serving", "id", s.cfg.ID, "servers", s.cfg.Count, "agents", l.Agents.Addr().String(), "socket", l.Socket.Addr().String())

	var err error
	select {
	case <-ctx.Done():
	case err = <-errc:
	}
	for _, srv := range servers {
		_ = srv.Close()
	}
	s.mu.Lock()
	for _, a := range s.agents {
		_ = a.cc.Close()
	}
	s.mu.Unlock()
	if errors.Is(err, http.ErrServerClosed) {
		err = nil
	}
	return err
}

// EgressSelectorConfiguration sends kube-apiserver's "cluster" egress
// (nodes, pods, Services, webhooks, aggregated APIs) to the tunnel server
// listening on socket, with HTTP CONNECT.
func EgressSelectorConfiguration(socket string) []byte {
	return []byte(`apiVersion: apiserver.k8s.io/v1beta1
kind: EgressSelectorConfiguration
egressSelections:
- name: cluster
  connection:
    proxyProtocol: HTTPConnect
    transport:
      uds:
        udsName: ` + strconv.Quote(socket) + "\n")
}

// handleAgent takes an agent's request to switch protocols and makes the
// connection an HTTP/2 client connection to the agent.
func (s *Server) handleAgent(w http.ResponseWriter, r *http.Request) {
	log := s.cfg.Logger.WithValues("remote", r.RemoteAddr)
	if r.TLS == nil || len(r.TLS.VerifiedChains) == 0 || r.TLS.VerifiedChains[0][0].Subject.CommonName != AgentCommonName {
		s.metrics.refusedAgents.Inc()
		log.Info("refused an agent without an agent certificate")
		http.Error(w, "a tunnel agent certificate (common name "+AgentCommonName+") is required", http.StatusForbidden)
		return
	}
	if r.Method != http.MethodGet || !headerHasToken(r.Header, "Connection", "upgrade") || r.Header.Get("Upgrade") != Protocol {
		s.metrics.refusedAgents.Inc()
		w.Header().Set("Upgrade", Protocol)
		http.Error(w, "agents switch to "+Protocol+" with a GET and Connection: Upgrade", http.StatusUpgradeRequired)
		return
	}
	node := r.Header.Get(HeaderNode)
	addresses, err := parseAddresses(r.Header.Get(HeaderNodeAddresses))
	if node == "" || err != nil {
		s.metrics.refusedAgents.Inc()
		http.Error(w, fmt.Sprintf("header %s (the node name) and %s (its IP addresses, comma-separated) are required: %v", HeaderNode, HeaderNodeAddresses, err), http.StatusBadRequest)
		return
	}
	if slices.Contains(strings.Split(r.Header.Get(HeaderKnownServers), ","), s.cfg.ID) {
		// The agent holds a connection to this server already.
		w.Header().Set(HeaderServerID, s.cfg.ID)
		w.Header().Set(HeaderServerCount, strconv.Itoa(s.cfg.Count))
		http.Error(w, "already connected to "+s.cfg.ID, http.StatusConflict)
		return
	}
	conn, brw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		log.Error(err, "cannot take over the agent's connection")
		return
	}
	resp := &http.Response{
		StatusCode: http.StatusSwitchingProtocols, ProtoMajor: 1, ProtoMinor: 1,
		Header: http.Header{
			"Connection":      {"Upgrade"},
			"Upgrade":         {Protocol},
			HeaderServerID:    {s.cfg.ID},
			HeaderServerCount: {strconv.Itoa(s.cfg.Count)},
		},
	}
	_ = conn.SetWriteDeadline(time.Now().Add(10 * time.Second))
	if err := resp.Write(conn); err != nil {
		_ = conn.Close()
		log.Error(err, "cannot answer the agent")
		return
	}
	_ = conn.SetWriteDeadline(time.Time{})
	bc := newBufferedConn(conn, brw.Reader)
	cc, err := s.transport.NewClientConn(bc)
	if err != nil {
		_ = bc.Close()
		log.Error(err, "cannot start HTTP/2 with the agent")
		return
	}
	a := &agentConn{node: node, addresses: addresses, cc: cc, conn: bc, since: time.Now()}
	s.add(a)
	log.Info("agent connected", "node", node, "addresses", addresses)
	go func() {
		<-bc.Done()
		_ = cc.Close()
		s.remove(a)
		log.Info("agent disconnected", "node", node, "connected", time.Since(a.since).Round(time.Second).String())
	}()
}

func headerHasToken(h http.Header, name, token string) bool {
	for _, v := range h.Values(name) {
		for _, t := range strings.Split(v, ",") {
			if strings.EqualFold(strings.TrimSpace(t), token) {
				return true
			}
		}
	}
	return false
}

func parseAddresses(v string) ([]string, error) {
	var out []string
	for _, a := range strings.Split(v, ",") {
		a = strings.TrimSpace(a)
		if a == "" {
			continue
		}
		ip := net.ParseIP(a)
		if ip == nil {
			return nil, fmt.Errorf("%q is not an IP address", a)
		}
		out = append(out, ip.String())
	}
	return out, nil
}

func (s *Server) add(a *agentConn) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.agents = append(s.agents, a)
	s.metrics.agents.Set(float64(len(s.agents)))
	close(s.changed)
	s.changed = make(chan struct{})
}

func (s *Server) remove(a *agentConn) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.agents = slices.DeleteFunc(s.agents, func(b *agentConn) bool { return b == a })
	s.metrics.agents.Set(float64(len(s.agents)))
}

// pick chooses the agent for host: the newest agent of the node that
// has host as its name or one of its addresses, otherwise any agent, in
// turn: pod and Service addresses are reachable from every node, and a
// node whose own agent is away (restarting) usually from its peers. It
// returns nil and a channel closed at the next agent's arrival when no
// agent is connected.
func (s *Server) pick(host string) (*agentConn, <-chan struct{}) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var live []*agentConn
	for _, a := range s.agents {
		if a.cc.CanTakeNewRequest() {
			live = append(live, a)
		}
	}
	for i := len(live) - 1; i >= 0; i-- {
		if live[i].node == host || slices.Contains(live[i].addresses, host) {
			return live[i], nil
		}
	}
	if len(live) == 0 {
		return nil, s.changed
	}
	s.next++
	return live[s.next%len(live)], nil
}

// ErrNoAgent is returned when no agent can reach an address in time.
var ErrNoAgent = errors.New("no tunnel agent connected for this address")

// Dial opens a stream to address (host:port) through an agent. It waits
// for a fitting agent until ctx ends.
func (s *Server) Dial(ctx context.Context, address string) (io.ReadWriteCloser, error) {
	return s.dial(ctx, address)
}

func (s *Server) dial(ctx context.Context, address string) (*stream, error) {
	host, _, err := net.SplitHostPort(address)
	if err != nil {
		return nil, fmt.Errorf("address %q: %w", address, err)
	}
	var a *agentConn
	for a == nil {
		var changed <-chan struct{}
		a, changed = s.pick(host)
		if a != nil {
			break
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return nil, fmt.Errorf("%w: %s (is the tunnel agent running on the node?)", ErrNoAgent, address)
		}
	}
	st, err := connectStream(ctx, a.cc, &url.URL{Host: address}, address)
	if err != nil {
		return nil, fmt.Errorf("through the agent of %s: %w", a.node, err)
	}
	return st, nil
}

// connectStream opens an HTTP/2 CONNECT stream to address through rt (a
// connection to an agent, or a pool of connections to the servers' client
// port, which base names). Only the wait for the answer is bound by ctx;
// the stream then lives until either side closes it.
func connectStream(ctx context.Context, rt http.RoundTripper, base *url.URL, address string) (*stream, error) {
	pr, pw := io.Pipe()
	streamCtx, cancel := context.WithCancel(context.Background())
	stop := context.AfterFunc(ctx, cancel)
	req := (&http.Request{
		Method: http.MethodConnect, URL: base, Host: address,
		Header: http.Header{}, Body: pr, ContentLength: -1, Proto: "HTTP/2.0", ProtoMajor: 2,
	}).WithContext(streamCtx)
	resp, err := rt.RoundTrip(req)
	if !stop() {
		err = errors.Join(err, ctx.Err())
	}
	if err == nil && resp.StatusCode != http.StatusOK {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 1024))
		err = fmt.Errorf("%s: %s", resp.Status, strings.TrimSpace(string(msg)))
	}
	if err != nil {
		cancel()
		_ = pw.Close()
		if resp != nil {
			_ = resp.Body.Close()
		}
		return nil, err
	}
	return &stream{body: resp.Body, pw: pw, cancel: cancel}, nil
}

// stream is one CONNECT stream to an agent.
type stream struct {
	body   io.ReadCloser
	pw     *io.PipeWriter
	cancel context.CancelFunc
}

func (s *stream) Read(p []byte) (int, error)  { return s.body.Read(p) }
func (s *stream) Write(p []byte) (int, error) { return s.pw.Write(p) }
func (s *stream) CloseWrite() error           { return s.pw.Close() }
func (s *stream) Close() error {
	_ = s.pw.CloseWithError(io.ErrClosedPipe)
	err := s.body.Close()
	s.cancel()
	return err
}

// handleClient serves a platform client: CONNECT as on the socket, and
// GET NodesPath, the nodes whose agents are connected here.
func (s *Server) handleClient(w http.ResponseWriter, r *http.Request) {
	if r.TLS == nil || len(r.TLS.VerifiedChains) == 0 || r.TLS.VerifiedChains[0][0].Subject.CommonName != ClientCommonName {
		http.Error(w, "a tunnel client certificate (common name "+ClientCommonName+") is required", http.StatusForbidden)
		return
	}
	if r.Method == http.MethodGet && r.URL.Path == NodesPath {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(s.Nodes())
		return
	}
	if r.ProtoMajor < 2 {
		s.handleConnect(w, r)
		return
	}
	if r.Method != http.MethodConnect {
		http.Error(w, "only CONNECT and GET "+NodesPath+" are served here", http.StatusMethodNotAllowed)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), s.cfg.WaitForAgent)
	st, err := s.dial(ctx, r.Host)
	cancel()
	if err != nil {
		s.refuse(w, r.Host, err)
		return
	}
	s.metrics.dials.WithLabelValues("ok").Inc()
	s.metrics.streams.Inc()
	defer s.metrics.streams.Dec()
	up, down := serveStream(w, r, st)
	s.countBytes(up, down)
}

// Node is a node whose agent is connected.
type Node struct {
	Name      string   `json:"name"`
	Addresses []string `json:"addresses"`
}

// Nodes lists the nodes whose agents are connected, by name.
func (s *Server) Nodes() []Node {
	s.mu.Lock()
	defer s.mu.Unlock()
	byName := map[string]Node{}
	for _, a := range s.agents {
		if a.cc.CanTakeNewRequest() {
			byName[a.node] = Node{Name: a.node, Addresses: a.addresses}
		}
	}
	out := make([]Node, 0, len(byName))
	for _, n := range byName {
		out = append(out, n)
	}
	slices.SortFunc(out, func(a, b Node) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// refuse answers a connection that could not be made: 503 when no agent
// was there, 502 when the agent could not dial.
func (s *Server) refuse(w http.ResponseWriter, address string, err error) {
	code, result := http.StatusBadGateway, "failed"
	if errors.Is(err, ErrNoAgent) {
		code, result = http.StatusServiceUnavailable, "no_agent"
	}
	s.metrics.dials.WithLabelValues(result).Inc()
	s.cfg.Logger.V(1).Info("connection refused", "address", address, "reason", err.Error())
	http.Error(w, err.Error(), code)
}

// handleConnect serves the API server's CONNECT requests on the socket.
func (s *Server) handleConnect(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodConnect {
		http.Error(w, "only CONNECT is served here", http.StatusMethodNotAllowed)
		return
	}
	address := r.Host
	ctx, cancel := context.WithTimeout(r.Context(), s.cfg.WaitForAgent)
	st, err := s.dial(ctx, address)
	cancel()
	if err != nil {
		s.refuse(w, address, err)
		return
	}
	s.metrics.dials.WithLabelValues("ok").Inc()
	conn, brw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		_ = st.Close()
		return
	}
	// kube-apiserver refuses bytes that arrive with this answer: the
	// protocols it carries (TLS, HTTP) have the client speak first, so
	// nothing comes from the node before the API server writes.
	if _, err := io.WriteString(conn, "HTTP/1.1 200 Connection established\r\n\r\n"); err != nil {
		_ = st.Close()
		_ = conn.Close()
		return
	}
	s.metrics.streams.Inc()
	defer s.metrics.streams.Dec()
	s.countBytes(join(newBufferedConn(conn, brw.Reader), st))
}

// countBytes records what a closed connection carried each way.
func (s *Server) countBytes(toNode, fromNode int64) {
	s.metrics.bytes.WithLabelValues("to_node").Add(float64(toNode))
	s.metrics.bytes.WithLabelValues("from_node").Add(float64(fromNode))
}

type serverMetrics struct {
	registry      *prometheus.Registry
	agents        prometheus.Gauge
	streams       prometheus.Gauge
	refusedAgents prometheus.Counter
	dials         *prometheus.CounterVec
	bytes         *prometheus.CounterVec
}

func newServerMetrics() *serverMetrics {
	m := &serverMetrics{
		registry: prometheus.NewRegistry(),
		agents: prometheus.NewGauge(prometheus.GaugeOpts{Name: "kubinception_tunnel_agents",
			Help: "Agent connections this server holds."}),
		streams: prometheus.NewGauge(prometheus.GaugeOpts{Name: "kubinception_tunnel_streams",
			Help: "Connections of the API server carried now."}),
		refusedAgents: prometheus.NewCounter(prometheus.CounterOpts{Name: "kubinception_tunnel_agents_refused_total",
			Help: "Agent connections refused (no agent certificate, or a malformed request)."}),
		dials: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "kubinception_tunnel_connections_total",
			Help: "The API server's connections, by result: ok, no_agent (none connected for the address in time), failed (the agent could not dial)."}, []string{"result"}),
		bytes: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "kubinception_tunnel_bytes_total",
			Help: "Bytes carried for closed connections, by direction."}, []string{"direction"}),
	}
	m.registry.MustRegister(m.agents, m.streams, m.refusedAgents, m.dials, m.bytes)
	return m
}

// withProtos is cfg offering the application protocols protos (ALPN),
// also in the configuration its GetConfigForClient returns (one that
// reads its certificate files at every handshake), which crypto/tls uses
// in place of cfg.
func withProtos(cfg *tls.Config, protos ...string) *tls.Config {
	c := cfg.Clone()
	c.NextProtos = protos
	if get := cfg.GetConfigForClient; get != nil {
		c.GetConfigForClient = func(hello *tls.ClientHelloInfo) (*tls.Config, error) {
			per, err := get(hello)
			if err != nil || per == nil {
				return per, err
			}
			per = per.Clone()
			per.NextProtos = protos
			return per, nil
		}
	}
	return c
}
