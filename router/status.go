package router

import (
	"slices"
	"strings"
	"time"
)

// Deployment states reported by DeploymentStatus, most severe first.
const (
	// StateUnusable: the deployment cannot be called at all (for example
	// its provider credential does not resolve).
	StateUnusable = "unusable"
	// StateCircuitOpen: consecutive failures opened the circuit; nothing is
	// sent until it is due a probe.
	StateCircuitOpen = "circuit_open"
	// StateProbing: the circuit is half-open and one probe is in flight.
	StateProbing = "probing"
	// StateCooling: the provider asked to wait (429 or 503 with a
	// retry-after) and the wait has not passed.
	StateCooling = "cooling"
	// StateHealthy: requests may be sent.
	StateHealthy = "healthy"
)

// DeploymentStatus is one deployment as this node's router sees it: its
// configuration, its live health and this node's share of its quota. It
// holds only names and numbers, never a credential or a URL.
type DeploymentStatus struct {
	Name         string `json:"name"`
	Provider     string `json:"provider"`
	ProviderKind string `json:"provider_kind"`
	Region       string `json:"region,omitempty"`
	// TPM and RPM are the deployment's configured quota (0: unlimited).
	TPM int64 `json:"tpm"`
	RPM int64 `json:"rpm"`
	// State is one of the State* constants; Circuit is closed, open or
	// half-open.
	State   string `json:"state"`
	Circuit string `json:"circuit"`
	// CoolingSeconds is how long the deployment still honours a
	// provider's retry-after (0 when not cooling).
	CoolingSeconds float64 `json:"cooling_seconds"`
	// LatencyMS is the balancer's peak-EWMA latency of one upstream call
	// in milliseconds, 0 before the first answer.
	LatencyMS float64 `json:"latency_ms"`
	// InFlight counts upstream calls to the deployment running now.
	InFlight int64 `json:"in_flight"`
	// ShareRequests and ShareTokens are this node's allowances per window
	// (its leased share of RPM and TPM); -1 means unlimited.
	ShareRequests int64 `json:"share_requests"`
	ShareTokens   int64 `json:"share_tokens"`
	// UsedRequests and UsedTokens are what this node charged within the
	// windows ending now.
	UsedRequests int64 `json:"used_requests"`
	UsedTokens   int64 `json:"used_tokens"`
	// RequestWindowSeconds and TokenWindowSeconds are the lengths of the
	// provider's enforcement windows the shares apply to.
	RequestWindowSeconds float64 `json:"request_window_seconds"`
	TokenWindowSeconds   float64 `json:"token_window_seconds"`
}

// DeploymentStatus returns the status of every deployment of the table
// being served, sorted by name; nil before the first Update. It reads
// health atomics and takes each budget window's own lock for a few
// nanoseconds, never a lock shared across requests, so an admin page
// polling it does not slow the request path.
func (r *Router) DeploymentStatus() []DeploymentStatus {
	t := r.table.Load()
	if t == nil {
		return nil
	}
	now := r.cfg.Now().UnixNano()
	out := make([]DeploymentStatus, 0, len(t.targets))
	for _, tg := range t.targets {
		out = append(out, targetStatus(tg, now))
	}
	slices.SortFunc(out, func(a, b DeploymentStatus) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// targetStatus reads one deployment's state at now.
func targetStatus(tg *target, now int64) DeploymentStatus {
	d := tg.dep
	h := tg.health
	circuit := h.circuit.Load()
	st := DeploymentStatus{
		Name: d.Name, Provider: d.Provider, ProviderKind: string(tg.kind), Region: tg.region,
		TPM: d.TPM, RPM: d.RPM,
		Circuit:   circuitName(circuit),
		LatencyMS: h.latency() / float64(time.Millisecond),
		InFlight:  h.inflight.Load(),
	}
	if wait := h.coolingUntil.Load() - now; wait > 0 {
		st.CoolingSeconds = float64(wait) / float64(time.Second)
	}
	switch {
	case tg.broken != nil:
		st.State = StateUnusable
	case circuit == circuitOpen:
		st.State = StateCircuitOpen
	case circuit == circuitHalfOpen:
		st.State = StateProbing
	case st.CoolingSeconds > 0:
		st.State = StateCooling
	default:
		st.State = StateHealthy
	}
	if b := tg.budget; b != nil {
		st.ShareRequests, st.ShareTokens = b.Capacity()
		st.UsedRequests, st.UsedTokens = b.Used(now)
		rw, tw := b.Windows()
		st.RequestWindowSeconds, st.TokenWindowSeconds = rw.Seconds(), tw.Seconds()
	}
	return st
}
