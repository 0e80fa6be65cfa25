package router

import (
	"fmt"
	"io"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/VictoriaMetrics/metrics"
)

// latencyBuckets are upper bounds in seconds for the request path's
// histograms: from 1 ms (a cache hit, an immediate refusal) to 120 s (a
// long generation), dense enough around 50 ms-5 s that histogram_quantile
// interpolates within a few percent where most answers land.
var latencyBuckets = []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 120}

// DefaultMaxTenantLabels is how many distinct tenant label values one node
// exports. A node serving more tenants than this counts the others under
// tenant="other", so that tenants created by the thousand cannot grow
// /metrics (or a Prometheus behind it) without bound. The first tenants
// seen keep their own series for the life of the process.
const DefaultMaxTenantLabels = 100

// overflowLabel replaces a label value once its bound is reached, and a
// model name that is not configured (a client may send anything).
const overflowLabel = "other"

// routerMetrics registers the request path's metrics in the node's set.
//
// Series (all labels bounded):
//
//   - sluice_requests_total{model,deployment,region,class,status}: finished
//     API requests. model is a configured model (else "other"),
//     deployment and region come from configuration, class is the tenant
//     class, status the HTTP status answered (499: the client went away).
//   - sluice_request_duration_seconds{model}: whole request, histogram.
//   - sluice_time_to_first_byte_seconds{model,stream}: from the request's
//     arrival to the upstream answer's headers going out to the client
//     (for a stream, with its first event), retries included; histogram.
//   - sluice_upstream_latency_seconds{deployment}: one upstream attempt,
//     from sending to the provider's response headers; histogram.
//   - sluice_tokens_total{model,tenant,direction}: prompt ("in") and
//     completion ("out") tokens; tenant bounded by maxTenants, overflow
//     "other".
//   - sluice_upstream_attempts_total{deployment,outcome},
//     sluice_upstream_429_total{deployment}, sluice_retries_total{model},
//     sluice_budget_refusals_total{deployment},
//     sluice_pace_wait_seconds{deployment} (histogram: how long requests
//     waited for a paced share's rate; see quota.Pace),
//     sluice_retry_budget_exhausted_total,
//     sluice_soft_limit_exceeded_total{tenant} (tenant bounded as above).
//   - Gauges read at scrape time, not on the request path:
//     sluice_router_ready, sluice_inflight_requests, and per configured
//     deployment sluice_deployment_circuit{deployment,state} (1 for the
//     current state of closed, open, half-open), sluice_deployment_cooling
//     (1 while the deployment honours a provider's retry-after),
//     sluice_deployment_cooling_seconds (time left),
//     sluice_deployment_inflight and sluice_deployment_latency_seconds
//     (the balancer's peak-EWMA latency).
//
// metrics.Set's GetOrCreate takes the set's mutex and formats a name on
// every call; the request path instead looks its metrics up in an
// immutable map published through an atomic pointer (copy on the rare
// miss), so requests share no lock and format nothing once warm. Tenant
// labels are admitted the same way: an immutable set behind an atomic
// pointer, and once it is full an unknown tenant maps to "other" without
// taking the lock.
type routerMetrics struct {
	set *metrics.Set
	r   *Router

	mu    sync.Mutex // serialises misses of byKey and tenants
	byKey atomic.Pointer[map[metricKey]any]

	maxTenants  int
	tenants     atomic.Pointer[map[string]struct{}]
	tenantsFull atomic.Bool
}

// metricKey names one series: kind plus up to five label values.
type metricKey struct {
	kind       uint8
	a, b, c, d string
	status     int
}

const (
	mRequests uint8 = iota
	mDuration
	mTokensIn
	mTokensOut
	mRetries
	mUpstream
	mBudget
	mSoftLimit
	mCacheRequests
	mCacheSaved
	mUpstreamLatency
	mFirstByte
	mUpstream429
	mPaceWait
)

func newRouterMetrics(set *metrics.Set, r *Router) *routerMetrics {
	m := &routerMetrics{set: set, r: r, maxTenants: DefaultMaxTenantLabels}
	empty := map[metricKey]any{}
	m.byKey.Store(&empty)
	noTenants := map[string]struct{}{}
	m.tenants.Store(&noTenants)
	set.NewGauge("sluice_router_ready", func() float64 {
		if r.Ready() {
			return 1
		}
		return 0
	})
	set.NewGauge("sluice_inflight_requests", func() float64 { return float64(r.InFlight()) })
	set.RegisterMetricsWriter(m.writeDeployments)
	set.RegisterMetricsWriter(m.writeCache) // cache.go
	return m
}

// get returns the metric for k, creating it with mk on first use.
func (m *routerMetrics) get(k metricKey, mk func() any) any {
	if v, ok := (*m.byKey.Load())[k]; ok {
		return v
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	old := *m.byKey.Load()
	if v, ok := old[k]; ok {
		return v
	}
	next := make(map[metricKey]any, len(old)+1)
	for kk, v := range old {
		next[kk] = v
	}
	v := mk()
	next[k] = v
	m.byKey.Store(&next)
	return v
}

func (m *routerMetrics) counter(k metricKey, name func() string) *metrics.Counter {
	return m.get(k, func() any { return m.set.GetOrCreateCounter(name()) }).(*metrics.Counter)
}

func (m *routerMetrics) histogram(k metricKey, name func() string) *metrics.PrometheusHistogram {
	return m.get(k, func() any {
		return m.set.GetOrCreatePrometheusHistogramExt(name(), latencyBuckets)
	}).(*metrics.PrometheusHistogram)
}

// modelLabel returns model if the serving configuration has it, "" for a
// request that never named one, and "other" for any other name: the model
// comes from the client's body, so it must not become a label unchecked.
func (m *routerMetrics) modelLabel(model string) string {
	if model == "" {
		return ""
	}
	if t := m.r.table.Load(); t != nil {
		if _, ok := t.routes[model]; ok {
			return model
		}
	}
	return overflowLabel
}

// tenantLabel returns tenant while fewer than maxTenants distinct tenants
// have been labelled, and "other" afterwards for any tenant not labelled
// yet.
func (m *routerMetrics) tenantLabel(tenant string) string {
	if _, ok := (*m.tenants.Load())[tenant]; ok {
		return tenant
	}
	if m.tenantsFull.Load() {
		return overflowLabel
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	old := *m.tenants.Load()
	if _, ok := old[tenant]; ok {
		return tenant
	}
	if len(old) >= m.maxTenants {
		m.tenantsFull.Store(true)
		return overflowLabel
	}
	next := make(map[string]struct{}, len(old)+1)
	for k := range old {
		next[k] = struct{}{}
	}
	next[tenant] = struct{}{}
	m.tenants.Store(&next)
	return tenant
}

func (m *routerMetrics) request(rec *Record) {
	model := m.modelLabel(rec.Model)
	m.counter(metricKey{kind: mRequests, a: model, b: rec.Deployment, c: rec.Region, d: rec.Class, status: rec.Status}, func() string {
		return fmt.Sprintf(`sluice_requests_total{model=%q,deployment=%q,region=%q,class=%q,status=%q}`,
			model, rec.Deployment, rec.Region, rec.Class, strconv.Itoa(rec.Status))
	}).Inc()
	m.histogram(metricKey{kind: mDuration, a: model}, func() string {
		return fmt.Sprintf(`sluice_request_duration_seconds{model=%q}`, model)
	}).Update(rec.Latency.Seconds())
	if rec.PromptTokens > 0 || rec.CompletionTokens > 0 {
		tenant := m.tenantLabel(rec.Tenant)
		m.counter(metricKey{kind: mTokensIn, a: model, b: tenant}, func() string {
			return fmt.Sprintf(`sluice_tokens_total{model=%q,tenant=%q,direction="in"}`, model, tenant)
		}).Add(int(rec.PromptTokens))
		m.counter(metricKey{kind: mTokensOut, a: model, b: tenant}, func() string {
			return fmt.Sprintf(`sluice_tokens_total{model=%q,tenant=%q,direction="out"}`, model, tenant)
		}).Add(int(rec.CompletionTokens))
	}
	if rec.Attempts > 1 {
		m.counter(metricKey{kind: mRetries, a: model}, func() string {
			return fmt.Sprintf(`sluice_retries_total{model=%q}`, model)
		}).Add(rec.Attempts - 1)
	}
}

// firstByte records the time from a request's arrival to the first byte
// of the upstream answer going out to the client.
func (m *routerMetrics) firstByte(model string, stream bool, d time.Duration) {
	model = m.modelLabel(model)
	s := "false"
	if stream {
		s = "true"
	}
	m.histogram(metricKey{kind: mFirstByte, a: model, b: s}, func() string {
		return fmt.Sprintf(`sluice_time_to_first_byte_seconds{model=%q,stream=%q}`, model, s)
	}).Update(d.Seconds())
}

// upstreamLatency records one attempt's time to the provider's headers.
func (m *routerMetrics) upstreamLatency(deployment string, d time.Duration) {
	m.histogram(metricKey{kind: mUpstreamLatency, a: deployment}, func() string {
		return fmt.Sprintf(`sluice_upstream_latency_seconds{deployment=%q}`, deployment)
	}).Update(d.Seconds())
}

// paceWait records how long a request waited for a paced share's rate.
func (m *routerMetrics) paceWait(deployment string, d time.Duration) {
	m.histogram(metricKey{kind: mPaceWait, a: deployment}, func() string {
		return fmt.Sprintf(`sluice_pace_wait_seconds{deployment=%q}`, deployment)
	}).Update(d.Seconds())
}

func (m *routerMetrics) upstream(deployment, outcome string) {
	m.counter(metricKey{kind: mUpstream, a: deployment, b: outcome}, func() string {
		return fmt.Sprintf(`sluice_upstream_attempts_total{deployment=%q,outcome=%q}`, deployment, outcome)
	}).Inc()
}

// upstream429 counts a provider's 429 Too Many Requests.
func (m *routerMetrics) upstream429(deployment string) {
	m.counter(metricKey{kind: mUpstream429, a: deployment}, func() string {
		return fmt.Sprintf(`sluice_upstream_429_total{deployment=%q}`, deployment)
	}).Inc()
}

func (m *routerMetrics) budgetRefused(deployment string) {
	m.counter(metricKey{kind: mBudget, a: deployment}, func() string {
		return fmt.Sprintf(`sluice_budget_refusals_total{deployment=%q}`, deployment)
	}).Inc()
}

func (m *routerMetrics) retryDenied() {
	m.set.GetOrCreateCounter(`sluice_retry_budget_exhausted_total`).Inc()
}

func (m *routerMetrics) softLimit(tenant string) {
	tenant = m.tenantLabel(tenant)
	m.counter(metricKey{kind: mSoftLimit, a: tenant}, func() string {
		return fmt.Sprintf(`sluice_soft_limit_exceeded_total{tenant=%q}`, tenant)
	}).Inc()
}

func (m *routerMetrics) cacheRequest(model, result string) {
	m.counter(metricKey{kind: mCacheRequests, a: model, b: result}, func() string {
		return fmt.Sprintf(`sluice_cache_requests_total{model=%q,result=%q}`, model, result)
	}).Inc()
}

func (m *routerMetrics) cacheSaved(model string, tokens int64) {
	m.counter(metricKey{kind: mCacheSaved, a: model}, func() string {
		return fmt.Sprintf(`sluice_cache_saved_tokens_total{model=%q}`, model)
	}).Add(int(tokens))
}

// circuitStates are the values of sluice_deployment_circuit's state label.
var circuitStates = [...]int32{circuitClosed, circuitOpen, circuitHalfOpen}

// writeDeployments writes the per-deployment health gauges of the table
// being served. It runs at scrape time, so the request path pays nothing
// for them and a deployment removed from the configuration disappears
// from the next scrape.
func (m *routerMetrics) writeDeployments(w io.Writer) {
	t := m.r.table.Load()
	if t == nil {
		return
	}
	names := make([]string, 0, len(t.targets))
	for name := range t.targets {
		names = append(names, name)
	}
	slices.Sort(names)
	now := m.r.cfg.Now().UnixNano()
	// One family at a time, as the exposition format asks.
	for _, name := range names {
		cur := t.targets[name].health.circuit.Load()
		for _, st := range circuitStates {
			v := 0.0
			if st == cur {
				v = 1
			}
			fmt.Fprintf(w, "sluice_deployment_circuit{deployment=%q,state=%q} %g\n", name, circuitName(st), v)
		}
	}
	for _, name := range names {
		v := 0
		if t.targets[name].health.cooling(now) {
			v = 1
		}
		fmt.Fprintf(w, "sluice_deployment_cooling{deployment=%q} %d\n", name, v)
	}
	for _, name := range names {
		left := max(t.targets[name].health.coolingUntil.Load()-now, 0)
		fmt.Fprintf(w, "sluice_deployment_cooling_seconds{deployment=%q} %g\n", name, time.Duration(left).Seconds())
	}
	for _, name := range names {
		fmt.Fprintf(w, "sluice_deployment_inflight{deployment=%q} %d\n", name, t.targets[name].health.inflight.Load())
	}
	for _, name := range names {
		fmt.Fprintf(w, "sluice_deployment_latency_seconds{deployment=%q} %g\n", name, t.targets[name].health.latency()/float64(time.Second))
	}
}
