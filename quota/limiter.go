package quota

import (
	"strings"
	"sync"
	"sync/atomic"
	"time"

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
	// Leased starts every deployment budget with no capacity: in a cluster
	// a node may only admit the share the allocator leased to it (see
	// Holder). Default false: a standalone node owns the whole quota.
	Leased bool
}

// Limiter owns the budgets of one node and keeps them across configuration
// changes, so that a new snapshot does not reset the windows. Its methods
// are called when a snapshot is installed, not per request: the request path
// holds the returned pointers.
type Limiter struct {
	cfg Config

	// ledger, once set, makes hour and day budgets cluster-wide and
	// durable (see SetLedger).
	ledger atomic.Pointer[LedgerTotals]

	mu          sync.Mutex
	nodes       int // live nodes the unleased limits are divided by
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
		nodes:       1,
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
	if l.cfg.Leased {
		b.SetShare(0, Grant{}, NoPace)
	}
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

// Shareables returns every budget whose capacity is a leased share: the
// deployments by name, and the tenants with per-minute limits as
// "tenant/<name>" (see TenantShareName).
func (l *Limiter) Shareables() map[string]Shareable {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make(map[string]Shareable, len(l.deployments)+len(l.subjects))
	for n, e := range l.deployments {
		out[n] = e.b
	}
	for id, e := range l.subjects {
		if strings.HasPrefix(id, "tenant/") && (e.limits.RPM > 0 || e.limits.TPM > 0) {
			out[id] = e.s
		}
	}
	return out
}

// TenantShareName is the name of a tenant's per-minute limits among the
// shared budgets. It cannot clash with a deployment: names have no "/".
func TenantShareName(tenant string) string { return "tenant/" + tenant }

// SetNodes divides what is not leased by demand among the cluster's n
// nodes (counting nodes that are down, so that parts never overlap): each
// key's per-minute limits and every subject's concurrency. Per-minute
// tenant limits are leased instead (see Shareables); hour and day budgets
// are checked against the cluster's ledger.
func (l *Limiter) SetNodes(n int) {
	n = max(n, 1)
	l.mu.Lock()
	defer l.mu.Unlock()
	if n == l.nodes {
		return
	}
	l.nodes = n
	for id, e := range l.subjects {
		e.s.split(n, strings.HasPrefix(id, "key/"))
	}
}

// LedgerTotals returns the tokens (prompt and completion) the cluster's
// usage ledger holds for a tenant (key empty) or one of its keys in
// [from, to).
type LedgerTotals func(tenant, key string, from, to time.Time) int64

// SetLedger makes hour and day budgets cluster-wide and durable: a charge
// fits if what the replicated ledger holds for the last hour (day), plus
// what this node charged within the last few seconds (not yet surely in
// the ledger), plus the charge stays within the budget. The budgets so
// survive restarts of every node. Subjects made before the call keep
// their local windows.
func (l *Limiter) SetLedger(t LedgerTotals) { l.ledger.Store(&t) }

// RefreshBudgets reads the ledger again for every durable hour and day
// budget; the share actor calls it every quota interval.
func (l *Limiter) RefreshBudgets(now time.Time) {
	ledger := l.ledger.Load()
	if ledger == nil {
		return
	}
	l.mu.Lock()
	nodes := l.nodes
	subs := make([]*Subject, 0, len(l.subjects))
	for _, e := range l.subjects {
		if e.s.durable {
			subs = append(subs, e.s)
		}
	}
	l.mu.Unlock()
	for _, s := range subs {
		s.refresh(*ledger, now, nodes)
	}
}

// Tenant returns the limits of t, or nil when it has none.
func (l *Limiter) Tenant(t *state.ResolvedTenant) *Subject {
	return l.subject("tenant/"+t.Name, t.Name, "", t.Limits)
}

// Key returns the limits of k, or nil when it has none.
func (l *Limiter) Key(k *state.ResolvedKey) *Subject {
	return l.subject("key/"+k.ID, k.Tenant.Name, k.ID, k.Limits)
}

func (l *Limiter) subject(id, tenant, key string, lim state.Limits) *Subject {
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
	s.tenant, s.key = tenant, key
	if ledger := l.ledger.Load(); ledger != nil && (lim.TokensPerHour > 0 || lim.TokensPerDay > 0) {
		s.makeDurable(*ledger, time.Now(), l.nodes)
	}
	if l.cfg.Leased && strings.HasPrefix(id, "tenant/") {
		// Until the allocator leases a share, a node admits a provisional
		// floor of the tenant's limits: tenant limits may be exceeded by
		// that floor per starting node for one window, where refusing a
		// tenant's first requests on every new node would be worse.
		s.SetShare(0, Grant{Requests: provisional(lim.RPM), Tokens: provisional(lim.TPM)}, NoPace)
	}
	s.split(l.nodes, strings.HasPrefix(id, "key/"))
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

// provisional is a tenant's per-minute share before the first round.
func provisional(perMinute int64) int64 {
	return max(int64(float64(perMinute)*state.DefaultFloor), 1)
}
