package mock

import (
	"errors"
	"fmt"
	"math"
	"slices"
	"time"
)

// AllDeployments is the fault key that applies to every deployment.
const AllDeployments = "*"

// Fault kinds, as counted in DeploymentStats.ErrorsInjected.
const (
	FaultError500  = "error_500"
	FaultError503  = "error_503"
	FaultReset     = "reset"
	FaultDown      = "down"
	FaultStreamCut = "stream_cut"
	FaultStall     = "stall"
	FaultForce429  = "force_429"
)

// Faults are injected failures. Probabilities are in [0, 1] and are drawn
// independently per request from the region's seeded source. For one
// request the checks run in this order: Down, Reset, Force429For (all before
// the quota check, so nothing is charged), then the quota, then Error500,
// Error503, Stall, latency (ExtraLatency is added to the sampled TTFB) and,
// for streams, StreamCut.
type Faults struct {
	// Error500 is the probability of a 500 InternalServerError.
	Error500 float64 `json:"error_500,omitempty"`
	// Error503 is the probability of a 503 ServiceUnavailable.
	Error503 float64 `json:"error_503,omitempty"`
	// RetryAfter503, when set, is sent as retry-after on injected 503s.
	RetryAfter503 Duration `json:"retry_after_503,omitempty"`
	// Reset is the probability that the connection is reset before any
	// response byte is written.
	Reset float64 `json:"reset,omitempty"`
	// StreamCut is the probability that a streamed answer is cut after a
	// random number of chunks: the connection closes without [DONE].
	StreamCut float64 `json:"stream_cut,omitempty"`
	// Stall is the probability that a request is held until the client goes
	// away or StallFor passes (0 = until the client goes away or the region
	// closes); after StallFor the request proceeds normally.
	Stall float64 `json:"stall,omitempty"`
	// StallFor bounds a stall; see Stall.
	StallFor Duration `json:"stall_for,omitempty"`
	// ExtraLatency is added to the time to first byte of every request.
	ExtraLatency Duration `json:"extra_latency,omitempty"`
	// Force429For starts a 429 storm when the faults are set: until that
	// instant (set time + Force429For) every request is answered 429 with
	// retry-after headers counting down to it.
	Force429For Duration `json:"force_429_for,omitempty"`
	// Down resets the connection of every request.
	Down bool `json:"down,omitempty"`
}

// FaultRule is the body of POST /mock/faults: the deployment ("*" for all)
// and its faults, flattened into one JSON object.
type FaultRule struct {
	Deployment string `json:"deployment"`
	Faults
}

// FaultStatus is one entry of GET /mock/faults.
type FaultStatus struct {
	FaultRule
	// Force429UntilMS is the end of the 429 storm (unix ms), if any.
	Force429UntilMS int64 `json:"force_429_until_ms,omitempty"`
}

// faultState is a deployment's faults plus the fixed end of its 429 storm.
type faultState struct {
	Faults
	force429Until time.Time
}

func (f Faults) validate() error {
	probs := []struct {
		name string
		v    float64
	}{
		{"error_500", f.Error500}, {"error_503", f.Error503}, {"reset", f.Reset},
		{"stream_cut", f.StreamCut}, {"stall", f.Stall},
	}
	for _, p := range probs {
		if math.IsNaN(p.v) || p.v < 0 || p.v > 1 {
			return fmt.Errorf("%s: probability %v is not in [0, 1]", p.name, p.v)
		}
	}
	durs := []struct {
		name string
		v    Duration
	}{
		{"retry_after_503", f.RetryAfter503}, {"stall_for", f.StallFor},
		{"extra_latency", f.ExtraLatency}, {"force_429_for", f.Force429For},
	}
	for _, d := range durs {
		if d.v < 0 {
			return fmt.Errorf("%s: must not be negative", d.name)
		}
	}
	return nil
}

// mergeFaults is the effective fault set of a deployment: its own faults
// with every zero field filled from the "*" faults.
func mergeFaults(own, all faultState) faultState {
	pick := func(a, b float64) float64 {
		if a != 0 {
			return a
		}
		return b
	}
	pickD := func(a, b Duration) Duration {
		if a != 0 {
			return a
		}
		return b
	}
	m := faultState{Faults: Faults{
		Error500:      pick(own.Error500, all.Error500),
		Error503:      pick(own.Error503, all.Error503),
		RetryAfter503: pickD(own.RetryAfter503, all.RetryAfter503),
		Reset:         pick(own.Reset, all.Reset),
		StreamCut:     pick(own.StreamCut, all.StreamCut),
		Stall:         pick(own.Stall, all.Stall),
		StallFor:      pickD(own.StallFor, all.StallFor),
		ExtraLatency:  pickD(own.ExtraLatency, all.ExtraLatency),
		Force429For:   pickD(own.Force429For, all.Force429For),
		Down:          own.Down || all.Down,
	}}
	m.force429Until = own.force429Until
	if all.force429Until.After(m.force429Until) {
		m.force429Until = all.force429Until
	}
	return m
}

// SetFaults replaces the faults of deployment ("*" for all deployments).
// Zero Faults clears them. A Force429For storm starts now.
func (r *Region) SetFaults(deployment string, f Faults) error {
	if deployment != AllDeployments {
		if _, ok := r.deps[deployment]; !ok {
			return fmt.Errorf("set faults: %w: %q", ErrUnknownDeployment, deployment)
		}
	}
	if err := f.validate(); err != nil {
		return fmt.Errorf("set faults for %q: %w", deployment, err)
	}
	st := faultState{Faults: f}
	if f.Force429For > 0 {
		st.force429Until = r.now().Add(f.Force429For.D())
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if f == (Faults{}) {
		delete(r.faults, deployment)
		return nil
	}
	r.faults[deployment] = st
	return nil
}

// ClearFaults removes every fault of every deployment.
func (r *Region) ClearFaults() {
	r.mu.Lock()
	defer r.mu.Unlock()
	clear(r.faults)
}

// Faults lists the configured faults, "*" first, then by deployment name.
func (r *Region) Faults() []FaultStatus {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]FaultStatus, 0, len(r.faults))
	for name, st := range r.faults {
		fs := FaultStatus{FaultRule: FaultRule{Deployment: name, Faults: st.Faults}}
		if !st.force429Until.IsZero() {
			fs.Force429UntilMS = st.force429Until.UnixMilli()
		}
		out = append(out, fs)
	}
	slices.SortFunc(out, func(a, b FaultStatus) int {
		switch {
		case a.Deployment == b.Deployment:
			return 0
		case a.Deployment == AllDeployments:
			return -1
		case b.Deployment == AllDeployments:
			return 1
		case a.Deployment < b.Deployment:
			return -1
		default:
			return 1
		}
	})
	return out
}

// effectiveFaults returns the merged faults of a deployment.
func (r *Region) effectiveFaults(deployment string) faultState {
	r.mu.Lock()
	defer r.mu.Unlock()
	return mergeFaults(r.faults[deployment], r.faults[AllDeployments])
}

// ErrUnknownDeployment is returned by SetFaults for a deployment the region does not host.
var ErrUnknownDeployment = errors.New("unknown deployment")
