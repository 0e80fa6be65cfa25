package router

import (
	"context"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/sluicehq/sluice/cluster/state"
)

// Priority: a request is interactive or batch. Its tenant's class sets it,
// and the header x-sluice-priority: batch can lower it (never raise it).
// Batch requests may use only the configured fraction of a deployment's
// budget while interactive requests want it, prefer deployments marked
// slow-tolerant, and when no budget is left they wait in a bounded queue
// up to their deadline (x-sluice-max-wait, else the policy's
// batch_max_wait) instead of failing at once. Interactive requests never
// wait: they fail over or get a 429 with retry-after immediately.

const (
	hdrPriority = "X-Sluice-Priority"
	hdrMaxWait  = "X-Sluice-Max-Wait"
)

// slowTolerantBias divides a slow-tolerant deployment's cost for batch
// requests, so the balancer prefers it unless it is far worse.
const slowTolerantBias = 4

// minBudgetWait bounds how often a waiting batch request looks again.
const minBudgetWait = 10 * time.Millisecond

// classify sets the call's priority and, for batch, its wait deadline.
func (c *call) classify() {
	c.batch = c.key.Tenant.Class == state.ClassBatch ||
		strings.EqualFold(strings.TrimSpace(c.req.Header.Get(hdrPriority)), string(state.ClassBatch))
	if !c.batch {
		return
	}
	c.rec.Class = string(state.ClassBatch)
	wait := c.policy.BatchMaxWait.D()
	if v := c.req.Header.Get(hdrMaxWait); v != "" {
		if d, ok := parseMaxWait(v); ok {
			wait = d
		}
	}
	c.waitUntil = c.start.Add(wait).UnixNano()
}

// parseMaxWait reads a wait as seconds ("2.5") or a Go duration ("500ms"),
// capped at ten minutes.
func parseMaxWait(v string) (time.Duration, bool) {
	v = strings.TrimSpace(v)
	if f, err := strconv.ParseFloat(v, 64); err == nil && f >= 0 && f <= 600 {
		return time.Duration(f * float64(time.Second)), true
	}
	if d, err := time.ParseDuration(v); err == nil && d >= 0 && d <= 10*time.Minute {
		return d, true
	}
	return 0, false
}

// waitForBudget parks a batch request that found no budget until the
// shortest wait seen, if its deadline and the node's batch queue allow.
// It reports whether to try again.
func (c *call) waitForBudget(ctx context.Context, wait time.Duration) bool {
	if !c.batch {
		return false
	}
	r := c.r
	now := r.cfg.Now().UnixNano()
	left := time.Duration(c.waitUntil - now)
	if left <= 0 {
		return false
	}
	limit := int64(state.DefaultBatchQueue)
	if tab := c.tab; tab != nil && tab.snap != nil {
		limit = int64(tab.snap.Config.Quota.BatchQueue)
	}
	// A request holds its place in the queue from its first wait until it
	// is answered (route releases it), so the bound counts requests, not
	// sleeps.
	if !c.queued {
		if r.batchWaiting.Add(1) > limit {
			r.batchWaiting.Add(-1)
			return false
		}
		c.queued = true
	}
	wait = min(max(wait, minBudgetWait), left)
	start := r.cfg.Now()
	ok := sleepCtx(ctx, wait)
	r.batchWaitHist.Update(r.cfg.Now().Sub(start).Seconds())
	return ok
}

// BatchWaiting returns how many batch requests wait for budget on this node.
func (r *Router) BatchWaiting() int64 { return r.batchWaiting.Load() }

// Cool marks a deployment as not to be called before until, as told by
// another node that got a 429 from it.
func (r *Router) Cool(deployment string, until time.Time) {
	tab := r.table.Load()
	if tab == nil {
		return
	}
	if tg, ok := tab.targets[deployment]; ok {
		tg.health.cool(until.UnixNano())
		if tg.budget != nil {
			tg.budget.Throttled(r.cfg.Now().UnixNano())
		}
	}
}

// throttled records an upstream 429 (or 503 with a wait) from tg: the
// deployment cools until then on this node, its budget shrinks while 429s
// continue, and other nodes are told.
func (c *call) throttled(tg *target, until time.Time, is429 bool) {
	r := c.r
	if is429 && tg.budget != nil {
		tg.budget.Throttled(r.cfg.Now().UnixNano())
	}
	if r.cfg.OnCool != nil {
		r.cfg.OnCool(tg.dep.Name, until)
	}
}

// writeQuota writes each deployment's budget figures at scrape time: the
// global allowance per window, this node's share (what the allocator
// leased, or the whole allowance on a standalone node), what it charged
// within the window, and the adaptive throttle factor.
func (r *Router) writeQuota(w io.Writer) {
	t := r.table.Load()
	if t == nil {
		return
	}
	names := make([]string, 0, len(t.targets))
	for name, tg := range t.targets {
		if tg.budget != nil {
			names = append(names, name)
		}
	}
	slices.Sort(names)
	now := r.cfg.Now().UnixNano()
	type row struct{ allowR, allowT, shareR, shareT, usedR, usedT int64 }
	rows := make([]row, len(names))
	for i, name := range names {
		tg := t.targets[name]
		rw, tw := tg.dep.RPMWindow.D(), tg.dep.TPMWindow.D()
		capR, capT := tg.budget.Capacity()
		usedR, usedT := tg.budget.Used(now)
		rows[i] = row{quotaAllowance(tg.dep.RPM, rw), quotaAllowance(tg.dep.TPM, tw), capR, capT, usedR, usedT}
	}
	families := []struct {
		name string
		v    func(row) int64
	}{
		{"sluice_quota_allowance_requests", func(x row) int64 { return x.allowR }},
		{"sluice_quota_allowance_tokens", func(x row) int64 { return x.allowT }},
		{"sluice_quota_share_requests", func(x row) int64 { return x.shareR }},
		{"sluice_quota_share_tokens", func(x row) int64 { return x.shareT }},
		{"sluice_quota_used_requests", func(x row) int64 { return x.usedR }},
		{"sluice_quota_used_tokens", func(x row) int64 { return x.usedT }},
	}
	for _, f := range families {
		for i, name := range names {
			if v := f.v(rows[i]); v >= 0 {
				fmt.Fprintf(w, "%s{deployment=%q} %d\n", f.name, name, v)
			}
		}
	}
	for _, name := range names {
		fmt.Fprintf(w, "sluice_quota_throttle{deployment=%q} %g\n", name, t.targets[name].budget.Throttle())
	}
	fmt.Fprintf(w, "sluice_batch_waiting %d\n", r.batchWaiting.Load())
}

// quotaAllowance is a per-minute limit's allowance per window, -1 when
// unlimited.
func quotaAllowance(perMinute int64, window time.Duration) int64 {
	if perMinute <= 0 {
		return -1
	}
	return max(int64(float64(perMinute)*window.Seconds()/60), 1)
}

// costOf is the balancer's cost of tg for this call: batch requests see
// slow-tolerant deployments as cheaper.
func (c *call) costOf(tg *target, now int64) float64 {
	cost := tg.health.cost(now, tg.dep.Weight)
	if c.batch && tg.dep.SlowTolerant {
		cost /= slowTolerantBias
	}
	return cost
}
