package tunnel

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/go-logr/logr"
	"golang.org/x/net/http2"
	"k8s.io/apimachinery/pkg/util/wait"
)

// AgentConfig configures the agent on one node.
type AgentConfig struct {
	// Server is the tunnel servers' address (host:port): every replica
	// is reached through it.
	Server string
	// TLS holds the agent certificate and the CA the servers' certificate
	// is checked against (ServerName defaults to Server's host).
	TLS *tls.Config
	// Node and Addresses describe the node the agent runs on.
	Node      string
	Addresses []string
	// DiscoverEvery is how often an agent that holds a connection to
	// every server it knows of dials once more, to find a replica that
	// replaced another (15 seconds when zero).
	DiscoverEvery time.Duration
	// DialTimeout bounds connecting to the servers and to the addresses
	// the servers ask for (10 seconds when zero).
	DialTimeout time.Duration
	Logger      logr.Logger
}

// Agent keeps one connection to every tunnel server replica and dials,
// from its node, what the servers ask for.
type Agent struct {
	cfg AgentConfig
	h2  *http2.Server

	mu      sync.Mutex
	servers map[string]*bufferedConn
}

// NewAgent checks the configuration and prepares an agent.
func NewAgent(cfg AgentConfig) (*Agent, error) {
	var errs []error
	host, _, err := net.SplitHostPort(cfg.Server)
	if err != nil {
		errs = append(errs, fmt.Errorf("--server %q must be host:port: %w", cfg.Server, err))
	}
	if cfg.Node == "" {
		errs = append(errs, errors.New("--node-name is required"))
	}
	if _, err := parseAddresses(strings.Join(cfg.Addresses, ",")); err != nil {
		errs = append(errs, fmt.Errorf("--node-address: %w", err))
	}
	if cfg.TLS == nil || len(cfg.TLS.Certificates) == 0 || cfg.TLS.RootCAs == nil {
		errs = append(errs, errors.New("an agent certificate and the servers' CA are required"))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	t := cfg.TLS.Clone()
	t.NextProtos = []string{"http/1.1"}
	if t.ServerName == "" {
		t.ServerName = host
	}
	cfg.TLS = t
	if cfg.DiscoverEvery == 0 {
		cfg.DiscoverEvery = 15 * time.Second
	}
	if cfg.DialTimeout == 0 {
		cfg.DialTimeout = 10 * time.Second
	}
	return &Agent{
		cfg:     cfg,
		h2:      &http2.Server{ReadIdleTimeout: 15 * time.Second, PingTimeout: 10 * time.Second},
		servers: map[string]*bufferedConn{},
	}, nil
}

// Connected returns the IDs of the servers the agent holds a connection
// to.
func (a *Agent) Connected() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	var ids []string
	for id := range a.servers {
		ids = append(ids, id)
	}
	return ids
}

// Run connects to the servers until ctx ends: while it knows of more
// servers than it holds connections to it dials again at once (with a
// backoff after failures), otherwise every DiscoverEvery.
func (a *Agent) Run(ctx context.Context) error {
	log := a.cfg.Logger
	backoff := a.backoff()
	count := 1
	ended := make(chan string, 16)
	var wg sync.WaitGroup
	defer wg.Wait()
	for ctx.Err() == nil {
		a.mu.Lock()
		held := len(a.servers)
		a.mu.Unlock()
		if held >= count {
			t := time.NewTimer(a.cfg.DiscoverEvery)
			select {
			case <-ctx.Done():
				t.Stop()
				continue
			case <-ended:
				t.Stop()
			case <-t.C:
			}
		}
		id, n, conn, err := a.connect(ctx, a.Connected())
		if errors.Is(err, errDuplicate) {
			// The Service sent us to a server we hold already; another
			// dial will likely reach another.
			count = n
			sleep(ctx, 100*time.Millisecond)
			continue
		}
		if err != nil {
			if ctx.Err() != nil {
				break
			}
			d := backoff.Step()
			log.Info("cannot connect to the tunnel server; retrying", "server", a.cfg.Server, "in", d.Round(time.Millisecond).String(), "error", err.Error())
			sleep(ctx, d)
			continue
		}
		backoff = a.backoff()
		count = n
		a.mu.Lock()
		_, dup := a.servers[id]
		if !dup {
			a.servers[id] = conn
		}
		a.mu.Unlock()
		if dup {
			// Connected elsewhere meanwhile (a server restarted under
			// the same name): keep the older connection.
			_ = conn.Close()
			continue
		}
		log.Info("connected to a tunnel server", "server", id, "servers", count)
		wg.Add(1)
		go func() {
			defer wg.Done()
			a.serve(ctx, conn)
			a.mu.Lock()
			if a.servers[id] == conn {
				delete(a.servers, id)
			}
			a.mu.Unlock()
			log.Info("disconnected from a tunnel server", "server", id)
			select {
			case ended <- id:
			default:
			}
		}()
	}
	return nil
}

func (a *Agent) backoff() wait.Backoff {
	return wait.Backoff{Duration: 250 * time.Millisecond, Factor: 2, Jitter: 0.2, Steps: math.MaxInt32, Cap: 15 * time.Second}
}

func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

// errDuplicate says the server reached is one the agent holds already.
var errDuplicate = errors.New("already connected to this server")

// connect opens one connection to a server and switches it to the
// tunnel protocol; it returns the server's ID and replica count. A server
// among known answers errDuplicate (with its ID and count) instead.
func (a *Agent) connect(ctx context.Context, known []string) (string, int, *bufferedConn, error) {
	d := &tls.Dialer{NetDialer: &net.Dialer{Timeout: a.cfg.DialTimeout, KeepAlive: 15 * time.Second}, Config: a.cfg.TLS}
	c, err := d.DialContext(ctx, "tcp", a.cfg.Server)
	if err != nil {
		return "", 0, nil, err
	}
	req, err := http.NewRequest(http.MethodGet, "https://"+a.cfg.Server+ConnectPath, nil)
	if err != nil {
		_ = c.Close()
		return "", 0, nil, err
	}
	req.Header.Set("Connection", "Upgrade")
	req.Header.Set("Upgrade", Protocol)
	req.Header.Set(HeaderNode, a.cfg.Node)
	req.Header.Set(HeaderNodeAddresses, strings.Join(a.cfg.Addresses, ","))
	if len(known) > 0 {
		req.Header.Set(HeaderKnownServers, strings.Join(known, ","))
	}
	_ = c.SetDeadline(time.Now().Add(a.cfg.DialTimeout))
	if err := req.Write(c); err != nil {
		_ = c.Close()
		return "", 0, nil, err
	}
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, req)
	if err != nil {
		_ = c.Close()
		return "", 0, nil, fmt.Errorf("read the server's answer: %w", err)
	}
	if resp.StatusCode == http.StatusConflict {
		_ = c.Close()
		n, _ := strconv.Atoi(resp.Header.Get(HeaderServerCount))
		return resp.Header.Get(HeaderServerID), max(n, 1), nil, errDuplicate
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 1024))
		_ = c.Close()
		return "", 0, nil, fmt.Errorf("the server refused: %s: %s", resp.Status, strings.TrimSpace(string(msg)))
	}
	_ = c.SetDeadline(time.Time{})
	id := resp.Header.Get(HeaderServerID)
	n, err := strconv.Atoi(resp.Header.Get(HeaderServerCount))
	if id == "" || err != nil || n < 1 {
		_ = c.Close()
		return "", 0, nil, fmt.Errorf("the server did not say who it is (%s %q, %s %q)", HeaderServerID, id, HeaderServerCount, resp.Header.Get(HeaderServerCount))
	}
	return id, n, newBufferedConn(c, br), nil
}

// serve answers one server's CONNECT requests until the connection or
// ctx ends.
func (a *Agent) serve(ctx context.Context, conn *bufferedConn) {
	stop := context.AfterFunc(ctx, func() { _ = conn.Close() })
	defer stop()
	a.h2.ServeConn(conn, &http2.ServeConnOpts{Context: ctx, Handler: http.HandlerFunc(a.handleConnect)})
	_ = conn.Close()
}

// handleConnect dials the address a server asks for and joins it to the
// request's stream.
func (a *Agent) handleConnect(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodConnect {
		http.Error(w, "only CONNECT is served here", http.StatusMethodNotAllowed)
		return
	}
	d := net.Dialer{Timeout: a.cfg.DialTimeout}
	c, err := d.DialContext(r.Context(), "tcp", r.Host)
	if err != nil {
		http.Error(w, fmt.Sprintf("node %s cannot connect to %s: %v", a.cfg.Node, r.Host, err), http.StatusBadGateway)
		return
	}
	serveStream(w, r, c.(*net.TCPConn))
}
