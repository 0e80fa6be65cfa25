package quota

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sluicehq/sluice/cluster/state"
)

// LeaseType is the replicated command type of allocation rounds.
const LeaseType = uint8(33)

// LeaseTable is the replicated record of allocation rounds: a section of
// the cluster's state machine (it satisfies the cluster's section
// interface structurally). A round is used by a node only once committed,
// so the leader always knows every share that may be in use, and a new
// allocator starts from the same table. It keeps only rounds that may
// still count for some node's footprint, so it stays small.
type LeaseTable struct {
	rounds  atomic.Pointer[[]Round]
	changed chan struct{}
}

// NewLeaseTable returns an empty table.
func NewLeaseTable() *LeaseTable {
	t := &LeaseTable{changed: make(chan struct{}, 1)}
	t.rounds.Store(&[]Round{})
	return t
}

// Name labels the section.
func (t *LeaseTable) Name() string { return "quota-leases" }

// Type returns LeaseType.
func (t *LeaseTable) Type() uint8 { return LeaseType }

// Validate refuses a body that is not a round.
func (t *LeaseTable) Validate(body []byte) error {
	var r Round
	if err := json.Unmarshal(body, &r); err != nil {
		return fmt.Errorf("lease round: %w", err)
	}
	if r.Seq == 0 || r.Lease <= 0 {
		return errors.New("lease round: seq and lease are required")
	}
	return nil
}

// Apply appends a round. A round whose sequence is not newer than the
// last one is refused (a deposed allocator's late proposal).
func (t *LeaseTable) Apply(_ uint64, _ time.Time, body []byte) (any, error) {
	var r Round
	if err := json.Unmarshal(body, &r); err != nil {
		return nil, fmt.Errorf("lease round: %w", err)
	}
	cur := *t.rounds.Load()
	if n := len(cur); n > 0 && r.Seq <= cur[n-1].Seq {
		return nil, fmt.Errorf("lease round %d is not newer than round %d", r.Seq, cur[n-1].Seq)
	}
	next := make([]Round, 0, len(cur)+1)
	next = append(next, Prune(cur, r.Issued)...)
	next = append(next, r)
	t.rounds.Store(&next)
	select {
	case t.changed <- struct{}{}:
	default:
	}
	return r.Seq, nil
}

// Snapshot encodes the rounds.
func (t *LeaseTable) Snapshot() ([]byte, error) { return json.Marshal(*t.rounds.Load()) }

// Restore replaces the rounds.
func (t *LeaseTable) Restore(b []byte) error {
	var rs []Round
	if len(b) > 0 {
		if err := json.Unmarshal(b, &rs); err != nil {
			return fmt.Errorf("lease table: %w", err)
		}
	}
	t.rounds.Store(&rs)
	select {
	case t.changed <- struct{}{}:
	default:
	}
	return nil
}

// Rounds returns the committed rounds, oldest first. Do not modify.
func (t *LeaseTable) Rounds() []Round { return *t.rounds.Load() }

// ShareTransport is what the share actors need from the cluster.
type ShareTransport interface {
	// IsLeader reports whether this node leads the replicated log; the
	// leader runs the allocator.
	IsLeader() bool
	// Barrier waits until this node's state machine has applied every
	// committed entry; a new leader calls it before allocating.
	Barrier(ctx context.Context) error
	// ApplySection commits a section command through the log.
	ApplySection(ctx context.Context, t uint8, body []byte) (any, error)
	// SendReport sends a demand report to the current leader.
	SendReport(ctx context.Context, body []byte) error
	// Alive returns the IDs of the members that are alive.
	Alive() []string
	// Size returns how many nodes the cluster has (its raft servers),
	// whether alive or not: limits split evenly among nodes divide by it,
	// so that a node that only seems dead never leaves its part to others.
	Size() int
}

// SharesConfig configures the share actors.
type SharesConfig struct {
	// NodeID is this node's cluster ID (see also SetNodeID).
	NodeID string
	// Limiter owns the deployment budgets whose capacities the holder sets.
	// Required; it should be built with Leased set.
	Limiter *Limiter
	// Transport reaches the cluster. Required.
	Transport ShareTransport
	// Logger; default slog.Default().
	Logger *slog.Logger
	// Now is the wall clock; default time.Now. Rounds carry the allocator's
	// wall clock, so nodes' clocks must agree within the quota clock margin.
	Now func() time.Time
}

// Shares runs the two actors of budget division on a node: the holder
// (applies committed rounds to the budgets, lets lapsed leases shrink,
// reports demand) and the allocator (on the leader only: turns reports
// into rounds). They are separate goroutines so that a slow commit never
// delays a lease from lapsing.
type Shares struct {
	cfg    SharesConfig
	inc    string
	name   string
	table  *LeaseTable
	holder *Holder

	reports  chan Report
	settings atomic.Pointer[shareSettings]
	snapped  chan struct{}
	release  chan chan []byte
}

type shareSettings struct {
	q       state.QuotaSettings
	budgets map[string]Budget
}

// NewShares builds the actors. Register Table() with the cluster's state
// machine before the cluster starts, and HandleReport as the handler of
// demand reports.
func NewShares(cfg SharesConfig, incarnation string) *Shares {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	name := cfg.NodeID + "#" + incarnation
	s := &Shares{
		cfg:     cfg,
		inc:     incarnation,
		name:    name,
		table:   NewLeaseTable(),
		reports: make(chan Report, 256),
		snapped: make(chan struct{}, 1),
		release: make(chan chan []byte),
	}
	s.holder = NewHolder(name, cfg.Limiter.Shareables)
	s.settings.Store(&shareSettings{q: state.DefaultQuotaSettings(), budgets: map[string]Budget{}})
	return s
}

// SetNodeID names this node when its ID is only known once the cluster
// is built. Call it before Run.
func (s *Shares) SetNodeID(id string) {
	s.cfg.NodeID = id
	s.name = id + "#" + s.inc
	s.holder.Name = s.name
}

// Name returns this holder's name in rounds: node ID and incarnation.
func (s *Shares) Name() string { return s.name }

// Table returns the lease table section for this node's state machine.
func (s *Shares) Table() *LeaseTable { return s.table }

// Holder returns the holder, for status and metrics (read State only).
func (s *Shares) Holder() *Holder { return s.holder }

// Update installs a new configuration snapshot: quota settings and the
// deployments' allowances.
func (s *Shares) Update(snap *state.Snapshot) {
	slots := s.cfg.Limiter.cfg.Slots
	budgets := map[string]Budget{}
	for _, d := range snap.Config.Deployments {
		rw, tw := d.RPMWindow.D(), d.TPMWindow.D()
		budgets[d.Name] = Budget{
			Allowance: Grant{Requests: Allowance(d.RPM, rw), Tokens: Allowance(d.TPM, tw)},
			// A node's window covers one slot more than the provider's.
			Windows:  [numDims]time.Duration{rw + rw/time.Duration(slots), tw + tw/time.Duration(slots)},
			Paceable: true,
		}
	}
	minute := time.Minute + time.Minute/time.Duration(slots)
	for _, t := range snap.Config.Tenants {
		if t.Limits.RPM <= 0 && t.Limits.TPM <= 0 {
			continue
		}
		unl := func(v int64) int64 {
			if v <= 0 {
				return Unlimited
			}
			return v
		}
		budgets[TenantShareName(t.Name)] = Budget{
			Allowance: Grant{Requests: unl(t.Limits.RPM), Tokens: unl(t.Limits.TPM)},
			Windows:   [numDims]time.Duration{minute, minute},
			HoldBack:  true,
		}
	}
	q := snap.Config.Quota
	if q.Interval <= 0 || q.Lease <= 0 {
		q = state.DefaultQuotaSettings() // a snapshot built without defaults
	}
	s.settings.Store(&shareSettings{q: q, budgets: budgets})
	select {
	case s.snapped <- struct{}{}:
	default:
	}
}

// HandleReport receives a demand report (a gossip message handler: it
// never blocks; a report that does not fit the queue is dropped, and the
// next one a moment later supersedes it anyway).
func (s *Shares) HandleReport(payload []byte) {
	var r Report
	if err := json.Unmarshal(payload, &r); err != nil || r.Node == "" {
		return
	}
	select {
	case s.reports <- r:
	default:
	}
}

// Release gives this node's shares back before it shuts down: the holder
// stops admitting for good and its last report goes to the allocator,
// which then counts the node's shares only as what it charged, until
// those charges leave the windows, instead of holding them until its
// lease surely ended. Call it after the last request finished and before
// the actors stop. On the leader, it waits until its own allocator
// committed a round recording the release (rounds carry releases, so the
// next leader's allocator learns them from the log).
func (s *Shares) Release(ctx context.Context) error {
	reply := make(chan []byte, 1)
	select {
	case s.release <- reply:
	case <-ctx.Done():
		return fmt.Errorf("release shares: %w", ctx.Err())
	}
	var body []byte
	select {
	case body = <-reply:
	case <-ctx.Done():
		return fmt.Errorf("release shares: %w", ctx.Err())
	}
	if body == nil {
		return nil
	}
	if !s.cfg.Transport.IsLeader() {
		if err := s.cfg.Transport.SendReport(ctx, body); err != nil {
			return fmt.Errorf("release shares: %w", err)
		}
		return nil
	}
	// The leader's own allocator records the release in its next round,
	// so that the next leader learns it from the log.
	s.HandleReport(body)
	t := time.NewTicker(10 * time.Millisecond)
	defer t.Stop()
	for {
		for _, r := range s.table.Rounds() {
			if _, ok := r.Released[s.name]; ok {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("release shares: no round recorded the release: %w", ctx.Err())
		case <-t.C:
		}
	}
}

// Run runs the actors until ctx ends.
func (s *Shares) Run(ctx context.Context) {
	var wg sync.WaitGroup
	send := make(chan []byte, 1)
	wg.Add(3)
	go func() { defer wg.Done(); s.runHolder(ctx, send) }()
	go func() { defer wg.Done(); s.runSender(ctx, send) }()
	go func() { defer wg.Done(); s.runAllocator(ctx) }()
	wg.Wait()
}

func (s *Shares) now() int64 { return s.cfg.Now().UnixNano() }

// runHolder applies rounds as they commit and ticks often enough that a
// lapsed lease shrinks well within the clock margin.
func (s *Shares) runHolder(ctx context.Context, send chan []byte) {
	q := s.settings.Load().q
	tick := time.NewTicker(q.Interval.D() / 10)
	defer tick.Stop()
	nextReport := s.now()
	report := func(now int64) {
		nextReport = now + int64(q.Interval.D())
		s.cfg.Limiter.SetNodes(max(s.cfg.Transport.Size(), len(s.cfg.Transport.Alive())))
		s.cfg.Limiter.RefreshBudgets(s.cfg.Now())
		body, err := json.Marshal(s.holder.Report(now))
		if err != nil {
			return
		}
		select {
		case send <- body:
		default:
			// The sender is still busy with the previous report:
			// replace it with this fresher one.
			select {
			case <-send:
			default:
			}
			send <- body
		}
	}
	apply := func() {
		now := s.now()
		before := s.holder.Applied()
		for _, r := range s.table.Rounds() {
			if r.Seq > s.holder.Applied() {
				s.holder.Apply(r, now)
			}
		}
		if s.holder.Applied() > before {
			// Report at once that the round is in force: the allocator
			// counts a lowered share at its old size until it hears so.
			report(now)
		}
	}
	for {
		select {
		case <-ctx.Done():
			return
		case <-s.table.changed:
			apply()
		case reply := <-s.release:
			s.holder.Release(s.now())
			body, _ := json.Marshal(s.holder.Report(s.now()))
			reply <- body
		case <-s.snapped:
			st := s.settings.Load()
			if st.q.Interval != q.Interval {
				q = st.q
				tick.Reset(q.Interval.D() / 10)
			}
			s.holder.Tick(s.now())
		case <-tick.C:
			now := s.now()
			s.holder.Tick(now)
			if now >= nextReport {
				report(now)
			}
		}
	}
}

// runSender sends reports to the leader one at a time.
func (s *Shares) runSender(ctx context.Context, send chan []byte) {
	for {
		select {
		case <-ctx.Done():
			return
		case body := <-send:
			if s.cfg.Transport.IsLeader() {
				s.HandleReport(body)
				continue
			}
			sctx, cancel := context.WithTimeout(ctx, s.settings.Load().q.Interval.D())
			if err := s.cfg.Transport.SendReport(sctx, body); err != nil && ctx.Err() == nil {
				s.cfg.Logger.Debug("quota report not sent", "err", err)
			}
			cancel()
		}
	}
}

// runAllocator turns reports into rounds while this node leads.
func (s *Shares) runAllocator(ctx context.Context) {
	var alloc *Allocator
	var learnUntil, started int64
	drift := map[string]Grant{} // withheld per deployment, as last logged
	q := s.settings.Load().q
	tick := time.NewTicker(q.Interval.D())
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case r := <-s.reports:
			if alloc != nil {
				alloc.Observe(r, s.now())
			}
		case <-tick.C:
			if !s.cfg.Transport.IsLeader() {
				alloc = nil
				continue
			}
			st := s.settings.Load()
			if st.q.Interval != q.Interval {
				q = st.q
				tick.Reset(q.Interval.D())
			}
			if alloc == nil {
				// A new allocator first applies everything committed, so it
				// knows every round an earlier allocator issued, then
				// listens to the nodes' reports before granting: a round
				// issued before it heard from a node would leave that node
				// without a share.
				bctx, cancel := context.WithTimeout(ctx, q.Lease.D())
				err := s.cfg.Transport.Barrier(bctx)
				cancel()
				if err != nil {
					continue
				}
				alloc = NewAllocator(allocatorConfig(st.q))
				started = s.now()
				learnUntil = started + int64(q.Interval.D())
				s.cfg.Logger.Info("quota allocator started", "rounds", len(s.table.Rounds()))
				// While it listens, the shares in force are renewed as they
				// are, so that a leader change never lets leases lapse.
				s.renew(ctx, q)
			}
			if now := s.now(); now < learnUntil && len(s.live(alloc)) < len(s.cfg.Transport.Alive()) {
				continue
			}
			alloc.SetConfig(allocatorConfig(st.q))
			alloc.SetBudgets(st.budgets)
			rounds := s.table.Rounds()
			alloc.SetRounds(rounds)
			live := s.live(alloc)
			if s.now()-started < int64(allocatorConfig(st.q).Stale) && len(rounds) > 0 {
				alloc.SetCarry(s.carry(rounds[len(rounds)-1], live))
			}
			round := alloc.Next(s.now(), live)
			for d := range st.budgets {
				g := alloc.Drift(d)
				if g != drift[d] {
					s.cfg.Logger.Info("quota drift correction", "deployment", d, "withheld_tokens", g.Tokens, "withheld_requests", g.Requests)
					drift[d] = g
				}
			}
			body, err := json.Marshal(round)
			if err != nil {
				continue
			}
			actx, cancel := context.WithTimeout(ctx, q.Interval.D())
			_, err = s.cfg.Transport.ApplySection(actx, LeaseType, body)
			cancel()
			if err != nil {
				if ctx.Err() == nil {
					s.cfg.Logger.Warn("quota round not committed", "seq", round.Seq, "err", err)
				}
				continue
			}
			s.cfg.Logger.Debug("quota round committed", "seq", round.Seq, "holders", len(round.Grants), "deployments", len(st.budgets))
		}
	}
}

// renew commits a copy of the newest round, issued now, for the holders
// whose node is alive. It grants no holder more than the newest round
// already counts for it, so every footprint stays as it was; it only
// keeps leases from lapsing while a new allocator learns the demand.
func (s *Shares) renew(ctx context.Context, q state.QuotaSettings) {
	rounds := s.table.Rounds()
	if len(rounds) == 0 {
		return
	}
	last := rounds[len(rounds)-1]
	now := s.now()
	if now >= last.Issued+int64(last.Lease+last.Grace) {
		return // lapsed already: nothing to keep
	}
	alive := map[string]bool{}
	for _, id := range s.cfg.Transport.Alive() {
		alive[id] = true
	}
	r := Round{Seq: last.Seq + 1, Issued: now, Lease: last.Lease, Grace: last.Grace, Safe: last.Safe,
		Hold: last.Hold, Grants: map[string]map[string]Grant{}, Released: last.Released, PaceWait: last.PaceWait}
	for holder, g := range last.Grants {
		if _, released := last.Released[holder]; released {
			continue
		}
		if id, _, _ := strings.Cut(holder, "#"); alive[id] {
			r.Grants[holder] = g
			if b, ok := last.Bursts[holder]; ok {
				if r.Bursts == nil {
					r.Bursts = map[string]map[string]Grant{}
				}
				r.Bursts[holder] = b
			}
		}
	}
	body, err := json.Marshal(r)
	if err != nil {
		return
	}
	actx, cancel := context.WithTimeout(ctx, q.Interval.D())
	defer cancel()
	if _, err := s.cfg.Transport.ApplySection(actx, LeaseType, body); err != nil && ctx.Err() == nil {
		s.cfg.Logger.Warn("quota renewal not committed", "seq", r.Seq, "err", err)
	}
}

// carry returns the newest round's grants of holders whose node is alive
// but that this allocator has not heard from yet.
func (s *Shares) carry(last Round, live []string) map[string]map[string]Grant {
	heard := map[string]bool{}
	for _, h := range live {
		heard[h] = true
	}
	alive := map[string]bool{}
	for _, id := range s.cfg.Transport.Alive() {
		alive[id] = true
	}
	out := map[string]map[string]Grant{}
	for h, g := range last.Grants {
		if id, _, _ := strings.Cut(h, "#"); alive[id] && !heard[h] {
			out[h] = g
		}
	}
	return out
}

// live returns the holders that reported and whose node is alive.
func (s *Shares) live(a *Allocator) []string {
	alive := map[string]bool{}
	for _, id := range s.cfg.Transport.Alive() {
		alive[id] = true
	}
	var out []string
	for name := range a.reports {
		id, _, _ := strings.Cut(name, "#")
		if alive[id] {
			out = append(out, name)
		}
	}
	return out
}

func allocatorConfig(q state.QuotaSettings) AllocatorConfig {
	return AllocatorConfig{
		Lease:        q.Lease.D(),
		Grace:        q.Grace.D(),
		SafeFraction: q.SafeFraction,
		ClockMargin:  q.ClockMargin.D(),
		Floor:        q.Floor,
		Stale:        4 * q.Interval.D(),

		IgnoreUpstream: q.IgnoreUpstreamHeaders,
		PaceBurst:      q.PaceBurst,
		PaceWait:       q.PaceWait.D(),
	}
}
