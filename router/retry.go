package router

import (
	"math/rand/v2"
	"sync/atomic"
	"time"

	"github.com/sluicehq/sluice/cluster/state"
)

// retryBudget caps retries to a fraction of requests over a sliding window
// (ten one-second slots), plus a small floor so a quiet node can still
// retry. Counters are atomics; a slot is reset by whoever first sees it
// stale, which may lose a few counts at the boundary: a budget, not a ledger.
type retryBudget struct {
	slots [10]budgetSlot
	floor int64 // retries always allowed per window
}

type budgetSlot struct {
	sec      atomic.Int64
	requests atomic.Int64
	retries  atomic.Int64
}

func (b *retryBudget) slot(now int64) *budgetSlot {
	sec := now / int64(time.Second)
	s := &b.slots[sec%int64(len(b.slots))]
	if old := s.sec.Load(); old != sec && s.sec.CompareAndSwap(old, sec) {
		s.requests.Store(0)
		s.retries.Store(0)
	}
	return s
}

func (b *retryBudget) sums(now int64) (requests, retries int64) {
	sec := now / int64(time.Second)
	for i := range b.slots {
		s := &b.slots[i]
		if sec-s.sec.Load() < int64(len(b.slots)) {
			requests += s.requests.Load()
			retries += s.retries.Load()
		}
	}
	return requests, retries
}

// request counts one client request.
func (b *retryBudget) request(now int64) { b.slot(now).requests.Add(1) }

// tryRetry reports whether a retry fits the budget and, if so, counts it.
func (b *retryBudget) tryRetry(now int64, ratio float64) bool {
	req, ret := b.sums(now)
	if float64(ret) >= ratio*float64(req)+float64(b.floor) {
		return false
	}
	b.slot(now).retries.Add(1)
	return true
}

// backoff returns the wait before retry number n (1-based): exponential
// from the base interval, capped, with full jitter unless disabled.
func backoff(p *state.RetryPolicy, n int) time.Duration {
	d := p.BaseInterval.D() << min(n-1, 20)
	if d > p.MaxInterval.D() || d <= 0 {
		d = p.MaxInterval.D()
	}
	if p.Jitter == "none" || d <= 0 {
		return d
	}
	return rand.N(d + 1)
}
