package mock

import (
	"time"
)

// windowStart returns the start of the fixed window of size d, aligned to
// the Unix epoch, that contains t.
func windowStart(t time.Time, d time.Duration) time.Time {
	ns := t.UnixNano()
	off := ns % int64(d)
	if off < 0 {
		off += int64(d)
	}
	return time.Unix(0, ns-off)
}

// fixedWindow counts usage in the current epoch-aligned window.
type fixedWindow struct {
	size  time.Duration
	allow int64 // per window; 0 = unlimited
	start time.Time
	used  int64
}

func newFixedWindow(perMinute int64, size time.Duration) fixedWindow {
	return fixedWindow{size: size, allow: windowAllowance(perMinute, size)}
}

// roll moves the window forward to the one containing now.
func (w *fixedWindow) roll(now time.Time) {
	if s := windowStart(now, w.size); !s.Equal(w.start) {
		w.start, w.used = s, 0
	}
}

// fits reports whether n more fits in the current window.
func (w *fixedWindow) fits(n int64) bool {
	return w.allow == 0 || w.used+n <= w.allow
}

// remaining is what is left in the current window (-1 when unlimited).
func (w *fixedWindow) remaining() int64 {
	if w.allow == 0 {
		return -1
	}
	return max(w.allow-w.used, 0)
}

// untilEnd is the time from now to the end of the current window.
func (w *fixedWindow) untilEnd(now time.Time) time.Duration {
	return w.start.Add(w.size).Sub(now)
}

// quota is a deployment's RPM and TPM limiter. Like Azure it charges on
// arrival and never refunds. Callers hold the deployment's lock.
type quota struct {
	req fixedWindow
	tok fixedWindow
}

// admission is the outcome of quota.admit.
type admission struct {
	ok bool
	// limitedBy is "requests" or "tokens" when !ok.
	limitedBy  string
	retryAfter time.Duration
	// Snapshot of the windows after the decision.
	remainingReq, remainingTok int64
	limitReq, limitTok         int64
	resetReq, resetTok         time.Duration
}

func newQuota(d DeploymentConfig) quota {
	return quota{
		req: newFixedWindow(d.RPM, d.RPMWindow.D()),
		tok: newFixedWindow(d.TPM, d.TPMWindow.D()),
	}
}

// admit charges one request of cost tokens at now, or rejects it without
// charging when either window would overflow. A request costing more than a
// whole token window can never be admitted.
func (q *quota) admit(now time.Time, cost int64) admission {
	q.req.roll(now)
	q.tok.roll(now)
	a := admission{ok: true}
	if !q.req.fits(1) {
		a.ok, a.limitedBy = false, "requests"
		a.retryAfter = q.req.untilEnd(now)
	}
	if !q.tok.fits(cost) {
		if a.ok {
			a.limitedBy = "tokens"
		}
		a.ok = false
		a.retryAfter = max(a.retryAfter, q.tok.untilEnd(now))
	}
	if a.ok {
		q.req.used++
		q.tok.used += cost
	}
	a.remainingReq, a.remainingTok = q.req.remaining(), q.tok.remaining()
	a.limitReq, a.limitTok = q.req.allow, q.tok.allow
	a.resetReq, a.resetTok = q.req.untilEnd(now), q.tok.untilEnd(now)
	return a
}
