package gateway_test

import (
	"context"
	"fmt"
	"net"
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

// apiserverResult compares the two kube-apiservers over the measured
// rounds.
type apiserverResult struct {
	direct, gateway []loadResult
	// throttled is the time the gateway held the tenant's requests for
	// its rate limits and fair queue during the measured rounds.
	throttled float64
	// directPrefix is the direct server's --etcd-prefix.
	directPrefix string
	// connections, watchStreams and watches are the connections the
	// kube-apiserver held to the gateway at the end, and the watch
	// streams and watches it had opened through it: the shape of the
	// simulated tenants that stand for it.
	connections           int
	watchStreams, watches float64
}

// roundRatios are gateway / direct of each round's throughput, p50 and
// p99: the two ran one after the other, so each ratio cancels the
// machine's slower drifts.
func (a apiserverResult) roundRatios() (tput []float64, p50, p99 []float64) {
	for i := range a.direct {
		d, g := a.direct[i], a.gateway[i]
		tput = append(tput, g.throughput()/d.throughput())
		p50 = append(p50, benchkit.Ratio(g.p(50), d.p(50)))
		p99 = append(p99, benchkit.Ratio(g.p(99), d.p(99)))
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

// benchAPIServer runs two kube-apiservers on the same datastore, one
// straight on it under a tenant's prefix with the root credential (as
// tenant API servers did before the gateway), one through a gateway
// with a tenant certificate, and puts the same client load on each in
// turn. The gateway is `kubinception gateway` in a process of its own, as
// it runs in the admin cluster: in the benchmark's process it would share
// the garbage collector and the processors' run queues with the client
// workers that make the load.
func benchAPIServer(t *testing.T, e *env, bin string) apiserverResult {
	// No request or byte rate here: this part measures the hop, and a
	// busy API server would otherwise meet its tenant's rate limit (the
	// noisy-neighbour part measures the limits).
	g := startGatewayProcess(t, e, bin, "--default-request-rate=0", "--default-byte-rate=0")
	through := tenantID(1, 1)
	direct, err := datastore.TenancyFor(tenantID(1, 2))
	if err != nil {
		t.Fatal(err)
	}
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
		Args:         []string{"--etcd-prefix=" + direct.Prefix},
	})
	t.Log("starting kube-apiserver through the gateway")
	gatewayAPI := testenv.StartKubeAPIServer(t, testenv.KubeAPIServerOptions{
		EtcdEndpoint: "https://" + g.addr,
		EtcdCAFile:   e.File("tenant-ca.crt"),
		EtcdCertFile: e.File("apiserver-tenant.crt"),
		EtcdKeyFile:  e.File("apiserver-tenant.key"),
	})
	servers := map[string]kubernetes.Interface{"direct": unlimitedClient(t, directAPI.Config), "gateway": unlimitedClient(t, gatewayAPI.Config)}

	ctx := context.Background()
	for _, path := range []string{"direct", "gateway"} {
		if _, err := configMapLoad(ctx, servers[path], "warmup", apiWorkers, apiIterations/2); err != nil {
			t.Fatalf("warm-up on %s: %v", path, err)
		}
	}
	throttledMetric := fmt.Sprintf("kubinception_gateway_throttled_seconds_total{tenant=%q}", through)
	throttled0, err := scrape(ctx, g.httpAddr, throttledMetric)
	if err != nil {
		t.Fatal(err)
	}
	res := apiserverResult{directPrefix: direct.Prefix}
	for round := range apiRounds {
		order := []string{"direct", "gateway"}
		if round%2 == 1 {
			order = []string{"gateway", "direct"}
		}
		for _, path := range order {
			r, err := configMapLoad(ctx, servers[path], fmt.Sprintf("r%d", round), apiWorkers, apiIterations)
			if err != nil {
				t.Fatalf("round %d on %s: %v", round, path, err)
			}
			t.Logf("round %d %-7s %6.0f req/s  p50 %-8s p99 %s", round, path, r.throughput(), r.p(50).Round(10*time.Microsecond), r.p(99).Round(10*time.Microsecond))
			if path == "direct" {
				res.direct = append(res.direct, r)
			} else {
				res.gateway = append(res.gateway, r)
			}
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
