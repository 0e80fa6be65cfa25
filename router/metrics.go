package router

import (
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"

	"github.com/VictoriaMetrics/metrics"
)

// latencyBuckets are upper bounds in seconds for request histograms.
var latencyBuckets = []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 120}

// routerMetrics registers the request path's metrics in the node's set.
// Labels are bounded: models and deployments come from configuration,
// statuses from a fixed set, tenants from configuration.
//
// metrics.Set's GetOrCreate takes the set's mutex and formats a name on
// every call; the request path instead looks its metrics up in an
// immutable map published through an atomic pointer (copy on the rare
// miss), so requests share no lock and format nothing once warm.
type routerMetrics struct {
	set *metrics.Set

	mu    sync.Mutex // serialises misses
	byKey atomic.Pointer[map[metricKey]any]
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
)

func newRouterMetrics(set *metrics.Set, r *Router) *routerMetrics {
	m := &routerMetrics{set: set}
	empty := map[metricKey]any{}
	m.byKey.Store(&empty)
	set.NewGauge("sluice_router_ready", func() float64 {
		if r.Ready() {
			return 1
		}
		return 0
	})
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

func (m *routerMetrics) request(rec *Record) {
	m.counter(metricKey{kind: mRequests, a: rec.Model, b: rec.Deployment, c: rec.Region, d: rec.Class, status: rec.Status}, func() string {
		return fmt.Sprintf(`sluice_requests_total{model=%q,deployment=%q,region=%q,class=%q,status=%q}`,
			rec.Model, rec.Deployment, rec.Region, rec.Class, strconv.Itoa(rec.Status))
	}).Inc()
	m.get(metricKey{kind: mDuration, a: rec.Model}, func() any {
		return m.set.GetOrCreatePrometheusHistogramExt(fmt.Sprintf(`sluice_request_duration_seconds{model=%q}`, rec.Model), latencyBuckets)
	}).(*metrics.PrometheusHistogram).Update(rec.Latency.Seconds())
	if rec.PromptTokens > 0 || rec.CompletionTokens > 0 {
		m.counter(metricKey{kind: mTokensIn, a: rec.Model, b: rec.Tenant}, func() string {
			return fmt.Sprintf(`sluice_tokens_total{model=%q,tenant=%q,direction="in"}`, rec.Model, rec.Tenant)
		}).Add(int(rec.PromptTokens))
		m.counter(metricKey{kind: mTokensOut, a: rec.Model, b: rec.Tenant}, func() string {
			return fmt.Sprintf(`sluice_tokens_total{model=%q,tenant=%q,direction="out"}`, rec.Model, rec.Tenant)
		}).Add(int(rec.CompletionTokens))
	}
	if rec.Attempts > 1 {
		m.counter(metricKey{kind: mRetries, a: rec.Model}, func() string {
			return fmt.Sprintf(`sluice_retries_total{model=%q}`, rec.Model)
		}).Add(rec.Attempts - 1)
	}
}

func (m *routerMetrics) upstream(deployment, outcome string) {
	m.counter(metricKey{kind: mUpstream, a: deployment, b: outcome}, func() string {
		return fmt.Sprintf(`sluice_upstream_attempts_total{deployment=%q,outcome=%q}`, deployment, outcome)
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
