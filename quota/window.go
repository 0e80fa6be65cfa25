package quota

import (
	"sync"
	"time"
)

// DefaultSlots is the number of slots a window is divided into. The window
// is conservative by one slot, so 20 slots use up to 95% of an allowance.
const DefaultSlots = 40

// Unlimited is the capacity of a window that admits everything.
const Unlimited int64 = -1

type slot struct {
	index int64 // absolute slot number (now / slotDur)
	used  int64
	peak  int64 // largest single charge
}

// Window is a sliding-window limiter: the sum of charges within any span of
// Length is at most Capacity. Time is given by the caller in nanoseconds so
// that tests drive it with a fake clock and the hot path reads the clock once
// per request.
type Window struct {
	mu       sync.Mutex
	capacity int64
	slotDur  int64
	slots    []slot // ring, len = n+1, indexed by index % len
	sum      int64  // sum of used over live slots
	expired  int64  // the slot index expire last ran for
	// held are charges admitted but not sent yet (scheduled by a paced
	// share): they count against the capacity now and are recorded when
	// sent, so that every span of sends stays within it.
	held int64
}

// NewWindow returns a window admitting capacity units per length, divided
// into slots slots (DefaultSlots when 0). A negative capacity is unlimited.
func NewWindow(capacity int64, length time.Duration, slots int) *Window {
	if slots <= 0 {
		slots = DefaultSlots
	}
	if length <= 0 {
		length = time.Second
	}
	w := &Window{
		capacity: capacity,
		slotDur:  max(int64(length)/int64(slots), 1),
		slots:    make([]slot, slots+1),
	}
	for i := range w.slots {
		w.slots[i].index = -1
	}
	return w
}

// expire drops slots that no longer overlap the window ending at cur.
// Called with mu held.
func (w *Window) expire(cur int64) {
	if cur == w.expired {
		return
	}
	w.expired = cur
	n := int64(len(w.slots))
	for i := range w.slots {
		s := &w.slots[i]
		if s.index >= 0 && s.index <= cur-n {
			w.sum -= s.used
			s.index, s.used, s.peak = -1, 0, 0
		}
	}
}

// Take charges n units at now if the window has room, or if force is set
// (soft limits). It returns whether the charge fits and, when it does not,
// how long until it would.
func (w *Window) Take(now, n int64, force bool) (ok bool, retryAfter time.Duration) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.capacity < 0 {
		return true, 0
	}
	fits, wait := w.roomLocked(now, n)
	if !fits && !force {
		return false, wait
	}
	w.recordLocked(now, n)
	return fits, 0
}

// roomLocked reports whether n more units fit at now, counting what is
// held, and if not how long until they would. Called with mu held.
func (w *Window) roomLocked(now, n int64) (bool, time.Duration) {
	cur := now / w.slotDur
	w.expire(cur)
	if w.sum+w.held+n > w.capacity {
		return false, w.waitLocked(cur, now, n)
	}
	return true, 0
}

// recordLocked charges n units to now's slot. Called with mu held.
func (w *Window) recordLocked(now, n int64) {
	cur := now / w.slotDur
	w.expire(cur)
	s := &w.slots[cur%int64(len(w.slots))]
	if s.index != cur {
		s.index, s.used, s.peak = cur, 0, 0
	}
	s.used += n
	s.peak = max(s.peak, n)
	w.sum += n
}

// Hold admits n units to be sent later, if the window has room for them
// now (counting what it holds already); Send records them when sent.
func (w *Window) Hold(now, n int64) (ok bool, retryAfter time.Duration) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.capacity < 0 {
		return true, 0
	}
	if ok, wait := w.roomLocked(now, n); !ok {
		return false, wait
	}
	w.held += n
	return true, 0
}

// Send records n held units as charged at now.
func (w *Window) Send(now, n int64) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.held = max(w.held-n, 0)
	if w.capacity >= 0 {
		w.recordLocked(now, n)
	}
}

// Unhold drops n held units that will not be sent.
func (w *Window) Unhold(n int64) {
	w.mu.Lock()
	w.held = max(w.held-n, 0)
	w.mu.Unlock()
}

// waitLocked returns how long until n units fit, assuming no new charges.
// A charge larger than the capacity never fits: it returns a negative wait.
func (w *Window) waitLocked(cur, now, n int64) time.Duration {
	if n > w.capacity {
		return -1
	}
	need := w.sum + w.held + n - w.capacity
	nslots := int64(len(w.slots))
	var freed int64
	// Walk slots oldest first; slot i expires at the start of slot i+nslots.
	for idx := max(cur-nslots+1, 0); idx <= cur; idx++ {
		s := &w.slots[idx%nslots]
		if s.index != idx {
			continue
		}
		freed += s.used
		if freed >= need {
			return time.Duration((idx+nslots)*w.slotDur - now)
		}
	}
	return time.Duration((cur+nslots)*w.slotDur - now)
}

// Refund returns n units charged at time at (a nanosecond time previously
// passed to Take), if that charge is still inside the window.
func (w *Window) Refund(at, n int64) {
	if n <= 0 {
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	idx := at / w.slotDur
	s := &w.slots[idx%int64(len(w.slots))]
	if s.index != idx {
		return
	}
	n = min(n, s.used)
	s.used -= n
	w.sum -= n
}

// SetCapacity changes the allowance; charges already made stay counted.
func (w *Window) SetCapacity(c int64) {
	w.mu.Lock()
	w.capacity = c
	w.mu.Unlock()
}

// Capacity returns the current allowance (Unlimited when negative).
func (w *Window) Capacity() int64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.capacity
}

// Used returns the units charged within the window ending at now, and
// those held to be sent.
func (w *Window) Used(now int64) int64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.expire(now / w.slotDur)
	return w.sum + w.held
}

// Peak returns the largest single charge within the window ending at now.
func (w *Window) Peak(now int64) int64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.expire(now / w.slotDur)
	var p int64
	for _, s := range w.slots {
		if s.index >= 0 {
			p = max(p, s.peak)
		}
	}
	return p
}

// fade returns, for k = 0, 1, ..., the units charged before now that may
// still be inside the window k slot durations after now (a slot leaves
// once the window has moved a whole window's length past its start), and
// the slot duration. Beyond the slice nothing is left. Unlimited windows
// count nothing and return nil.
func (w *Window) fade(now int64) ([]int64, time.Duration) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.capacity < 0 {
		return nil, 0
	}
	cur := now / w.slotDur
	w.expire(cur)
	n := int64(len(w.slots))
	left := make([]int64, n)
	for _, s := range w.slots {
		if s.index < 0 || s.used == 0 {
			continue
		}
		// Surely gone after s.index+n-cur slot durations from now.
		for k := range s.index + n - cur {
			left[k] += s.used
		}
	}
	return left, time.Duration(w.slotDur)
}

// Length returns the span the window covers.
func (w *Window) Length() time.Duration {
	return time.Duration(w.slotDur * int64(len(w.slots)-1))
}
