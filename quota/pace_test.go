package quota

import (
	"math/rand/v2"
	"testing"
	"time"

	"pgregory.net/rapid"

	"github.com/sluicehq/sluice/cluster/state"
)

func TestPaceTake(t *testing.T) {
	const sec = int64(time.Second)
	// A bucket 100 deep that fills 900 more per 10 s window: 90 per second.
	newPace := func(until int64, wait time.Duration) *pace {
		p := &pace{}
		p.set(0, false, false, 100, 900, 10*time.Second, until, wait)
		return p
	}
	for _, tc := range []struct {
		name      string
		until     int64
		wait      time.Duration
		steps     []int64 // charges at successive times (at, n) pairs
		wantOK    []bool
		wantDelay []int64
	}{
		{
			name: "starts empty and fills at the rate", wait: time.Second,
			steps:  []int64{sec, 90, sec, 1},
			wantOK: []bool{true, true}, wantDelay: []int64{0, sec / 90},
		},
		{
			name: "schedules within the wait, refuses beyond it", wait: time.Second,
			steps:  []int64{2 * sec, 100, 2 * sec, 90, 2 * sec, 90},
			wantOK: []bool{true, true, false}, wantDelay: []int64{0, sec, 0},
		},
		{
			name: "never beyond the lease phase", until: 2*sec + sec/2, wait: time.Second,
			steps:  []int64{2 * sec, 100, 2 * sec, 90},
			wantOK: []bool{true, false}, wantDelay: []int64{0, 0},
		},
		{
			name: "a charge deeper than the bucket never fits", wait: time.Hour,
			steps:  []int64{10 * sec, 101},
			wantOK: []bool{false}, wantDelay: []int64{0},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := newPace(tc.until, tc.wait)
			for i := 0; i < len(tc.steps); i += 2 {
				ok, delay, wait := p.take(tc.steps[i], tc.steps[i+1])
				k := i / 2
				if ok != tc.wantOK[k] {
					t.Fatalf("charge %d: ok %v, want %v (wait %v)", k, ok, tc.wantOK[k], wait)
				}
				if ok && (delay < tc.wantDelay[k]-1 || delay > tc.wantDelay[k]+1) {
					t.Fatalf("charge %d: delay %v, want %v", k, time.Duration(delay), time.Duration(tc.wantDelay[k]))
				}
			}
		})
	}
}

// TestPaceRefundAndOff: a cancelled charge goes back into the bucket (never
// above its depth), and an unpaced dimension admits everything.
func TestPaceRefundAndOff(t *testing.T) {
	p := &pace{}
	p.set(0, false, false, 100, 900, 10*time.Second, 0, time.Second)
	if ok, _, _ := p.take(int64(2*time.Second), 100); !ok {
		t.Fatal("a full bucket refused its depth")
	}
	p.refund(100)
	p.refund(100)
	if ok, d, _ := p.take(int64(2*time.Second), 100); !ok || d != 0 {
		t.Fatalf("after the refund: ok %v, delay %v", ok, d)
	}
	if ok, d, _ := p.take(int64(2*time.Second), 1); !ok || d == 0 {
		t.Fatalf("a refund filled the bucket above its depth: ok %v delay %v", ok, d)
	}
	p.set(0, true, false, 0, 0, 0, 0, 0)
	if ok, d, _ := p.take(int64(2*time.Second), 1<<40); !ok || d != 0 {
		t.Fatal("an unpaced bucket refused")
	}
}

// TestPaceSendsConform: whatever the arrivals and the changes of share,
// the charges a paced deployment budget sends (at their scheduled times)
// stay within depth plus rate over every span, the bound the allocator
// counts on.
func TestPaceSendsConform(t *testing.T) {
	rapid.Check(t, func(rt *rapid.T) {
		dep := &state.Deployment{Name: "d", TPM: 6000, RPM: 1 << 30,
			TPMWindow: state.Duration(10 * time.Second), RPMWindow: state.Duration(time.Second)}
		d := NewDeployment(dep, DefaultSlots, false)
		share := rapid.Int64Range(100, 1000).Draw(rt, "share")
		burst := rapid.Int64Range(10, share-1).Draw(rt, "burst")
		wait := time.Duration(rapid.Int64Range(0, int64(2*time.Second)).Draw(rt, "wait"))
		d.SetShare(0, Grant{Requests: 1 << 30, Tokens: share}, Pace{Burst: Grant{Requests: Unpaced, Tokens: burst}, Wait: wait})
		rng := rand.New(rand.NewPCG(rapid.Uint64().Draw(rt, "seed"), 1))
		type send struct{ at, n int64 }
		var sends []send
		now := int64(0)
		for range 400 {
			now += rng.Int64N(int64(200 * time.Millisecond))
			n := 1 + rng.Int64N(burst)
			r, _, err := d.Reserve(now, n)
			if err != nil {
				continue
			}
			// Sent at or a little after the scheduled time, as a goroutine
			// wakes; never before.
			at := now + int64(r.Delay(now))
			d.Sent(r, at)
			sends = append(sends, send{at, n})
		}
		rate := float64(share-burst) / float64(10*time.Second)
		// Every span [sends[i].at, sends[j].at] holds at most the depth
		// plus the rate over it (plus one unit of rounding).
		for i := range sends {
			var sum int64
			for j := i; j < len(sends); j++ {
				sum += sends[j].n
				span := float64(sends[j].at - sends[i].at)
				if float64(sum) > float64(burst)+rate*span+1 {
					rt.Fatalf("sends %d..%d: %d units within %v, bound %.0f", i, j, sum, time.Duration(span), float64(burst)+rate*span)
				}
			}
		}
	})
}

// TestPaceStartsFullWhenIdle: the bucket of a budget no charge was ever
// asked of starts full (nothing charged before can add to its burst);
// otherwise it starts empty.
func TestPaceStartsFullWhenIdle(t *testing.T) {
	for _, idle := range []bool{true, false} {
		p := &pace{}
		p.set(0, false, idle, 100, 900, 10*time.Second, 0, 0)
		ok, delay, _ := p.take(0, 100)
		if ok != idle || delay != 0 {
			t.Fatalf("idle %v: a charge of the whole burst at once: ok %v delay %v", idle, ok, delay)
		}
	}
}
