package tunnel

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// Client reaches a tenant's nodes through its tunnel servers' client
// port, for platform components outside the control-plane pod (the
// tenant's load balancers). Its certificate must carry ClientCommonName.
type Client struct {
	// Server is host:port of the servers' client port.
	Server string
	// TLS holds the client certificate and the CA of the servers'
	// certificate.
	TLS *tls.Config
	// Timeout bounds connecting and the server's answer (10 seconds when
	// zero).
	Timeout time.Duration
}

func (c *Client) timeout() time.Duration {
	if c.Timeout == 0 {
		return 10 * time.Second
	}
	return c.Timeout
}

func (c *Client) tlsConfig() *tls.Config {
	t := c.TLS.Clone()
	t.NextProtos = []string{"http/1.1"}
	if t.ServerName == "" {
		t.ServerName, _, _ = net.SplitHostPort(c.Server)
	}
	return t
}

// Dial opens a connection to address (host:port) from a node of the
// tenant.
func (c *Client) Dial(ctx context.Context, address string) (net.Conn, error) {
	d := &tls.Dialer{NetDialer: &net.Dialer{Timeout: c.timeout()}, Config: c.tlsConfig()}
	conn, err := d.DialContext(ctx, "tcp", c.Server)
	if err != nil {
		return nil, err
	}
	req := &http.Request{Method: http.MethodConnect, URL: &url.URL{Host: address}, Host: address, Header: http.Header{}}
	deadline := time.Now().Add(c.timeout())
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	_ = conn.SetDeadline(deadline)
	if err := req.Write(conn); err != nil {
		_ = conn.Close()
		return nil, err
	}
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, req)
	if err != nil {
		_ = conn.Close()
		return nil, fmt.Errorf("CONNECT %s: %w", address, err)
	}
	if resp.StatusCode != http.StatusOK {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 1024))
		_ = conn.Close()
		return nil, fmt.Errorf("CONNECT %s: %s: %s", address, resp.Status, strings.TrimSpace(string(msg)))
	}
	_ = conn.SetDeadline(time.Time{})
	return newBufferedConn(conn, br), nil
}

// Nodes lists the nodes whose agents are connected to the server that
// answers.
func (c *Client) Nodes(ctx context.Context) ([]Node, error) {
	hc := &http.Client{Timeout: c.timeout(), Transport: &http.Transport{
		TLSClientConfig: c.tlsConfig(), TLSNextProto: map[string]func(string, *tls.Conn) http.RoundTripper{},
		DisableKeepAlives: true,
	}}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "https://"+c.Server+NodesPath, nil)
	if err != nil {
		return nil, err
	}
	resp, err := hc.Do(req)
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
