package router

import (
	"fmt"
	"strconv"

	"github.com/VictoriaMetrics/metrics"
)

// latencyBuckets are upper bounds in seconds for request histograms.
var latencyBuckets = []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 120}

// routerMetrics registers the request path's metrics in the node's set.
// Labels are bounded: models and deployments come from configuration,
// statuses from a fixed set, tenants from configuration.
type routerMetrics struct {
	set *metrics.Set
}

func newRouterMetrics(set *metrics.Set, r *Router) *routerMetrics {
	m := &routerMetrics{set: set}
	set.NewGauge("sluice_router_ready", func() float64 {
		if r.Ready() {
			return 1
		}
		return 0
	})
	return m
}

func (m *routerMetrics) request(rec *Record) {
	status := strconv.Itoa(rec.Status)
	m.set.GetOrCreateCounter(fmt.Sprintf(`sluice_requests_total{model=%q,deployment=%q,region=%q,class=%q,status=%q}`,
		rec.Model, rec.Deployment, rec.Region, rec.Class, status)).Inc()
	m.set.GetOrCreatePrometheusHistogramExt(fmt.Sprintf(`sluice_request_duration_seconds{model=%q}`, rec.Model),
		latencyBuckets).Update(rec.Latency.Seconds())
	if rec.PromptTokens > 0 || rec.CompletionTokens > 0 {
		m.set.GetOrCreateCounter(fmt.Sprintf(`sluice_tokens_total{model=%q,tenant=%q,direction="in"}`, rec.Model, rec.Tenant)).Add(int(rec.PromptTokens))
		m.set.GetOrCreateCounter(fmt.Sprintf(`sluice_tokens_total{model=%q,tenant=%q,direction="out"}`, rec.Model, rec.Tenant)).Add(int(rec.CompletionTokens))
	}
	if rec.Attempts > 1 {
		m.set.GetOrCreateCounter(fmt.Sprintf(`sluice_retries_total{model=%q}`, rec.Model)).Add(rec.Attempts - 1)
	}
}

func (m *routerMetrics) upstream(deployment, outcome string) {
	m.set.GetOrCreateCounter(fmt.Sprintf(`sluice_upstream_attempts_total{deployment=%q,outcome=%q}`, deployment, outcome)).Inc()
}

func (m *routerMetrics) budgetRefused(deployment string) {
	m.set.GetOrCreateCounter(fmt.Sprintf(`sluice_budget_refusals_total{deployment=%q}`, deployment)).Inc()
}

func (m *routerMetrics) retryDenied() {
	m.set.GetOrCreateCounter(`sluice_retry_budget_exhausted_total`).Inc()
}

func (m *routerMetrics) softLimit(tenant string) {
	m.set.GetOrCreateCounter(fmt.Sprintf(`sluice_soft_limit_exceeded_total{tenant=%q}`, tenant)).Inc()
}
