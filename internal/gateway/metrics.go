package gateway

import (
	"encoding/json"
	"net/http"
	"sort"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// metrics are the gateway's Prometheus metrics, in a registry of its own
// so that several gateways may live in one process.
type metrics struct {
	registry  *prometheus.Registry
	requests  *prometheus.CounterVec
	refused   *prometheus.CounterVec
	throttled *prometheus.CounterVec
	held      *prometheus.CounterVec
}

func newMetrics(g *Gateway) *metrics {
	m := &metrics{
		registry: prometheus.NewRegistry(),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kubinception_gateway_requests_total",
			Help: "Requests from tenants, by tenant and etcd method.",
		}, []string{"tenant", "method"}),
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kubinception_gateway_refused_total",
			Help: "Requests refused, by tenant and reason (quota, rate, lease, permission).",
		}, []string{"tenant", "reason"}),
		throttled: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kubinception_gateway_throttled_seconds_total",
			Help: "Time tenants' requests waited for their rate limits and for a turn in the fair queue.",
		}, []string{"tenant"}),
		held: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kubinception_gateway_paused_seconds_total",
			Help: "Time tenants' writes were held by a pause (a migration to another datastore).",
		}, []string{"tenant"}),
	}
	m.registry.MustRegister(m.requests, m.refused, m.throttled, m.held, &usageCollector{g: g}, &mirrorCollector{g: g},
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

var (
	bytesDesc = prometheus.NewDesc("kubinception_gateway_tenant_bytes",
		"Bytes of keys and values under the tenant's prefix.", []string{"tenant"}, nil)
	keysDesc = prometheus.NewDesc("kubinception_gateway_tenant_keys",
		"Keys under the tenant's prefix.", []string{"tenant"}, nil)
	quotaDesc = prometheus.NewDesc("kubinception_gateway_tenant_quota_bytes",
		"The tenant's quota (0: none).", []string{"tenant"}, nil)
)

// usageCollector reports usage as it is at scrape time, so a tenant that
// is gone leaves no series behind.
type usageCollector struct{ g *Gateway }

func (c *usageCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- bytesDesc
	ch <- keysDesc
	ch <- quotaDesc
}

func (c *usageCollector) Collect(ch chan<- prometheus.Metric) {
	for _, u := range c.g.Usage() {
		ch <- prometheus.MustNewConstMetric(bytesDesc, prometheus.GaugeValue, float64(u.Bytes), u.Tenant)
		ch <- prometheus.MustNewConstMetric(keysDesc, prometheus.GaugeValue, float64(u.Keys), u.Tenant)
		ch <- prometheus.MustNewConstMetric(quotaDesc, prometheus.GaugeValue, float64(u.QuotaBytes), u.Tenant)
	}
}

var (
	mirrorRevisionDesc = prometheus.NewDesc("kubinception_gateway_mirror_revision",
		"The datastore revision a mirror's view (usage, compactions) is at.", []string{"mirror"}, nil)
	mirrorLagDesc = prometheus.NewDesc("kubinception_gateway_mirror_lag_revisions",
		"Revisions the mirror's view is behind the datastore's revision at its last check.", []string{"mirror"}, nil)
	mirrorStalenessDesc = prometheus.NewDesc("kubinception_gateway_mirror_staleness_seconds",
		"Seconds since the mirror's view was last known current.", []string{"mirror"}, nil)
	mirrorCurrentDesc = prometheus.NewDesc("kubinception_gateway_mirror_current",
		"1 when the mirror's view was read and keeps up with the datastore, else 0.", []string{"mirror"}, nil)
	mirrorReadsDesc = prometheus.NewDesc("kubinception_gateway_mirror_reads_total",
		"Reads of the mirror's whole prefix, by reason (start, compacted, lag, error).", []string{"mirror", "reason"}, nil)
)

// mirrorCollector reports the usage and compaction mirrors' state.
type mirrorCollector struct{ g *Gateway }

func (c *mirrorCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- mirrorRevisionDesc
	ch <- mirrorLagDesc
	ch <- mirrorStalenessDesc
	ch <- mirrorCurrentDesc
	ch <- mirrorReadsDesc
}

func (c *mirrorCollector) Collect(ch chan<- prometheus.Metric) {
	for _, m := range []*prefixMirror{c.g.usageMirror, c.g.compactionMirror, c.g.pauseMirror} {
		s := m.status()
		current := 0.0
		if s.Current {
			current = 1
		}
		ch <- prometheus.MustNewConstMetric(mirrorRevisionDesc, prometheus.GaugeValue, float64(s.Revision), m.name)
		ch <- prometheus.MustNewConstMetric(mirrorLagDesc, prometheus.GaugeValue, float64(s.DatastoreRevision-s.Revision), m.name)
		ch <- prometheus.MustNewConstMetric(mirrorStalenessDesc, prometheus.GaugeValue, s.Staleness.Seconds(), m.name)
		ch <- prometheus.MustNewConstMetric(mirrorCurrentDesc, prometheus.GaugeValue, current, m.name)
		for _, reason := range []string{readStart, readCompacted, readLag, readError} {
			ch <- prometheus.MustNewConstMetric(mirrorReadsDesc, prometheus.CounterValue, float64(s.Reads[reason]), m.name, reason)
		}
	}
}

// TenantUsage is one tenant's line of the /usage endpoint.
type TenantUsage struct {
	Tenant string `json:"tenant"`
	Usage
	// QuotaBytes is the tenant's quota; 0 means none.
	QuotaBytes int64 `json:"quotaBytes"`
}

// Usage returns every tenant's usage and quota, sorted by tenant.
func (g *Gateway) Usage() []TenantUsage {
	all := g.usage.all()
	out := make([]TenantUsage, 0, len(all))
	for id, u := range all {
		tu := TenantUsage{Tenant: id, Usage: u}
		if l, err := g.cfg.Policy.Limits(id); err == nil {
			tu.QuotaBytes = l.QuotaBytes
		}
		out = append(out, tu)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Tenant < out[j].Tenant })
	return out
}

// Handler serves /metrics, /usage (JSON, all tenants, or one with
// ?tenant=<uid>), /healthz and /readyz (ready once usage and compactions
// are read and their mirrors keep up with the datastore).
func (g *Gateway) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(g.metrics.registry, promhttp.HandlerOpts{}))
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok")) })
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, _ *http.Request) {
		if err := g.readiness(); err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write([]byte("ok"))
	})
	mux.HandleFunc("/usage", func(w http.ResponseWriter, r *http.Request) {
		if err := g.readiness(); err != nil {
			http.Error(w, "usage is not current: "+err.Error(), http.StatusServiceUnavailable)
			return
		}
		all := g.Usage()
		w.Header().Set("Content-Type", "application/json")
		if id := r.URL.Query().Get("tenant"); id != "" {
			one := TenantUsage{Tenant: id}
			if l, err := g.cfg.Policy.Limits(id); err == nil {
				one.QuotaBytes = l.QuotaBytes
			}
			for _, u := range all {
				if u.Tenant == id {
					one = u
				}
			}
			_ = json.NewEncoder(w).Encode(one)
			return
		}
		_ = json.NewEncoder(w).Encode(all)
	})
	return mux
}
