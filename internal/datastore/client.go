package datastore

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// Credentials reach a datastore: its endpoints, the CA that signed its
// serving certificates, and a client certificate (whose common name is the
// etcd user). Username and Password are used instead of the certificate's
// name when set.
type Credentials struct {
	Endpoints []string
	CAPEM     []byte
	CertPEM   []byte
	KeyPEM    []byte
	Username  string
	Password  string
}

// Connect opens a client. It does not wait for the cluster to answer.
func Connect(c Credentials) (*clientv3.Client, error) {
	if len(c.Endpoints) == 0 {
		return nil, errors.New("datastore credentials list no endpoints")
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(c.CAPEM) {
		return nil, errors.New("datastore CA is not a PEM certificate")
	}
	cert, err := tls.X509KeyPair(c.CertPEM, c.KeyPEM)
	if err != nil {
		return nil, fmt.Errorf("datastore client certificate: %w", err)
	}
	return clientv3.New(clientv3.Config{
		Endpoints:            c.Endpoints,
		DialTimeout:          5 * time.Second,
		DialKeepAliveTime:    10 * time.Second,
		DialKeepAliveTimeout: 5 * time.Second,
		TLS:                  &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12},
		Username:             c.Username,
		Password:             c.Password,
		Logger:               zap.NewNop(),
	})
}

// EnableAuth turns on etcd authentication with a root user holding the
// root role and the given password. It is idempotent: when authentication
// is already on it only checks that the caller is still root.
func EnableAuth(ctx context.Context, cli *clientv3.Client, rootPassword string) error {
	status, err := cli.AuthStatus(ctx)
	if err != nil {
		return fmt.Errorf("read auth status: %w", err)
	}
	if status.Enabled {
		if _, err := cli.UserGet(ctx, "root"); err != nil {
			return fmt.Errorf("authentication is enabled but the root credential is refused: %w", err)
		}
		return nil
	}
	if _, err := cli.UserAdd(ctx, "root", rootPassword); err != nil && !errors.Is(err, rpctypes.ErrUserAlreadyExist) {
		return fmt.Errorf("add root user: %w", err)
	}
	if _, err := cli.UserChangePassword(ctx, "root", rootPassword); err != nil {
		return fmt.Errorf("set root password: %w", err)
	}
	if _, err := cli.UserGrantRole(ctx, "root", "root"); err != nil && !strings.Contains(err.Error(), "already") {
		return fmt.Errorf("grant root role: %w", err)
	}
	if _, err := cli.AuthEnable(ctx); err != nil {
		return fmt.Errorf("enable authentication: %w", err)
	}
	return nil
}

// MemberHealth is what one member reports.
type MemberHealth struct {
	Name     string
	Endpoint string
	Healthy  bool
	Leader   bool
	// RaftIndex is the member's applied index, to tell whether a member
	// has caught up.
	RaftIndex uint64
	Revision  int64
	Err       error
}

// Health asks every member for its status.
func Health(ctx context.Context, cli *clientv3.Client) ([]MemberHealth, error) {
	members, err := cli.MemberList(ctx)
	if err != nil {
		return nil, fmt.Errorf("list members: %w", err)
	}
	var out []MemberHealth
	for _, m := range members.Members {
		h := MemberHealth{Name: m.Name}
		if len(m.ClientURLs) == 0 {
			h.Err = errors.New("member has not started")
			out = append(out, h)
			continue
		}
		h.Endpoint = m.ClientURLs[0]
		sctx, cancel := context.WithTimeout(ctx, 3*time.Second)
		st, err := cli.Status(sctx, h.Endpoint)
		cancel()
		if err != nil {
			h.Err = err
		} else {
			h.Healthy = len(st.Errors) == 0
			h.Leader = st.Leader == st.Header.MemberId
			h.RaftIndex = st.RaftAppliedIndex
			h.Revision = st.Header.Revision
			if len(st.Errors) > 0 {
				h.Err = errors.New(strings.Join(st.Errors, "; "))
			}
		}
		out = append(out, h)
	}
	return out, nil
}

// Answering says whether the datastore answers a linearizable read, as
// etcdctl's endpoint health asks it: a quorum of members is up and
// reachable. A refusal of the read still counts as an answer.
func Answering(ctx context.Context, cli *clientv3.Client) error {
	_, err := cli.Get(ctx, "health")
	if err == nil || errors.Is(err, rpctypes.ErrPermissionDenied) {
		return nil
	}
	return err
}

// ClientCache keeps one client per datastore and credential set, so the
// many tenants of a datastore share a connection. A changed credential
// (new endpoints or certificate) replaces the client.
type ClientCache struct {
	mu      sync.Mutex
	clients map[string]cachedClient
}

type cachedClient struct {
	fingerprint string
	cli         *clientv3.Client
}

// Get returns the cached client for name, connecting when there is none
// or the credentials changed.
func (c *ClientCache) Get(name string, creds Credentials) (*clientv3.Client, error) {
	fp := fingerprint(creds)
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.clients == nil {
		c.clients = map[string]cachedClient{}
	}
	if cc, ok := c.clients[name]; ok {
		if cc.fingerprint == fp {
			return cc.cli, nil
		}
		cc.cli.Close()
		delete(c.clients, name)
	}
	cli, err := Connect(creds)
	if err != nil {
		return nil, err
	}
	c.clients[name] = cachedClient{fingerprint: fp, cli: cli}
	return cli, nil
}

// Close closes every cached client.
func (c *ClientCache) Close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for name, cc := range c.clients {
		cc.cli.Close()
		delete(c.clients, name)
	}
}

func fingerprint(c Credentials) string {
	h := sha256.New()
	for _, part := range [][]byte{[]byte(strings.Join(c.Endpoints, ",")), c.CAPEM, c.CertPEM, c.KeyPEM, []byte(c.Username), []byte(c.Password)} {
		h.Write(part)
		h.Write([]byte{0})
	}
	return hex.EncodeToString(h.Sum(nil))
}
