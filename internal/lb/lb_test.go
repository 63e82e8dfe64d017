package lb

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr/testr"

	"kubinception.dev/kubinception/internal/tunnel"
)

// directDialer stands for the tunnel: it lists the given nodes and dials
// straight (the tunnel's own tests cover the way through it).
type directDialer struct {
	mu    sync.Mutex
	nodes []tunnel.Node
}

func (d *directDialer) Dial(ctx context.Context, address string) (io.ReadWriteCloser, error) {
	var nd net.Dialer
	return nd.DialContext(ctx, "tcp", address)
}

func (d *directDialer) Nodes(context.Context) ([]tunnel.Node, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]tunnel.Node(nil), d.nodes...), nil
}

// nodePort listens on ip:port (port 0 picks one) and answers each
// connection with name.
func nodePort(t *testing.T, ip string, port int, name string) (net.Listener, int) {
	t.Helper()
	l, err := net.Listen("tcp", net.JoinHostPort(ip, strconv.Itoa(port)))
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			fmt.Fprintln(c, name)
			c.Close()
		}
	}()
	return l, l.Addr().(*net.TCPAddr).Port
}

func ask(t *testing.T, addr string) string {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	line, _ := bufio.NewReader(c).ReadString('\n')
	return strings.TrimSpace(line)
}

func TestBalancesOverHealthyNodes(t *testing.T) {
	la, port := nodePort(t, "127.0.0.2", 0, "a")
	lb2, _ := nodePort(t, "127.0.0.3", port, "b")
	defer lb2.Close()
	d := &directDialer{nodes: []tunnel.Node{{Name: "a", Addresses: []string{"127.0.0.2"}}, {Name: "b", Addresses: []string{"127.0.0.3"}}}}
	b, err := New(Config{Tunnel: d, Ports: []Port{{Name: "http", Listen: 80, NodePort: int32(port)}}, CheckEvery: 50 * time.Millisecond, Logger: testr.New(t)})
	if err != nil {
		t.Fatal(err)
	}
	front, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- b.Run(ctx, map[int32]net.Listener{80: front}) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()
	waitHealthy := func(want int) {
		t.Helper()
		deadline := time.Now().Add(20 * time.Second)
		for len(b.Healthy(int32(port))) != want {
			if time.Now().After(deadline) {
				t.Fatalf("healthy nodes %v, want %d", b.Healthy(int32(port)), want)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	waitHealthy(2)
	seen := map[string]int{}
	for range 10 {
		seen[ask(t, front.Addr().String())]++
	}
	if seen["a"] == 0 || seen["b"] == 0 || seen["a"]+seen["b"] != 10 {
		t.Errorf("answers %v, want both nodes in turn", seen)
	}

	// Node a stops answering on its node port: it leaves the rotation.
	la.Close()
	waitHealthy(1)
	for range 5 {
		if got := ask(t, front.Addr().String()); got != "b" {
			t.Errorf("with node a down: %q, want b", got)
		}
	}

	// Node b's agent goes away: no node is left, connections are closed.
	d.mu.Lock()
	d.nodes = d.nodes[:1]
	d.mu.Unlock()
	waitHealthy(0)
	if got := ask(t, front.Addr().String()); got != "" {
		t.Errorf("with no node: %q, want the connection closed", got)
	}
}

func TestParsePort(t *testing.T) {
	if p, err := ParsePort("http:80:31080"); err != nil || p != (Port{Name: "http", Listen: 80, NodePort: 31080}) {
		t.Errorf("ParsePort: %+v, %v", p, err)
	}
	for _, bad := range []string{"80:31080", "http:0:31080", "http:80:x", "http:80:70000"} {
		if _, err := ParsePort(bad); err == nil || !strings.Contains(err.Error(), bad) {
			t.Errorf("ParsePort(%q): %v, want an error naming it", bad, err)
		}
	}
}
