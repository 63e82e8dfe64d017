package tunnel

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"golang.org/x/net/http2"
)

// Client reaches a tenant's nodes through its tunnel servers' client
// port, for platform components outside the control-plane pod (the
// tenant's load balancers). Its certificate must carry ClientCommonName.
// Every connection is a stream of one HTTP/2 connection to a server, kept
// open, so a connection costs no TLS handshake.
type Client struct {
	// Server is host:port of the servers' client port.
	Server string
	// TLS holds the client certificate and the CA of the servers'
	// certificate.
	TLS *tls.Config
	// Timeout bounds the server's answer (10 seconds when zero).
	Timeout time.Duration

	once sync.Once
	t    *http2.Transport
}

func (c *Client) timeout() time.Duration {
	if c.Timeout == 0 {
		return 10 * time.Second
	}
	return c.Timeout
}

func (c *Client) transport() *http2.Transport {
	c.once.Do(func() {
		t := c.TLS.Clone()
		t.NextProtos = []string{"h2"}
		if t.ServerName == "" {
			t.ServerName, _, _ = net.SplitHostPort(c.Server)
		}
		c.t = &http2.Transport{TLSClientConfig: t, ReadIdleTimeout: 15 * time.Second, PingTimeout: 10 * time.Second}
	})
	return c.t
}

// Dial opens a connection to address (host:port) from a node of the
// tenant. ctx bounds only the opening.
func (c *Client) Dial(ctx context.Context, address string) (io.ReadWriteCloser, error) {
	ctx, cancel := context.WithTimeout(ctx, c.timeout())
	defer cancel()
	st, err := connectStream(ctx, c.transport(), &url.URL{Scheme: "https", Host: c.Server}, address)
	if err != nil {
		return nil, fmt.Errorf("CONNECT %s: %w", address, err)
	}
	return st, nil
}

// Nodes lists the nodes whose agents are connected to the server that
// answers.
func (c *Client) Nodes(ctx context.Context) ([]Node, error) {
	ctx, cancel := context.WithTimeout(ctx, c.timeout())
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "https://"+c.Server+NodesPath, nil)
	if err != nil {
		return nil, err
	}
	resp, err := c.transport().RoundTrip(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 1024))
		return nil, fmt.Errorf("%s: %s: %s", NodesPath, resp.Status, strings.TrimSpace(string(msg)))
	}
	var nodes []Node
	if err := json.NewDecoder(resp.Body).Decode(&nodes); err != nil {
		return nil, fmt.Errorf("%s: %w", NodesPath, err)
	}
	return nodes, nil
}
