package quota

import (
	"math"
	"slices"
	"sort"
	"time"
)

// Dimensions of a deployment budget.
const (
	DimRequests = 0
	DimTokens   = 1
	numDims     = 2
)

// Grant is one node's share of one deployment: what it may charge within
// any span of the deployment's request and token windows.
type Grant struct {
	Requests int64 `json:"r"`
	Tokens   int64 `json:"t"`
}

func (g Grant) dim(i int) int64 {
	if i == DimRequests {
		return g.Requests
	}
	return g.Tokens
}

func (g *Grant) set(i int, v int64) {
	if i == DimRequests {
		g.Requests = v
	} else {
		g.Tokens = v
	}
}

// Round is one allocation: the shares of every live node, valid from
// Issued (the allocator's wall clock, Unix nanoseconds) for Lease, then at
// a safe fraction for Grace. Rounds are committed through the replicated
// log before any node uses them, so a new allocator knows every share that
// may still be in use.
type Round struct {
	Seq    uint64        `json:"seq"`
	Issued int64         `json:"issued"`
	Lease  time.Duration `json:"lease"`
	Grace  time.Duration `json:"grace"`
	// Safe is the fraction of its share a node admits during Grace.
	Safe float64 `json:"safe"`
	// Hold is how long after Issued the round may still count for some
	// node's footprint: lease, grace, clock margin and the longest window.
	Hold   time.Duration               `json:"hold"`
	Grants map[string]map[string]Grant `json:"grants"` // node -> deployment -> grant
	// Bursts are, for the dimensions the round paces, the depth of each
	// grant's bucket (Unpaced, or no entry, for the others; see Pace).
	Bursts map[string]map[string]Grant `json:"bursts,omitempty"`
	// PaceWait is how long a node may schedule a paced charge ahead.
	PaceWait time.Duration `json:"pace_wait,omitempty"`
	// Released names the holders that released their shares within the
	// longest window, with what their release reports said, so that a
	// new allocator learns them from the log (a leader that stops
	// releases through its own last round).
	Released map[string]Released `json:"released,omitempty"`
}

// Released is a holder's release, as the allocator received it.
type Released struct {
	At   int64            `json:"at"` // allocator clock at arrival
	Used map[string]Grant `json:"used"`
	Fade map[string]*Fade `json:"fade,omitempty"`
}

// Demand is what a node asked of one deployment and what it was charged,
// within the trailing windows.
type Demand struct {
	Want Grant `json:"want"` // charges asked for, admitted or refused
	Used Grant `json:"used"` // charges admitted
	// Peak is the largest single charge asked for: a paced share's burst
	// must hold it.
	Peak Grant `json:"peak,omitzero"`
	// Ahead is how far past the report a paced share has scheduled
	// charges: charges scheduled under a round the report supersedes go
	// out within it.
	Ahead time.Duration `json:"ahead,omitempty"`
	// Upstream is the provider's latest word on its own windows, from the
	// x-ratelimit-remaining-* headers of an answer; nil when none came
	// within a window.
	Upstream *Upstream `json:"up,omitempty"`
	// Fade, in a release report only, says how Used leaves the windows.
	Fade *Fade `json:"fade,omitempty"`
}

// Fade is how a node's charges leave its windows after a report: per
// dimension, Left[k] is what may still count k Steps after it (nothing
// beyond the slice). A released node's share counts only that much, so it
// comes back to the others as the provider forgets the charges, not all at
// once a window later. Steps are durations, so no clocks are compared.
type Fade struct {
	Step [numDims]time.Duration `json:"step"`
	Left [numDims][]int64       `json:"left"`
}

// left returns what may still count elapsed after the report, or -1 when
// the fade says nothing about dimension dim.
func (f *Fade) left(dim int, elapsed int64) int64 {
	if f == nil || f.Step[dim] <= 0 || f.Left[dim] == nil {
		return -1
	}
	k := max(elapsed, 0) / int64(f.Step[dim])
	if k >= int64(len(f.Left[dim])) {
		return 0
	}
	return f.Left[dim][k]
}

// Upstream is what the provider said remained in its windows (-1 for a
// dimension it did not report), and how long before the report it said so
// (an age, so no clocks are compared across nodes).
type Upstream struct {
	Remaining Grant         `json:"rem"`
	Age       time.Duration `json:"age"`
}

// Report is a node's periodic demand report to the allocator.
type Report struct {
	Node string `json:"node"`
	// Round is the newest round the node had applied when it measured Used.
	Round   uint64            `json:"round"`
	Demands map[string]Demand `json:"demands"` // by deployment
	// Released says the node stopped admitting for good (it is shutting
	// down): Used are its last charges, and no round applies to it any
	// more. Its shares count only as those charges, until they leave
	// the windows, instead of until its lease surely ended.
	Released bool `json:"released,omitempty"`
}

// Budget is a deployment's global allowance per window, and its windows.
type Budget struct {
	Allowance Grant
	Windows   [numDims]time.Duration
	// Paceable says the holders spend shares of this budget through a
	// Pace (deployment budgets; tenants' per-minute limits are windows).
	Paceable bool
	// HoldBack keeps what no node asks for unallocated instead of spreading
	// it evenly: each node gets at most twice its demand (or the floor).
	// Budgets over long windows (tenants' per-minute limits) set it, so a
	// node that dies holds little for the window's length after its lease.
	HoldBack bool
}

// AllocatorConfig holds the allocator's settings (the replicated quota
// settings, resolved).
type AllocatorConfig struct {
	// Lease and Grace are written into each round.
	Lease, Grace time.Duration
	// SafeFraction of a share is admitted during Grace.
	SafeFraction float64
	// ClockMargin is added to a lease's end before its share is surely unused.
	ClockMargin time.Duration
	// Floor is the fraction of each allowance every live node keeps.
	Floor float64
	// Stale is how old a node's last report may be before the allocator
	// stops granting it anything new. Default 4 x Interval (2s).
	Stale time.Duration
	// IgnoreUpstream turns off drift correction from the provider's
	// x-ratelimit-remaining-* headers (see Allocator.drift).
	IgnoreUpstream bool
	// PaceBurst is the part of a share spent at once where shares are
	// paced (windows of at least paceMinWindow); the rest is spent at a
	// rate. 0 (or 1 and more) paces nothing. See Pace.
	PaceBurst float64
	// PaceWait is how long a node may schedule a paced charge ahead.
	PaceWait time.Duration
}

// paced reports whether deployment d's dimension dim is paced.
func (a *Allocator) paced(d string, dim int) bool {
	b := a.budgets[d]
	return b.Paceable && a.cfg.PaceBurst > 0 && a.cfg.PaceBurst < 1 && b.Windows[dim] >= paceMinWindow && b.Allowance.dim(dim) > 0
}

// burst returns the burst of node's grant for d and dim in round r, and
// whether the grant is paced.
func (r *Round) burst(node, d string, dim int) (int64, bool) {
	b, ok := r.Bursts[node][d]
	if !ok || b.dim(dim) < 0 {
		return 0, false
	}
	return b.dim(dim), true
}

type ack struct {
	round uint64
	at    int64 // allocator clock when the report arrived
	used  map[string]Grant
	ahead map[string]time.Duration
	fade  map[string]*Fade // a release report's, by deployment
}

// tail returns how long after the report superseding round r the node may
// still send charges scheduled under r: what it said was scheduled ahead,
// at most r's pace wait.
func (ak ack) tail(r *Round, d string) int64 {
	if a, ok := ak.ahead[d]; ok {
		return int64(min(a, r.PaceWait))
	}
	return int64(r.PaceWait)
}

type lastReport struct {
	at       int64
	demands  map[string]Demand
	released bool
}

// Allocator divides each deployment's allowance among live nodes. It is a
// plain value owned by one goroutine (the allocator actor on the leader);
// it never reads a clock: callers pass now.
//
// Safety: a node's window admits a charge only while every span of the
// window's length stays within its current share, so within any span a
// node charges at most the largest share it held during that span. The
// allocator therefore counts, for each node, a footprint: the largest
// share the node may still use or may have used within the last window,
// and grants new shares only while the footprints plus the new shares fit
// the allowance. A share stops counting a window's length after the node
// surely stopped using it: after its lease, grace and clock margin, or,
// once the node reported that it applied a newer round, after that
// report (bounded from then on by the node's reported charges). A paced
// share (see Pace) counts its rate only until the node surely stopped
// spending it, and its burst for a window more (see footprintParts).
type Allocator struct {
	cfg     AllocatorConfig
	budgets map[string]Budget
	rounds  []Round // committed rounds, oldest first
	acks    map[string]ack
	reports map[string]lastReport
	seq     uint64
	carry   map[string]map[string]Grant
	// external is, per deployment and dimension, the smoothed part of the
	// allowance the provider says is used by someone other than this
	// cluster's admissions (see drift).
	external map[string]*[numDims]float64
	// seen holds, per deployment and dimension, the fresh estimates of
	// the last window (see drift).
	seen map[string]*[numDims][]driftObs
}

type driftObs struct {
	at  int64
	est int64
}

// NewAllocator returns an allocator with no rounds.
func NewAllocator(cfg AllocatorConfig) *Allocator {
	if cfg.Stale <= 0 {
		cfg.Stale = 2 * time.Second
	}
	return &Allocator{cfg: cfg, budgets: map[string]Budget{}, acks: map[string]ack{}, reports: map[string]lastReport{}, external: map[string]*[numDims]float64{}, seen: map[string]*[numDims][]driftObs{}}
}

// SetConfig replaces the settings.
func (a *Allocator) SetConfig(cfg AllocatorConfig) {
	if cfg.Stale <= 0 {
		cfg.Stale = a.cfg.Stale
	}
	a.cfg = cfg
}

// SetBudgets replaces the deployments and their allowances.
func (a *Allocator) SetBudgets(b map[string]Budget) { a.budgets = b }

// SetRounds installs the committed rounds (oldest first), as the
// replicated lease table holds them. A new allocator calls it before its
// first Next, so it never grants what an earlier allocator's rounds may
// still hold.
func (a *Allocator) SetRounds(rs []Round) {
	a.rounds = rs
	if n := len(rs); n > 0 && rs[n-1].Seq > a.seq {
		a.seq = rs[n-1].Seq
	}
	for _, r := range rs {
		for h, rel := range r.Released {
			if ak, ok := a.acks[h]; ok && ak.round == math.MaxUint64 {
				continue
			}
			// Another allocator's clock: count from a clock margin later,
			// which errs toward holding.
			at := rel.At + int64(a.cfg.ClockMargin)
			a.acks[h] = ack{round: math.MaxUint64, at: at, used: rel.Used, fade: rel.Fade}
			rep := a.reports[h]
			rep.released = true
			rep.at = max(rep.at, at)
			if rep.demands == nil {
				// What it last charged, for the drift estimate.
				rep.demands = make(map[string]Demand, len(rel.Used))
				for d, u := range rel.Used {
					rep.demands[d] = Demand{Used: u}
				}
			}
			a.reports[h] = rep
		}
	}
}

// SetCarry names holders to carry over unchanged into the next round:
// alive holders a new allocator has not heard from yet. Their grants must
// be ones the committed rounds already count (their newest grants), so
// carrying them raises no footprint; without them, a holder would lose
// its share only because the allocator changed.
func (a *Allocator) SetCarry(c map[string]map[string]Grant) { a.carry = c }

// Observe records a node's report, received at now.
func (a *Allocator) Observe(r Report, now int64) {
	prev, ok := a.acks[r.Node]
	// Once released, always released: a periodic report sent before the
	// release may arrive after it.
	released := r.Released || (ok && prev.round == math.MaxUint64)
	a.reports[r.Node] = lastReport{at: now, demands: r.Demands, released: released}
	if r.Released {
		r.Round = math.MaxUint64 // supersedes every round, issued or not
	}
	if !ok || r.Round > prev.round {
		used := make(map[string]Grant, len(r.Demands))
		ahead := make(map[string]time.Duration, len(r.Demands))
		var fade map[string]*Fade
		for d, dem := range r.Demands {
			used[d] = dem.Used
			ahead[d] = dem.Ahead
			if r.Released && dem.Fade != nil {
				if fade == nil {
					fade = map[string]*Fade{}
				}
				fade[d] = dem.Fade
			}
		}
		a.acks[r.Node] = ack{round: r.Round, at: now, used: used, ahead: ahead, fade: fade}
	}
}

// footprint is the most node may charge within a window ending at or after
// now under the rounds already issued, for deployment d and dimension dim:
// both parts of footprintParts.
func (a *Allocator) footprint(node, d string, dim int, now int64) int64 {
	b, r := a.footprintParts(node, d, dim, now)
	return b + r
}

// footprintParts returns node's footprint in two parts (see Pace): burst,
// the deepest bucket node may have had within the last window, and rate,
// the most it may spend per window from now on. Within any window ending
// at or after now the node charges at most burst plus rate over the
// window, and the rate part stops counting as soon as the node surely
// stopped spending it: the allocator may hand it to others at once, since
// the node's charges leave the provider's window at the pace they entered
// it.
//
// A round that did not pace the dimension counts as all burst: a node's
// window admits a charge only while every span of the window's length
// stays within its current share, so within any span it charges at most
// the largest share it held during that span. Such a share counts a
// window's length after the node surely stopped using it: after its
// lease, grace and clock margin, or, once the node reported that it
// applied a newer round, after that report (bounded from then on by the
// node's reported charges).
func (a *Allocator) footprintParts(node, d string, dim int, now int64) (burst, rate int64) {
	w := int64(a.budgets[d].Windows[dim])
	ak, acked := a.acks[node]
	for i := range a.rounds {
		r := &a.rounds[i]
		g, ok := r.Grants[node][d]
		if !ok {
			continue
		}
		v := g.dim(dim)
		if v <= 0 {
			continue
		}
		c, paced := r.burst(node, d, dim)
		if !paced {
			c = v
		}
		c = min(c, v)
		rr := v - c
		leaseEnd := r.Issued + int64(r.Lease+a.cfg.ClockMargin)
		end := leaseEnd + int64(r.Grace)
		// Charges are scheduled only before the lease phase in force
		// ends; once the node applied a newer round, what it scheduled
		// before goes out within a pace wait.
		rateLease, rateEnd := leaseEnd, end
		if acked && ak.round > r.Seq {
			end = min(end, ak.at+ak.tail(r, d))
			leaseEnd = min(leaseEnd, ak.at+ak.tail(r, d))
			rateLease = min(rateLease, ak.at+ak.tail(r, d))
			rateEnd = min(rateEnd, ak.at+ak.tail(r, d))
			if !paced {
				// As footprint: a superseded window share counts at most
				// what the node reported charging under it.
				c = min(c, ak.used[d].dim(dim))
				if l := ak.fade[d].left(dim, now-ak.at); l >= 0 {
					c = min(c, l)
				}
			}
		}
		switch {
		case now < rateLease:
			rate = max(rate, rr)
		case now < rateEnd:
			rate = max(rate, int64(math.Ceil(float64(rr)*r.Safe)))
		}
		switch {
		case now < leaseEnd+w:
			burst = max(burst, c)
		case now < end+w:
			burst = max(burst, int64(math.Ceil(float64(c)*r.Safe)))
		}
	}
	// A released node charges nothing more: what it charged before leaves
	// the window as its fade says.
	if acked && ak.round == math.MaxUint64 && rate == 0 {
		if l := ak.fade[d].left(dim, now-ak.at); l >= 0 {
			burst = min(burst, l)
		}
	}
	return burst, rate
}

// holds reports whether node may still charge deployment d's dimension
// dim within a window ending at or after now.
func (a *Allocator) holds(node, d string, dim int, now int64) bool {
	return a.footprint(node, d, dim, now) > 0
}

// Next computes the next round for the live nodes at now. The caller
// commits it through the replicated log and then installs it with
// SetRounds (or Append); until then it must not be used.
func (a *Allocator) Next(now int64, live []string) Round {
	a.seq++
	var longest time.Duration
	for _, b := range a.budgets {
		longest = max(longest, b.Windows[DimRequests], b.Windows[DimTokens])
	}
	r := Round{
		Seq: a.seq, Issued: now, Lease: a.cfg.Lease, Grace: a.cfg.Grace, Safe: a.cfg.SafeFraction,
		Hold:   a.cfg.Lease + a.cfg.Grace + a.cfg.ClockMargin + longest + a.cfg.PaceWait,
		Grants: map[string]map[string]Grant{}, PaceWait: a.cfg.PaceWait,
		// Made here: the deferred carry below fills it after the return
		// value is taken.
		Bursts: map[string]map[string]Grant{},
	}
	// Nodes whose reports are stale get nothing new: they may be dead or
	// cut off, and their old shares run out by themselves.
	var grantees []string
	for _, n := range live {
		if rep, ok := a.reports[n]; ok && !rep.released && now-rep.at <= int64(a.cfg.Stale) {
			grantees = append(grantees, n)
		}
	}
	sort.Strings(grantees)
	// Releases still counting go into the log with the round.
	for h, ak := range a.acks {
		if ak.round == math.MaxUint64 && now-ak.at < int64(longest) {
			if r.Released == nil {
				r.Released = map[string]Released{}
			}
			r.Released[h] = Released{At: ak.at, Used: ak.used, Fade: ak.fade}
		}
	}
	// Every node that appears in a round still counting has a footprint.
	holders := map[string]bool{}
	for _, rd := range a.rounds {
		for n := range rd.Grants {
			holders[n] = true
		}
	}
	for _, n := range grantees {
		holders[n] = true
		r.Grants[n] = map[string]Grant{}
	}
	// Forget nodes that no round counts any more, that are not live and
	// that stopped reporting long ago (earlier incarnations), so that the
	// allocator's memory does not grow with every restart.
	isLive := make(map[string]bool, len(live))
	for _, n := range live {
		isLive[n] = true
	}
	for n, rep := range a.reports {
		if !holders[n] && !isLive[n] && now-rep.at > int64(a.cfg.Stale+longest) {
			delete(a.reports, n)
			delete(a.acks, n)
		}
	}
	defer func() {
		var last *Round
		if n := len(a.rounds); n > 0 {
			last = &a.rounds[n-1]
		}
		for h, gs := range a.carry {
			if _, granted := r.Grants[h]; granted {
				continue
			}
			// A carried grant may not exceed what the committed rounds
			// still count for the holder: once its lease lapsed (a long
			// leader change) the holder stopped admitting, its footprint
			// fell, and the others were given that room.
			out := make(map[string]Grant, len(gs))
			for d, g := range gs {
				var c Grant
				b := Grant{Requests: Unpaced, Tokens: Unpaced}
				for dim := range numDims {
					v := g.dim(dim)
					var burst int64
					paced := false
					if last != nil {
						burst, paced = last.burst(h, d, dim)
					}
					switch {
					case v < 0:
					case paced:
						// Both parts within what is counted.
						fb, fr := a.footprintParts(h, d, dim, now)
						burst = min(burst, v, fb)
						v = burst + min(v-burst, fr)
						b.set(dim, burst)
					default:
						v = min(v, a.footprint(h, d, dim, now))
					}
					c.set(dim, v)
				}
				out[d] = c
				if b != (Grant{Requests: Unpaced, Tokens: Unpaced}) {
					r.setBurst(h, d, b)
				}
			}
			r.Grants[h] = out
		}
		a.carry = nil
	}()
	names := make([]string, 0, len(a.budgets))
	for d := range a.budgets {
		names = append(names, d)
	}
	sort.Strings(names)
	for _, d := range names {
		b := a.budgets[d]
		for dim := range numDims {
			total := b.Allowance.dim(dim)
			if total < 0 {
				for _, n := range grantees {
					g := r.Grants[n][d]
					g.set(dim, Unlimited)
					r.Grants[n][d] = g
				}
				continue
			}
			total -= a.drift(d, dim, total, holders, now)
			if a.paced(d, dim) {
				shares, bursts := a.dividePaced(d, dim, total, grantees, holders, now)
				for i, n := range grantees {
					g := r.Grants[n][d]
					g.set(dim, shares[i])
					r.Grants[n][d] = g
					b, ok := r.Bursts[n][d]
					if !ok {
						b = Grant{Requests: Unpaced, Tokens: Unpaced}
					}
					b.set(dim, bursts[i])
					r.setBurst(n, d, b)
				}
				continue
			}
			shares := a.divide(d, dim, total, grantees, holders, now)
			for i, n := range grantees {
				g := r.Grants[n][d]
				g.set(dim, shares[i])
				r.Grants[n][d] = g
			}
		}
	}
	return r
}

// Drift correction. The cluster charges admissions from its own estimate
// of what the provider will charge; the provider may count more (another
// client shares the deployment, its quota is lower than configured, or its
// token estimate differs). Answers carry the provider's remaining
// allowance, and nodes report the latest one they saw. When a fresh one
// says less remains than the allowance minus what the holders report they
// charged, the difference is used by someone else: the allocator divides
// that much less (the largest fresh estimate within the last window, plus
// driftMargin of the allowance), smoothed over rounds
// and ignored below driftNoise of the allowance. It decays when the
// provider stops saying so.
//
// The margin is 5%: a provider that counts in fixed windows shows all of
// its use only at the end of each, and the estimate sees the latest
// answers of a window a little before that.
//
// Only windows of at least driftMinWindow are corrected: the reports of
// different nodes are up to one interval apart, which is most of a 1 s
// request window, so there the difference would be noise. The local
// adaptive throttle (on 429s) covers those.
const (
	driftMinWindow = 5 * time.Second
	driftNoise     = 0.05
	driftMargin    = 0.05
	driftMax       = 0.9  // never divide less than a tenth of the allowance
	driftSmooth    = 0.5  // weight of the newest estimate
	driftDecay     = 0.95 // per round without a fresh estimate: a late report or two must not undo it
	driftFresh     = 0.25 // an observation older than this part of the window is stale
)

// drift returns how much of total to withhold for deployment d's
// dimension dim, updating the smoothed estimate.
func (a *Allocator) drift(d string, dim int, total int64, holders map[string]bool, now int64) int64 {
	win := a.budgets[d].Windows[dim]
	if a.cfg.IgnoreUpstream || win < driftMinWindow || total <= 0 {
		return 0
	}
	ext := a.external[d]
	if ext == nil {
		ext = &[numDims]float64{}
		a.external[d] = ext
	}
	est, fresh := a.externalUse(d, dim, total, win, holders, now)
	if fresh {
		// The largest estimate of the last window: a provider that counts
		// in fixed windows says little remains only late in each one,
		// when the cluster's paced charges have filled it (early in a
		// window the same use looks like none).
		seen := a.seen[d]
		if seen == nil {
			seen = &[numDims][]driftObs{}
			a.seen[d] = seen
		}
		obs := append(seen[dim], driftObs{at: now, est: est})
		keep := 0
		for keep < len(obs) && obs[keep].at <= now-int64(win) {
			keep++
		}
		obs = obs[keep:]
		seen[dim] = obs
		for _, o := range obs {
			est = max(est, o.est)
		}
		ext[dim] = driftSmooth*float64(est) + (1-driftSmooth)*ext[dim]
	} else {
		ext[dim] *= driftDecay
	}
	if ext[dim] < driftNoise*float64(total) {
		return 0
	}
	// Once drift shows, a margin keeps the cluster off the provider's
	// edge: its windows and the nodes' do not line up.
	return int64(min(ext[dim]+driftMargin*float64(total), driftMax*float64(total)))
}

// externalUse estimates the allowance used outside the cluster from the
// freshest upstream observation of any holder, against what the holders
// last reported they charged (a report older than the window counts for
// nothing). It reports false when no observation is fresh.
func (a *Allocator) externalUse(d string, dim int, total int64, win time.Duration, holders map[string]bool, now int64) (int64, bool) {
	var used int64
	best := time.Duration(math.MaxInt64)
	remaining := int64(-1)
	for n := range holders {
		rep, ok := a.reports[n]
		_, known := rep.demands[d]
		if !ok || !known || now-rep.at > int64(win) {
			// Nothing it reported still counts in the window. If it may
			// have charged within it (a dead or cut-off node, a leader
			// this allocator replaced, a holder known only from the
			// log), its charges are unknown and would look like someone
			// else's: no estimate now.
			if a.holds(n, d, dim, now) {
				return 0, false
			}
			continue
		}
		dem := rep.demands[d]
		used += dem.Used.dim(dim)
		if up := dem.Upstream; up != nil && up.Remaining.dim(dim) >= 0 {
			if age := up.Age + time.Duration(now-rep.at); age < best {
				best, remaining = age, up.Remaining.dim(dim)
			}
		}
	}
	if remaining < 0 || best > time.Duration(float64(win)*driftFresh) {
		return 0, false
	}
	return max(total-remaining-used, 0), true
}

// Drift returns the allowance withheld from deployment d for use outside
// the cluster, per dimension, as of the last round.
func (a *Allocator) Drift(d string) Grant {
	ext := a.external[d]
	if ext == nil {
		return Grant{}
	}
	var g Grant
	for dim := range numDims {
		if total := a.budgets[d].Allowance.dim(dim); total > 0 && ext[dim] >= driftNoise*float64(total) {
			g.set(dim, int64(min(ext[dim]+driftMargin*float64(total), driftMax*float64(total))))
		}
	}
	return g
}

func (r *Round) setBurst(node, d string, b Grant) {
	if r.Bursts == nil {
		r.Bursts = map[string]map[string]Grant{}
	}
	if r.Bursts[node] == nil {
		r.Bursts[node] = map[string]Grant{}
	}
	r.Bursts[node][d] = b
}

// dividePaced is divide for a paced dimension: it returns each grantee's
// share and the burst part of it. A grantee costs, in each part, the
// larger of what its earlier rounds still count and its new grant; the
// grants grow toward their targets, both parts by the same fraction of
// their growth, as far as the allowance less every cost allows.
func (a *Allocator) dividePaced(d string, dim int, total int64, grantees []string, holders map[string]bool, now int64) (shares, bursts []int64) {
	n := len(grantees)
	shares, bursts = make([]int64, n), make([]int64, n)
	if n == 0 {
		return shares, bursts
	}
	floor := max(int64(float64(total)*a.cfg.Floor), min(1, total/int64(n)))
	want := make([]int64, n)
	for i, g := range grantees {
		// A little more than the demand, as divide asks, but less: the
		// demand of a paced dimension is measured over a short span, so
		// a growing node shows up within a round anyway.
		w := a.reports[g].demands[d].Want.dim(dim)
		want[i] = max(w+w/64+1, floor)
	}
	lockB, lockR := make([]int64, n), make([]int64, n)
	idx := make(map[string]int, n)
	for i, g := range grantees {
		idx[g] = i
	}
	var reserved int64
	for h := range holders {
		b, r := a.footprintParts(h, d, dim, now)
		if i, ok := idx[h]; ok {
			lockB[i], lockR[i] = b, r
			continue
		}
		reserved += b + r
	}
	target := maxMinFair(max(total-reserved, 0), want, floor, a.budgets[d].HoldBack)
	free := total - reserved
	wantB, wantR := make([]int64, n), make([]int64, n)
	var growth int64
	for i, g := range grantees {
		dem := a.reports[g].demands[d]
		// Unlike a window share (see divide), a paced share is lowered to
		// its target even below what the grantee charged within the
		// window: its rate stops counting once the grantee applied the
		// lower one, and its bucket, not a window, limits it.
		desired := target[i]
		peak := dem.Peak.dim(dim)
		// The burst holds paceBurstRequests of the largest requests, and
		// before any was seen, the floor's worth.
		wantB[i] = min(desired, max(int64(math.Ceil(float64(desired)*a.cfg.PaceBurst)), paceBurstRequests*peak, floor, 1))
		wantR[i] = desired - wantB[i]
		free -= lockB[i] + lockR[i]
		growth += max(wantB[i]-lockB[i], 0) + max(wantR[i]-lockR[i], 0)
	}
	frac := 1.0
	switch {
	case growth == 0:
	case free <= 0:
		frac = 0
	case free < growth:
		frac = float64(free) / float64(growth)
	}
	for i := range grantees {
		b := min(wantB[i], lockB[i]) + int64(frac*float64(max(wantB[i]-lockB[i], 0)))
		r := min(wantR[i], lockR[i]) + int64(frac*float64(max(wantR[i]-lockR[i], 0)))
		if b <= 0 {
			// A bucket that holds nothing admits nothing.
			b, r = 0, 0
		}
		shares[i], bursts[i] = b+r, b
	}
	return shares, bursts
}

// divide returns the grants of the grantees for one dimension.
func (a *Allocator) divide(d string, dim int, total int64, grantees []string, holders map[string]bool, now int64) []int64 {
	// Targets: max-min fair over demand, with a floor for every grantee.
	want := make([]int64, len(grantees))
	// Every grantee can serve at least one request or token when the
	// allowance covers one each, so a first request is not refused.
	floor := max(int64(float64(total)*a.cfg.Floor), min(1, total/int64(max(len(grantees), 1))))
	for i, n := range grantees {
		dem := a.reports[n].demands[d]
		// Ask for a little more than the recent demand, so a growing node
		// is not pinned to what it could get last time.
		w := dem.Want.dim(dim)
		want[i] = max(w+w/16+1, floor)
	}
	// Feasibility: what other holders (dead or cut-off nodes, earlier
	// incarnations) and the grantees' own earlier rounds may still charge.
	locked := make([]int64, len(grantees))
	var reserved int64
	isGrantee := map[string]int{}
	for i, n := range grantees {
		isGrantee[n] = i
	}
	for n := range holders {
		f := a.footprint(n, d, dim, now)
		if i, ok := isGrantee[n]; ok {
			locked[i] = f
			continue
		}
		reserved += f
	}
	// Targets divide what the other holders do not hold, so that a new
	// grantee competes for it fairly instead of finding it all handed out.
	target := maxMinFair(max(total-reserved, 0), want, floor, a.budgets[d].HoldBack)

	// A grantee costs max(locked, grant). Lowering a grant costs locked;
	// the rest goes to the grantees that grow, in proportion to how much
	// they want to grow.
	free := total - reserved
	var growth int64
	grow := make([]int64, len(grantees))
	for i := range grantees {
		free -= locked[i]
		if target[i] > locked[i] {
			grow[i] = target[i] - locked[i]
			growth += grow[i]
		}
	}
	// A grantee is lowered toward its target, but never below what it
	// charged within the window while it still holds that much: lowering
	// a share that is in use only refuses its traffic, and frees nothing:
	// once superseded, a share still counts up to what was charged under
	// it, for a window.
	out := make([]int64, len(grantees))
	for i, n := range grantees {
		used := a.reports[n].demands[d].Used.dim(dim)
		out[i] = min(locked[i], max(target[i], used))
	}
	if free <= 0 || growth == 0 {
		return out
	}
	// The grantees that grow get their target, or, while there is not
	// enough headroom yet, a part of it by growth, rounding down.
	for i := range grantees {
		switch {
		case grow[i] == 0:
		case growth <= free:
			out[i] = target[i]
		default:
			out[i] = locked[i] + int64(float64(free)*float64(grow[i])/float64(growth))
		}
	}
	return out
}

// maxMinFair divides total among wants by water filling; what is left
// once every want is met is spread evenly (with holdBack, at most
// doubling each share). Each result is at least floor
// when total allows it. The results sum to at most total.
func maxMinFair(total int64, want []int64, floor int64, holdBack bool) []int64 {
	n := len(want)
	out := make([]int64, n)
	if n == 0 || total <= 0 {
		return out
	}
	if floor*int64(n) > total {
		floor = total / int64(n)
	}
	left := total
	for i := range out {
		out[i] = floor
		left -= floor
	}
	idx := make([]int, n)
	for i := range idx {
		idx[i] = i
	}
	slices.SortFunc(idx, func(x, y int) int { return int(want[x] - want[y]) })
	for k, i := range idx {
		remaining := int64(n - k)
		fair := left / remaining
		need := max(want[i]-out[i], 0)
		give := min(need, fair)
		out[i] += give
		left -= give
	}
	// Spread what nobody wanted evenly, so a node whose demand grows has
	// room before the next round.
	if left > 0 {
		each := left / int64(n)
		for i := range out {
			if holdBack {
				out[i] += min(each, max(out[i], floor))
			} else {
				out[i] += each
			}
		}
	}
	return out
}

// Prune drops rounds that no longer count for any footprint at now,
// always keeping the newest.
func Prune(rs []Round, now int64) []Round {
	keep := 0
	for keep < len(rs)-1 && now >= rs[keep].Issued+int64(rs[keep].Hold) {
		keep++
	}
	return rs[keep:]
}
