package gateway_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"kubinception.dev/kubinception/bench/internal/benchkit"
	"kubinception.dev/kubinception/internal/gateway"
)

// Tenant A's flood: floodWriters writers, each overwriting floodKeys keys
// of its own in turn with floodValueBytes values, as fast as the gateway
// lets it, for floodFor. Tenant B's light stream: one request every
// lightEvery (a Put of lightValueBytes and a Get of the same key in
// turn), sent on schedule whatever the previous one is doing, quietFor
// before the flood and throughout it.
const (
	floodWriters    = 8
	floodKeys       = 128
	floodValueBytes = 10 << 10
	floodFor        = 20 * time.Second
	lightEvery      = 20 * time.Millisecond
	lightValueBytes = 512
	quietFor        = 10 * time.Second
	// neighbourRounds are run for each setting, rotating which goes
	// first.
	neighbourRounds = 5
)

// neighbourRun is one flood with one setting of the gateway's limits.
type neighbourRun struct {
	// before and during are tenant B's request latencies.
	before, during []time.Duration
	// lightErrors are B's failed requests.
	lightErrors int
	// floodWrites and floodErrors count A's writes; floodElapsed is how
	// long the flood lasted.
	floodWrites, floodErrors int
	floodElapsed             time.Duration
}

func (r neighbourRun) floodRate() float64 { return float64(r.floodWrites) / r.floodElapsed.Seconds() }

// neighbourSetting is one setting of the gateway's limits.
type neighbourSetting struct {
	name string
	// limits are every tenant's limits.
	limits gateway.Limits
	// maxInFlight is the gateway's MaxInFlight; 0 keeps the default.
	maxInFlight int
	runs        []neighbourRun
}

// loweredRate is the request rate of the "lowered" setting: well under
// the writes a flood reaches on a small machine, so that it binds.
const loweredRate = 200

// unfairInFlight is MaxInFlight in the setting without fairness: with
// two tenants active, a share of ceil(unfairInFlight/2) never binds on
// floodWriters.
const unfairInFlight = 64

// neighbourSettings are the gateway's defaults ("defaults"), the defaults
// with a lowered request rate ("lowered"), no rate limits at all ("off"),
// and no rate limits with so many slots in flight that the fair share
// never binds; the quota is the default in all.
func neighbourSettings() []*neighbourSetting {
	def := gateway.DefaultConfig().Policy.(gateway.StaticPolicy).Default
	lowered := def
	lowered.RequestsPerSecond = loweredRate
	return []*neighbourSetting{
		{name: "defaults", limits: def},
		{name: "lowered", limits: lowered},
		{name: "off", limits: gateway.Limits{QuotaBytes: def.QuotaBytes}},
		{name: fmt.Sprintf("off, %d in flight", unfairInFlight), limits: gateway.Limits{QuotaBytes: def.QuotaBytes}, maxInFlight: unfairInFlight},
	}
}

// benchNeighbour runs tenant A's flood beside tenant B's light stream
// through an in-process gateway with each of the neighbourSettings,
// neighbourRounds times each, rotating which goes first.
func benchNeighbour(t *testing.T, e *env) []*neighbourSetting {
	settings := neighbourSettings()
	for round := range neighbourRounds {
		for i := range settings {
			s := settings[(round+i)%len(settings)]
			run := neighbourRound(t, e, func(c *gateway.Config) {
				c.Policy = gateway.StaticPolicy{Default: s.limits}
				if s.maxInFlight > 0 {
					c.MaxInFlight = s.maxInFlight
				}
			})
			t.Logf("round %d limits %-16s  B before: p50 %-8s p99 %-8s  during: p50 %-8s p99 %-8s  A: %.0f writes/s (%d errors), B: %d errors",
				round, s.name,
				benchkit.Percentile(run.before, 50).Round(10*time.Microsecond), benchkit.Percentile(run.before, 99).Round(10*time.Microsecond),
				benchkit.Percentile(run.during, 50).Round(10*time.Microsecond), benchkit.Percentile(run.during, 99).Round(10*time.Microsecond),
				run.floodRate(), run.floodErrors, run.lightErrors)
			s.runs = append(s.runs, run)
		}
	}
	return settings
}

// neighbourRound starts a gateway, measures B's light stream alone and
// then beside A's flood, stops the gateway and compacts the flood's
// history away.
func neighbourRound(t *testing.T, e *env, mutate func(*gateway.Config)) neighbourRun {
	g := e.StartGateway(t, mutate)
	defer g.Stop()
	a, err := e.TenantClient(g.Addr(), tenantID(2, 1))
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	b, err := e.TenantClient(g.Addr(), tenantID(2, 2))
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	ctx := context.Background()
	// Connections made and both tenants known to the gateway before
	// anything is timed.
	for _, cli := range []*clientv3.Client{a, b} {
		if _, err := cli.Put(ctx, "/registry/warm", "up"); err != nil {
			t.Fatal(err)
		}
	}

	var light lightStream
	lctx, stopLight := context.WithCancel(ctx)
	lightDone := make(chan struct{})
	go func() { light.run(lctx, b); close(lightDone) }()
	time.Sleep(quietFor)
	light.phase.Store(phaseDuring)
	run := flood(ctx, a)
	stopLight()
	<-lightDone
	light.wg.Wait()
	run.before, run.during, run.lightErrors = light.lat[phaseBefore], light.lat[phaseDuring], light.errors

	g.Stop()
	cctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	if err := e.compactAll(cctx); err != nil {
		t.Fatal(err)
	}
	return run
}

const (
	phaseBefore = iota
	phaseDuring
)

// lightStream is tenant B's steady stream; each request's latency counts
// in the phase it was sent in.
type lightStream struct {
	phase  atomic.Int32
	wg     sync.WaitGroup
	mu     sync.Mutex
	lat    [2][]time.Duration
	errors int
}

// run sends a request every lightEvery until ctx ends, without waiting
// for the previous ones: a slow answer does not thin the samples.
func (s *lightStream) run(ctx context.Context, cli *clientv3.Client) {
	value := strings.Repeat("b", lightValueBytes)
	tick := time.NewTicker(lightEvery)
	defer tick.Stop()
	for n := 0; ; n++ {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		phase := s.phase.Load()
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			rctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			key := fmt.Sprintf("/registry/light/%d", n/2%100)
			start := time.Now()
			var err error
			if n%2 == 0 {
				_, err = cli.Put(rctx, key, value)
			} else {
				_, err = cli.Get(rctx, key)
			}
			d := time.Since(start)
			s.mu.Lock()
			defer s.mu.Unlock()
			if err != nil {
				s.errors++
				return
			}
			s.lat[phase] = append(s.lat[phase], d)
		}()
	}
}

// flood writes as tenant A for floodFor.
func flood(ctx context.Context, cli *clientv3.Client) neighbourRun {
	value := strings.Repeat("a", floodValueBytes)
	var writes, errs atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	deadline := start.Add(floodFor)
	for w := range floodWriters {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; time.Now().Before(deadline); i++ {
				rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
				_, err := cli.Put(rctx, fmt.Sprintf("/registry/flood/%d/%d", w, i%floodKeys), value)
				cancel()
				if err != nil {
					errs.Add(1)
				} else {
					writes.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	return neighbourRun{floodWrites: int(writes.Load()), floodErrors: int(errs.Load()), floodElapsed: time.Since(start)}
}
