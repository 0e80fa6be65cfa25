package quota

import (
	"errors"
	"testing"
	"time"

	"pgregory.net/rapid"

	"github.com/sluicehq/sluice/cluster/state"
)

const ms = int64(time.Millisecond)

func TestWindowTakeAndRetryAfter(t *testing.T) {
	tests := []struct {
		name     string
		capacity int64
		charges  []int64 // all at t=0
		want     []bool
		wantWait time.Duration // of the last refused charge
	}{
		{"fits", 10, []int64{4, 6}, []bool{true, true}, 0},
		{"over", 10, []int64{4, 6, 1}, []bool{true, true, false}, time.Second + 50*time.Millisecond},
		{"larger than allowance", 10, []int64{11}, []bool{false}, -1},
		{"unlimited", Unlimited, []int64{1 << 40}, []bool{true}, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			w := NewWindow(tc.capacity, time.Second, 20)
			var wait time.Duration
			for i, c := range tc.charges {
				ok, wt := w.Take(0, c, false)
				if ok != tc.want[i] {
					t.Fatalf("charge %d of %d: ok=%v, want %v", i, c, ok, tc.want[i])
				}
				if !ok {
					wait = wt
				}
			}
			if wait != tc.wantWait {
				t.Fatalf("retry after %v, want %v", wait, tc.wantWait)
			}
		})
	}
}

func TestWindowExpiresAndRefunds(t *testing.T) {
	w := NewWindow(10, time.Second, 10)
	if ok, _ := w.Take(0, 10, false); !ok {
		t.Fatal("first charge refused")
	}
	if ok, wait := w.Take(500*ms, 1, false); ok || wait != 600*time.Millisecond {
		t.Fatalf("charge inside window: ok=%v wait=%v", ok, wait)
	}
	w.Refund(0, 4)
	if got := w.Used(500 * ms); got != 6 {
		t.Fatalf("used after refund = %d, want 6", got)
	}
	if ok, _ := w.Take(1100*ms, 10, false); !ok {
		t.Fatal("charge after the window passed was refused")
	}
	if ok, _ := w.Take(1100*ms, 1, true); ok {
		t.Fatal("forced charge over capacity reported as fitting")
	}
	if got := w.Used(1100 * ms); got != 11 {
		t.Fatalf("forced charge not counted: used %d", got)
	}
}

// TestWindowNeverExceedsAnySpan checks the property the provider enforces:
// whatever the arrival pattern, charges within any span of the window's
// length never exceed its capacity.
func TestWindowNeverExceedsAnySpan(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		length := time.Duration(rapid.Int64Range(100, 10_000).Draw(t, "length_ms")) * time.Millisecond
		capacity := rapid.Int64Range(1, 1000).Draw(t, "capacity")
		w := NewWindow(capacity, length, rapid.IntRange(1, 50).Draw(t, "slots"))
		type charge struct{ at, n int64 }
		var admitted []charge
		now := int64(0)
		for i := 0; i < 300; i++ {
			now += rapid.Int64Range(0, int64(length)/5).Draw(t, "gap")
			n := rapid.Int64Range(1, capacity).Draw(t, "n")
			if ok, _ := w.Take(now, n, false); ok {
				admitted = append(admitted, charge{now, n})
			}
		}
		for i := range admitted {
			var sum int64
			for j := i; j < len(admitted) && admitted[j].at < admitted[i].at+int64(length); j++ {
				sum += admitted[j].n
			}
			if sum > capacity {
				t.Fatalf("span starting at %d holds %d > capacity %d", admitted[i].at, sum, capacity)
			}
		}
	})
}

func TestDeploymentReserve(t *testing.T) {
	d := NewDeployment(&state.Deployment{Name: "d", TPM: 6000, RPM: 600,
		TPMWindow: state.Duration(10 * time.Second), RPMWindow: state.Duration(time.Second)}, 20, false)
	// 600 RPM over 1 s windows allows 10 requests; 6000 TPM over 10 s allows 1000 tokens.
	for i := 0; i < 10; i++ {
		if _, _, err := d.Reserve(0, 10); err != nil {
			t.Fatalf("request %d refused: %v", i, err)
		}
	}
	if _, wait, err := d.Reserve(0, 10); !errors.Is(err, ErrRequests) || wait <= 0 {
		t.Fatalf("11th request: err=%v wait=%v, want ErrRequests with a wait", err, wait)
	}
	later := int64(2 * time.Second)
	if _, _, err := d.Reserve(later, 901); !errors.Is(err, ErrTokens) {
		t.Fatalf("token overflow: err=%v, want ErrTokens", err)
	}
	if r, _, _ := d.Reserve(later, 1); r.Tokens() != 1 {
		t.Fatalf("refused token charge leaked its request charge")
	}
	if _, _, err := d.Reserve(later, 5000); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("charge above the allowance: err=%v, want ErrTooLarge", err)
	}
}

func TestSubjectLimits(t *testing.T) {
	s := NewSubject("t", state.Limits{RPM: 2, TPM: 100, MaxConcurrent: 1}, 20)
	t1, _, err := s.Admit(0, 50, false)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.Admit(0, 10, false); !errors.Is(err, ErrConcurrency) {
		t.Fatalf("second concurrent: %v", err)
	}
	t1.Done(0, 10) // settles 50 -> 10
	if _, _, err := s.Admit(0, 95, false); !errors.Is(err, ErrTokens) {
		t.Fatalf("tokens after settle: %v, want ErrTokens (10+95 > 100)", err)
	}
	t2, _, err := s.Admit(0, 90, false)
	if err != nil {
		t.Fatalf("90 tokens after settle to 10: %v", err)
	}
	t2.Done(0, 90)
	_, wait, err := s.Admit(0, 0, false)
	if !errors.Is(err, ErrRequests) || wait <= 0 {
		t.Fatalf("third request in a minute: err=%v wait=%v", err, wait)
	}
	tk, _, err := s.Admit(0, 0, true)
	if !errors.Is(err, ErrRequests) || tk.s == nil {
		t.Fatalf("soft admit: err=%v ticket=%v", err, tk)
	}
	tk.Done(0, 0)
	if s.InFlight() != 0 {
		t.Fatalf("in flight = %d after all done", s.InFlight())
	}
}

func BenchmarkDeploymentReserve(b *testing.B) {
	const huge = int64(1) << 40
	for _, bc := range []struct {
		name  string
		batch bool
		pace  *Pace
	}{
		{name: "interactive"},
		{name: "batch", batch: true},
		// A paced token share whose bucket covers every charge at once.
		{name: "paced", pace: &Pace{Burst: Grant{Requests: Unpaced, Tokens: huge / 10}, Wait: time.Second}},
		// A paced share just at the offered rate: charges are often
		// scheduled a moment ahead and then sent.
		{name: "paced-scheduled", pace: &Pace{Burst: Grant{Requests: Unpaced, Tokens: 300}, Wait: time.Second}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			d := NewDeployment(&state.Deployment{Name: "d", TPM: huge, RPM: huge,
				TPMWindow: state.Duration(10 * time.Second), RPMWindow: state.Duration(time.Second)}, 20, false)
			d.SetBatchFraction(0.5)
			now := time.Now().UnixNano()
			if bc.pace != nil {
				tok := huge
				if bc.pace.Burst.Tokens == 300 {
					tok = 300 + 300*int64(10*time.Second/time.Microsecond) // 300 per µs
				}
				d.SetShare(now, Grant{Requests: huge, Tokens: tok}, *bc.pace)
			}
			b.ReportAllocs()
			var held int
			for i := 0; b.Loop(); i++ {
				at := now + int64(i)*1000
				r, _, err := d.ReserveClass(at, 300, bc.batch)
				if err != nil {
					b.Fatal(err)
				}
				if r.Delay(at) > 0 {
					held++
					r = d.Sent(r, at+int64(r.Delay(at)))
				}
				d.Settle(r, 200)
			}
			b.ReportMetric(float64(held)/float64(b.N), "scheduled/op")
		})
	}
}

func BenchmarkSubjectAdmit(b *testing.B) {
	s := NewSubject("t", state.Limits{RPM: 1 << 40, TPM: 1 << 40, MaxConcurrent: 1 << 20}, 20)
	b.ReportAllocs()
	now := time.Now().UnixNano()
	for i := 0; b.Loop(); i++ {
		tk, _, err := s.Admit(now+int64(i)*1000, 300, false)
		if err != nil {
			b.Fatal(err)
		}
		tk.Done(now+int64(i)*1000, 200)
	}
}

// TestWindowFade: fade says, slot by slot, what of the window's charges may
// still count, and never less than the window itself counts then.
func TestWindowFade(t *testing.T) {
	const slotDur = int64(100 * time.Millisecond)
	w := NewWindow(1000, time.Second, 10) // 10 slots of 100 ms, 11 kept
	base := int64(1000 * time.Second)
	w.Take(base+5*slotDur, 7, false)  // leaves after slot base+15
	w.Take(base+9*slotDur, 3, false)  // leaves after slot base+19
	w.Take(base+12*slotDur, 5, false) // leaves after slot base+22
	now := base + 12*slotDur + slotDur/2
	left, step := w.fade(now)
	if step != time.Duration(slotDur) || len(left) != 11 {
		t.Fatalf("fade: step %v, %d entries; want 100ms and 11", step, len(left))
	}
	// The current slot's charge is the last to leave, 11 slots on.
	if left[0] != 15 || left[len(left)-1] != 5 {
		t.Fatalf("fade starts at %d and ends at %d; want 15 and 5", left[0], left[len(left)-1])
	}
	if used := w.Used(now + int64(len(left))*slotDur); used != 0 {
		t.Fatalf("past the fade the window still counts %d", used)
	}
	for k := range left {
		at := now + int64(k)*slotDur
		if used := w.Used(at); used > left[k] {
			t.Fatalf("%d slots on the window counts %d, fade says at most %d", k, used, left[k])
		}
		if k > 0 && left[k] > left[k-1] {
			t.Fatalf("fade grows at %d: %v", k, left)
		}
	}
	if l, _ := NewWindow(Unlimited, time.Second, 10).fade(now); l != nil {
		t.Fatalf("an unlimited window fades %v", l)
	}
}
