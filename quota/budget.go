package quota

import (
	"errors"
	"math"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sluicehq/sluice/cluster/state"
)

// Sentinel errors of admission.
var (
	// ErrRequests means the request-rate allowance is used up.
	ErrRequests = errors.New("request rate limit reached")
	// ErrTokens means the token-rate allowance is used up.
	ErrTokens = errors.New("token rate limit reached")
	// ErrTooLarge means the charge exceeds a whole window's allowance and can never fit.
	ErrTooLarge = errors.New("request larger than the whole allowance")
	// ErrConcurrency means the concurrent-request limit is reached.
	ErrConcurrency = errors.New("concurrent request limit reached")
	// ErrHourly and ErrDaily mean the token budgets per hour or day are spent.
	ErrHourly = errors.New("hourly token budget spent")
	ErrDaily  = errors.New("daily token budget spent")
	// ErrBatchHeadroom means batch traffic reached its fraction of a
	// deployment's budget while interactive traffic wants the rest.
	ErrBatchHeadroom = errors.New("batch share of the budget reached")
)

// Allowance returns what a per-minute limit allows within one window of the
// given length: floor(limit*window/60s), at least 1. This is how providers
// derive their short-window limits from TPM and RPM. Zero or negative
// limits are Unlimited.
func Allowance(perMinute int64, window time.Duration) int64 {
	if perMinute <= 0 {
		return Unlimited
	}
	return max(int64(float64(perMinute)*window.Seconds()/60), 1)
}

// shareWait is the retry-after of a charge larger than this node's share
// but not than the whole allowance: the next rounds may grant it.
const shareWait = time.Second

// countOnly is the capacity of windows that only count: large enough never
// to refuse, unlike Unlimited, which does not count.
const countOnly = int64(1) << 62

// Deployment is a provider deployment's local budget: request and token
// windows matching the provider's enforcement windows.
type Deployment struct {
	Name     string
	requests *Window
	tokens   *Window
	// wantReq and wantTok count every charge asked for, admitted or not;
	// recentTok the token asks of the last demandSpan only: the demand
	// this node reports to the allocator.
	wantReq, wantTok *Window
	recentTok        *Window
	// asks remembers the largest token ask of the last peakSpan, for the
	// burst a paced share must hold (see Demand.Peak).
	asks *Window
	// born is when the first charge was asked for (0: none yet).
	born atomic.Int64
	// batchReq and batchTok count the batch class's own charges, which
	// BatchFraction caps; batchAskReq and batchAskTok what batch requests
	// asked for, admitted or not, so that what interactive requests asked
	// for (which batch leaves room for) is want less these, and the
	// interactive path counts nothing more.
	batchReq, batchTok       *Window
	batchAskReq, batchAskTok *Window
	// share is the capacity granted (leased share or whole allowance);
	// the windows' capacities are share x throttle.
	shareMu sync.Mutex
	share   Grant
	pacing  Pace
	// paced is each dimension's token bucket (see Pace); a dimension the
	// share does not pace leaves it off, and its window limits the
	// charges. A paced dimension's window only counts: the bucket limits
	// it, and the allocator counts on the bucket alone, so lowering a
	// paced share never blocks a node until its window drains.
	paced [numDims]pace
	// capacity is each dimension's allowance in force (share x throttle;
	// Unlimited when not limited).
	capacity [numDims]atomic.Int64
	// throttle (float64 bits) shrinks the capacity while the provider
	// keeps answering 429: 1 when it does not.
	throttle  atomic.Uint64
	last429   atomic.Int64
	lastInter atomic.Int64 // last interactive reservation attempt
	// lastShort is when an interactive charge last found this node's share
	// spent: while that is recent, batch charges take nothing.
	lastShort atomic.Int64
	// batchFraction (float64 bits; 0 = no cap) caps batch charges.
	batchFraction atomic.Uint64
	// allowTok is the deployment's whole token allowance per window
	// (Unlimited when not limited): a charge above it can never fit.
	allowTok int64
	// limitedReq and limitedTok say the provider limits the dimension.
	limitedReq, limitedTok bool
	// refund says whether settling returns unused tokens. Providers charge
	// on arrival and do not refund, so the default is false.
	refund bool
	// The provider's latest x-ratelimit-remaining-* values (-1 when it
	// sent none) and when they came (0 = never), reported as Demand.Upstream.
	remReq, remTok, remAt atomic.Int64
}

// NewDeployment builds the budget for d with its full quota as capacity.
func NewDeployment(d *state.Deployment, slots int, refund bool) *Deployment {
	b := &Deployment{
		Name:      d.Name,
		requests:  NewWindow(Allowance(d.RPM, d.RPMWindow.D()), d.RPMWindow.D(), slots),
		tokens:    NewWindow(Allowance(d.TPM, d.TPMWindow.D()), d.TPMWindow.D(), slots),
		wantReq:   NewWindow(countOnly, d.RPMWindow.D(), slots),
		wantTok:   NewWindow(countOnly, d.TPMWindow.D(), slots),
		recentTok: NewWindow(countOnly, min(d.TPMWindow.D(), demandSpan), slots),
		asks:      NewWindow(countOnly, peakSpan, 10),
		batchReq:  NewWindow(countOnly, d.RPMWindow.D(), slots),
		batchTok:  NewWindow(countOnly, d.TPMWindow.D(), slots),
		refund:    refund,

		batchAskReq: NewWindow(countOnly, d.RPMWindow.D(), slots),
		batchAskTok: NewWindow(countOnly, d.TPMWindow.D(), slots),

		limitedReq: d.RPM > 0,
		limitedTok: d.TPM > 0,
		allowTok:   Allowance(d.TPM, d.TPMWindow.D()),
	}
	b.share = Grant{Requests: b.requests.Capacity(), Tokens: b.tokens.Capacity()}
	b.capacity[DimRequests].Store(b.share.Requests)
	b.capacity[DimTokens].Store(b.share.Tokens)
	b.pacing = NoPace
	b.throttle.Store(math.Float64bits(1))
	b.lastInter.Store(math.MinInt64 / 2)
	b.lastShort.Store(math.MinInt64 / 2)
	b.remReq.Store(-1)
	b.remTok.Store(-1)
	return b
}

// ObserveRemaining records what the provider's answer at now said remains
// in its windows (x-ratelimit-remaining-requests and -tokens; -1 for a
// header it did not send). The next demand report carries it to the
// allocator, which corrects drift between the cluster's charges and the
// provider's. Three stores: a report may pair a value with a neighbouring
// answer's time, which is harmless at the allocator's precision.
func (d *Deployment) ObserveRemaining(now, requests, tokens int64) {
	if requests < 0 && tokens < 0 {
		return
	}
	d.remReq.Store(requests)
	d.remTok.Store(tokens)
	d.remAt.Store(now)
}

// Reservation is a charge made on admission, settled when usage is known.
type Reservation struct {
	at     int64
	send   int64 // not before: a paced charge scheduled ahead
	tokens int64
	batch  bool
	held   bool // scheduled ahead and not sent yet
}

// Tokens returns the tokens reserved.
func (r Reservation) Tokens() int64 { return r.tokens }

// Delay returns how long after now the request may be sent: a paced share
// schedules a charge its bucket does not cover yet (see Pace). The caller
// waits that long, or cancels the reservation.
func (r Reservation) Delay(now int64) time.Duration {
	return time.Duration(max(r.send-now, 0))
}

// Reserve charges one request and tokens at now (nanoseconds). On refusal it
// returns ErrRequests, ErrTokens or ErrTooLarge and how long until the
// charge would fit.
func (d *Deployment) Reserve(now, tokens int64) (Reservation, time.Duration, error) {
	return d.ReserveClass(now, tokens, false)
}

// ReserveClass is Reserve for a priority class. While interactive
// requests asked for this deployment within its token window, batch
// charges may use at most BatchFraction of the capacity (their own
// charges, within each window) and only what interactive requests did not
// ask for within the window, with interactiveMargin to spare; and nothing
// while an interactive charge found the share spent within the last
// shareWait (the share is short, for example while a dead node's share is
// still held). So batch traffic never takes the headroom interactive
// traffic needs, and still uses what it leaves idle. It refuses with
// ErrBatchHeadroom.
func (d *Deployment) ReserveClass(now, tokens int64, batch bool) (Reservation, time.Duration, error) {
	d.wantReq.Take(now, 1, true)
	d.wantTok.Take(now, tokens, true)
	d.recentTok.Take(now, tokens, true)
	d.asks.Take(now, tokens, true)
	if d.born.Load() == 0 {
		d.born.CompareAndSwap(0, now)
	}
	if math.Float64frombits(d.throttle.Load()) < 1 {
		d.recover(now)
	}
	if !batch {
		if d.lastInter.Load() < now {
			d.lastInter.Store(now)
		}
	} else {
		d.batchAskReq.Take(now, 1, true)
		d.batchAskTok.Take(now, tokens, true)
		if f := d.batchFraction.Load(); f > 0 && now-d.lastInter.Load() < int64(d.tokens.Length()) {
			if now-d.lastShort.Load() < int64(shareWait) {
				return Reservation{}, shareWait, ErrBatchHeadroom
			}
			frac := math.Float64frombits(f)
			if !fitsBatch(d.batchReq, d.wantReq, d.batchAskReq, d.capacity[DimRequests].Load(), now, 1, frac) ||
				!fitsBatch(d.batchTok, d.wantTok, d.batchAskTok, d.capacity[DimTokens].Load(), now, tokens, frac) {
				return Reservation{}, shareWait, ErrBatchHeadroom
			}
		}
	}
	if d.allowTok >= 0 && tokens > d.allowTok {
		return Reservation{}, 0, ErrTooLarge
	}
	// Paced dimensions first: their buckets cover the charge now, or
	// schedule it a little ahead.
	okR, delayR, waitR := d.paced[DimRequests].take(now, 1)
	if !okR {
		d.short(now, batch)
		return Reservation{}, orShareWait(waitR), ErrRequests
	}
	okT, delayT, waitT := d.paced[DimTokens].take(now, tokens)
	if !okT {
		d.paced[DimRequests].refund(1)
		d.short(now, batch)
		return Reservation{}, orShareWait(waitT), ErrTokens
	}
	delay := max(delayR, delayT)
	held := delay > 0
	take := func(w *Window, n int64) (bool, time.Duration) {
		if held {
			// Counted now, recorded when sent (see Sent).
			return w.Hold(now, n)
		}
		return w.Take(now, n, false)
	}
	undo := func(w *Window, n int64) {
		if held {
			w.Unhold(n)
		} else {
			w.Refund(now, n)
		}
	}
	if ok, wait := take(d.requests, 1); !ok {
		d.paced[DimRequests].refund(1)
		d.paced[DimTokens].refund(tokens)
		d.short(now, batch)
		// Larger than this node's share right now (for example no share
		// yet): another node or a later round may admit it.
		return Reservation{}, orShareWait(wait), ErrRequests
	}
	if ok, wait := take(d.tokens, tokens); !ok {
		undo(d.requests, 1)
		d.paced[DimRequests].refund(1)
		d.paced[DimTokens].refund(tokens)
		d.short(now, batch)
		return Reservation{}, orShareWait(wait), ErrTokens
	}
	if batch {
		d.batchReq.Take(now, 1, true)
		d.batchTok.Take(now, tokens, true)
	}
	return Reservation{at: now, send: now + delay, tokens: tokens, batch: batch, held: held}, 0, nil
}

// orShareWait turns "never fits this share" (a negative wait) into
// shareWait: a later round may grant a larger share.
func orShareWait(wait time.Duration) time.Duration {
	if wait < 0 {
		return shareWait
	}
	return wait
}

// Sent records that a reservation scheduled ahead (Delay > 0) went out at
// now, and returns it as charged then. Every reservation is either sent
// or cancelled.
func (d *Deployment) Sent(r Reservation, now int64) Reservation {
	if !r.held {
		return r
	}
	d.requests.Send(now, 1)
	d.tokens.Send(now, r.tokens)
	r.at, r.held = now, false
	return r
}

// interactiveMargin is the part of interactive demand batch leaves free
// on top of it: demand within the next window varies from the last's.
const interactiveMargin = 0.1

// fitsBatch reports whether n more batch units stay within frac of the
// capacity c and leave interactive demand its room: batch counts batch's own
// charges, want every ask and batchAsk batch's asks, so interactive
// requests asked for want less batchAsk.
func fitsBatch(batch, want, batchAsk *Window, c, now, n int64, frac float64) bool {
	if c < 0 {
		return true
	}
	own := float64(batch.Used(now) + n)
	inter := float64(max(want.Used(now)-batchAsk.Used(now), 0))
	return own <= float64(c)*frac && own+inter*(1+interactiveMargin) <= float64(c)
}

// short records that an interactive charge found the share spent at now.
func (d *Deployment) short(now int64, batch bool) {
	if !batch && d.lastShort.Load() < now {
		d.lastShort.Store(now)
	}
}

// Cancel returns a reservation whose request never reached the provider
// (for example the connection failed before the request was written).
func (d *Deployment) Cancel(r Reservation) {
	if r.held {
		d.requests.Unhold(1)
		d.tokens.Unhold(r.tokens)
	} else {
		d.requests.Refund(r.at, 1)
		d.tokens.Refund(r.at, r.tokens)
	}
	d.paced[DimRequests].refund(1)
	d.paced[DimTokens].refund(r.tokens)
	if r.batch {
		d.batchReq.Refund(r.at, 1)
		d.batchTok.Refund(r.at, r.tokens)
	}
}

// Settle records the real usage of a reservation. Unused tokens flow back
// only when the budget refunds (see NewDeployment).
func (d *Deployment) Settle(r Reservation, used int64) {
	if d.refund && used < r.tokens {
		d.tokens.Refund(r.at, r.tokens-used)
		d.paced[DimTokens].refund(r.tokens - used)
		if r.batch {
			d.batchTok.Refund(r.at, r.tokens-used)
		}
	}
}

// SetCapacity sets this node's allowances per window (its share of the
// global quota). Unlimited keeps a dimension unlimited.
func (d *Deployment) SetCapacity(requests, tokens int64) {
	d.requests.SetCapacity(requests)
	d.tokens.SetCapacity(tokens)
	d.capacity[DimRequests].Store(requests)
	d.capacity[DimTokens].Store(tokens)
}

// SetShare sets the allowances of the dimensions the provider limits to
// g (a leased share), spent as p says; unlimited dimensions stay
// unlimited. now is this node's clock.
func (d *Deployment) SetShare(now int64, g Grant, p Pace) {
	d.shareMu.Lock()
	defer d.shareMu.Unlock()
	d.share, d.pacing = g, p
	d.applyLocked(now)
}

func (d *Deployment) applyLocked(now int64) {
	f := math.Float64frombits(d.throttle.Load())
	for dim, w := range [numDims]*Window{d.requests, d.tokens} {
		if !(dim == DimRequests && d.limitedReq || dim == DimTokens && d.limitedTok) {
			d.paced[dim].set(now, true, false, 0, 0, 0, 0, 0)
			continue
		}
		share := max(d.share.dim(dim), 0)
		c := int64(float64(share) * f)
		d.capacity[dim].Store(c)
		burst := d.pacing.Burst.dim(dim)
		if burst < 0 || burst >= share {
			w.SetCapacity(c)
			d.paced[dim].set(now, true, false, 0, 0, 0, 0, 0)
			continue
		}
		w.SetCapacity(countOnly)
		d.paced[dim].set(now, false, d.born.Load() == 0, int64(float64(burst)*f), int64(float64(share-burst)*f), w.Length(), d.pacing.Until, d.pacing.Wait)
	}
}

// Adaptive throttling: each upstream 429 multiplies the capacity by
// throttleCut (down to throttleFloor); once none came for throttleQuiet
// it grows back by throttleStep per throttleQuiet.
const (
	throttleCut   = 0.7
	throttleFloor = 0.1
	throttleStep  = 0.1
	throttleQuiet = int64(time.Second)
)

// Throttled records an upstream 429 at now: the provider counts more than
// this node's share allows (another client, or drift), so the capacity
// shrinks until the 429s stop.
func (d *Deployment) Throttled(now int64) {
	d.shareMu.Lock()
	defer d.shareMu.Unlock()
	f := math.Float64frombits(d.throttle.Load())
	// One cut per quiet period: a burst of 429s from requests already in
	// flight is one signal, not many.
	if now-d.last429.Load() >= throttleQuiet/4 {
		f = max(f*throttleCut, throttleFloor)
		d.throttle.Store(math.Float64bits(f))
	}
	d.last429.Store(now)
	d.applyLocked(now)
}

// recover grows a throttled capacity back after a quiet period.
func (d *Deployment) recover(now int64) {
	quiet := now - d.last429.Load()
	if quiet < throttleQuiet {
		return
	}
	d.shareMu.Lock()
	defer d.shareMu.Unlock()
	f := math.Float64frombits(d.throttle.Load())
	if f >= 1 {
		return
	}
	f = min(1, f+throttleStep*float64(quiet/throttleQuiet))
	d.throttle.Store(math.Float64bits(f))
	d.last429.Store(now - throttleQuiet + 1) // the next step needs another quiet period
	d.applyLocked(now)
}

// Throttle returns the current throttle factor (1 when not throttled).
func (d *Deployment) Throttle() float64 { return math.Float64frombits(d.throttle.Load()) }

// SetBatchFraction sets the share of the capacity batch requests may use
// while interactive demand exists (0 lets batch use everything).
func (d *Deployment) SetBatchFraction(f float64) { d.batchFraction.Store(math.Float64bits(f)) }

// Share returns the granted capacity before throttling.
func (d *Deployment) Share() Grant {
	d.shareMu.Lock()
	defer d.shareMu.Unlock()
	return d.share
}

// Capacity returns the current allowances per window.
func (d *Deployment) Capacity() (requests, tokens int64) {
	return d.capacity[DimRequests].Load(), d.capacity[DimTokens].Load()
}

// Demand returns what was asked for (admitted or refused) and what was
// charged within the windows ending at now.
func (d *Deployment) Demand(now int64) Demand {
	dem := Demand{
		Want: Grant{Requests: d.wantReq.scaled(now, d.born.Load(), d.wantReq.Length()),
			Tokens: d.recentTok.scaled(now, d.born.Load(), d.wantTok.Length())},
		Used: Grant{Requests: d.requests.Used(now), Tokens: d.tokens.Used(now)},
		Peak: Grant{Requests: min(d.asks.Peak(now), 1), Tokens: d.asks.Peak(now)},
	}
	dem.Ahead = max(d.paced[DimRequests].ahead(now), d.paced[DimTokens].ahead(now))
	if at := d.remAt.Load(); at != 0 && now-at < int64(d.tokens.Length()) {
		dem.Upstream = &Upstream{Remaining: Grant{Requests: d.remReq.Load(), Tokens: d.remTok.Load()}, Age: time.Duration(max(now-at, 0))}
	}
	return dem
}

// demandSpan is how far back a node measures the demand it reports for a
// long window: the asks of the last second, scaled to the window, so that
// shares follow a shift of demand within a few rounds instead of a whole
// 10 s window later.
const demandSpan = time.Second

// peakSpan is how long a node remembers its largest ask: a paced share's
// burst holds it (see Pace), also after a quiet spell.
const peakSpan = 10 * time.Minute

// youngest is the shortest history scaled up to a whole window: a node's
// first asks are not taken for a rate before they span this long.
const youngest = 250 * time.Millisecond

// scaled returns what w counted in the span ending at now, as a rate over
// window: scaled up by window/span, and by span/age while the asks began
// (at born) less than a span ago, so that a restarted node reports its
// demand at once instead of a window later.
func (w *Window) scaled(now, born int64, window time.Duration) int64 {
	v := w.Used(now)
	span := w.Length()
	if born > 0 && now-born < int64(span) {
		span = time.Duration(max(now-born, int64(youngest)))
	}
	if span >= window {
		return v
	}
	return int64(float64(v) * float64(window) / float64(span))
}

// Fade returns how this node's charges leave its windows from now on,
// for a release report (see Fade).
func (d *Deployment) Fade(now int64) *Fade {
	f := &Fade{}
	f.Left[DimRequests], f.Step[DimRequests] = d.requests.fade(now)
	f.Left[DimTokens], f.Step[DimTokens] = d.tokens.fade(now)
	return f
}

// Windows returns the lengths of the request and token windows.
func (d *Deployment) Windows() (requests, tokens time.Duration) {
	return d.requests.Length(), d.tokens.Length()
}

// Used returns what was charged within the windows ending at now.
func (d *Deployment) Used(now int64) (requests, tokens int64) {
	return d.requests.Used(now), d.tokens.Used(now)
}

// Subject is a tenant's or key's local limits: per-minute rates, hour and
// day token budgets, and concurrent requests.
type Subject struct {
	Name     string
	limits   state.Limits
	rpm, tpm *Window
	hour     *Window
	day      *Window
	maxConc  atomic.Int64 // this node's part of the concurrency limit
	inflight atomic.Int64
	// wantR and wantT count what was asked for, admitted or not: the
	// demand reported when the per-minute limits are leased.
	wantR, wantT *Window

	// tenant and key name the subject in the usage ledger.
	tenant, key string
	// durable: hour and day are short windows of recent charges whose
	// capacity is the budget minus what the ledger holds (see SetLedger).
	durable bool
}

// recentWindow is how long a node counts its own charges beside the
// ledger's totals: longer than a ledger flush, its commit and a refresh.
const recentWindow = 5 * time.Second

// makeDurable replaces the hour and day windows by windows of recent
// charges against what the ledger leaves of each budget. Called before
// the subject is published.
func (s *Subject) makeDurable(ledger LedgerTotals, now time.Time, nodes int) {
	s.durable = true
	s.hour = NewWindow(Unlimited, recentWindow, 10)
	s.day = NewWindow(Unlimited, recentWindow, 10)
	s.refresh(ledger, now, nodes)
}

// refresh sets what this node may charge within its recent window: its
// part (one of nodes) of what the ledger leaves of the hour and day
// budgets, so that the nodes together stay within them while the ledger
// catches up with their latest charges.
func (s *Subject) refresh(ledger LedgerTotals, now time.Time, nodes int) {
	for _, b := range [...]struct {
		w     *Window
		limit int64
		span  time.Duration
	}{{s.hour, s.limits.TokensPerHour, time.Hour}, {s.day, s.limits.TokensPerDay, 24 * time.Hour}} {
		if b.limit <= 0 {
			continue
		}
		used := ledger(s.tenant, s.key, now.Add(-b.span), now.Add(time.Minute))
		b.w.SetCapacity(max(b.limit-used, 0) / int64(max(nodes, 1)))
	}
}

// NewSubject builds the limits for l. Zero limits are unlimited.
func NewSubject(name string, l state.Limits, slots int) *Subject {
	lim := func(v int64) int64 {
		if v <= 0 {
			return Unlimited
		}
		return v
	}
	s := &Subject{
		Name:   name,
		limits: l,
		rpm:    NewWindow(lim(l.RPM), time.Minute, slots),
		tpm:    NewWindow(lim(l.TPM), time.Minute, slots),
		hour:   NewWindow(lim(l.TokensPerHour), time.Hour, 60),
		day:    NewWindow(lim(l.TokensPerDay), 24*time.Hour, 96),
		wantR:  NewWindow(countOnly, time.Minute, slots),
		wantT:  NewWindow(countOnly, time.Minute, slots),
	}
	s.maxConc.Store(l.MaxConcurrent)
	return s
}

// SetShare sets the per-minute allowances to a leased share of the
// tenant's limits (unlimited dimensions stay unlimited). Tenant limits are
// not paced: their shares hold back what nobody asks for instead.
func (s *Subject) SetShare(_ int64, g Grant, _ Pace) {
	if s.limits.RPM > 0 {
		s.rpm.SetCapacity(max(g.Requests, 0))
	}
	if s.limits.TPM > 0 {
		s.tpm.SetCapacity(max(g.Tokens, 0))
	}
}

// Demand returns what was asked for and charged within the last minute.
func (s *Subject) Demand(now int64) Demand {
	return Demand{
		Want: Grant{Requests: s.wantR.Used(now), Tokens: s.wantT.Used(now)},
		Used: Grant{Requests: s.rpm.Used(now), Tokens: s.tpm.Used(now)},
	}
}

// split gives this node 1/n of the concurrency limit (at least 1) and,
// with perMinute, of the per-minute limits.
func (s *Subject) split(n int, perMinute bool) {
	if c := s.limits.MaxConcurrent; c > 0 {
		s.maxConc.Store(max(c/int64(n), 1))
	}
	if perMinute {
		if s.limits.RPM > 0 {
			s.rpm.SetCapacity(max(s.limits.RPM/int64(n), 1))
		}
		if s.limits.TPM > 0 {
			s.tpm.SetCapacity(max(s.limits.TPM/int64(n), 1))
		}
	}
}

// Ticket is a subject admission to be settled with Done.
type Ticket struct {
	s      *Subject
	at     int64
	tokens int64
}

// Admit charges a request of tokens at now. With force (soft limits) it
// always admits and charges, and the returned error says which limit was
// exceeded; without force a non-nil error means refused and nothing is
// charged. retryAfter is how long until a refused request would fit
// (0 for concurrency, which frees on completion).
func (s *Subject) Admit(now, tokens int64, force bool) (Ticket, time.Duration, error) {
	if s == nil {
		return Ticket{}, 0, nil
	}
	var over error
	var wait time.Duration
	s.wantR.Take(now, 1, true)
	s.wantT.Take(now, tokens, true)
	if n, mc := s.inflight.Add(1), s.maxConc.Load(); mc > 0 && n > mc {
		if !force {
			s.inflight.Add(-1)
			return Ticket{}, 0, ErrConcurrency
		}
		over = ErrConcurrency
	}
	checks := [...]struct {
		w   *Window
		n   int64
		err error
	}{{s.rpm, 1, ErrRequests}, {s.tpm, tokens, ErrTokens}, {s.hour, tokens, ErrHourly}, {s.day, tokens, ErrDaily}}
	for i, c := range checks {
		ok, w := c.w.Take(now, c.n, force)
		if ok {
			continue
		}
		if force {
			if over == nil {
				over = c.err
			}
			continue
		}
		for _, u := range checks[:i] {
			u.w.Refund(now, u.n)
		}
		s.inflight.Add(-1)
		if w < 0 {
			// Larger than this node's allowance: with a leased share the
			// next rounds may grant it; otherwise only after the window.
			w = c.w.Length()
			if c.w == s.rpm || c.w == s.tpm {
				w = min(w, shareWait)
			}
		}
		return Ticket{}, w, c.err
	}
	return Ticket{s: s, at: now, tokens: tokens}, wait, over
}

// Done releases the concurrency slot and settles the token charge to the
// real usage (refunding or adding the difference).
func (t Ticket) Done(now, used int64) {
	s := t.s
	if s == nil {
		return
	}
	s.inflight.Add(-1)
	for _, w := range [...]*Window{s.tpm, s.hour, s.day} {
		if used < t.tokens {
			w.Refund(t.at, t.tokens-used)
		} else if used > t.tokens {
			w.Take(now, used-t.tokens, true)
		}
	}
}

// InFlight returns the subject's concurrent requests.
func (s *Subject) InFlight() int64 { return s.inflight.Load() }
