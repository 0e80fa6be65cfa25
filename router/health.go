package router

import (
	"math"
	"sync"
	"sync/atomic"
	"time"
)

// Circuit states.
const (
	circuitClosed int32 = iota
	circuitOpen
	circuitHalfOpen
)

// HealthConfig tunes per-deployment health tracking.
type HealthConfig struct {
	// Decay is the peak-EWMA time constant for latency. Default 10s.
	Decay time.Duration
	// FailureThreshold consecutive failures open the circuit. Default 5.
	FailureThreshold int64
	// OpenFor is how long an open circuit refuses before a half-open probe.
	// Default 5s.
	OpenFor time.Duration
}

func (c *HealthConfig) setDefaults() {
	if c.Decay <= 0 {
		c.Decay = 10 * time.Second
	}
	if c.FailureThreshold <= 0 {
		c.FailureThreshold = 5
	}
	if c.OpenFor <= 0 {
		c.OpenFor = 5 * time.Second
	}
}

// health is one deployment's live state. Request goroutines change it only
// through its methods, with atomics; the latency average has its own tiny
// lock because its update reads two values. It outlives routing tables.
type health struct {
	cfg HealthConfig

	inflight     atomic.Int64
	coolingUntil atomic.Int64 // unix ns; no request before this
	circuit      atomic.Int32
	failures     atomic.Int64 // consecutive
	openUntil    atomic.Int64 // unix ns
	ewma         atomic.Uint64

	mu    sync.Mutex   // serialises the read-modify-write of ewma
	stamp atomic.Int64 // unix ns of the last sample
}

func newHealth(cfg HealthConfig) *health {
	cfg.setDefaults()
	return &health{cfg: cfg}
}

// latency returns the peak-EWMA latency in nanoseconds.
func (h *health) latency() float64 { return math.Float64frombits(h.ewma.Load()) }

// observe folds a latency sample in: a sample above the average replaces
// it at once (peak), a lower one decays it by elapsed time.
func (h *health) observe(now int64, rtt time.Duration) {
	h.mu.Lock()
	defer h.mu.Unlock()
	cur := h.latency()
	v := float64(rtt)
	if v < cur {
		dt := float64(max(now-h.stamp.Load(), 0))
		w := math.Exp(-dt / float64(h.cfg.Decay))
		v = cur*w + v*(1-w)
	}
	h.stamp.Store(now)
	h.ewma.Store(math.Float64bits(v))
}

// cool marks the deployment as not to be called before until.
func (h *health) cool(until int64) {
	for {
		cur := h.coolingUntil.Load()
		if until <= cur || h.coolingUntil.CompareAndSwap(cur, until) {
			return
		}
	}
}

// cooling reports whether the deployment is cooling at now.
func (h *health) cooling(now int64) bool { return now < h.coolingUntil.Load() }

// available reports whether a request may be sent now without changing
// state: not cooling and the circuit not open (or open but due a probe).
func (h *health) available(now int64) bool {
	if h.cooling(now) {
		return false
	}
	switch h.circuit.Load() {
	case circuitOpen:
		return now >= h.openUntil.Load()
	case circuitHalfOpen:
		return false
	}
	return true
}

// acquire claims the right to send: always when closed; when open and due,
// only the one caller that moves the circuit to half-open (the probe).
func (h *health) acquire(now int64) bool {
	switch h.circuit.Load() {
	case circuitClosed:
		return true
	case circuitOpen:
		return now >= h.openUntil.Load() && h.circuit.CompareAndSwap(circuitOpen, circuitHalfOpen)
	}
	return false
}

// success records a good answer: it closes the circuit.
func (h *health) success() {
	h.failures.Store(0)
	h.circuit.Store(circuitClosed)
}

// failure records a failed attempt; enough in a row open the circuit, and
// a failed probe opens it again.
func (h *health) failure(now int64) {
	n := h.failures.Add(1)
	if h.circuit.Load() == circuitHalfOpen || n >= h.cfg.FailureThreshold {
		h.openUntil.Store(now + int64(h.cfg.OpenFor))
		h.circuit.Store(circuitOpen)
	}
}

// release gives back a probe that produced no verdict (client went away).
func (h *health) release() {
	h.circuit.CompareAndSwap(circuitHalfOpen, circuitOpen)
}

// cost is the balancer's load score: latency times queue, over weight.
// The latency read decays with the time since the last sample, so a
// deployment that got no traffic for a while (it was cooling, or slower)
// looks cheaper and is probed again, as in Finagle's peak EWMA.
func (h *health) cost(now int64, weight float64) float64 {
	lat := h.latency()
	if lat <= 0 {
		// Never measured: cheapest, so a new deployment is tried and learnt.
		lat = 1
	} else if dt := now - h.stamp.Load(); dt > 0 {
		lat *= math.Exp(-float64(dt) / float64(h.cfg.Decay))
	}
	return lat * float64(h.inflight.Load()+1) / weight
}

// CircuitState names the circuit state for status and metrics.
func circuitName(s int32) string {
	switch s {
	case circuitOpen:
		return "open"
	case circuitHalfOpen:
		return "half-open"
	}
	return "closed"
}
