package gateway_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
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
	"kubinception.dev/kubinception/internal/testenv"
)

// testEnv is a real etcd with authentication on, and the files a gateway
// in front of it needs: the gateway CA (signs the gateway's serving
// certificate and the tenants' client certificates) and the root
// credential on the datastore.
type testEnv struct {
	etcd *testenv.Etcd
	root *clientv3.Client
	// gatewayCA is the tenant CA.
	gatewayCA *pki.KeyPair
	dir       string
	creds     datastore.Credentials
}

func newTestEnv(t *testing.T, etcdArgs ...string) *testEnv {
	t.Helper()
	e := testenv.StartEtcd(t, etcdArgs...)
	root := e.Client(t, "root")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := datastore.EnableAuth(ctx, root, "root-password"); err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	ca, err := pki.NewCA("test-gateway-ca", now)
	if err != nil {
		t.Fatal(err)
	}
	serving, err := ca.Issue(pki.Spec{CommonName: "gateway", IPs: []net.IP{net.ParseIP("127.0.0.1")}, DNSNames: []string{"localhost"}, Server: true}, now)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	d := pki.Dir{Path: dir}
	if err := d.Save("gateway-ca", ca); err != nil {
		t.Fatal(err)
	}
	if err := d.Save("serving", serving); err != nil {
		t.Fatal(err)
	}
	rootCert := e.ClientCert(t, "root")
	return &testEnv{
		etcd: e, root: root, gatewayCA: ca, dir: dir,
		creds: datastore.Credentials{Endpoints: []string{e.Endpoint}, CAPEM: e.CA.CertPEM, CertPEM: rootCert.CertPEM, KeyPEM: rootCert.KeyPEM},
	}
}

// config is a gateway configuration for the environment, listening on
// free loopback ports, with no limits.
func (e *testEnv) config(log *logBuffer) gateway.Config {
	cfg := gateway.DefaultConfig()
	cfg.Datastore = e.creds
	cfg.ListenAddress = "127.0.0.1:0"
	cfg.HTTPAddress = "127.0.0.1:0"
	cfg.ServingCertFile = filepath.Join(e.dir, "serving.crt")
	cfg.ServingKeyFile = filepath.Join(e.dir, "serving.key")
	cfg.TenantCAFile = filepath.Join(e.dir, "gateway-ca.crt")
	cfg.Policy = gateway.StaticPolicy{}
	cfg.CompactionInterval = 0
	cfg.Logger = log.logger()
	return cfg
}

// logBuffer collects a gateway's logs, printed if the test fails.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logBuffer) logger() logr.Logger {
	return funcr.New(func(prefix, args string) {
		l.mu.Lock()
		defer l.mu.Unlock()
		fmt.Fprintf(&l.buf, "%s %s %s\n", time.Now().Format("15:04:05.000"), prefix, args)
	}, funcr.Options{Verbosity: 1})
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

// runningGateway is a gateway served in the test process.
type runningGateway struct {
	*gateway.Gateway
	log *logBuffer
}

// startGateway runs a gateway until the test ends; mutate adjusts its
// configuration first.
func (e *testEnv) startGateway(t *testing.T, mutate func(*gateway.Config)) *runningGateway {
	t.Helper()
	log := &logBuffer{}
	cfg := e.config(log)
	if mutate != nil {
		mutate(&cfg)
	}
	g, err := gateway.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- g.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("gateway: %v", err)
		}
		if t.Failed() {
			t.Logf("gateway log:\n%s", log.String())
		}
	})
	if err := wait.PollUntilContextTimeout(context.Background(), 20*time.Millisecond, 60*time.Second, true,
		func(context.Context) (bool, error) { return g.Ready(), nil }); err != nil {
		t.Fatalf("gateway not ready: %v\n%s", err, log.String())
	}
	return &runningGateway{Gateway: g, log: log}
}

// tenantCert issues a client certificate for tenant id from the gateway
// CA, as the operator does for each tenant API server.
func (e *testEnv) tenantCert(t *testing.T, id string) *pki.KeyPair {
	t.Helper()
	kp, err := e.gatewayCA.Issue(pki.Spec{CommonName: "tenant-" + id, Client: true}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	return kp
}

// client connects to addr with a client certificate, trusting the
// gateway CA.
func (e *testEnv) client(t *testing.T, addr string, kp *pki.KeyPair) *clientv3.Client {
	t.Helper()
	cert, err := tls.X509KeyPair(kp.CertPEM, kp.KeyPEM)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(e.gatewayCA.Cert)
	cli, err := clientv3.New(clientv3.Config{
		Endpoints:   []string{"https://" + addr},
		DialTimeout: 5 * time.Second,
		TLS:         &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12},
		Logger:      zap.NewNop(),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })
	return cli
}

// tenantClient connects to the gateway as tenant id's API server does.
func (e *testEnv) tenantClient(t *testing.T, g *runningGateway, id string) *clientv3.Client {
	t.Helper()
	return e.client(t, g.Addr(), e.tenantCert(t, id))
}
