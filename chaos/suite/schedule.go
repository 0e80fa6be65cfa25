package suite

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"time"
)

// Fault kinds (report.Fault.Kind).
const (
	FaultSIGKILL        = "sigkill"
	FaultLeaderKill     = "leader-kill"
	FaultPause          = "pause"
	FaultPartition      = "partition"
	FaultNetem          = "netem"
	FaultRegionDown     = "region-down"
	Fault429Storm       = "429-storm"
	FaultRollingRestart = "rolling-restart"
)

// AllFaults is every kind, in a fixed order the ci schedule shuffles.
var AllFaults = []string{FaultSIGKILL, FaultLeaderKill, FaultPause, FaultPartition, FaultNetem,
	FaultRegionDown, Fault429Storm, FaultRollingRestart}

// Step is one scheduled fault.
type Step struct {
	At   time.Duration // since the load started
	Kind string
	// Target is a node or region; for sigkill it is a preference (the
	// leader is skipped at run time), for leader-kill it is empty (the
	// leader is found at run time).
	Target string
	// For is how long the fault lasts (kill: until the restart).
	For time.Duration
	// AnyNode lets a sigkill hit the leader too (the long schedule kills
	// a random node); otherwise a sigkill aimed at the leader takes the
	// next node.
	AnyNode bool
}

// Schedule is a run's timeline.
type Schedule struct {
	Name string
	Seed int64
	// Load is how long load is offered; Calm is its first, fault-free part.
	Load, Calm time.Duration
	// LoadFactor is the offered load as a multiple of the deployments'
	// summed request budget.
	LoadFactor float64
	Steps      []Step
}

// Schedule names.
const (
	ScheduleSmoke = "smoke"
	ScheduleCI    = "ci"
	ScheduleLong  = "long"
	// ScheduleOnly prefixes a fault kind: "only:pause" runs that fault
	// alone after a calm phase.
	ScheduleOnly = "only:"
)

// Fault durations of the ci schedule.
const (
	killDown      = 5 * time.Second
	pauseFor      = 8 * time.Second // past failure detection (lease 2s + grace 1s + gossip suspicion)
	partitionFor  = 10 * time.Second
	netemFor      = 10 * time.Second
	regionDownFor = 10 * time.Second
	stormFor      = 10 * time.Second
	ciSlot        = 16 * time.Second // one fault and the time to settle after it
	rollingSlot   = 24 * time.Second
)

// BuildSchedule returns the named schedule for seed. nodes are the node
// IDs, regions the mock regions, netnsNode the node that runs in a
// network namespace (partition and netem target it; "" when there is
// none). The same arguments always give the same schedule.
func BuildSchedule(name string, seed int64, nodes, regions []string, netnsNode string) (Schedule, error) {
	if len(nodes) == 0 || len(regions) == 0 {
		return Schedule{}, fmt.Errorf("schedule: need nodes and regions")
	}
	rng := rand.New(rand.NewPCG(uint64(seed), 0x5eed))
	s := Schedule{Name: name, Seed: seed}
	switch name {
	case ScheduleSmoke:
		s.Calm, s.Load, s.LoadFactor = 10*time.Second, 30*time.Second, 0.8
		s.Steps = []Step{{At: 12 * time.Second, Kind: FaultSIGKILL, Target: nodes[rng.IntN(len(nodes))], For: killDown}}
	case ScheduleCI:
		s.Calm, s.LoadFactor = 30*time.Second, 0.9
		kinds := append([]string(nil), AllFaults...)
		rng.Shuffle(len(kinds), func(i, j int) { kinds[i], kinds[j] = kinds[j], kinds[i] })
		at := s.Calm
		for _, k := range kinds {
			st := Step{At: at, Kind: k}
			slot := ciSlot
			switch k {
			case FaultSIGKILL:
				st.Target, st.For = nodes[rng.IntN(len(nodes))], killDown
			case FaultLeaderKill:
				st.For = killDown
			case FaultPause:
				st.Target, st.For = nodes[rng.IntN(len(nodes))], pauseFor
			case FaultPartition:
				st.Target, st.For = netnsNode, partitionFor
			case FaultNetem:
				st.Target, st.For = netnsNode, netemFor
			case FaultRegionDown:
				st.Target, st.For = regions[rng.IntN(len(regions))], regionDownFor
			case Fault429Storm:
				st.Target, st.For = regions[rng.IntN(len(regions))], stormFor
			case FaultRollingRestart:
				slot = rollingSlot
			}
			s.Steps = append(s.Steps, st)
			at += slot
		}
		s.Load = at + 4*time.Second
	case ScheduleLong:
		s.Calm, s.Load, s.LoadFactor = 40*time.Second, 10*time.Minute, 1.5
		for at := s.Calm; at+20*time.Second <= s.Load; at += 20 * time.Second {
			s.Steps = append(s.Steps, Step{At: at, Kind: FaultSIGKILL, Target: nodes[rng.IntN(len(nodes))], For: killDown, AnyNode: true})
		}
	default:
		kind, ok := strings.CutPrefix(name, ScheduleOnly)
		if !ok || !slices.Contains(AllFaults, kind) {
			return Schedule{}, fmt.Errorf("schedule %q: want smoke, ci, long or only:<fault kind>", name)
		}
		// One fault after a calm phase: for looking at a single fault.
		ci, _ := BuildSchedule(ScheduleCI, seed, nodes, regions, netnsNode)
		s.Calm, s.LoadFactor = 20*time.Second, ci.LoadFactor
		for _, st := range ci.Steps {
			if st.Kind == kind {
				st.At = s.Calm
				s.Steps = []Step{st}
			}
		}
		s.Load = s.Calm + rollingSlot + 4*time.Second
	}
	return s, nil
}
