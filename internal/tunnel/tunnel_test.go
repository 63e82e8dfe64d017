package tunnel

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/go-logr/logr/funcr"

	"kubinception.dev/kubinception/internal/pki"
)

// testPKI is a tenant CA with a server certificate for 127.0.0.1 and an
// agent certificate.
type testPKI struct {
	ca, server, agent *pki.KeyPair
}

func newTestPKI(t testing.TB) *testPKI {
	t.Helper()
	now := time.Now()
	ca, err := pki.NewCA("tenant-ca", now)
	if err != nil {
		t.Fatal(err)
	}
	server, err := ca.Issue(pki.Spec{CommonName: "kube-apiserver", Server: true, IPs: []net.IP{net.IPv4(127, 0, 0, 1)}}, now)
	if err != nil {
		t.Fatal(err)
	}
	agent, err := ca.Issue(pki.Spec{CommonName: AgentCommonName, Client: true}, now)
	if err != nil {
		t.Fatal(err)
	}
	return &testPKI{ca: ca, server: server, agent: agent}
}

func (p *testPKI) pool() *x509.CertPool {
	pool := x509.NewCertPool()
	pool.AddCert(p.ca.Cert)
	return pool
}

func tlsCert(t testing.TB, kp *pki.KeyPair) tls.Certificate {
	t.Helper()
	c, err := tls.X509KeyPair(kp.CertPEM, kp.KeyPEM)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// testServer is a server replica on loopback and a Unix socket.
type testServer struct {
	*Server
	agentAddr  string
	clientAddr string
	socket     string
	stop       func()
}

func startServer(t testing.TB, p *testPKI, id string, count int, agentAddr string) *testServer {
	t.Helper()
	if agentAddr == "" {
		agentAddr = "127.0.0.1:0"
	}
	s, err := NewServer(ServerConfig{
		ID: id, Count: count, WaitForAgent: 2 * time.Second, Logger: testLogger(t),
		AgentTLS:  &tls.Config{Certificates: []tls.Certificate{tlsCert(t, p.server)}, ClientCAs: p.pool(), ClientAuth: tls.RequireAndVerifyClientCert},
		ClientTLS: &tls.Config{Certificates: []tls.Certificate{tlsCert(t, p.server)}, ClientCAs: p.pool(), ClientAuth: tls.RequireAndVerifyClientCert},
	})
	if err != nil {
		t.Fatal(err)
	}
	var agents net.Listener
	for i := 0; ; i++ {
		// A restarted server takes its port back; the old listener's
		// socket may linger for a moment.
		agents, err = net.Listen("tcp", agentAddr)
		if err == nil || i == 50 {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		t.Fatal(err)
	}
	socket := filepath.Join(t.TempDir(), "tunnel.sock")
	sl, err := net.Listen("unix", socket)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	clients, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { done <- s.Serve(ctx, Listeners{Agents: agents, Socket: sl, Clients: clients}) }()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("server %s: %v", id, err)
			}
		})
	}
	t.Cleanup(stop)
	return &testServer{Server: s, agentAddr: agents.Addr().String(), clientAddr: clients.Addr().String(), socket: socket, stop: stop}
}

type testAgent struct {
	*Agent
	stop func()
}

func startAgent(t testing.TB, p *testPKI, server, node string, addresses ...string) *testAgent {
	t.Helper()
	a, err := NewAgent(AgentConfig{
		Server: server, Node: node, Addresses: addresses, DiscoverEvery: 200 * time.Millisecond, Logger: testLogger(t),
		TLS: &tls.Config{Certificates: []tls.Certificate{tlsCert(t, p.agent)}, RootCAs: p.pool()},
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = a.Run(ctx); close(done) }()
	var once sync.Once
	stop := func() { once.Do(func() { cancel(); <-done }) }
	t.Cleanup(stop)
	return &testAgent{Agent: a, stop: stop}
}

// waitFor polls cond for up to 20 seconds.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// nodeService listens on a loopback address and answers every line with
// its name and the line.
func nodeService(t testing.TB, ip, name string) string {
	t.Helper()
	return serveTCP(t, ip+":0", func(c net.Conn) {
		sc := bufio.NewScanner(c)
		sc.Buffer(make([]byte, 4<<20), 4<<20)
		for sc.Scan() {
			if _, err := fmt.Fprintf(c, "%s:%s\n", name, sc.Text()); err != nil {
				return
			}
		}
	})
}

// serveTCP listens on addr until the test ends and handles each
// connection with handle, which the connection is closed after.
func serveTCP(t testing.TB, addr string, handle func(net.Conn)) string {
	t.Helper()
	l, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				handle(c)
			}()
		}
	}()
	return l.Addr().String()
}

// connect asks the server on socket, as kube-apiserver does, for a
// connection to address.
func connect(t testing.TB, socket, address string) (net.Conn, *bufio.Reader, error) {
	t.Helper()
	c, err := net.Dial("unix", socket)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(c, "CONNECT %s HTTP/1.1\r\nHost: %s\r\n\r\n", address, "127.0.0.1")
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		c.Close()
		return nil, nil, err
	}
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(resp.Body)
		c.Close()
		return nil, nil, fmt.Errorf("%s: %s", resp.Status, strings.TrimSpace(string(body)))
	}
	if br.Buffered() > 0 {
		c.Close()
		return nil, nil, fmt.Errorf("%d bytes after the CONNECT answer: kube-apiserver refuses that", br.Buffered())
	}
	return c, br, nil
}

func roundTrip(t testing.TB, socket, address, line string) string {
	t.Helper()
	c, br, err := connect(t, socket, address)
	if err != nil {
		t.Fatalf("CONNECT %s: %v", address, err)
	}
	defer c.Close()
	fmt.Fprintln(c, line)
	got, err := br.ReadString('\n')
	if err != nil {
		t.Fatalf("read through the tunnel from %s: %v", address, err)
	}
	return strings.TrimSpace(got)
}

func TestTunnelCarriesConnectionsToNodes(t *testing.T) {
	p := newTestPKI(t)
	s := startServer(t, p, "server-0", 1, "")
	a := startAgent(t, p, s.agentAddr, "node-a", "127.0.0.2")
	startAgent(t, p, s.agentAddr, "node-b", "127.0.0.3")
	waitFor(t, "both agents", func() bool { return len(s.agentsSnapshot()) == 2 })

	addrA := nodeService(t, "127.0.0.2", "a")
	addrB := nodeService(t, "127.0.0.3", "b")
	if got := roundTrip(t, s.socket, addrA, "hello"); got != "a:hello" {
		t.Errorf("through the tunnel to %s: %q, want %q", addrA, got, "a:hello")
	}
	if got := roundTrip(t, s.socket, addrB, "hello"); got != "b:hello" {
		t.Errorf("through the tunnel to %s: %q, want %q", addrB, got, "b:hello")
	}
	// A node's address goes to that node's agent; other addresses to
	// any agent.
	for _, c := range []struct{ host, node string }{{"127.0.0.2", "node-a"}, {"127.0.0.3", "node-b"}, {"node-a", "node-a"}} {
		if got, _ := s.pick(c.host); got == nil || got.node != c.node {
			t.Errorf("pick(%s) = %v, want the agent of %s", c.host, got, c.node)
		}
	}
	if got, _ := s.pick("10.96.0.10"); got == nil {
		t.Error("no agent picked for a Service address")
	}

	// A megabyte each way, and the answer after the client half-closes.
	c, br, err := connect(t, s.socket, addrA)
	if err != nil {
		t.Fatal(err)
	}
	big := bytes.Repeat([]byte("x"), 1<<20)
	go func() {
		c.Write(append(big, '\n'))
		c.(*net.UnixConn).CloseWrite()
	}()
	got, err := io.ReadAll(br)
	c.Close()
	if err != nil || !bytes.Equal(got, append(append([]byte("a:"), big...), '\n')) {
		t.Errorf("a megabyte through the tunnel: read %d bytes (%v), want %d", len(got), err, len(big)+3)
	}

	// The agent of node-a goes away: its node is still reached, through
	// another agent.
	a.stop()
	waitFor(t, "node-a's agent to leave", func() bool { return len(s.agentsSnapshot()) == 1 })
	if got := roundTrip(t, s.socket, addrA, "again"); got != "a:again" {
		t.Errorf("with node-a's agent gone: %q, want %q", got, "a:again")
	}

	data := EgressSelectorConfiguration(s.socket)
	for _, want := range []string{"kind: EgressSelectorConfiguration", "- name: cluster", "proxyProtocol: HTTPConnect", "udsName: \"" + s.socket + "\""} {
		if !strings.Contains(string(data), want) {
			t.Errorf("egress selector configuration lacks %q:\n%s", want, data)
		}
	}
}

func (s *Server) agentsSnapshot() []*agentConn {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]*agentConn(nil), s.agents...)
}

// balancer forwards each connection to one of backends, at random, as a
// Service does.
func balancer(t *testing.T, backends ...string) string {
	t.Helper()
	return serveTCP(t, "127.0.0.1:0", func(c net.Conn) {
		n, _ := rand.Int(rand.Reader, big.NewInt(int64(len(backends))))
		b, err := net.Dial("tcp", backends[n.Int64()])
		if err != nil {
			return
		}
		join(c.(*net.TCPConn), b.(*net.TCPConn))
	})
}

func TestEveryAgentReachesEveryServer(t *testing.T) {
	p := newTestPKI(t)
	s0 := startServer(t, p, "server-0", 2, "")
	s1 := startServer(t, p, "server-1", 2, "")
	lb := balancer(t, s0.agentAddr, s1.agentAddr)
	a := startAgent(t, p, lb, "node-a", "127.0.0.2")
	waitFor(t, "the agent to reach both servers", func() bool { return len(a.Connected()) == 2 })
	// The agent keeps looking for new servers (every 200ms here); a server
	// it holds already never registers it twice, so a request can never
	// land on a connection about to close.
	for range 10 {
		if n0, n1 := len(s0.agentsSnapshot()), len(s1.agentsSnapshot()); n0 != 1 || n1 != 1 {
			t.Fatalf("agent connections registered: %d and %d, want 1 each", n0, n1)
		}
		time.Sleep(100 * time.Millisecond)
	}
	addr := nodeService(t, "127.0.0.2", "a")
	for _, s := range []*testServer{s0, s1} {
		if got := roundTrip(t, s.socket, addr, "hi"); got != "a:hi" {
			t.Errorf("through %s: %q, want %q", s.cfg.ID, got, "a:hi")
		}
	}

	// A server restarts: the agent comes back to it.
	s1.stop()
	waitFor(t, "the agent to notice", func() bool { return len(a.Connected()) == 1 })
	s1 = startServer(t, p, "server-1", 2, s1.agentAddr)
	waitFor(t, "the agent to reconnect", func() bool { return len(a.Connected()) == 2 })
	if got := roundTrip(t, s1.socket, addr, "back"); got != "a:back" {
		t.Errorf("through the restarted server: %q, want %q", got, "a:back")
	}

	// The agent restarts.
	a.stop()
	waitFor(t, "the servers to see the agent leave", func() bool {
		return len(s0.agentsSnapshot()) == 0 && len(s1.agentsSnapshot()) == 0
	})
	a = startAgent(t, p, lb, "node-a", "127.0.0.2")
	waitFor(t, "the new agent to reach both servers", func() bool { return len(a.Connected()) == 2 })
	for _, s := range []*testServer{s0, s1} {
		if got := roundTrip(t, s.socket, addr, "new"); got != "a:new" {
			t.Errorf("through %s after the agent restarted: %q, want %q", s.cfg.ID, got, "a:new")
		}
	}
}

func TestTunnelRefusals(t *testing.T) {
	p := newTestPKI(t)
	s := startServer(t, p, "server-0", 1, "")

	// No agent connected: the API server hears so once the wait is over.
	if _, _, err := connect(t, s.socket, "127.0.0.2:10250"); err == nil || !strings.Contains(err.Error(), "503") || !strings.Contains(err.Error(), "no tunnel agent") {
		t.Errorf("CONNECT with no agent: %v, want 503 naming the missing agent", err)
	}

	// Only CONNECT on the socket.
	c, err := net.Dial("unix", s.socket)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	c.Close()
	if err != nil || resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("GET on the socket: %v %v, want 405", resp, err)
	}

	// An agent certificate from another CA fails the handshake; a tenant
	// certificate that is not an agent's is refused.
	other := newTestPKI(t)
	stranger, err := NewAgent(AgentConfig{Server: s.agentAddr, Node: "x", Addresses: []string{"127.0.0.9"},
		TLS: &tls.Config{Certificates: []tls.Certificate{tlsCert(t, other.agent)}, RootCAs: p.pool()}})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, _, err := stranger.connect(context.Background(), nil); err == nil {
		t.Error("an agent certificate of another CA was accepted")
	}
	node, err := p.ca.Issue(pki.Spec{CommonName: "system:node:x", Client: true}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	impostor, err := NewAgent(AgentConfig{Server: s.agentAddr, Node: "x", Addresses: []string{"127.0.0.9"},
		TLS: &tls.Config{Certificates: []tls.Certificate{tlsCert(t, node)}, RootCAs: p.pool()}})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, _, err := impostor.connect(context.Background(), nil); err == nil || !strings.Contains(err.Error(), "403") {
		t.Errorf("a node certificate as an agent: %v, want 403", err)
	}
	if n := len(s.agentsSnapshot()); n != 0 {
		t.Errorf("%d agents registered after refusals", n)
	}

	// An address the node cannot reach: the agent's reason comes back.
	startAgent(t, p, s.agentAddr, "node-a", "127.0.0.2")
	waitFor(t, "the agent", func() bool { return len(s.agentsSnapshot()) == 1 })
	l, err := net.Listen("tcp", "127.0.0.2:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := l.Addr().String()
	l.Close()
	if _, _, err := connect(t, s.socket, closed); err == nil || !strings.Contains(err.Error(), "502") || !strings.Contains(err.Error(), "node node-a cannot connect") {
		t.Errorf("CONNECT to a closed port: %v, want 502 with the node's reason", err)
	}
}

func TestConfigErrors(t *testing.T) {
	if _, err := NewServer(ServerConfig{}); err == nil || !strings.Contains(err.Error(), "--id") || !strings.Contains(err.Error(), "serving certificate") {
		t.Errorf("empty server configuration: %v", err)
	}
	if _, err := NewAgent(AgentConfig{Server: "nohost", Addresses: []string{"not-an-ip"}}); err == nil ||
		!strings.Contains(err.Error(), "--server") || !strings.Contains(err.Error(), "--node-name") || !strings.Contains(err.Error(), "not-an-ip") {
		t.Errorf("bad agent configuration: %v", err)
	}
}

func TestClientPort(t *testing.T) {
	p := newTestPKI(t)
	s := startServer(t, p, "server-0", 1, "")
	startAgent(t, p, s.agentAddr, "node-b", "127.0.0.3")
	startAgent(t, p, s.agentAddr, "node-a", "127.0.0.2")
	waitFor(t, "both agents", func() bool { return len(s.agentsSnapshot()) == 2 })
	kp, err := p.ca.Issue(pki.Spec{CommonName: ClientCommonName, Client: true}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	c := &Client{Server: s.clientAddr, TLS: &tls.Config{Certificates: []tls.Certificate{tlsCert(t, kp)}, RootCAs: p.pool()}}
	nodes, err := c.Nodes(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(nodes) != "[{node-a [127.0.0.2]} {node-b [127.0.0.3]}]" {
		t.Errorf("nodes %v, want node-a and node-b with their addresses", nodes)
	}
	addr := nodeService(t, "127.0.0.3", "b")
	conn, err := c.Dial(context.Background(), addr)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintln(conn, "via the client port")
	got, err := bufio.NewReader(conn).ReadString('\n')
	conn.Close()
	if err != nil || strings.TrimSpace(got) != "b:via the client port" {
		t.Errorf("through the client port: %q, %v", got, err)
	}

	// An agent's certificate opens no client port.
	agentCert := &Client{Server: s.clientAddr, TLS: &tls.Config{Certificates: []tls.Certificate{tlsCert(t, p.agent)}, RootCAs: p.pool()}}
	if _, err := agentCert.Nodes(context.Background()); err == nil || !strings.Contains(err.Error(), "403") {
		t.Errorf("nodes with an agent certificate: %v, want 403", err)
	}
	if _, err := agentCert.Dial(context.Background(), addr); err == nil || !strings.Contains(err.Error(), "403") {
		t.Errorf("CONNECT with an agent certificate: %v, want 403", err)
	}
}

// testLogger keeps what servers and agents log and shows it when the test
// fails: their goroutines may log after the test ends, where t.Log may
// not be called.
func testLogger(t testing.TB) logr.Logger {
	t.Helper()
	var mu sync.Mutex
	var lines []string
	t.Cleanup(func() {
		if t.Failed() {
			mu.Lock()
			defer mu.Unlock()
			t.Logf("log:\n%s", strings.Join(lines, "\n"))
		}
	})
	return funcr.New(func(prefix, args string) {
		mu.Lock()
		defer mu.Unlock()
		lines = append(lines, time.Now().Format("15:04:05.000")+" "+prefix+" "+args)
	}, funcr.Options{})
}

// BenchmarkThroughput reads from a node through the tunnel (socket,
// server, HTTP/2 to the agent, the agent's dial), in process on
// loopback: the tunnel's own ceiling, with nothing else on the cores.
//
//	go test -run '^$' -bench Throughput ./internal/tunnel
func BenchmarkThroughput(b *testing.B) {
	const size = 64 << 20
	p := newTestPKI(b)
	s := startServer(b, p, "server-0", 1, "")
	startAgent(b, p, s.agentAddr, "node-a", "127.0.0.2")
	waitFor(b, "the agent", func() bool { return len(s.agentsSnapshot()) == 1 })
	chunk := bytes.Repeat([]byte("x"), 256<<10)
	addr := serveTCP(b, "127.0.0.2:0", func(c net.Conn) {
		// The client speaks first, as kube-apiserver's protocols do.
		if _, err := bufio.NewReader(c).ReadString('\n'); err != nil {
			return
		}
		for left := size; left > 0; left -= len(chunk) {
			if _, err := c.Write(chunk[:min(left, len(chunk))]); err != nil {
				return
			}
		}
	})
	b.SetBytes(size)
	for b.Loop() {
		c, br, err := connect(b, s.socket, addr)
		if err != nil {
			b.Fatal(err)
		}
		fmt.Fprintln(c, "go")
		n, err := io.Copy(io.Discard, br)
		c.Close()
		if err != nil || n != size {
			b.Fatalf("read %d of %d bytes: %v", n, size, err)
		}
	}
}
