package gateway_test

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc/metadata"
	"k8s.io/apimachinery/pkg/util/wait"

	"kubinception.dev/kubinception/bench/internal/benchkit"
	"kubinception.dev/kubinception/internal/local/hostproc"
	"kubinception.dev/kubinception/internal/testenv"
)

// What a simulated tenant does, as an idle kube-apiserver would: it
// connects with its own certificate over shape.connections client
// connections; opens shape.watches watches (with previous values and
// progress notifications, as kube-apiserver's watch cache opens them) on
// resource prefixes under /registry, spread over shape.streams watch
// streams, themselves spread over its connections; grants one lease of
// idleLeaseTTL seconds that its first connection keeps alive (the etcd
// client sends a keep-alive every third of the TTL); and every
// idleWriteEvery Puts idleValueBytes to one key, attached to the lease,
// that one of its watches sees.
const (
	idleLeaseTTL   = 15
	idleWriteEvery = time.Second
	idleValueBytes = 256
	// idleSettle passes after tenants are added, before the window.
	idleSettle = 10 * time.Second
	// idleWindow is the window CPU is averaged and memory sampled over.
	idleWindow = 45 * time.Second
	// idleSampleEvery is how often memory is read in the window.
	idleSampleEvery = 5 * time.Second
)

// idleResources are the first prefixes a simulated tenant watches; its
// writes go under the last one. Further watches are on prefixes named
// resource-NN.
var idleResources = []string{"configmaps", "pods", "secrets", "services", "leases"}

func watchedResource(i int) string {
	if i < len(idleResources) {
		return idleResources[i]
	}
	return fmt.Sprintf("resource-%02d", i)
}

// idleLevels are the numbers of simulated tenants measured, in order.
var idleLevels = []int{0, 1, 10, 50}

// tenantShape is how a simulated tenant reaches the gateway.
type tenantShape struct {
	name                          string
	connections, streams, watches int
}

func (s tenantShape) String() string {
	return fmt.Sprintf("%s, %s, %s", count(s.connections, "connection"), count(s.streams, "watch stream"), count(s.watches, "watch"))
}

// count is n things, in the plural unless there is one.
func count(n int, thing string) string {
	if n == 1 {
		return "1 " + thing
	}
	if strings.HasSuffix(thing, "h") {
		return fmt.Sprintf("%d %ses", n, thing)
	}
	return fmt.Sprintf("%d %ss", n, thing)
}

// minimalShape is a tenant with one connection and a few watches on one
// stream.
var minimalShape = tenantShape{name: "minimal", connections: 1, streams: 1, watches: len(idleResources)}

// apiserverShape is a tenant shaped like the kube-apiserver of the first
// part: as many connections, watch streams and watches as it had through
// the gateway.
func apiserverShape(a apiserverResult) tenantShape {
	return tenantShape{
		name:        "kube-apiserver-like",
		connections: max(a.connections, 1),
		streams:     max(int(a.watchStreams), 1),
		watches:     max(int(a.watches), 1),
	}
}

// idleResult is one shape of tenant measured at every level.
type idleResult struct {
	shape  tenantShape
	levels []idleLevel
}

// idleLevel is the gateway process measured over one window.
type idleLevel struct {
	tenants int
	// rss is the median of the resident memory samples, rssMax the
	// largest.
	rss, rssMax int64
	// cpu is the CPU time used in the window.
	cpu    time.Duration
	window time.Duration
	// liveHeap is the live heap (MiB, the runtime's resolution) after the
	// last garbage collection by the end of the window, gcs the number of
	// collections in the window; both from the runtime's GC trace.
	liveHeap, gcs int
	// stacks are the bytes of goroutine stacks and goroutines the
	// goroutine count at the end of the window, from the gateway's own
	// metrics.
	stacks, goroutines float64
	// writes and errors are what the simulated tenants did in the window.
	writes, errors int64
}

func (l idleLevel) milliCPU() float64 { return 1000 * l.cpu.Seconds() / l.window.Seconds() }

// benchIdleTenants runs `kubinception gateway` as a process of its own
// with its default limits and measures its memory and CPU while 0, 1, 10
// and 50 simulated tenants of one shape use it. Keys left by what ran
// before are removed first, so that the gateway's baseline is not the
// garbage of reading them.
func benchIdleTenants(t *testing.T, e *env, bin string, shape tenantShape, group int) idleResult {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := e.emptyTenants(ctx); err != nil {
		t.Fatal(err)
	}
	gp := startGatewayProcess(t, e, bin)
	var tenants []*idleTenant
	defer func() {
		for _, it := range tenants {
			it.stop()
		}
	}()
	res := idleResult{shape: shape}
	for _, n := range idleLevels {
		started := time.Now()
		for len(tenants) < n {
			it, err := startIdleTenant(e, gp.addr, tenantID(group, len(tenants)), shape)
			if err != nil {
				t.Fatal(err)
			}
			tenants = append(tenants, it)
		}
		t.Logf("%d %s tenants (%s each) started in %s; settling %s, then measuring for %s",
			n, shape.name, shape, time.Since(started).Round(time.Millisecond), idleSettle, idleWindow)
		time.Sleep(idleSettle)
		l, err := measureWindow(gp, tenants)
		if err != nil {
			t.Fatal(err)
		}
		l.tenants = n
		t.Logf("%2d tenants: RSS %.1f MiB (max %.1f), %.0f mCPU, live heap %d MiB after %d GCs, stacks %.2f MiB, %.0f goroutines, %d writes and %d errors by the tenants",
			n, mib(l.rss), mib(l.rssMax), l.milliCPU(), l.liveHeap, l.gcs, l.stacks/(1<<20), l.goroutines, l.writes, l.errors)
		res.levels = append(res.levels, l)
	}
	return res
}

func mib(b int64) float64 { return float64(b) / (1 << 20) }

// measureWindow reads the gateway process's CPU time across idleWindow, its
// resident memory every idleSampleEvery, and its live heap, stacks and
// goroutines at the end.
func measureWindow(gp *gatewayProcess, tenants []*idleTenant) (idleLevel, error) {
	var l idleLevel
	count := func() (w, e int64) {
		for _, it := range tenants {
			w += it.writes.Load()
			e += it.errors.Load()
		}
		return w, e
	}
	w0, e0 := count()
	gc0, _, err := gcTrace(gp.logPath)
	if err != nil {
		return l, err
	}
	cpu0, err := benchkit.CPUTime(gp.pid)
	if err != nil {
		return l, err
	}
	start := time.Now()
	var rss []int64
	for time.Since(start) < idleWindow {
		time.Sleep(idleSampleEvery)
		r := hostproc.RSS(gp.pid)
		if r == 0 {
			return l, fmt.Errorf("the gateway process %d is gone", gp.pid)
		}
		rss = append(rss, r)
	}
	cpu1, err := benchkit.CPUTime(gp.pid)
	if err != nil {
		return l, err
	}
	l.window = time.Since(start)
	l.cpu = cpu1 - cpu0
	l.rss, l.rssMax = benchkit.Median(rss), benchkit.Worst(rss)
	w1, e1 := count()
	l.writes, l.errors = w1-w0, e1-e0
	gc1, live, err := gcTrace(gp.logPath)
	if err != nil {
		return l, err
	}
	l.gcs, l.liveHeap = gc1-gc0, live
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if l.stacks, err = scrape(ctx, gp.httpAddr, "go_memstats_stack_inuse_bytes "); err != nil {
		return l, err
	}
	l.goroutines, err = scrape(ctx, gp.httpAddr, "go_goroutines ")
	return l, err
}

// gcLine is a line of the runtime's GC trace (GODEBUG=gctrace=1), whose
// "A->B->C MB" are the heap at the start and end of the collection and
// the live heap it marked.
var gcLine = regexp.MustCompile(`^gc \d+ @[0-9.]+s .* \d+->\d+->(\d+) MB,`)

// gcTrace counts the collections in a Go process's log written with
// GODEBUG=gctrace=1 and returns the live heap (MiB) the last one marked.
func gcTrace(logPath string) (collections, liveMiB int, err error) {
	data, err := os.ReadFile(logPath)
	if err != nil {
		return 0, 0, fmt.Errorf("read the gateway's GC trace: %w", err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		if m := gcLine.FindStringSubmatch(line); m != nil {
			collections++
			liveMiB, _ = strconv.Atoi(m[1])
		}
	}
	return collections, liveMiB, nil
}

// buildKubinception builds the kubinception binary into dir.
func buildKubinception(t *testing.T, dir string) string {
	t.Helper()
	bin := filepath.Join(dir, "kubinception")
	if _, err := benchkit.Run(nil, "go", "build", "-ldflags", "-s -w", "-o", bin, "kubinception.dev/kubinception/cmd/kubinception"); err != nil {
		t.Fatal(err)
	}
	return bin
}

// gatewayProcess is `kubinception gateway` running as a process of its
// own, with the runtime's GC trace in its log.
type gatewayProcess struct {
	pid                     int
	addr, httpAddr, logPath string
}

// startGatewayProcess runs `kubinception gateway` with its default limits,
// or those of the extra flags, until the test ends and waits until it is
// ready.
func startGatewayProcess(t *testing.T, e *env, bin string, extra ...string) *gatewayProcess {
	t.Helper()
	gp := &gatewayProcess{
		addr:     fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t)),
		httpAddr: fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t)),
		logPath:  filepath.Join(t.TempDir(), "gateway.log"),
	}
	cmd := exec.Command(bin, "gateway",
		"--listen-address="+gp.addr, "--http-address="+gp.httpAddr,
		"--tls-cert-file="+e.File("serving.crt"), "--tls-key-file="+e.File("serving.key"),
		"--tenant-ca-file="+e.File("tenant-ca.crt"),
		"--datastore-endpoints="+e.Etcd.Endpoint, "--datastore-ca-file="+e.File("datastore-ca.crt"),
		"--datastore-cert-file="+e.File("root.crt"), "--datastore-key-file="+e.File("root.key"),
	)
	cmd.Args = append(cmd.Args, extra...)
	cmd.Env = append(os.Environ(), "GODEBUG=gctrace=1")
	proc := testenv.StartProcess(t, cmd, "gateway", gp.logPath)
	err := wait.PollUntilContextTimeout(context.Background(), 100*time.Millisecond, 2*time.Minute, true, func(ctx context.Context) (bool, error) {
		select {
		case <-proc.Exited:
			return false, fmt.Errorf("the gateway exited: %v", cmd.ProcessState)
		default:
		}
		rctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		req, err := http.NewRequestWithContext(rctx, http.MethodGet, "http://"+gp.httpAddr+"/readyz", nil)
		if err != nil {
			return false, err
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return false, nil
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK, nil
	})
	if err != nil {
		log, _ := os.ReadFile(gp.logPath)
		t.Fatalf("the gateway process is not ready: %v\n%s", err, log)
	}
	gp.pid = cmd.Process.Pid
	return gp
}

// idleTenant is a simulated idle tenant API server (see idleLeaseTTL).
type idleTenant struct {
	clis           []*clientv3.Client
	cancel         context.CancelFunc
	done           chan struct{}
	writes, errors atomic.Int64
}

// startIdleTenant connects tenant id to the gateway at addr in the given
// shape, grants its lease and opens its watches, then writes every
// idleWriteEvery until stopped.
func startIdleTenant(e *env, addr, id string, shape tenantShape) (*idleTenant, error) {
	tc, err := e.TenantTLS(id)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	it := &idleTenant{cancel: cancel, done: make(chan struct{})}
	fail := func(err error) (*idleTenant, error) {
		cancel()
		for _, cli := range it.clis {
			cli.Close()
		}
		return nil, fmt.Errorf("simulated tenant %s: %w", id, err)
	}
	for range shape.connections {
		cli, err := testenv.DialGateway(addr, tc)
		if err != nil {
			return fail(err)
		}
		it.clis = append(it.clis, cli)
	}
	first := it.clis[0]
	gctx, gcancel := context.WithTimeout(ctx, time.Minute)
	defer gcancel()
	lease, err := first.Grant(gctx, idleLeaseTTL)
	if err != nil {
		return fail(fmt.Errorf("grant a lease: %w", err))
	}
	kac, err := first.KeepAlive(ctx, lease.ID)
	if err != nil {
		return fail(fmt.Errorf("keep the lease alive: %w", err))
	}
	go func() {
		for range kac {
		}
	}()
	for w := range shape.watches {
		// The etcd client puts watches whose contexts carry the same
		// metadata on one stream; distinct metadata, distinct streams.
		stream := w % shape.streams
		cli := it.clis[stream%len(it.clis)]
		wctx := metadata.AppendToOutgoingContext(ctx, "bench-watch-stream", strconv.Itoa(stream))
		prefix := "/registry/" + watchedResource(w) + "/"
		wch := cli.Watch(wctx, prefix, clientv3.WithPrefix(), clientv3.WithPrevKV(), clientv3.WithProgressNotify(), clientv3.WithCreatedNotify())
		select {
		case created := <-wch:
			if err := created.Err(); err != nil {
				return fail(fmt.Errorf("watch %s: %w", prefix, err))
			}
		case <-gctx.Done():
			return fail(fmt.Errorf("watch %s not created: %w", prefix, gctx.Err()))
		}
		go func() {
			for range wch {
			}
		}()
	}
	go func() {
		defer close(it.done)
		value := strings.Repeat("l", idleValueBytes)
		tick := time.NewTicker(idleWriteEvery)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			wctx, wcancel := context.WithTimeout(ctx, 5*time.Second)
			_, err := first.Put(wctx, "/registry/leases/kube-system/apiserver", value, clientv3.WithLease(lease.ID))
			wcancel()
			switch {
			case err == nil:
				it.writes.Add(1)
			case ctx.Err() == nil:
				it.errors.Add(1)
			}
		}
	}()
	return it, nil
}

func (it *idleTenant) stop() {
	it.cancel()
	<-it.done
	for _, cli := range it.clis {
		cli.Close()
	}
}
