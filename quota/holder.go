package quota

import (
	"sort"
	"sync/atomic"
)

// Shareable is a budget whose capacity is a leased share of a global
// limit: a deployment's quota, or a tenant's per-minute limits.
type Shareable interface {
	// SetShare sets the share at now (this node's clock), spent as p says.
	SetShare(now int64, g Grant, p Pace)
	Demand(now int64) Demand
}

// fader is a Shareable that can say how its charges leave its windows.
type fader interface {
	Fade(now int64) *Fade
}

// Holder applies this node's shares to its deployment budgets. It is
// owned by one goroutine (the share actor), which hands it every committed
// round, ticks it so that lapsed leases shrink, and sends its reports to
// the allocator. Admission never calls it: it only moves capacities.
type Holder struct {
	// Name identifies this holder in rounds and reports: the node id and
	// an incarnation, because a restarted node's windows start empty and
	// must not be mistaken for the ones it had before.
	Name string

	budgets func() map[string]Shareable

	cur     *Round
	applied uint64
	state   atomic.Pointer[HolderState]
	// granted names the budgets some round has granted this holder. A
	// budget no round has named yet (a tenant created since the newest
	// round) keeps the capacity it started with until one does.
	granted map[string]bool
	// released is set by Release: every capacity stays zero.
	released bool
}

// HolderState is what a holder last applied, for metrics and status.
type HolderState struct {
	Round  uint64
	Phase  LeasePhase
	Grants map[string]Grant // the capacities in force
}

// LeasePhase says how a holder's share stands.
type LeasePhase int

// Lease phases.
const (
	// PhaseNone: no round received yet; nothing is admitted.
	PhaseNone LeasePhase = iota
	// PhaseLeased: the share is in force.
	PhaseLeased
	// PhaseGrace: the lease lapsed; a safe fraction is in force.
	PhaseGrace
	// PhaseExpired: the lease and its grace lapsed; nothing is admitted.
	PhaseExpired
)

func (p LeasePhase) String() string {
	return [...]string{"none", "leased", "grace", "expired"}[p]
}

// NewHolder returns a holder that sets capacities on the budgets returned
// by budgets (called on each change). Until its first round every budget
// admits nothing: a share is only what the allocator granted.
func NewHolder(name string, budgets func() map[string]Shareable) *Holder {
	h := &Holder{Name: name, budgets: budgets, granted: map[string]bool{}}
	h.state.Store(&HolderState{})
	return h
}

// State returns the last applied state.
func (h *Holder) State() *HolderState { return h.state.Load() }

// Applied returns the newest round applied.
func (h *Holder) Applied() uint64 { return h.applied }

// Apply installs a committed round at now (this node's wall clock). Rounds
// arrive in log order; older or lapsed ones are ignored.
func (h *Holder) Apply(r Round, now int64) {
	if r.Seq <= h.applied {
		return
	}
	h.applied = r.Seq
	h.cur = &r
	for name := range r.Grants[h.Name] {
		h.granted[name] = true
	}
	h.Tick(now)
}

// phase returns the lease phase at now.
func (h *Holder) phase(now int64) LeasePhase {
	if h.cur == nil {
		return PhaseNone
	}
	switch end := h.cur.Issued + int64(h.cur.Lease); {
	case now < end:
		return PhaseLeased
	case now < end+int64(h.cur.Grace):
		return PhaseGrace
	}
	return PhaseExpired
}

// Release stops this holder for good (the node is shutting down, after
// its last request): every budget admits nothing from now on, whatever
// rounds come, and the next Report says so.
func (h *Holder) Release(now int64) {
	h.released = true
	in := map[string]Grant{}
	for name, b := range h.budgets() {
		b.SetShare(now, Grant{}, NoPace)
		in[name] = Grant{}
	}
	h.state.Store(&HolderState{Round: h.applied, Phase: PhaseExpired, Grants: in})
}

// Tick sets every budget's capacity for the lease phase at now.
func (h *Holder) Tick(now int64) {
	if h.released {
		return
	}
	ph := h.phase(now)
	if ph == PhaseNone {
		// Before the first round the budgets keep what they started with:
		// nothing for deployments, a provisional floor for tenants.
		return
	}
	// A round is in force from here on (the phase is not PhaseNone).
	mine := h.cur.Grants[h.Name]
	// Paced charges are scheduled only within the phase in force.
	until := h.cur.Issued + int64(h.cur.Lease)
	if ph == PhaseGrace {
		until += int64(h.cur.Grace)
	}
	in := make(map[string]Grant, len(mine))
	for name, b := range h.budgets() {
		g, ok := mine[name]
		if !ok && !h.granted[name] && ph != PhaseExpired {
			// New since the round was issued: keep the starting capacity
			// (a tenant's provisional floor) until a round names it.
			continue
		}
		p := Pace{Burst: Grant{Requests: Unpaced, Tokens: Unpaced}, Until: until, Wait: h.cur.PaceWait}
		if bg, ok := h.cur.Bursts[h.Name][name]; ok {
			p.Burst = bg
		}
		switch {
		case !ok || ph == PhaseNone || ph == PhaseExpired:
			g = Grant{}
		case ph == PhaseGrace:
			g = Grant{Requests: fraction(g.Requests, h.cur.Safe), Tokens: fraction(g.Tokens, h.cur.Safe)}
			p.Burst = Grant{Requests: fraction(p.Burst.Requests, h.cur.Safe), Tokens: fraction(p.Burst.Tokens, h.cur.Safe)}
		}
		b.SetShare(now, g, p)
		in[name] = g
	}
	h.state.Store(&HolderState{Round: h.cur.Seq, Phase: ph, Grants: in})
}

func fraction(v int64, f float64) int64 {
	if v < 0 {
		return v // unlimited stays unlimited
	}
	return int64(float64(v) * f)
}

// Report returns this node's demand at now.
func (h *Holder) Report(now int64) Report {
	budgets := h.budgets()
	names := make([]string, 0, len(budgets))
	for n := range budgets {
		names = append(names, n)
	}
	sort.Strings(names)
	r := Report{Node: h.Name, Round: h.applied, Released: h.released, Demands: make(map[string]Demand, len(names))}
	for _, n := range names {
		dem := budgets[n].Demand(now)
		if f, ok := budgets[n].(fader); ok && h.released {
			dem.Fade = f.Fade(now)
		}
		r.Demands[n] = dem
	}
	return r
}
