package mock

import (
	"net/http"
	"sync"
	"time"
)

// deployment is one hosted deployment: its config, quota and stats.
type deployment struct {
	cfg DeploymentConfig

	mu    sync.Mutex // guards quota and st
	quota quota
	st    depStats
}

func newDeployment(cfg DeploymentConfig) *deployment {
	d := &deployment{cfg: cfg, quota: newQuota(cfg)}
	d.st.reset(cfg.RPMWindow.D(), cfg.TPMWindow.D())
	return d
}

// begin records a request routed to the deployment and marks it in flight.
func (d *deployment) begin(h http.Header) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.st.s.Requests++
	d.st.s.InFlight++
	if v := h.Get("x-request-id"); v != "" {
		d.st.s.LastXRequestID = v
	}
	if v := h.Get("traceparent"); v != "" {
		d.st.s.LastTraceparent = v
	}
}

// end marks a request finished.
func (d *deployment) end() {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.st.s.InFlight--
}

// update changes counters under the lock.
func (d *deployment) update(f func(s *DeploymentStats)) {
	d.mu.Lock()
	defer d.mu.Unlock()
	f(&d.st.s)
}

// inject counts an injected fault.
func (d *deployment) inject(kind string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.st.injected[kind]++
}

// badRequest counts a 400/413 answer of a request that was not begun.
func (d *deployment) badRequest(h http.Header) {
	d.begin(h)
	d.mu.Lock()
	defer d.mu.Unlock()
	d.st.s.InFlight--
	d.st.s.BadRequests++
}

// admit runs the quota check at the clock's current time and records the
// outcome. The clock is read under the lock so windows see ordered times.
func (d *deployment) admit(now func() time.Time, cost int64) (time.Time, admission) {
	d.mu.Lock()
	defer d.mu.Unlock()
	t := now()
	a := d.quota.admit(t, cost)
	if a.ok {
		d.st.recordAccepted(t, cost)
	} else {
		d.st.s.Rejected429++
		d.st.rejected.add(t.UnixNano())
	}
	return t, a
}

// storm records a request rejected by an injected 429 storm.
func (d *deployment) storm(t time.Time) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.st.injected[FaultForce429]++
	d.st.rejected.add(t.UnixNano())
}

// completed records a fully delivered answer and its reported usage.
func (d *deployment) completed(prompt, completion int) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.st.s.Completed++
	d.st.s.PromptTokens += int64(prompt)
	d.st.s.CompletionTokens += int64(completion)
}

// uncompleted turns a completed answer whose write failed into a canceled
// one.
func (d *deployment) uncompleted(prompt, completion int) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.st.s.Completed--
	d.st.s.PromptTokens -= int64(prompt)
	d.st.s.CompletionTokens -= int64(completion)
	d.st.s.Canceled++
}

func (d *deployment) snapshot() DeploymentStats {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.st.snapshot()
}

func (d *deployment) resetStats() {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.st.reset(d.cfg.RPMWindow.D(), d.cfg.TPMWindow.D())
}
