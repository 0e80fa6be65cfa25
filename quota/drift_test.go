package quota

import (
	"testing"
	"time"
)

// TestAllocatorDrift: when the provider's remaining-tokens header says
// less is left than the allowance minus what the cluster charged, the
// allocator divides that much less; it ignores stale observations, can be
// turned off, and gives the allowance back once the provider stops saying
// so.
func TestAllocatorDrift(t *testing.T) {
	const allowance = 100_000
	nodes := []string{"a", "b", "c"}
	type phase struct {
		rounds    int
		used      int64 // per node, within the window
		remaining int64 // -1: no header
		age       time.Duration
	}
	tests := []struct {
		name     string
		ignore   bool
		phases   []phase
		min, max int64 // the last round's grants, summed
	}{
		{"provider agrees", false, []phase{{10, 30_000, 10_000, 0}}, 97_000, allowance},
		{"someone else uses 40k", false, []phase{{10, 20_000, 0, 0}}, 55_000, 60_000},
		{"noise below 5% is ignored", false, []phase{{10, 30_000, 7_000, 0}}, 97_000, allowance},
		{"stale observation", false, []phase{{10, 20_000, 0, 5 * time.Second}}, 97_000, allowance},
		{"correction off", true, []phase{{10, 20_000, 0, 0}}, 97_000, allowance},
		{"no header", false, []phase{{10, 20_000, -1, 0}}, 97_000, allowance},
		{"drift then recovery", false, []phase{{10, 20_000, 0, 0}, {60, 20_000, -1, 0}}, 97_000, allowance},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a := NewAllocator(AllocatorConfig{Lease: 2 * time.Second, Grace: time.Second, SafeFraction: 0.5,
				ClockMargin: 250 * time.Millisecond, Floor: 0.02, IgnoreUpstream: tc.ignore})
			a.SetBudgets(map[string]Budget{"d": {
				Allowance: Grant{Requests: Unlimited, Tokens: allowance},
				Windows:   [numDims]time.Duration{time.Second, 10 * time.Second},
			}})
			now := int64(1_000) * int64(time.Second)
			var rounds []Round
			var last Round
			for _, ph := range tc.phases {
				for range ph.rounds {
					now += int64(500 * time.Millisecond)
					for _, n := range nodes {
						dem := Demand{Want: Grant{Requests: 10, Tokens: allowance}, Used: Grant{Requests: 1, Tokens: ph.used}}
						if ph.remaining >= 0 {
							dem.Upstream = &Upstream{Remaining: Grant{Requests: -1, Tokens: ph.remaining}, Age: ph.age}
						}
						a.Observe(Report{Node: n, Round: last.Seq, Demands: map[string]Demand{"d": dem}}, now)
					}
					last = a.Next(now, nodes)
					rounds = Prune(append(rounds, last), now)
					a.SetRounds(rounds)
				}
			}
			var sum int64
			for _, n := range nodes {
				sum += last.Grants[n]["d"].Tokens
			}
			t.Logf("grants sum to %d tokens of %d", sum, allowance)
			if sum < tc.min || sum > tc.max {
				t.Fatalf("grants sum to %d tokens, want %d..%d (withheld %+v)", sum, tc.min, tc.max, a.Drift("d"))
			}
			// What is withheld is the outside use plus the margin, or
			// nothing.
			w := a.Drift("d").Tokens
			if tc.name == "someone else uses 40k" {
				if w < 43_000 || w > 46_000 {
					t.Fatalf("withheld %d tokens, want about 40,000 + 5,000", w)
				}
			} else if w != 0 {
				t.Fatalf("withheld %d tokens, want none", w)
			}
		})
	}
}
