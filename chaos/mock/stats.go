package mock

import (
	"maps"
	"slices"
	"time"
)

const (
	// historyRetention is how long window history is kept.
	historyRetention = 15 * time.Minute
	// arrivalRingSize bounds the recorded arrival times.
	arrivalRingSize = 10000
)

// Stats is the provider's own view of the traffic it received.
type Stats struct {
	Region      string                     `json:"region"`
	Dialect     Dialect                    `json:"dialect"`
	Deployments map[string]DeploymentStats `json:"deployments"`
}

// DeploymentStats counts one deployment's traffic since start or Reset.
type DeploymentStats struct {
	// Requests is every API request routed to the deployment, whatever
	// its outcome (including 400s, 429s and injected faults).
	Requests int64 `json:"requests"`
	// Accepted requests passed the quota check and were charged.
	Accepted int64 `json:"accepted"`
	// Rejected429 counts quota rejections (not injected 429 storms, which
	// count in ErrorsInjected["force_429"]).
	Rejected429 int64 `json:"rejected_429"`
	// BadRequests counts 400 and 413 answers.
	BadRequests int64 `json:"bad_requests"`
	// ErrorsInjected counts injected faults by kind (see the Fault*
	// constants).
	ErrorsInjected map[string]int64 `json:"errors_injected"`
	// ChargedTokens sums the arrival charges of accepted requests.
	ChargedTokens int64 `json:"charged_tokens"`
	// PromptTokens and CompletionTokens sum the usage reported to clients
	// by completed answers.
	PromptTokens     int64 `json:"prompt_tokens"`
	CompletionTokens int64 `json:"completion_tokens"`
	// Completed answers: non-stream answers written fully, streams that
	// reached [DONE].
	Completed int64 `json:"completed"`
	// Canceled counts requests whose client went away before the answer
	// completed.
	Canceled int64 `json:"canceled"`
	// InFlight is the number of requests being handled now.
	InFlight int64 `json:"in_flight"`
	// Per-window history of accepted requests and charged tokens, for the
	// RPM window, the TPM window and one minute.
	RPMWindows    WindowHistory `json:"rpm_windows"`
	TPMWindows    WindowHistory `json:"tpm_windows"`
	MinuteWindows WindowHistory `json:"minute_windows"`
	// Arrival times (unix ns, oldest first, last 10,000) of accepted and of
	// 429-rejected (quota or storm) requests.
	AcceptedArrivalsNS []int64 `json:"accepted_arrivals_ns"`
	RejectedArrivalsNS []int64 `json:"rejected_arrivals_ns"`
	// Last seen values of the x-request-id and traceparent request headers.
	LastXRequestID  string `json:"last_x_request_id"`
	LastTraceparent string `json:"last_traceparent"`
}

// WindowHistory is the recent fixed windows (last 15 minutes, only windows
// that saw traffic) of one size, plus the maxima over every window since
// start or Reset.
type WindowHistory struct {
	SizeMS      int64         `json:"size_ms"`
	Windows     []WindowCount `json:"windows"`
	MaxRequests int64         `json:"max_requests"`
	MaxTokens   int64         `json:"max_tokens"`
}

// WindowCount is the accepted requests and charged tokens of one window.
type WindowCount struct {
	StartMS  int64 `json:"start_ms"`
	Requests int64 `json:"requests"`
	Tokens   int64 `json:"tokens"`
}

// windowSeries records a WindowHistory.
type windowSeries struct {
	size               time.Duration
	wins               []WindowCount
	maxReqs, maxTokens int64
}

func (s *windowSeries) add(now time.Time, reqs, tokens int64) {
	start := windowStart(now, s.size).UnixMilli()
	i := len(s.wins) - 1
	for i >= 0 && s.wins[i].StartMS > start {
		i-- // out of order arrival (clock moved back): find its window
	}
	if i < 0 || s.wins[i].StartMS != start {
		s.wins = slices.Insert(s.wins, i+1, WindowCount{StartMS: start})
		i++
		cutoff := now.Add(-historyRetention).UnixMilli()
		drop := 0
		for drop < len(s.wins)-1 && s.wins[drop].StartMS < cutoff {
			drop++
		}
		s.wins = slices.Delete(s.wins, 0, drop)
		i -= drop
	}
	w := &s.wins[i]
	w.Requests += reqs
	w.Tokens += tokens
	s.maxReqs = max(s.maxReqs, w.Requests)
	s.maxTokens = max(s.maxTokens, w.Tokens)
}

func (s *windowSeries) snapshot() WindowHistory {
	return WindowHistory{
		SizeMS:      s.size.Milliseconds(),
		Windows:     append([]WindowCount{}, s.wins...),
		MaxRequests: s.maxReqs,
		MaxTokens:   s.maxTokens,
	}
}

// ring keeps the last arrivalRingSize values.
type ring struct {
	buf  []int64
	next int
}

func (r *ring) add(v int64) {
	if len(r.buf) < arrivalRingSize {
		r.buf = append(r.buf, v)
		return
	}
	r.buf[r.next] = v
	r.next = (r.next + 1) % arrivalRingSize
}

func (r *ring) snapshot() []int64 {
	out := make([]int64, 0, len(r.buf))
	out = append(out, r.buf[r.next:]...)
	return append(out, r.buf[:r.next]...)
}

// depStats is a deployment's mutable statistics, guarded by the
// deployment's lock.
type depStats struct {
	s        DeploymentStats // counters only; slices and maps are built on snapshot
	injected map[string]int64
	rpm      windowSeries
	tpm      windowSeries
	minute   windowSeries
	accepted ring
	rejected ring
}

// reset zeroes everything but InFlight.
func (st *depStats) reset(rpmWindow, tpmWindow time.Duration) {
	inFlight := st.s.InFlight
	*st = depStats{
		s:        DeploymentStats{InFlight: inFlight},
		injected: make(map[string]int64),
		rpm:      windowSeries{size: rpmWindow},
		tpm:      windowSeries{size: tpmWindow},
		minute:   windowSeries{size: time.Minute},
	}
}

// recordAccepted records an accepted, charged request.
func (st *depStats) recordAccepted(now time.Time, cost int64) {
	st.s.Accepted++
	st.s.ChargedTokens += cost
	st.rpm.add(now, 1, cost)
	st.tpm.add(now, 1, cost)
	st.minute.add(now, 1, cost)
	st.accepted.add(now.UnixNano())
}

func (st *depStats) snapshot() DeploymentStats {
	s := st.s
	s.ErrorsInjected = maps.Clone(st.injected)
	s.RPMWindows = st.rpm.snapshot()
	s.TPMWindows = st.tpm.snapshot()
	s.MinuteWindows = st.minute.snapshot()
	s.AcceptedArrivalsNS = st.accepted.snapshot()
	s.RejectedArrivalsNS = st.rejected.snapshot()
	return s
}
