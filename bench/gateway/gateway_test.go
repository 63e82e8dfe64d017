package gateway_test

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"kubinception.dev/kubinception/bench/internal/benchkit"
	"kubinception.dev/kubinception/internal/gateway"
	"kubinception.dev/kubinception/internal/release"
)

// report is where the results are written, from this package's directory.
var report = filepath.Join("..", "results", "gateway.md")

// TestGatewayBenchmark measures the etcd gateway with real processes: one
// etcd with authentication on (the datastore), the gateway in this process
// or as `kubinception gateway`, real kube-apiservers. It only measures and
// writes bench/results/gateway.md; it asserts no timing.
func TestGatewayBenchmark(t *testing.T) {
	if os.Getenv("KUBINCEPTION_BENCH") != "1" {
		t.Skip("KUBINCEPTION_BENCH is not 1: this benchmark runs real etcd, kube-apiserver and gateway processes for about 20 minutes and rewrites bench/results/gateway.md; run it with KUBINCEPTION_BENCH=1 go test -v -timeout 60m ./bench/gateway")
	}
	parts, err := benchParts(os.Getenv("KUBINCEPTION_BENCH_PARTS"))
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	load0 := benchkit.LoadAverage()
	var bin string
	if parts[partTenants] || parts[partAPIServer] {
		t.Log("building kubinception")
		bin = buildKubinception(t, t.TempDir())
	}
	e := newEnv(t)

	var (
		api       apiserverResult
		neighbour []*neighbourSetting
		idle      []idleResult
	)
	steps := []struct {
		part, name string
		run        func(t *testing.T)
	}{
		{partAPIServer, "kube-apiserver through the gateway and straight", func(t *testing.T) { api = benchAPIServer(t, e, bin) }},
		{partNeighbour, "noisy neighbour", func(t *testing.T) { neighbour = benchNeighbour(t, e) }},
		{partTenants, "idle tenants, minimal", func(t *testing.T) { idle = append(idle, benchIdleTenants(t, e, bin, minimalShape, 3)) }},
		{partTenants, "idle tenants, shaped like the kube-apiserver", func(t *testing.T) {
			idle = append(idle, benchIdleTenants(t, e, bin, apiserverShape(api), 4))
		}},
	}
	for _, s := range steps {
		if !parts[s.part] {
			continue
		}
		if !t.Run(s.name, s.run) {
			t.Fatalf("%s failed: no report written", s.name)
		}
	}
	r := &reportData{took: time.Since(start), load0: load0, load1: benchkit.LoadAverage(), api: api, neighbour: neighbour, idle: idle}
	if len(parts) == len(allParts) {
		if err := benchkit.WriteReport(report, r.markdown()); err != nil {
			t.Fatal(err)
		}
		return
	}
	for _, part := range allParts {
		if !parts[part] {
			continue
		}
		if err := benchkit.ReplaceSection(report, sectionHeadings[part], r.partAlone(part, sectionOf(r.sections()[part]))); err != nil {
			t.Fatal(err)
		}
	}
}

// The benchmark's parts, as KUBINCEPTION_BENCH_PARTS names them.
const (
	partAPIServer = "apiserver"
	partTenants   = "tenants"
	partNeighbour = "neighbour"
)

var allParts = []string{partAPIServer, partTenants, partNeighbour}

// sectionHeadings are the report's headings of the parts.
var sectionHeadings = map[string]string{
	partAPIServer: "kube-apiserver through the gateway vs straight to the datastore",
	partTenants:   "Gateway memory and CPU with 1, 10 and 50 tenants",
	partNeighbour: "Noisy neighbour",
}

// benchParts reads KUBINCEPTION_BENCH_PARTS: a comma-separated list of
// parts to run, all when empty. A run of some parts rewrites only their
// sections of the report.
func benchParts(env string) (map[string]bool, error) {
	parts := map[string]bool{}
	if env == "" {
		for _, p := range allParts {
			parts[p] = true
		}
		return parts, nil
	}
	for _, p := range strings.Split(env, ",") {
		p = strings.TrimSpace(p)
		if _, ok := sectionHeadings[p]; !ok {
			return nil, fmt.Errorf("KUBINCEPTION_BENCH_PARTS: unknown part %q (parts: %s)", p, strings.Join(allParts, ", "))
		}
		parts[p] = true
	}
	if parts[partTenants] && !parts[partAPIServer] {
		return nil, fmt.Errorf("KUBINCEPTION_BENCH_PARTS: the %s part shapes its tenants like the kube-apiserver of the %s part; run both", partTenants, partAPIServer)
	}
	return parts, nil
}

// sectionOf is the text a section writer writes.
func sectionOf(write func(p func(string, ...any))) string {
	var b strings.Builder
	write(func(format string, args ...any) { fmt.Fprintf(&b, format, args...) })
	return b.String()
}

// sections are the writers of the parts' sections.
func (r *reportData) sections() map[string]func(p func(string, ...any)) {
	return map[string]func(p func(string, ...any)){
		partAPIServer: r.apiserverSection,
		partTenants:   r.idleSection,
		partNeighbour: r.neighbourSection,
	}
}

// partAlone marks a section measured by a run of its part alone: when,
// where, how and with which gateway defaults, below its heading.
func (r *reportData) partAlone(part, section string) string {
	cfg := gateway.DefaultConfig()
	def := cfg.Policy.(gateway.StaticPolicy).Default
	note := fmt.Sprintf(`
**A later run of this part alone**, not the run above: measured %s on %s,
load average (1, 5, 15 min) %s at the start and %s at the end, %s in all,
etcd %s:

    KUBINCEPTION_BENCH=1 KUBINCEPTION_BENCH_PARTS=%s go test -v -timeout 60m ./bench/gateway

The gateway's defaults in this run: per tenant %.0f requests/s (bursts
of %.0f) and %d MiB/s, a %d GiB quota; %d requests in flight to the
datastore, with k tenants active each holding at most ceil(%d/k) of them.
`, benchkit.Now(), benchkit.Machine(), r.load0, r.load1, r.took.Round(time.Second), release.EtcdVersion, part,
		def.RequestsPerSecond, 2*def.RequestsPerSecond, int(def.BytesPerSecond)>>20, def.QuotaBytes>>30, cfg.MaxInFlight, cfg.MaxInFlight)
	heading := "## " + sectionHeadings[part] + "\n"
	i := strings.Index(section, heading)
	if i < 0 {
		return section
	}
	i += len(heading)
	return section[:i] + note + section[i:]
}

// reportData is everything the report shows.
type reportData struct {
	took         time.Duration
	load0, load1 string
	api          apiserverResult
	neighbour    []*neighbourSetting
	idle         []idleResult
}

func ratio(a, b time.Duration) string { return fmt.Sprintf("%.2f", benchkit.Ratio(a, b)) }

func (r *reportData) markdown() string {
	var b strings.Builder
	p := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }
	cfg := gateway.DefaultConfig()
	def := cfg.Policy.(gateway.StaticPolicy).Default
	p(`# Gateway benchmark

Measured %s on %s: shared 2-core VM, compare ratios from the same run.
Load average (1, 5, 15 min) %s at the start and %s at the end: other
work shared the machine. etcd %s, Kubernetes %s. The whole run took %s:

    KUBINCEPTION_BENCH=1 go test -v -timeout 60m ./bench/gateway

One etcd (TLS, client certificates, authentication on) is the datastore
for everything below. The gateway has its defaults unless said otherwise:
per tenant %.0f requests/s (bursts of %.0f) and %d MiB/s, a %d GiB quota;
%d requests in flight to the datastore, with k tenants active each holding
at most ceil(%d/k) of them.
`, benchkit.Now(), benchkit.Machine(), r.load0, r.load1, release.EtcdVersion, release.DefaultKubernetesVersion, r.took.Round(time.Second),
		def.RequestsPerSecond, 2*def.RequestsPerSecond, int(def.BytesPerSecond)>>20, def.QuotaBytes>>30, cfg.MaxInFlight, cfg.MaxInFlight)

	r.apiserverSection(p)
	r.idleSection(p)
	r.neighbourSection(p)
	return b.String()
}

func (r *reportData) apiserverSection(p func(string, ...any)) {
	a := r.api
	dt, d50, d99 := medians(a.direct)
	gt, g50, g99 := medians(a.gateway)
	pt, p50, p99 := medians(a.proxy)
	gd := ratioRow(roundRatios(a.gateway, a.direct))
	pd := ratioRow(roundRatios(a.proxy, a.direct))
	gp := ratioRow(roundRatios(a.gateway, a.proxy))
	p(`
## kube-apiserver through the gateway vs straight to the datastore

The gateway of this part has no request or byte rate (it measures the
hop; a busy API server would otherwise meet its tenant's rate limit, which
the noisy-neighbour part measures); its in-flight slots and fair queue are
the defaults. The datastore's authentication is off for this part (etcd's
gRPC proxy passes on a user name and password but no certificate's
identity, so through it a kube-apiserver would be refused); all three
paths meet it without permission checks. Three kube-apiservers on the
datastore at once:

- *direct*: %s and the datastore's root certificate, as tenant API servers
  ran before the gateway;
- *gateway*: --etcd-servers=<the gateway: `+"`kubinception gateway`"+` in a
  process of its own with --default-request-rate=0 --default-byte-rate=0>,
  the default --etcd-prefix=/registry and a tenant certificate (the gateway
  maps its keys under /tenants/<uid>);
- *grpc-proxy*: --etcd-servers=<etcd's own gRPC proxy, `+"`etcd grpc-proxy start --namespace=%s`"+`,
  TLS and client certificates on both sides>, the default
  --etcd-prefix=/registry. The upstream hop with a key prefix and
  nothing else (no per-tenant identity, quota, usage or fairness): what
  any gRPC hop between a kube-apiserver and etcd costs on this machine.

The same load on each in turn: %d client-go workers (no client-side rate
limit), each creating, getting, updating and deleting %d ConfigMaps of %d
KiB one after another, %d requests a round. One warm-up round on each,
then %d rounds, each path going first, second and last in turn. Medians
over the rounds, and the median of each round's own ratio (the paths of a
round ran one after the other, so its ratio cancels the machine's slower
drifts):

| path | throughput | p50 | p99 |
|---|---|---|---|
| direct | %.0f req/s | %s | %s |
| gateway | %.0f req/s | %s | %s |
| grpc-proxy | %.0f req/s | %s | %s |

| median of the rounds' ratios (lowest – highest) | throughput | p50 | p99 |
|---|---|---|---|
| **gateway / direct** (goals ≥ 0.90, ≤ 1.10, ≤ 1.10) | %s | %s | %s |
| grpc-proxy / direct: the floor of a hop | %s | %s | %s |
| gateway / grpc-proxy: the gateway beside the upstream hop | %s | %s | %s |

The grpc-proxy row is what a hop costs before anything the gateway adds:
each request crosses TLS and gRPC a second time, on the same two cores as
the three API servers and etcd. Where the gateway / grpc-proxy ratios are
near 1, the gateway's own work (tenant identity, key confinement, quota,
the usage watch, fairness) costs about nothing beside the hop, and the
goals of the first row are below what etcd's own proxy reaches here.

The gateway's rate limits and fair queue held the tenant for %.3f s in
total during the measured rounds. At the end the kube-apiserver held %d
connections to the gateway and had opened %.0f watches on %.0f watch
streams through it.

| round | direct req/s | gateway req/s | grpc-proxy req/s | direct p50 | gateway p50 | grpc-proxy p50 | direct p99 | gateway p99 | grpc-proxy p99 |
|---|---|---|---|---|---|---|---|---|---|
`, "--etcd-servers=<etcd> --etcd-prefix="+a.directPrefix, a.proxyNamespace,
		apiWorkers, apiIterations, apiDataBytes>>10, apiWorkers*apiIterations*4, apiRounds,
		dt, benchkit.Millis(d50), benchkit.Millis(d99), gt, benchkit.Millis(g50), benchkit.Millis(g99), pt, benchkit.Millis(p50), benchkit.Millis(p99),
		gd[0], gd[1], gd[2], pd[0], pd[1], pd[2], gp[0], gp[1], gp[2],
		a.throttled, a.connections, a.watches, a.watchStreams)
	for i := range a.direct {
		d, g, x := a.direct[i], a.gateway[i], a.proxy[i]
		p("| %d | %.0f | %.0f | %.0f | %s | %s | %s | %s | %s | %s |\n", i, d.throughput(), g.throughput(), x.throughput(),
			benchkit.Millis(d.p(50)), benchkit.Millis(g.p(50)), benchkit.Millis(x.p(50)),
			benchkit.Millis(d.p(99)), benchkit.Millis(g.p(99)), benchkit.Millis(x.p(99)))
	}
}

// ratioRow formats the median of each series of rounds' ratios with its
// lowest and highest.
func ratioRow(series ...[]float64) [3]string {
	var row [3]string
	for i, s := range series {
		row[i] = fmt.Sprintf("%.2f (%.2f – %.2f)", benchkit.Median(s), slices.Min(s), slices.Max(s))
	}
	return row
}

func (r *reportData) idleSection(p func(string, ...any)) {
	p(`
## Gateway memory and CPU with 1, 10 and 50 tenants

`+"`kubinception gateway`"+` as a process of its own (default limits, GODEBUG=gctrace=1),
a fresh one for each shape of tenant, after the keys left by what ran
before were deleted and compacted away. From /proc: resident memory
sampled every %s over a %s window (median and largest), CPU time (user +
system) over the same window. From the runtime's GC trace: the live heap
the last collection marked (whole MiB) and the collections in the
window. From its /metrics at the end of the window: goroutine stacks and
goroutines. Each level is measured %s after its tenants were added;
tenants are added to those already there.

A simulated tenant behaves like an idle kube-apiserver: it connects with
its own tenant certificate; opens watches (with previous values and
progress notifications, as kube-apiserver's watch cache opens them) on
prefixes under /registry (%s, then resource-NN); grants a %d s lease that
its etcd client keeps alive (a keep-alive every %d s); and every %s Puts
%d bytes to one key, attached to the lease, that one of its watches sees.
It sends no reads: an idle kube-apiserver serves reads from its watch
cache. Two shapes:

- *minimal*: %s.
- *kube-apiserver-like*: %s: what the kube-apiserver of the first part
  held through the gateway, measured in this run (it keeps an etcd client,
  hence a connection, per resource, and a watch stream per watch).
`, idleSampleEvery, idleWindow, idleSettle, strings.Join(idleResources, ", "), idleLeaseTTL, idleLeaseTTL/3, idleWriteEvery, idleValueBytes,
		minimalShape, apiserverShape(r.api))
	for _, res := range r.idle {
		p("\n### %s tenants (%s each)\n\n", res.shape.name, res.shape)
		p("| tenants | RSS (median / max) | CPU | live heap | goroutine stacks | goroutines | GCs in the window | tenants' writes in the window (errors) |\n|---|---|---|---|---|---|---|---|\n")
		for _, l := range res.levels {
			p("| %d | %.1f / %.1f MiB | %.0f mCPU | %d MiB | %.2f MiB | %.0f | %d | %d (%d) |\n", l.tenants, mib(l.rss), mib(l.rssMax), l.milliCPU(), l.liveHeap, l.stacks/(1<<20), l.goroutines, l.gcs, l.writes, l.errors)
		}
		p("\nPer tenant added, between levels:\n\n| from → to | RSS | CPU | live heap | goroutine stacks | goroutines |\n|---|---|---|---|---|---|\n")
		for i := 1; i < len(res.levels); i++ {
			a, z := res.levels[i-1], res.levels[i]
			n := float64(z.tenants - a.tenants)
			p("| %d → %d | %.0f KiB | %.1f mCPU | %.0f KiB | %.0f KiB | %.1f |\n", a.tenants, z.tenants,
				float64(z.rss-a.rss)/n/1024, (z.milliCPU()-a.milliCPU())/n, float64(z.liveHeap-a.liveHeap)*1024/n, (z.stacks-a.stacks)/n/1024, (z.goroutines-a.goroutines)/n)
		}
	}
}

func (r *reportData) neighbourSection(p func(string, ...any)) {
	p(`
## Noisy neighbour

Tenant A floods: %d writers, each overwriting %d keys of its own in turn
with %d KiB values as fast as the gateway lets it, for %s. Tenant B sends
one request every %s (a Put of %d bytes and a Get of the same key in
turn), on schedule whatever the previous one is doing: %s alone
(*before*), then throughout the flood (*during*). Both reach the same
in-process gateway with their own certificates. Limits, per tenant:
*defaults* as above; *lowered*: the defaults with %d requests/s; *off*:
request and byte rates 0 (unlimited); *off, %d in flight*: no rates and
%d requests in flight, so that the fair share (ceil(%d/2) = %d with both
tenants active) is more than A's %d writers and never binds: the gateway
without fairness, for comparison. The others have the default %d in
flight, A holding at most %d of them while B has a request in flight or
waiting. %d rounds, each running the settings in turn (rotating which
goes first), a fresh gateway each time, the datastore compacted and
defragmented after each flood. Medians over the rounds:

| limits | B p50 before | B p50 during | during / before | B p99 before | B p99 during | during / before | A's flood | B errors |
|---|---|---|---|---|---|---|---|---|
`, floodWriters, floodKeys, floodValueBytes>>10, floodFor, lightEvery, lightValueBytes, quietFor, loweredRate,
		unfairInFlight, unfairInFlight, unfairInFlight, (unfairInFlight+1)/2, floodWriters,
		gateway.DefaultConfig().MaxInFlight, (gateway.DefaultConfig().MaxInFlight+1)/2, neighbourRounds)
	for _, s := range r.neighbour {
		var b50, b99, d50, d99 []time.Duration
		var rate []float64
		errs := 0
		for _, run := range s.runs {
			b50 = append(b50, benchkit.Percentile(run.before, 50))
			b99 = append(b99, benchkit.Percentile(run.before, 99))
			d50 = append(d50, benchkit.Percentile(run.during, 50))
			d99 = append(d99, benchkit.Percentile(run.during, 99))
			rate = append(rate, run.floodRate())
			errs += run.lightErrors
		}
		mb50, mb99, md50, md99 := benchkit.Median(b50), benchkit.Median(b99), benchkit.Median(d50), benchkit.Median(d99)
		a := benchkit.Median(rate)
		p("| %s | %s | %s | **%s** | %s | %s | **%s** | %.0f writes/s (%.1f MiB/s) | %d |\n", s.name, benchkit.Millis(mb50), benchkit.Millis(md50), ratio(md50, mb50), benchkit.Millis(mb99), benchkit.Millis(md99), ratio(md99, mb99),
			a, a*floodValueBytes/(1<<20), errs)
	}
	p("\nEach run, in the order run:\n\n| round | limits | B p50 before | B p50 during | B p99 before | B p99 during | B requests before / during | A writes/s | A errors |\n|---|---|---|---|---|---|---|---|---|\n")
	for round := range neighbourRounds {
		for i := range r.neighbour {
			s := r.neighbour[(round+i)%len(r.neighbour)]
			run := s.runs[round]
			p("| %d | %s | %s | %s | %s | %s | %d / %d | %.0f | %d |\n", round, s.name,
				benchkit.Millis(benchkit.Percentile(run.before, 50)), benchkit.Millis(benchkit.Percentile(run.during, 50)),
				benchkit.Millis(benchkit.Percentile(run.before, 99)), benchkit.Millis(benchkit.Percentile(run.during, 99)),
				len(run.before), len(run.during), run.floodRate(), run.floodErrors)
		}
	}
}
