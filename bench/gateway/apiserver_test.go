package gateway_test

import (
	"context"
	"crypto/x509"
	"fmt"
	"net"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/util/flowcontrol"

	"kubinception.dev/kubinception/bench/internal/benchkit"
	"kubinception.dev/kubinception/internal/datastore"
	"kubinception.dev/kubinception/internal/pki"
	"kubinception.dev/kubinception/internal/testenv"
)

// The client load put on each kube-apiserver in one round: apiWorkers
// client-go workers, each creating, getting, updating and deleting
// apiIterations ConfigMaps of apiDataBytes, one after another.
const (
	apiWorkers    = 8
	apiIterations = 50
	apiDataBytes  = 1 << 10
	// apiRounds are measured after one warm-up round on each server.
	apiRounds = 9
)

// loadResult is one round of client load on one kube-apiserver.
type loadResult struct {
	elapsed   time.Duration
	latencies []time.Duration
}

func (r loadResult) throughput() float64 {
	return float64(len(r.latencies)) / r.elapsed.Seconds()
}

func (r loadResult) p(q float64) time.Duration { return benchkit.Percentile(r.latencies, q) }

// The three kube-apiservers of the part, by the path to the datastore.
const (
	pathDirect  = "direct"
	pathGateway = "gateway"
	pathProxy   = "grpc-proxy"
)

// apiserverResult compares the three kube-apiservers over the measured
// rounds.
type apiserverResult struct {
	direct, gateway, proxy []loadResult
	// throttled is the time the gateway held the tenant's requests for
	// its rate limits and fair queue during the measured rounds.
	throttled float64
	// directPrefix is the direct server's --etcd-prefix, proxyNamespace
	// the etcd grpc-proxy's --namespace.
	directPrefix, proxyNamespace string
	// connections, watchStreams and watches are the connections the
	// kube-apiserver held to the gateway at the end, and the watch
	// streams and watches it had opened through it: the shape of the
	// simulated tenants that stand for it.
	connections           int
	watchStreams, watches float64
}

// roundRatios are of / to of each round's throughput, p50 and p99: the
// paths of a round ran one after the other, so each ratio cancels the
// machine's slower drifts.
func roundRatios(of, to []loadResult) (tput []float64, p50, p99 []float64) {
	for i := range to {
		o, d := of[i], to[i]
		tput = append(tput, o.throughput()/d.throughput())
		p50 = append(p50, benchkit.Ratio(o.p(50), d.p(50)))
		p99 = append(p99, benchkit.Ratio(o.p(99), d.p(99)))
	}
	return tput, p50, p99
}

// medians are the medians over rounds of throughput, p50 and p99.
func medians(rs []loadResult) (float64, time.Duration, time.Duration) {
	var tput []float64
	var p50, p99 []time.Duration
	for _, r := range rs {
		tput = append(tput, r.throughput())
		p50 = append(p50, r.p(50))
		p99 = append(p99, r.p(99))
	}
	return benchkit.Median(tput), benchkit.Median(p50), benchkit.Median(p99)
}

// benchAPIServer runs three kube-apiservers on the same datastore and
// puts the same client load on each in turn:
//
//   - direct: straight on the datastore with the root credential, as
//     tenant API servers ran before the gateway;
//   - gateway: through `kubinception gateway` with a tenant certificate.
//     The gateway runs in a process of its own, as in the admin cluster:
//     in the benchmark's process it would share the garbage collector and
//     the processors' run queues with the client workers that make the
//     load;
//   - grpc-proxy: through etcd's own gRPC proxy (`etcd grpc-proxy start
//     --namespace`), the upstream hop that puts a key prefix in front of
//     etcd. It has no per-tenant identity, quota, usage or fairness; it
//     stands for what any gRPC hop between a kube-apiserver and etcd costs
//     on this machine, measured in the same run.
//
// The direct and proxied servers keep their keys outside the tenants'
// prefix, so the gateway's usage watch sees only its own tenant's writes.
//
// The datastore's authentication is off for this part: the gRPC proxy
// passes on only a client's user name and password, not a certificate's
// identity, and refuses a backend certificate with a common name, so with
// authentication on its kube-apiserver would be refused. All three paths
// meet the same datastore without permission checks.
func benchAPIServer(t *testing.T, e *env, bin string) apiserverResult {
	ctx := context.Background()
	if _, err := e.Root.AuthDisable(ctx); err != nil {
		t.Fatalf("turn the datastore's authentication off: %v", err)
	}
	t.Cleanup(func() {
		if err := datastore.EnableAuth(context.Background(), e.Root, "root-password"); err != nil {
			t.Errorf("turn the datastore's authentication on again: %v", err)
		}
	})
	// No request or byte rate here: this part measures the hop, and a
	// busy API server would otherwise meet its tenant's rate limit (the
	// noisy-neighbour part measures the limits).
	g := startGatewayProcess(t, e, bin, "--default-request-rate=0", "--default-byte-rate=0")
	through := tenantID(1, 1)
	res := apiserverResult{directPrefix: "/bench/direct", proxyNamespace: "/bench/grpc-proxy"}
	proxy := startGRPCProxy(t, e, res.proxyNamespace)
	kp, err := e.TenantCert(through)
	if err != nil {
		t.Fatal(err)
	}
	if err := (pki.Dir{Path: e.Dir}).Save("apiserver-tenant", kp); err != nil {
		t.Fatal(err)
	}
	t.Log("starting kube-apiserver straight on the datastore")
	directAPI := testenv.StartKubeAPIServer(t, testenv.KubeAPIServerOptions{
		EtcdEndpoint: e.Etcd.Endpoint,
		EtcdCAFile:   e.File("datastore-ca.crt"),
		EtcdCertFile: e.File("root.crt"),
		EtcdKeyFile:  e.File("root.key"),
		Args:         []string{"--etcd-prefix=" + res.directPrefix},
	})
	t.Log("starting kube-apiserver through the gateway")
	gatewayAPI := testenv.StartKubeAPIServer(t, testenv.KubeAPIServerOptions{
		EtcdEndpoint: "https://" + g.addr,
		EtcdCAFile:   e.File("tenant-ca.crt"),
		EtcdCertFile: e.File("apiserver-tenant.crt"),
		EtcdKeyFile:  e.File("apiserver-tenant.key"),
	})
	t.Log("starting kube-apiserver through etcd's gRPC proxy")
	proxyAPI := testenv.StartKubeAPIServer(t, testenv.KubeAPIServerOptions{
		EtcdEndpoint: "https://" + proxy.addr,
		EtcdCAFile:   proxy.caFile,
		EtcdCertFile: proxy.certFile,
		EtcdKeyFile:  proxy.keyFile,
	})
	servers := map[string]kubernetes.Interface{
		pathDirect:  unlimitedClient(t, directAPI.Config),
		pathGateway: unlimitedClient(t, gatewayAPI.Config),
		pathProxy:   unlimitedClient(t, proxyAPI.Config),
	}
	results := map[string]*[]loadResult{pathDirect: &res.direct, pathGateway: &res.gateway, pathProxy: &res.proxy}
	paths := []string{pathDirect, pathGateway, pathProxy}

	for _, path := range paths {
		if _, err := configMapLoad(ctx, servers[path], "warmup", apiWorkers, apiIterations/2); err != nil {
			t.Fatalf("warm-up on %s: %v", path, err)
		}
	}
	throttledMetric := fmt.Sprintf("kubinception_gateway_throttled_seconds_total{tenant=%q}", through)
	throttled0, err := scrape(ctx, g.httpAddr, throttledMetric)
	if err != nil {
		t.Fatal(err)
	}
	for round := range apiRounds {
		// Each path goes first, second and last in turn.
		order := append(slices.Clone(paths[round%len(paths):]), paths[:round%len(paths)]...)
		for _, path := range order {
			r, err := configMapLoad(ctx, servers[path], fmt.Sprintf("r%d", round), apiWorkers, apiIterations)
			if err != nil {
				t.Fatalf("round %d on %s: %v", round, path, err)
			}
			t.Logf("round %d %-10s %6.0f req/s  p50 %-8s p99 %s", round, path, r.throughput(), r.p(50).Round(10*time.Microsecond), r.p(99).Round(10*time.Microsecond))
			*results[path] = append(*results[path], r)
		}
	}
	throttled1, err := scrape(ctx, g.httpAddr, throttledMetric)
	if err != nil {
		t.Fatal(err)
	}
	res.throttled = throttled1 - throttled0
	requests := func(method string) float64 {
		t.Helper()
		v, err := scrape(ctx, g.httpAddr, fmt.Sprintf("kubinception_gateway_requests_total{method=%q,tenant=%q}", method, through))
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	res.watchStreams, res.watches = requests("Watch"), requests("WatchCreate")
	_, port, err := net.SplitHostPort(g.addr)
	if err != nil {
		t.Fatal(err)
	}
	p, err := strconv.Atoi(port)
	if err != nil {
		t.Fatal(err)
	}
	if res.connections, err = benchkit.EstablishedConnections(p); err != nil {
		t.Fatal(err)
	}
	t.Logf("the kube-apiserver holds %d connections to the gateway and opened %.0f watches on %.0f watch streams through it", res.connections, res.watches, res.watchStreams)
	return res
}

// grpcProxy is etcd's gRPC proxy in front of the datastore.
type grpcProxy struct {
	addr string
	// caFile verifies the proxy's serving certificate; certFile and
	// keyFile are a client certificate it accepts.
	caFile, certFile, keyFile string
}

// startGRPCProxy starts etcd's gRPC proxy in front of the datastore, its
// keys under namespace. On the datastore it has a client certificate of its
// own with no common name (the proxy refuses one). It serves TLS with a CA
// of its own: the proxy checks its health by dialing itself with its
// serving certificate as a client certificate, verified by the CA that
// verifies its clients, so one CA issues both.
func startGRPCProxy(t *testing.T, e *env, namespace string) grpcProxy {
	t.Helper()
	dir := t.TempDir()
	files := pki.Dir{Path: dir}
	now := time.Now()
	ca, err := pki.NewCA("bench-grpc-proxy-ca", now)
	if err != nil {
		t.Fatal(err)
	}
	serving, err := ca.Issue(pki.Spec{CommonName: "grpc-proxy", IPs: []net.IP{net.IPv4(127, 0, 0, 1)}, Server: true, Client: true}, now)
	if err != nil {
		t.Fatal(err)
	}
	client, err := ca.Issue(pki.Spec{CommonName: "kube-apiserver", Client: true}, now)
	if err != nil {
		t.Fatal(err)
	}
	for name, kp := range map[string]*pki.KeyPair{"ca": ca, "serving": serving, "client": client, "backend": e.Etcd.ClientCert(t, "")} {
		if err := files.Save(name, kp); err != nil {
			t.Fatal(err)
		}
	}
	file := func(name string) string { return filepath.Join(dir, name) }
	p := grpcProxy{addr: fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t)), caFile: file("ca.crt"), certFile: file("client.crt"), keyFile: file("client.key")}
	cmd := exec.Command(testenv.FindBinaries(t).Etcd, "grpc-proxy", "start",
		"--listen-addr="+p.addr, "--advertise-client-url="+p.addr, "--data-dir="+file("data"),
		"--endpoints="+e.Etcd.Endpoint, "--cacert="+e.File("datastore-ca.crt"),
		"--cert="+file("backend.crt"), "--key="+file("backend.key"),
		"--cert-file="+file("serving.crt"), "--key-file="+file("serving.key"), "--trusted-ca-file="+p.caFile,
		"--namespace="+namespace,
	)
	proc := testenv.StartProcess(t, cmd, "etcd grpc-proxy", file("grpc-proxy.log"))
	tc, err := e.ClientTLS(client)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca.Cert)
	tc.RootCAs = pool
	err = proc.WaitAnswering(100*time.Millisecond, time.Minute, func(ctx context.Context) error {
		cli, err := testenv.DialGateway(p.addr, tc)
		if err != nil {
			return err
		}
		defer cli.Close()
		_, err = cli.Get(ctx, "probe")
		return err
	})
	if err != nil {
		t.Fatalf("etcd grpc-proxy at %s: %v", p.addr, err)
	}
	return p
}

// unlimitedClient is a clientset without client-go's own rate limit, so
// that the servers, not the client, set the pace.
func unlimitedClient(t *testing.T, cfg *rest.Config) kubernetes.Interface {
	t.Helper()
	c := rest.CopyConfig(cfg)
	c.RateLimiter = flowcontrol.NewFakeAlwaysRateLimiter()
	cs, err := kubernetes.NewForConfig(c)
	if err != nil {
		t.Fatal(err)
	}
	return cs
}

// configMapLoad runs workers, each creating, getting, updating and
// deleting iterations ConfigMaps in the default namespace one after
// another, and times every request. It stops at the first error.
func configMapLoad(ctx context.Context, cs kubernetes.Interface, tag string, workers, iterations int) (loadResult, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		mu       sync.Mutex
		res      loadResult
		firstErr error
		wg       sync.WaitGroup
	)
	data := strings.Repeat("d", apiDataBytes)
	start := time.Now()
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			lat := make([]time.Duration, 0, 4*iterations)
			err := func() error {
				cms := cs.CoreV1().ConfigMaps(metav1.NamespaceDefault)
				timed := func(f func() error) error {
					s := time.Now()
					err := f()
					lat = append(lat, time.Since(s))
					return err
				}
				for i := range iterations {
					name := fmt.Sprintf("%s-w%d-%d", tag, w, i)
					cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: name}, Data: map[string]string{"data": data}}
					if err := timed(func() (err error) { cm, err = cms.Create(ctx, cm, metav1.CreateOptions{}); return err }); err != nil {
						return fmt.Errorf("create %s: %w", name, err)
					}
					if err := timed(func() (err error) { cm, err = cms.Get(ctx, name, metav1.GetOptions{}); return err }); err != nil {
						return fmt.Errorf("get %s: %w", name, err)
					}
					cm.Data["data"] = strings.ToUpper(data)
					if err := timed(func() (err error) { _, err = cms.Update(ctx, cm, metav1.UpdateOptions{}); return err }); err != nil {
						return fmt.Errorf("update %s: %w", name, err)
					}
					if err := timed(func() error { return cms.Delete(ctx, name, metav1.DeleteOptions{}) }); err != nil {
						return fmt.Errorf("delete %s: %w", name, err)
					}
				}
				return nil
			}()
			mu.Lock()
			defer mu.Unlock()
			res.latencies = append(res.latencies, lat...)
			if err != nil && firstErr == nil {
				firstErr = err
				cancel()
			}
		}()
	}
	wg.Wait()
	res.elapsed = time.Since(start)
	return res, firstErr
}
