package gateway_test

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"k8s.io/apimachinery/pkg/util/wait"

	"kubinception.dev/kubinception/internal/datastore"
	"kubinception.dev/kubinception/internal/gateway"
	"kubinception.dev/kubinception/internal/testenv"
)

// TestUsageAgreesAcrossReplicasUnderCompaction writes through one gateway
// replica while another only mirrors, with tenants whose first keys come
// before, while and after the replicas read the datastore, with tenants
// compacting through the gateway every second, the gateway compacting the
// datastore often and the datastore compacting itself; after each round
// both replicas' usage equals a direct count of every tenant's prefix.
func TestUsageAgreesAcrossReplicasUnderCompaction(t *testing.T) {
	e := newTestEnv(t, "--auto-compaction-mode=periodic", "--auto-compaction-retention=2s")
	fast := func(c *gateway.Config) { c.CompactionInterval = 300 * time.Millisecond }
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()

	tenant := func(i int) datastore.Tenancy {
		tn, err := datastore.TenancyFor(fmt.Sprintf("bbbbbbbb-0000-0000-0000-%012d", i))
		if err != nil {
			t.Fatal(err)
		}
		return tn
	}
	var (
		mu      sync.Mutex
		tenants []datastore.Tenancy
		wg      sync.WaitGroup
		errs    = make(chan error, 100)
	)
	// write runs tenant tn's API server through g until stop closes:
	// creates, updates that grow and shrink, deletes, transactions, keys
	// on short leases, and a compaction every second at a revision seen a
	// second before.
	write := func(g *runningGateway, tn datastore.Tenancy, stop <-chan struct{}) {
		mu.Lock()
		tenants = append(tenants, tn)
		mu.Unlock()
		cli := e.tenantClient(t, g, tn.ID)
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(len(tn.ID)), uint64(tn.ID[len(tn.ID)-1])))
			var seen, asked int64
			lastCompact := time.Now()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				key := fmt.Sprintf("/registry/configmaps/ns/cm-%02d", rng.IntN(40))
				value := strings.Repeat("v", 1+rng.IntN(3000))
				var rev int64
				var err error
				switch op := rng.IntN(10); {
				case op < 6:
					var r *clientv3.PutResponse
					if r, err = cli.Put(ctx, key, value); err == nil {
						rev = r.Header.Revision
					}
				case op < 8:
					var r *clientv3.DeleteResponse
					if r, err = cli.Delete(ctx, key); err == nil {
						rev = r.Header.Revision
					}
				case op < 9:
					var r *clientv3.TxnResponse
					if r, err = cli.Txn(ctx).If(clientv3.Compare(clientv3.Version(key), ">", 0)).
						Then(clientv3.OpPut(key, value), clientv3.OpDelete(key+"-b")).
						Else(clientv3.OpPut(key+"-b", value)).Commit(); err == nil {
						rev = r.Header.Revision
					}
				default:
					var l *clientv3.LeaseGrantResponse
					if l, err = cli.Grant(ctx, 1); err == nil {
						_, err = cli.Put(ctx, key+"-lease", value, clientv3.WithLease(l.ID))
					}
				}
				if err != nil {
					errs <- fmt.Errorf("tenant %s, write %d: %w", tn.ID, i, err)
					return
				}
				if time.Since(lastCompact) > time.Second && asked > 0 && asked > seen {
					if _, err := cli.Compact(ctx, asked); err != nil {
						errs <- fmt.Errorf("tenant %s compacting at %d: %w", tn.ID, asked, err)
						return
					}
					seen = asked
				}
				if time.Since(lastCompact) > time.Second {
					asked, lastCompact = rev, time.Now()
				}
			}
		}()
	}
	check := func(round string, gws ...*runningGateway) {
		t.Helper()
		mu.Lock()
		all := append([]datastore.Tenancy(nil), tenants...)
		mu.Unlock()
		var last string
		// Leases of one second expire within a few seconds.
		if err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 20*time.Second, true, func(ctx context.Context) (bool, error) {
			for _, tn := range all {
				want, err := datastore.TenantUsage(ctx, e.Root, tn)
				if err != nil {
					return false, err
				}
				for i, g := range gws {
					var got gateway.Usage
					for _, u := range g.Usage() {
						if u.Tenant == tn.ID {
							got = u.Usage
						}
					}
					if got.Keys != want.Keys || got.Bytes != want.Bytes {
						last = fmt.Sprintf("replica %d: tenant %s: %+v, the datastore holds %+v", i, tn.ID, got, want)
						return false, nil
					}
				}
			}
			return true, nil
		}); err != nil {
			t.Fatalf("%s: usage never agreed with the datastore: %v; last: %s", round, err, last)
		}
	}
	drain := func(stop chan struct{}) {
		close(stop)
		wg.Wait()
		select {
		case err := <-errs:
			t.Fatal(err)
		default:
		}
	}

	check500 := func(g *gateway.Gateway) { gateway.SetMirrorCheck(g, 500*time.Millisecond, nil) }
	g1 := e.startGatewayWith(t, fast, check500)
	// Tenants write before the second replica starts, and on while it
	// reads the datastore.
	stop := make(chan struct{})
	write(g1, tenant(1), stop)
	write(g1, tenant(2), stop)
	time.Sleep(300 * time.Millisecond)
	g2 := e.startGatewayWith(t, fast, check500)
	write(g1, tenant(3), stop)
	time.Sleep(2 * time.Second)
	drain(stop)
	check("tenants before and while the second replica reads", g1, g2)

	// New tenants after both are ready, through the first replica only,
	// across several compactions.
	stop = make(chan struct{})
	for i := 1; i <= 5; i++ {
		write(g1, tenant(i), stop)
	}
	write(g1, tenant(6), stop)
	time.Sleep(4 * time.Second)
	drain(stop)
	check("tenants after both replicas are ready", g1, g2)
	t.Logf("reads of the prefix: first replica %v, second %v", gateway.MirrorReads(g1.Gateway), gateway.MirrorReads(g2.Gateway))
	for i, g := range []*runningGateway{g1, g2} {
		if !g.Ready() {
			t.Errorf("replica %d is not ready after the rounds", i)
		}
	}
}

// startGatewayWith runs a gateway as startGateway does, with prepare
// called between New and Run.
func (e *testEnv) startGatewayWith(t *testing.T, mutate func(*gateway.Config), prepare func(*gateway.Gateway)) *runningGateway {
	t.Helper()
	log := &testenv.GatewayLog{}
	cfg := e.GatewayConfig()
	cfg.Logger = log.Logger()
	cfg.Policy = gateway.StaticPolicy{}
	cfg.CompactionInterval = 0
	if mutate != nil {
		mutate(&cfg)
	}
	g, err := gateway.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if prepare != nil {
		prepare(g)
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
	if err := wait.PollUntilContextTimeout(context.Background(), 20*time.Millisecond, time.Minute, true,
		func(context.Context) (bool, error) { return g.Ready(), nil }); err != nil {
		t.Fatalf("gateway not ready: %v\n%s", err, log.String())
	}
	return &runningGateway{Gateway: g, Log: log}
}

// stallingWatcher is a Watcher whose open watches can be made to stop
// delivering without ending, as a watch that silently stalls.
type stallingWatcher struct {
	clientv3.Watcher
	mu      sync.Mutex
	watches []*atomic.Bool
}

func (w *stallingWatcher) Watch(ctx context.Context, key string, opts ...clientv3.OpOption) clientv3.WatchChan {
	stalled := &atomic.Bool{}
	w.mu.Lock()
	w.watches = append(w.watches, stalled)
	w.mu.Unlock()
	in := w.Watcher.Watch(ctx, key, opts...)
	out := make(chan clientv3.WatchResponse)
	go func() {
		defer close(out)
		for r := range in {
			if stalled.Load() {
				continue
			}
			select {
			case out <- r:
			case <-ctx.Done():
				return
			}
		}
	}()
	return out
}

// stall makes every open watch stop delivering; later watches deliver.
func (w *stallingWatcher) stall() {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, s := range w.watches {
		s.Store(true)
	}
}

// TestMirrorRepairsAStalledWatch stalls the usage mirror's watch without
// ending it: the mirror finds its view behind the datastore at its next
// check, reads the datastore again on a new watch, and usage, /usage,
// /readyz and the mirror metrics agree with the datastore again.
func TestMirrorRepairsAStalledWatch(t *testing.T) {
	e := newTestEnv(t)
	sw := &stallingWatcher{}
	g := e.startGatewayWith(t, nil, func(g *gateway.Gateway) {
		gateway.SetMirrorCheck(g, 200*time.Millisecond, func(w clientv3.Watcher) clientv3.Watcher {
			sw.Watcher = w
			return sw
		})
	})
	tn, err := datastore.TenancyFor("cccccccc-0000-0000-0000-000000000001")
	if err != nil {
		t.Fatal(err)
	}
	cli := e.tenantClient(t, g, tn.ID)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	agree := func(when string) {
		t.Helper()
		var last string
		if err := wait.PollUntilContextTimeout(ctx, 50*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
			want, err := datastore.TenantUsage(ctx, e.Root, tn)
			if err != nil {
				return false, err
			}
			var got gateway.Usage
			for _, u := range g.Usage() {
				if u.Tenant == tn.ID {
					got = u.Usage
				}
			}
			last = fmt.Sprintf("the gateway counts %+v, the datastore holds %+v", got, want)
			return got.Keys == want.Keys && got.Bytes == want.Bytes && g.Ready(), nil
		}); err != nil {
			t.Fatalf("%s: %v; %s", when, err, last)
		}
	}
	put := func(from, to int) {
		for i := from; i < to; i++ {
			if _, err := cli.Put(ctx, fmt.Sprintf("/registry/k%02d", i), strings.Repeat("x", 100+i)); err != nil {
				t.Fatal(err)
			}
		}
	}
	put(0, 10)
	agree("before the stall")

	sw.stall()
	put(10, 20)
	agree("after the watch stalled")
	if n := gateway.MirrorReads(g.Gateway)["lag"]; n == 0 {
		t.Errorf("the stall was repaired without a read for lag: reads %v", gateway.MirrorReads(g.Gateway))
	}
	if !strings.Contains(g.Log.String(), "the watch fell behind the datastore") {
		t.Errorf("no log of the stall")
	}

	// Once repaired, the endpoints agree.
	get := func(path string) (int, string) {
		resp, err := http.Get("http://" + g.HTTPAddr() + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, body := get("/readyz"); code != http.StatusOK {
		t.Errorf("/readyz: %d %s", code, body)
	}
	_, metrics := get("/metrics")
	for _, want := range []string{
		`kubinception_gateway_mirror_current{mirror="usage"} 1`,
		`kubinception_gateway_mirror_reads_total{mirror="usage",reason="lag"}`,
		`kubinception_gateway_mirror_revision{mirror="compactions"}`,
		`kubinception_gateway_mirror_lag_revisions{mirror="usage"}`,
	} {
		if !strings.Contains(metrics, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
}
