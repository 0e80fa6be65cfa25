package quota

import (
	"sync"

	"github.com/sluicehq/sluice/cluster/state"
)

// Config tunes local admission.
type Config struct {
	// Slots divides each provider window; the window is conservative by one
	// slot. Default DefaultSlots (20: up to 95% of an allowance).
	Slots int
	// RefundDeployments returns unused reserved tokens to deployment budgets
	// when the real usage is known. Default false: Azure and OpenAI charge
	// prompt + max_tokens on arrival and keep the charge, so refunding would
	// let the node send more than the provider accepts.
	RefundDeployments bool
}

// Limiter owns the budgets of one node and keeps them across configuration
// changes, so that a new snapshot does not reset the windows. Its methods
// are called when a snapshot is installed, not per request: the request path
// holds the returned pointers.
type Limiter struct {
	cfg Config

	mu          sync.Mutex
	deployments map[string]deploymentEntry
	subjects    map[string]subjectEntry
}

type deploymentEntry struct {
	quota [4]int64 // tpm, rpm, tpm window, rpm window
	b     *Deployment
}

type subjectEntry struct {
	limits state.Limits
	s      *Subject
}

// New returns an empty limiter.
func New(cfg Config) *Limiter {
	if cfg.Slots <= 0 {
		cfg.Slots = DefaultSlots
	}
	return &Limiter{
		cfg:         cfg,
		deployments: map[string]deploymentEntry{},
		subjects:    map[string]subjectEntry{},
	}
}

// Deployment returns the budget of d, creating it, or replacing it when
// d's quota or windows changed.
func (l *Limiter) Deployment(d *state.Deployment) *Deployment {
	q := [4]int64{d.TPM, d.RPM, int64(d.TPMWindow), int64(d.RPMWindow)}
	l.mu.Lock()
	defer l.mu.Unlock()
	if e, ok := l.deployments[d.Name]; ok && e.quota == q {
		return e.b
	}
	b := NewDeployment(d, l.cfg.Slots, l.cfg.RefundDeployments)
	l.deployments[d.Name] = deploymentEntry{quota: q, b: b}
	return b
}

// Deployments returns every deployment budget by name.
func (l *Limiter) Deployments() map[string]*Deployment {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make(map[string]*Deployment, len(l.deployments))
	for n, e := range l.deployments {
		out[n] = e.b
	}
	return out
}

// Tenant returns the limits of t, or nil when it has none.
func (l *Limiter) Tenant(t *state.ResolvedTenant) *Subject {
	return l.subject("tenant/"+t.Name, t.Limits)
}

// Key returns the limits of k, or nil when it has none.
func (l *Limiter) Key(k *state.ResolvedKey) *Subject {
	return l.subject("key/"+k.ID, k.Limits)
}

func (l *Limiter) subject(id string, lim state.Limits) *Subject {
	l.mu.Lock()
	defer l.mu.Unlock()
	if lim.IsZero() {
		delete(l.subjects, id)
		return nil
	}
	if e, ok := l.subjects[id]; ok && e.limits == lim {
		return e.s
	}
	s := NewSubject(id, lim, l.cfg.Slots)
	l.subjects[id] = subjectEntry{limits: lim, s: s}
	return s
}

// Retain drops budgets of deployments, tenants and keys that snap no
// longer has.
func (l *Limiter) Retain(snap *state.Snapshot) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for name := range l.deployments {
		if _, ok := snap.Deployment(name); !ok {
			delete(l.deployments, name)
		}
	}
	for id := range l.subjects {
		var ok bool
		switch {
		case len(id) > 7 && id[:7] == "tenant/":
			_, ok = snap.Tenant(id[7:])
		case len(id) > 4 && id[:4] == "key/":
			_, ok = snap.KeyByID(id[4:])
		}
		if !ok {
			delete(l.subjects, id)
		}
	}
}
