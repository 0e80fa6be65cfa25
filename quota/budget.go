package quota

import (
	"errors"
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

// Deployment is a provider deployment's local budget: request and token
// windows matching the provider's enforcement windows.
type Deployment struct {
	Name     string
	requests *Window
	tokens   *Window
	// refund says whether settling returns unused tokens. Providers charge
	// on arrival and do not refund, so the default is false.
	refund bool
}

// NewDeployment builds the budget for d with its full quota as capacity.
func NewDeployment(d *state.Deployment, slots int, refund bool) *Deployment {
	return &Deployment{
		Name:     d.Name,
		requests: NewWindow(Allowance(d.RPM, d.RPMWindow.D()), d.RPMWindow.D(), slots),
		tokens:   NewWindow(Allowance(d.TPM, d.TPMWindow.D()), d.TPMWindow.D(), slots),
		refund:   refund,
	}
}

// Reservation is a charge made on admission, settled when usage is known.
type Reservation struct {
	at     int64
	tokens int64
}

// Tokens returns the tokens reserved.
func (r Reservation) Tokens() int64 { return r.tokens }

// Reserve charges one request and tokens at now (nanoseconds). On refusal it
// returns ErrRequests, ErrTokens or ErrTooLarge and how long until the
// charge would fit.
func (d *Deployment) Reserve(now, tokens int64) (Reservation, time.Duration, error) {
	if ok, wait := d.requests.Take(now, 1, false); !ok {
		if wait < 0 {
			return Reservation{}, 0, ErrTooLarge
		}
		return Reservation{}, wait, ErrRequests
	}
	if ok, wait := d.tokens.Take(now, tokens, false); !ok {
		d.requests.Refund(now, 1)
		if wait < 0 {
			return Reservation{}, 0, ErrTooLarge
		}
		return Reservation{}, wait, ErrTokens
	}
	return Reservation{at: now, tokens: tokens}, 0, nil
}

// Cancel returns a reservation whose request never reached the provider
// (for example the connection failed before the request was written).
func (d *Deployment) Cancel(r Reservation) {
	d.requests.Refund(r.at, 1)
	d.tokens.Refund(r.at, r.tokens)
}

// Settle records the real usage of a reservation. Unused tokens flow back
// only when the budget refunds (see NewDeployment).
func (d *Deployment) Settle(r Reservation, used int64) {
	if d.refund && used < r.tokens {
		d.tokens.Refund(r.at, r.tokens-used)
	}
}

// SetCapacity sets this node's allowances per window (its share of the
// global quota). Unlimited keeps a dimension unlimited.
func (d *Deployment) SetCapacity(requests, tokens int64) {
	d.requests.SetCapacity(requests)
	d.tokens.SetCapacity(tokens)
}

// Capacity returns the current allowances per window.
func (d *Deployment) Capacity() (requests, tokens int64) {
	return d.requests.Capacity(), d.tokens.Capacity()
}

// Used returns what was charged within the windows ending at now.
func (d *Deployment) Used(now int64) (requests, tokens int64) {
	return d.requests.Used(now), d.tokens.Used(now)
}

// Subject is a tenant's or key's local limits: per-minute rates, hour and
// day token budgets, and concurrent requests.
type Subject struct {
	Name     string
	rpm, tpm *Window
	hour     *Window
	day      *Window
	maxConc  int64
	inflight atomic.Int64
}

// NewSubject builds the limits for l. Zero limits are unlimited.
func NewSubject(name string, l state.Limits, slots int) *Subject {
	lim := func(v int64) int64 {
		if v <= 0 {
			return Unlimited
		}
		return v
	}
	return &Subject{
		Name:    name,
		rpm:     NewWindow(lim(l.RPM), time.Minute, slots),
		tpm:     NewWindow(lim(l.TPM), time.Minute, slots),
		hour:    NewWindow(lim(l.TokensPerHour), time.Hour, 60),
		day:     NewWindow(lim(l.TokensPerDay), 24*time.Hour, 96),
		maxConc: l.MaxConcurrent,
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
	if n := s.inflight.Add(1); s.maxConc > 0 && n > s.maxConc {
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
			// Larger than the whole allowance: it fits only after the window.
			w = c.w.Length()
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
