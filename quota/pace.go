package quota

import (
	"math"
	"sync"
	"time"
)

// Pacing. A share admitted through a sliding window alone may be spent all
// at once, so a node that goes silent may have charged its whole share in
// its last instant, and the allocator must hold that share for a whole
// window after the node's lease surely ended before anyone else may use it.
// A paced share is spent through a token bucket instead: at most Burst at
// once, then at a rate that fills the rest of the share over one window.
// Within any span the node's charges are then at most the bucket's level
// at the span's start plus the rate over the span, so the allocator counts
// a paced share as two parts: its rate, which stops counting as soon as
// the lease surely ended (the node's charges leave the provider's window
// at the rate they entered it, and others may take over that rate at
// once), and its burst, which counts for one more window. A dead node's
// share then comes back, all but its burst, when its lease ends instead
// of a window later.
//
// A charge the bucket does not cover yet is not refused if the bucket
// covers it within the pace wait and before the lease ends: it is
// scheduled, and the caller sends it when its Reservation says. The
// provider then sees the node's charges spread at its rate; bursts of
// arrivals wait a little instead of failing.

// paceBurstRequests is how many of the largest requests seen a burst holds
// at least: two requests arriving together go at once, and a node rarely
// schedules a charge, which also holds room in the windows that are not
// paced (see Window.Hold).
const paceBurstRequests = 2

// paceMinWindow: dimensions with shorter windows (Azure's 1 s request
// window) are not paced; a lapsed share of such a window comes back within
// a second of its lease anyway.
const paceMinWindow = 5 * time.Second

// pace is one dimension's token bucket. The level may be negative: charges
// scheduled ahead of now. Guarded by its mutex, held for a few dozen
// nanoseconds.
type pace struct {
	mu      sync.Mutex
	on      bool
	rate    float64 // units per nanosecond
	cap     float64
	level   float64 // at last
	last    int64
	until   int64 // no charge may be scheduled at or after until (0: none)
	maxWait int64
	latest  int64 // the latest send time scheduled
}

// set changes the bucket: burst is its depth and rate per the rate in
// units per window of length window. The level carries over, clamped to
// the new depth; charges scheduled ahead stay scheduled (the allocator
// counts the old rate for a pace wait after the node applied a new round).
// off turns pacing off (the sliding window alone limits the charges).
// Turning it on starts from a full bucket if no charge was ever asked of
// the budget (idle: a fresh node's first requests go at once), else from
// an empty one, so that charges made before never add to a burst.
func (p *pace) set(now int64, off, idle bool, burst, perWindow int64, window time.Duration, until int64, maxWait time.Duration) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if off {
		p.on = false
		return
	}
	if !p.on {
		p.on, p.level, p.last = true, 0, now
		if idle {
			p.level = float64(max(burst, 0))
		}
	} else {
		p.refill(now)
	}
	p.cap = float64(max(burst, 0))
	p.rate = 0
	if perWindow > 0 && window > 0 {
		p.rate = float64(perWindow) / float64(window)
	}
	p.level = min(p.level, p.cap)
	p.until = until
	p.maxWait = int64(maxWait)
}

func (p *pace) refill(now int64) {
	if now > p.last {
		p.level = min(p.cap, p.level+p.rate*float64(now-p.last))
		p.last = now
	}
}

// take reserves n units at now. It returns how long after now the charge
// may be sent, or ok false and how long until it could be scheduled (-1
// when this bucket can never cover it: a later round may deepen it).
func (p *pace) take(now, n int64) (ok bool, delay int64, wait time.Duration) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.on {
		return true, 0, 0
	}
	p.refill(now)
	nf := float64(n)
	if nf > p.cap {
		return false, 0, -1
	}
	if short := nf - p.level; short > 0 {
		if p.rate <= 0 {
			return false, 0, -1
		}
		delay = int64(math.Ceil(short / p.rate))
	}
	if p.until != 0 && now+delay >= p.until {
		return false, 0, -1
	}
	if delay > p.maxWait {
		return false, 0, time.Duration(delay - p.maxWait)
	}
	p.level -= nf
	p.latest = max(p.latest, now+delay)
	return true, delay, 0
}

// ahead returns how far past now charges are scheduled.
func (p *pace) ahead(now int64) time.Duration {
	p.mu.Lock()
	defer p.mu.Unlock()
	return time.Duration(max(p.latest-now, 0))
}

// refund returns n units taken (a charge never sent).
func (p *pace) refund(n int64) {
	p.mu.Lock()
	if p.on {
		p.level = min(p.cap, p.level+float64(n))
	}
	p.mu.Unlock()
}

// Pace is how a leased share is spent (see the pacing comment above).
type Pace struct {
	// Burst is, per dimension, the bucket's depth; Unpaced (or a burst of
	// at least the share) leaves the dimension to the sliding window.
	Burst Grant
	// Until is the end of the lease phase in force (this node's clock):
	// no charge is scheduled at or after it. 0: no limit.
	Until int64
	// Wait is the longest a charge may be scheduled ahead.
	Wait time.Duration
}

// Unpaced marks a dimension of a Pace's Burst that is not paced.
const Unpaced int64 = -1

// NoPace leaves every dimension to the sliding windows.
var NoPace = Pace{Burst: Grant{Requests: Unpaced, Tokens: Unpaced}}
