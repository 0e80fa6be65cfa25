package quota

import (
	"testing"
	"time"
)

// recordingBudget is a Shareable that remembers its last share.
type recordingBudget struct {
	share Grant
	set   int
}

func (b *recordingBudget) SetShare(_ int64, g Grant, _ Pace) { b.share, b.set = g, b.set+1 }
func (b *recordingBudget) Demand(int64) Demand               { return Demand{} }

// TestHolderKeepsStartingShareUntilNamed: a budget created after the
// newest round (a new tenant) keeps its starting capacity until a round
// names it; once named, a round that leaves it out takes its share away.
func TestHolderKeepsStartingShareUntilNamed(t *testing.T) {
	start := Grant{Requests: 12, Tokens: 4000} // a tenant's provisional floor
	tenant := &recordingBudget{share: start}
	dep := &recordingBudget{}
	h := NewHolder("n1", func() map[string]Shareable {
		return map[string]Shareable{"east": dep, "tenant/new": tenant}
	})
	now := int64(1000 * time.Second)
	round := func(seq uint64, grants map[string]Grant) Round {
		return Round{Seq: seq, Issued: now, Lease: 2 * time.Second, Grace: time.Second, Safe: 0.5,
			Grants: map[string]map[string]Grant{"n1": grants}}
	}
	steps := []struct {
		name   string
		grants map[string]Grant
		at     time.Duration // after now
		want   Grant         // the tenant's share
	}{
		{"round issued before the tenant existed", map[string]Grant{"east": {Requests: 5, Tokens: 500}}, 0, start},
		{"ticks keep it", nil, 500 * time.Millisecond, start},
		{"a round names it", map[string]Grant{"east": {Requests: 5, Tokens: 500}, "tenant/new": {Requests: 3, Tokens: 900}}, time.Second, Grant{Requests: 3, Tokens: 900}},
		{"a round leaves it out", map[string]Grant{"east": {Requests: 5, Tokens: 500}}, 1500 * time.Millisecond, Grant{}},
	}
	var seq uint64
	for _, st := range steps {
		at := now + int64(st.at)
		if st.grants != nil {
			seq++
			r := round(seq, st.grants)
			r.Issued = at
			h.Apply(r, at)
		} else {
			h.Tick(at)
		}
		if tenant.share != st.want {
			t.Fatalf("%s: tenant share %+v, want %+v", st.name, tenant.share, st.want)
		}
		if dep.share != (Grant{Requests: 5, Tokens: 500}) {
			t.Fatalf("%s: deployment share %+v", st.name, dep.share)
		}
	}
	// A lapsed lease takes even a never-named budget's capacity away.
	fresh := &recordingBudget{share: start}
	h2 := NewHolder("n2", func() map[string]Shareable { return map[string]Shareable{"tenant/x": fresh} })
	h2.Apply(Round{Seq: 1, Issued: now, Lease: 2 * time.Second, Grace: time.Second, Grants: map[string]map[string]Grant{"n2": {}}}, now)
	h2.Tick(now + int64(4*time.Second))
	if fresh.share != (Grant{}) {
		t.Fatalf("after the lease and grace lapsed: %+v, want nothing", fresh.share)
	}
}

// TestHolderRelease: a released holder admits nothing, whatever rounds
// arrive after, and its reports say it released.
func TestHolderRelease(t *testing.T) {
	dep := &recordingBudget{}
	h := NewHolder("n1", func() map[string]Shareable { return map[string]Shareable{"east": dep} })
	now := int64(1000 * time.Second)
	round := func(seq uint64) Round {
		return Round{Seq: seq, Issued: now, Lease: 2 * time.Second, Grace: time.Second, Safe: 0.5,
			Grants: map[string]map[string]Grant{"n1": {"east": {Requests: 5, Tokens: 500}}}}
	}
	h.Apply(round(1), now)
	if dep.share != (Grant{Requests: 5, Tokens: 500}) {
		t.Fatalf("share before release: %+v", dep.share)
	}
	h.Release(0)
	if dep.share != (Grant{}) || h.State().Phase != PhaseExpired {
		t.Fatalf("after release: share %+v, phase %v", dep.share, h.State().Phase)
	}
	h.Apply(round(2), now+int64(100*time.Millisecond))
	h.Tick(now + int64(200*time.Millisecond))
	if dep.share != (Grant{}) {
		t.Fatalf("a round after release granted %+v", dep.share)
	}
	if r := h.Report(now); !r.Released || r.Round != 2 {
		t.Fatalf("report after release: released %v, round %d", r.Released, r.Round)
	}
}
