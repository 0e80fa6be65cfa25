package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sluicehq/sluice/chaos/load"
)

// Modes and loops of a phase.
const (
	modeJSON    = "json"
	modeStream  = "stream"
	modeStreams = "json+streams" // JSON load with slow streams held open
	loopOpen    = "open"
	loopClosed  = "closed"
)

// phase is one measurement: one target, one mode, one rate or closed loop.
type phase struct {
	mode    string
	loop    string
	rate    int // open loop
	workers int // closed loop
	streams int // slow streams held open during the phase
}

// Measurement is the outcome of one phase on one target.
type Measurement struct {
	Mode string `json:"mode"`
	Loop string `json:"loop"`
	load.Result
	// Failed counts transport errors and answers other than 200.
	Failed int `json:"failed"`
	// StreamsOpen is how many slow streams were open at the phase's end.
	StreamsOpen int `json:"streams_open,omitempty"`
	// CPUPer1k is CPU seconds (user+system, summed over the target's
	// processes) per 1,000 requests over the measured interval.
	CPUPer1k float64 `json:"cpu_s_per_1k"`
	// MockCPUPer1k is the same for the mock behind the target.
	MockCPUPer1k float64 `json:"mock_cpu_s_per_1k"`
	// RSSPeakMB is VmHWM (since the process started, summed over the
	// target's processes) and RSSEndMB VmRSS, both at the phase's end.
	RSSPeakMB float64 `json:"rss_peak_mb"`
	RSSEndMB  float64 `json:"rss_end_mb"`
	// Saturated marks an open-loop phase the target could not keep up
	// with (see saturated); higher rates are then skipped for it.
	Saturated bool `json:"saturated,omitempty"`
	// Profile is the CPU profile taken during the phase, if any.
	Profile string `json:"profile,omitempty"`
}

// saturated reports whether an open-loop phase overloaded its target: the
// generator could not send at the offered rate, more than 1% failed, or
// the p99 reached half the request timeout (requests queue instead of
// being served).
func (m Measurement) saturated(timeout time.Duration) bool {
	if m.Loop != loopOpen || m.Sent == 0 {
		return false
	}
	return m.Achieved < 0.95*float64(m.OfferedRate) || m.Failed*100 > m.Sent || m.Latency.P99 > timeout/2
}

// runner measures phases against systems that share one mock.
type runner struct {
	mock    *system
	dur     time.Duration
	warmup  time.Duration
	timeout time.Duration // per request
	rounds  int           // interleaved rounds per phase
	client  *http.Client
	profDir string // write CPU profiles of systems with pprof here
	profAt  int    // ... during open-loop phases at this rate
}

// part is one system's share of one round of a phase.
type part struct {
	res          load.Result
	cpu, mockCPU time.Duration
	end          []load.ProcSample
	streamsOpen  int
	profile      string
}

// measure runs one phase against every system in rounds: each round gives
// every system dur/rounds in turn, so that a disturbance of the shared
// machine during the phase spreads over the systems instead of landing on
// one of them. Phases with held streams or a profile run in one round.
func (r *runner) measure(ctx context.Context, systems []*system, ph phase) ([]Measurement, error) {
	rounds := max(r.rounds, 1)
	if ph.streams > 0 || r.profDir != "" {
		rounds = 1
	}
	parts := make([][]part, len(systems))
	for round := range rounds {
		for i, sys := range systems {
			p, err := r.part(ctx, sys, ph, r.dur/time.Duration(rounds), round == 0)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", sys.name, err)
			}
			parts[i] = append(parts[i], p)
		}
	}
	out := make([]Measurement, len(systems))
	for i := range systems {
		var (
			results      []load.Result
			cpu, mockCPU time.Duration
		)
		for _, p := range parts[i] {
			results = append(results, p.res)
			cpu += p.cpu
			mockCPU += p.mockCPU
		}
		last := parts[i][len(parts[i])-1]
		m := Measurement{Mode: ph.mode, Loop: ph.loop, Result: load.Merge(results...), StreamsOpen: last.streamsOpen, Profile: last.profile}
		m.Failed = m.Result.Failed()
		m.Saturated = m.saturated(r.timeout)
		m.CPUPer1k = per1k(cpu, m.Sent)
		m.MockCPUPer1k = per1k(mockCPU, m.Sent)
		for _, s := range last.end {
			m.RSSPeakMB += mb(s.PeakRSS)
			m.RSSEndMB += mb(s.RSS)
		}
		out[i] = m
	}
	return out, nil
}

// part holds the slow streams open, warms up if asked, then measures the
// load for d and the processes' use over it.
func (r *runner) part(ctx context.Context, sys *system, ph phase, d time.Duration, warm bool) (part, error) {
	var p part
	t := sys.target(fastDeployment, ph.mode == modeStream, 0)
	var h *streamHolder
	if ph.streams > 0 {
		h = holdStreams(ctx, sys.target(slowDeployment, true, slowMaxTokens), ph.streams)
		defer h.stop()
		if err := h.waitOpen(ctx, 10*time.Second); err != nil {
			return p, err
		}
	}
	do := func(d time.Duration) load.Result {
		if ph.loop == loopClosed {
			return load.Closed{Workers: ph.workers, Duration: d, Timeout: r.timeout, Client: r.client}.Do(ctx, t)
		}
		return load.Run{Rate: ph.rate, Duration: d, Timeout: r.timeout, Client: r.client}.Do(ctx, t)
	}
	if warm && r.warmup > 0 {
		do(r.warmup)
	}
	before, err := sample(sys.procs)
	if err != nil {
		return p, err
	}
	mockBefore, err := sample(r.mock.procs)
	if err != nil {
		return p, err
	}
	var prof *profileFetch
	if sys.pprof != "" && r.profDir != "" && ph.loop == loopOpen && ph.rate == r.profAt {
		name := fmt.Sprintf("%s-%s-%d.pprof", sys.name, ph.mode, ph.rate)
		prof = fetchProfile(ctx, sys.pprof, filepath.Join(r.profDir, name), d)
	}
	p.res = do(d)
	after, errAfter := sample(sys.procs)
	mockAfter, errMock := sample(r.mock.procs)
	if prof != nil {
		// Wait for the profile even when sampling failed: its fetch
		// ends within the part's duration.
		if p.profile, err = prof.wait(); err != nil {
			return p, err
		}
	}
	if err := errors.Join(errAfter, errMock); err != nil {
		return p, err
	}
	p.cpu, p.mockCPU, p.end = cpuDelta(before, after), cpuDelta(mockBefore, mockAfter), after
	if h != nil {
		p.streamsOpen = int(h.open.Load())
	}
	return p, nil
}

func cpuDelta(before, after []load.ProcSample) time.Duration {
	var d time.Duration
	for i := range after {
		d += after[i].CPU - before[i].CPU
	}
	return d
}

// per1k is CPU seconds per 1,000 requests.
func per1k(cpu time.Duration, requests int) float64 {
	if requests <= 0 {
		return 0
	}
	return cpu.Seconds() * 1000 / float64(requests)
}

func mb(bytes int64) float64 { return float64(bytes) / (1 << 20) }

// streamHolder keeps n slow streams open: each of its workers opens a
// stream, reads it to the end and opens the next, until stopped.
type streamHolder struct {
	open   atomic.Int64
	cancel context.CancelFunc
	wg     sync.WaitGroup
	want   int
	client *http.Client
}

func holdStreams(ctx context.Context, t load.Target, n int) *streamHolder {
	ctx, cancel := context.WithCancel(ctx)
	client := load.NewClient()
	h := &streamHolder{cancel: cancel, want: n, client: client}
	h.wg.Add(n)
	for i := range n {
		go func() {
			defer h.wg.Done()
			url := t.URL
			if len(t.URLs) > 0 {
				url = t.URLs[i%len(t.URLs)]
			}
			for ctx.Err() == nil {
				if !h.one(ctx, client, url, t) {
					// Refused or failed: back off a little before the next try.
					select {
					case <-ctx.Done():
					case <-time.After(100 * time.Millisecond):
					}
				}
			}
		}()
	}
	return h
}

// one holds one stream open until it ends; false if it never opened.
func (h *streamHolder) one(ctx context.Context, client *http.Client, url string, t load.Target) bool {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(t.Body))
	if err != nil {
		return false
	}
	for k, v := range t.Headers {
		req.Header[k] = v
	}
	resp, err := client.Do(req)
	if err != nil {
		return false
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		_, _ = io.Copy(io.Discard, resp.Body)
		return false
	}
	h.open.Add(1)
	defer h.open.Add(-1)
	_, _ = io.Copy(io.Discard, resp.Body)
	return true
}

// waitOpen polls until all streams are open.
func (h *streamHolder) waitOpen(ctx context.Context, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for int(h.open.Load()) < h.want {
		select {
		case <-ctx.Done():
			return fmt.Errorf("only %d of %d slow streams open after %v", h.open.Load(), h.want, timeout)
		case <-tick.C:
		}
	}
	return nil
}

func (h *streamHolder) stop() {
	h.cancel()
	h.wg.Wait()
	h.client.CloseIdleConnections()
}

// profileFetch is a CPU profile being taken over a phase.
type profileFetch struct {
	path string
	done chan error
}

func fetchProfile(ctx context.Context, base, path string, d time.Duration) *profileFetch {
	f := &profileFetch{path: path, done: make(chan error, 1)}
	secs := max(int(d/time.Second), 1)
	go func() {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, fmt.Sprintf("%s/debug/pprof/profile?seconds=%d", base, secs), nil)
		if err != nil {
			f.done <- err
			return
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			f.done <- fmt.Errorf("profile: %w", err)
			return
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err == nil && resp.StatusCode != http.StatusOK {
			err = fmt.Errorf("profile: status %d", resp.StatusCode)
		}
		if err == nil {
			err = os.WriteFile(path, b, 0o644)
		}
		f.done <- err
	}()
	return f
}

func (f *profileFetch) wait() (string, error) {
	if err := <-f.done; err != nil {
		return "", err
	}
	return f.path, nil
}
