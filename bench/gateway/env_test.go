package gateway_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
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

// backendQuota is the datastore's backend quota: floods write gigabytes of
// history between the compactions the benchmark makes, more than etcd's
// 2 GiB default.
const backendQuota = 8 << 30

// env is the datastore (one etcd with authentication on) and the files
// every gateway of the benchmark reads, all in one directory:
//
//	tenant-ca.crt               CA of the tenants' client certificates
//	serving.crt, serving.key    the gateway's serving certificate
//	datastore-ca.crt            CA of etcd's serving certificate
//	root.crt, root.key          etcd user root: the gateway's credential
type env struct {
	etcd     *testenv.Etcd
	root     *clientv3.Client
	tenantCA *pki.KeyPair
	creds    datastore.Credentials
	dir      string
}

func newEnv(t *testing.T) *env {
	t.Helper()
	e := testenv.StartEtcd(t, fmt.Sprintf("--quota-backend-bytes=%d", backendQuota))
	root := e.Client(t, "root")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := datastore.EnableAuth(ctx, root, "root-password"); err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	ca, err := pki.NewCA("bench-tenant-ca", now)
	if err != nil {
		t.Fatal(err)
	}
	serving, err := ca.Issue(pki.Spec{CommonName: "gateway", IPs: []net.IP{net.ParseIP("127.0.0.1")}, DNSNames: []string{"localhost"}, Server: true}, now)
	if err != nil {
		t.Fatal(err)
	}
	rootCert := e.ClientCert(t, "root")
	dir := t.TempDir()
	d := pki.Dir{Path: dir}
	for name, kp := range map[string]*pki.KeyPair{"tenant-ca": ca, "serving": serving, "root": rootCert} {
		if err := d.Save(name, kp); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "datastore-ca.crt"), e.CA.CertPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	return &env{
		etcd: e, root: root, tenantCA: ca, dir: dir,
		creds: datastore.Credentials{Endpoints: []string{e.Endpoint}, CAPEM: e.CA.CertPEM, CertPEM: rootCert.CertPEM, KeyPEM: rootCert.KeyPEM},
	}
}

// file is the path of one of the environment's files.
func (e *env) file(name string) string { return filepath.Join(e.dir, name) }

// config is a gateway configuration on loopback with the gateway's
// defaults (limits included) and the environment's files.
func (e *env) config() gateway.Config {
	cfg := gateway.DefaultConfig()
	cfg.Datastore = e.creds
	cfg.ListenAddress = "127.0.0.1:0"
	cfg.HTTPAddress = "127.0.0.1:0"
	cfg.ServingCertFile = e.file("serving.crt")
	cfg.ServingKeyFile = e.file("serving.key")
	cfg.TenantCAFile = e.file("tenant-ca.crt")
	return cfg
}

// runningGateway is a gateway served in the benchmark's process.
type runningGateway struct {
	*gateway.Gateway
	log  *logBuffer
	stop func()
}

// startGateway serves a gateway in this process until stop is called or
// the test ends; mutate adjusts its configuration first.
func (e *env) startGateway(t *testing.T, mutate func(*gateway.Config)) *runningGateway {
	t.Helper()
	cfg := e.config()
	log := &logBuffer{}
	cfg.Logger = log.logger()
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
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("gateway: %v", err)
			}
			if t.Failed() {
				t.Logf("gateway log:\n%s", log.String())
			}
		})
	}
	t.Cleanup(stop)
	if err := wait.PollUntilContextTimeout(context.Background(), 20*time.Millisecond, 2*time.Minute, true,
		func(context.Context) (bool, error) { return g.Ready(), nil }); err != nil {
		t.Fatalf("gateway not ready: %v\n%s", err, log.String())
	}
	return &runningGateway{Gateway: g, log: log, stop: stop}
}

// logBuffer keeps a gateway's logs, shown when the benchmark fails.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logBuffer) logger() logr.Logger {
	return funcr.New(func(prefix, args string) {
		l.mu.Lock()
		defer l.mu.Unlock()
		fmt.Fprintf(&l.buf, "%s %s %s\n", time.Now().Format("15:04:05.000"), prefix, args)
	}, funcr.Options{})
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

// tenantID is the UID of tenant n of a group of the benchmark: a UID's
// fixed length, as datastore.TenancyFor requires.
func tenantID(group, n int) string {
	return fmt.Sprintf("bench%03d-0000-0000-0000-%012d", group, n)
}

// tenantCert issues tenant id's client certificate from the tenant CA, as
// the operator does for each tenant API server.
func (e *env) tenantCert(id string) (*pki.KeyPair, error) {
	kp, err := e.tenantCA.Issue(pki.Spec{CommonName: "tenant-" + id, Client: true}, time.Now())
	if err != nil {
		return nil, fmt.Errorf("certificate of tenant %s: %w", id, err)
	}
	return kp, nil
}

// tenantTLS is what tenant id's API server holds to reach a gateway: its
// client certificate and the tenant CA.
func (e *env) tenantTLS(id string) (*tls.Config, error) {
	kp, err := e.tenantCert(id)
	if err != nil {
		return nil, err
	}
	cert, err := tls.X509KeyPair(kp.CertPEM, kp.KeyPEM)
	if err != nil {
		return nil, fmt.Errorf("certificate of tenant %s: %w", id, err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(e.tenantCA.Cert)
	return &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}, nil
}

// dial opens an etcd client connection to a gateway at addr.
func dial(addr string, tc *tls.Config) (*clientv3.Client, error) {
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

// tenantClient connects to a gateway at addr as tenant id's API server
// does: its own connection, its own client certificate.
func (e *env) tenantClient(addr, id string) (*clientv3.Client, error) {
	tc, err := e.tenantTLS(id)
	if err != nil {
		return nil, err
	}
	return dial(addr, tc)
}

// compactAll compacts the datastore at its current revision and
// defragments it, so a flood's history does not weigh on what follows.
func (e *env) compactAll(ctx context.Context) error {
	resp, err := e.root.Get(ctx, "/", clientv3.WithCountOnly())
	if err != nil {
		return fmt.Errorf("read the datastore's revision: %w", err)
	}
	if _, err := e.root.Compact(ctx, resp.Header.Revision, clientv3.WithCompactPhysical()); err != nil && !strings.Contains(err.Error(), "compacted") {
		return fmt.Errorf("compact the datastore at %d: %w", resp.Header.Revision, err)
	}
	if _, err := e.root.Defragment(ctx, e.etcd.Endpoint); err != nil {
		return fmt.Errorf("defragment the datastore: %w", err)
	}
	return nil
}

// emptyTenants deletes every tenant's keys and compacts them away.
func (e *env) emptyTenants(ctx context.Context) error {
	if _, err := e.root.Delete(ctx, datastore.TenantsPrefix, clientv3.WithPrefix()); err != nil {
		return fmt.Errorf("delete the tenants' keys: %w", err)
	}
	return e.compactAll(ctx)
}

// scrape reads the gateway's /metrics at httpAddr and returns the value of
// every sample whose name and labels start with prefix, summed (0 when
// none matches).
func scrape(ctx context.Context, httpAddr, prefix string) (float64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+httpAddr+"/metrics", nil)
	if err != nil {
		return 0, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, fmt.Errorf("scrape %s: %w", httpAddr, err)
	}
	defer resp.Body.Close()
	var sum float64
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, prefix) {
			continue
		}
		f := strings.Fields(line)
		v, err := strconv.ParseFloat(f[len(f)-1], 64)
		if err != nil {
			return 0, fmt.Errorf("metric line %q: %w", line, err)
		}
		sum += v
	}
	if err := sc.Err(); err != nil {
		return 0, fmt.Errorf("scrape %s: %w", httpAddr, err)
	}
	return sum, nil
}
