package testenv

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/go-logr/logr/funcr"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"k8s.io/apimachinery/pkg/util/wait"

	"kubinception.dev/kubinception/internal/datastore"
	"kubinception.dev/kubinception/internal/gateway"
	"kubinception.dev/kubinception/internal/pki"
)

// GatewayDatastore is a real etcd with authentication on, as the shared
// datastore runs, and what an etcd gateway in front of it needs, its
// files in Dir:
//
//	tenant-ca.crt, tenant-ca.key  CA of the tenants' client certificates
//	serving.crt, serving.key      the gateway's serving certificate (127.0.0.1, localhost)
//	datastore-ca.crt              CA of etcd's serving certificate
//	root.crt, root.key            etcd user root: the gateway's credential
type GatewayDatastore struct {
	Etcd *Etcd
	// Root is a client of etcd's root user.
	Root *clientv3.Client
	// TenantCA issues tenant certificates (common name tenant-<uid>).
	TenantCA *pki.KeyPair
	// Credentials are the gateway's credential on the datastore.
	Credentials datastore.Credentials
	Dir         string
}

// StartGatewayDatastore starts etcd with etcdArgs added to its command
// line, turns authentication on and writes the gateway's files.
func StartGatewayDatastore(tb testing.TB, etcdArgs ...string) *GatewayDatastore {
	tb.Helper()
	e := StartEtcd(tb, etcdArgs...)
	root := e.Client(tb, "root")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := datastore.EnableAuth(ctx, root, "root-password"); err != nil {
		tb.Fatal(err)
	}
	now := time.Now()
	ca, err := pki.NewCA("test-tenant-ca", now)
	if err != nil {
		tb.Fatal(err)
	}
	serving, err := ca.Issue(pki.Spec{CommonName: "gateway", IPs: []net.IP{net.ParseIP("127.0.0.1")}, DNSNames: []string{"localhost"}, Server: true}, now)
	if err != nil {
		tb.Fatal(err)
	}
	rootCert := e.ClientCert(tb, "root")
	dir := tb.TempDir()
	d := pki.Dir{Path: dir}
	for name, kp := range map[string]*pki.KeyPair{"tenant-ca": ca, "serving": serving, "root": rootCert} {
		if err := d.Save(name, kp); err != nil {
			tb.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "datastore-ca.crt"), e.CA.CertPEM, 0o644); err != nil {
		tb.Fatal(err)
	}
	return &GatewayDatastore{
		Etcd: e, Root: root, TenantCA: ca, Dir: dir,
		Credentials: datastore.Credentials{Endpoints: []string{e.Endpoint}, CAPEM: e.CA.CertPEM, CertPEM: rootCert.CertPEM, KeyPEM: rootCert.KeyPEM},
	}
}

// File is the path of one of the files in Dir.
func (d *GatewayDatastore) File(name string) string { return filepath.Join(d.Dir, name) }

// GatewayConfig is the gateway's default configuration (limits included)
// on free loopback ports, with the datastore's credential and files.
func (d *GatewayDatastore) GatewayConfig() gateway.Config {
	cfg := gateway.DefaultConfig()
	cfg.Datastore = d.Credentials
	cfg.ListenAddress = "127.0.0.1:0"
	cfg.HTTPAddress = "127.0.0.1:0"
	cfg.ServingCertFile = d.File("serving.crt")
	cfg.ServingKeyFile = d.File("serving.key")
	cfg.TenantCAFile = d.File("tenant-ca.crt")
	return cfg
}

// Gateway is a gateway served in the test's process.
type Gateway struct {
	*gateway.Gateway
	// Log holds the gateway's logs; they are printed when the test
	// fails.
	Log  *GatewayLog
	stop func()
}

// Stop stops the gateway and waits for it; it also happens when the test
// ends.
func (g *Gateway) Stop() { g.stop() }

// StartGateway serves a gateway on GatewayConfig, adjusted by mutate when
// it is not nil, until Stop or the end of the test, and waits until it is
// ready.
func (d *GatewayDatastore) StartGateway(tb testing.TB, mutate func(*gateway.Config)) *Gateway {
	tb.Helper()
	cfg := d.GatewayConfig()
	log := &GatewayLog{}
	cfg.Logger = log.Logger()
	if mutate != nil {
		mutate(&cfg)
	}
	g, err := gateway.New(cfg)
	if err != nil {
		tb.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- g.Run(ctx) }()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				tb.Errorf("gateway: %v", err)
			}
			if tb.Failed() {
				tb.Logf("gateway log:\n%s", log.String())
			}
		})
	}
	tb.Cleanup(stop)
	if err := wait.PollUntilContextTimeout(context.Background(), 20*time.Millisecond, 2*time.Minute, true,
		func(context.Context) (bool, error) { return g.Ready(), nil }); err != nil {
		tb.Fatalf("gateway not ready: %v\n%s", err, log.String())
	}
	return &Gateway{Gateway: g, Log: log, stop: stop}
}

// GatewayLog keeps a gateway's logs.
type GatewayLog struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

// Logger writes to the log, verbosity 1 included.
func (l *GatewayLog) Logger() logr.Logger {
	return funcr.New(func(prefix, args string) {
		l.mu.Lock()
		defer l.mu.Unlock()
		fmt.Fprintf(&l.buf, "%s %s %s\n", time.Now().Format("15:04:05.000"), prefix, args)
	}, funcr.Options{Verbosity: 1})
}

// String is everything logged so far.
func (l *GatewayLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

// TenantCert issues tenant id's client certificate from the tenant CA, as
// the operator does for each tenant API server.
func (d *GatewayDatastore) TenantCert(id string) (*pki.KeyPair, error) {
	kp, err := d.TenantCA.Issue(pki.Spec{CommonName: "tenant-" + id, Client: true}, time.Now())
	if err != nil {
		return nil, fmt.Errorf("certificate of tenant %s: %w", id, err)
	}
	return kp, nil
}

// ClientTLS presents kp to a gateway and trusts the tenant CA, which
// signs the gateway's serving certificate.
func (d *GatewayDatastore) ClientTLS(kp *pki.KeyPair) (*tls.Config, error) {
	cert, err := tls.X509KeyPair(kp.CertPEM, kp.KeyPEM)
	if err != nil {
		return nil, fmt.Errorf("client certificate: %w", err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(d.TenantCA.Cert)
	return &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}, nil
}

// TenantTLS is what tenant id's API server holds to reach a gateway: a
// new client certificate of its own and the tenant CA.
func (d *GatewayDatastore) TenantTLS(id string) (*tls.Config, error) {
	kp, err := d.TenantCert(id)
	if err != nil {
		return nil, err
	}
	return d.ClientTLS(kp)
}

// TenantClient connects to a gateway at addr as tenant id's API server
// does: its own connection, its own client certificate. The caller closes
// it.
func (d *GatewayDatastore) TenantClient(addr, id string) (*clientv3.Client, error) {
	tc, err := d.TenantTLS(id)
	if err != nil {
		return nil, err
	}
	return DialGateway(addr, tc)
}

// DialGateway opens an etcd client connection to a gateway at addr.
func DialGateway(addr string, tc *tls.Config) (*clientv3.Client, error) {
	cli, err := clientv3.New(clientv3.Config{
		Endpoints:   []string{"https://" + addr},
		DialTimeout: 10 * time.Second,
		TLS:         tc.Clone(),
		Logger:      zap.NewNop(),
	})
	if err != nil {
		return nil, fmt.Errorf("connect to %s: %w", addr, err)
	}
	return cli, nil
}
