package main

import (
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"
	"time"
)

// Report is everything one run measured; -json writes it so that runs can
// be compared.
type Report struct {
	Started        time.Time     `json:"started"`
	RuntimeSeconds float64       `json:"runtime_s"`
	PhaseDuration  string        `json:"phase_duration"`
	Warmup         string        `json:"warmup"`
	CPUs           int           `json:"cpus"`
	Rates          []int         `json:"rates"`
	Workers        int           `json:"workers"`
	Rounds         int           `json:"rounds"`
	Streams        int           `json:"streams"`
	Results        []Measurement `json:"results"`
	// Skipped lists phases left out because the target was saturated at a
	// lower rate.
	Skipped     []string     `json:"skipped,omitempty"`
	Comparisons []Comparison `json:"comparisons"`
	Checks      []Check      `json:"checks"`
	Soak        *Soak        `json:"soak,omitempty"`
}

// Comparison sets one target against a baseline in one phase: ratios
// (Of/Against) and differences (Of-Against, in milliseconds).
type Comparison struct {
	Of, Against     string
	Mode            string  `json:"mode"`
	Loop            string  `json:"loop"`
	Rate            int     `json:"rate,omitempty"`
	P50Ratio        float64 `json:"p50_ratio"`
	P99Ratio        float64 `json:"p99_ratio"`
	P50AddedMS      float64 `json:"p50_added_ms"`
	P99AddedMS      float64 `json:"p99_added_ms"`
	TTFBP99AddedMS  float64 `json:"ttfb_p99_added_ms,omitempty"`
	ThroughputRatio float64 `json:"throughput_ratio"`
	CPURatio        float64 `json:"cpu_ratio"`
}

// Check is one of the targets and whether this run met it.
type Check struct {
	Name  string  `json:"name"`
	Value float64 `json:"value"`
	Limit float64 `json:"limit"`
	OK    bool    `json:"ok"`
	// Inconclusive: a phase it compares was saturated.
	Inconclusive bool   `json:"inconclusive,omitempty"`
	Line         string `json:"line"`
}

// comparedPairs are the comparisons printed: (c)/(b), (c)-(a), (d)/(b).
var comparedPairs = [][2]string{
	{targetSluice, targetBare},
	{targetSluice, targetDirect},
	{targetCluster, targetBare},
	{targetBare, targetDirect},
}

func find(rs []Measurement, target, mode, loop string, rate int) *Measurement {
	for i := range rs {
		m := &rs[i]
		if m.Target == target && m.Mode == mode && m.Loop == loop && (loop == loopClosed || m.OfferedRate == rate) {
			return m
		}
	}
	return nil
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func ratio(a, b float64) float64 {
	if b == 0 {
		return 0
	}
	return a / b
}

// compare builds the comparisons for every phase in which both targets of
// a pair were measured, in the order of the results.
func compare(rs []Measurement) []Comparison {
	var out []Comparison
	seen := map[string]bool{}
	for _, m := range rs {
		key := fmt.Sprintf("%s/%s/%d", m.Mode, m.Loop, m.OfferedRate)
		if seen[key] {
			continue
		}
		seen[key] = true
		for _, pair := range comparedPairs {
			a, b := find(rs, pair[0], m.Mode, m.Loop, m.OfferedRate), find(rs, pair[1], m.Mode, m.Loop, m.OfferedRate)
			if a == nil || b == nil {
				continue
			}
			c := Comparison{Of: pair[0], Against: pair[1], Mode: m.Mode, Loop: m.Loop, Rate: m.OfferedRate,
				P50Ratio:        ratio(ms(a.Latency.P50), ms(b.Latency.P50)),
				P99Ratio:        ratio(ms(a.Latency.P99), ms(b.Latency.P99)),
				P50AddedMS:      ms(a.Latency.P50 - b.Latency.P50),
				P99AddedMS:      ms(a.Latency.P99 - b.Latency.P99),
				ThroughputRatio: ratio(a.Achieved, b.Achieved),
				CPURatio:        ratio(a.CPUPer1k, b.CPUPer1k),
			}
			if m.Mode == modeStream {
				c.TTFBP99AddedMS = ms(a.TTFB.P99 - b.TTFB.P99)
			}
			out = append(out, c)
		}
	}
	return out
}

// Limits from the issue.
const (
	limitP50AddedMS   = 0.1
	limitP99Ratio     = 1.5
	limitTTFBAddedMS  = 1.0
	limitThroughput   = 0.8
	limitRSSMB        = 100
	limitSoakGrowthMB = 10
)

// checks evaluates the targets at rate (open loop) and in the
// closed loop. A target whose phases were not run is left out; one whose
// phases saturated either side is inconclusive (a comparison with a
// queueing system measures the queue) and not ok.
func checks(rs []Measurement, rate int) []Check {
	var out []Check
	add := func(name string, v, limit float64, le bool, sat []*Measurement, format string, args ...any) {
		ok := v <= limit
		if !le {
			ok = v >= limit
		}
		verdict := map[bool]string{true: "ok", false: "FAIL"}[ok]
		c := Check{Name: name, Value: v, Limit: limit, OK: ok}
		var busy []string
		for _, m := range sat {
			if m.Saturated {
				busy = append(busy, m.Target)
			}
		}
		if len(busy) > 0 {
			c.OK, c.Inconclusive = false, true
			verdict = "INCONCLUSIVE (" + strings.Join(busy, ", ") + " saturated)"
		}
		c.Line = fmt.Sprintf(format, args...) + " " + verdict
		out = append(out, c)
	}
	s, b := find(rs, targetSluice, modeJSON, loopOpen, rate), find(rs, targetBare, modeJSON, loopOpen, rate)
	if s != nil && b != nil {
		d := ms(s.Latency.P50 - b.Latency.P50)
		add("p50_added_ms", d, limitP50AddedMS, true, []*Measurement{s, b}, "p50 sluice-bare at %d/s: %+.3f ms (target ≤ %g ms)", rate, d, limitP50AddedMS)
		r := ratio(ms(s.Latency.P99), ms(b.Latency.P99))
		add("p99_ratio", r, limitP99Ratio, true, []*Measurement{s, b}, "p99 sluice/bare at %d/s: %.2fx (target ≤ %gx)", rate, r, limitP99Ratio)
	}
	s, b = find(rs, targetSluice, modeStream, loopOpen, rate), find(rs, targetBare, modeStream, loopOpen, rate)
	if s != nil && b != nil {
		d := ms(s.TTFB.P99 - b.TTFB.P99)
		add("ttfb_p99_added_ms", d, limitTTFBAddedMS, true, []*Measurement{s, b}, "stream ttfb p99 sluice-bare at %d/s: %+.3f ms (target ≤ %g ms)", rate, d, limitTTFBAddedMS)
	}
	for _, mode := range []string{modeJSON, modeStream} {
		s, b = find(rs, targetSluice, mode, loopClosed, 0), find(rs, targetBare, mode, loopClosed, 0)
		if s != nil && b != nil {
			r := ratio(s.Achieved, b.Achieved)
			name := "throughput_ratio"
			if mode == modeStream {
				name = "stream_throughput_ratio"
			}
			add(name, r, limitThroughput, false, nil, "max throughput %s sluice/bare (%d workers): %.0f/%.0f req/s = %.2fx (target ≥ %gx)",
				mode, s.Workers, s.Achieved, b.Achieved, r, limitThroughput)
		}
	}
	s = find(rs, targetSluice, modeStreams, loopOpen, rate)
	streams := 0
	if s != nil {
		streams = s.StreamsOpen
	} else {
		s = find(rs, targetSluice, modeJSON, loopOpen, rate)
	}
	if s != nil {
		add("rss_peak_mb", s.RSSPeakMB, limitRSSMB, true, []*Measurement{s}, "peak RSS sluice at %d/s with %d streams open: %.1f MB (end %.1f MB; target ≤ %d MB)",
			rate, streams, s.RSSPeakMB, s.RSSEndMB, limitRSSMB)
	}
	return out
}

// printTable writes the results, then the comparisons, then the checks.
func printTable(w io.Writer, rep *Report) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "mode\tloop\ttarget\toffered/s\tachieved/s\tok\tfailed\tp50 ms\tp90 ms\tp99 ms\tp99.9 ms\tttfb p50\tttfb p99\tcpu s/1k\trss peak MB\trss end MB\t")
	for _, m := range rep.Results {
		offered := fmt.Sprint(m.OfferedRate)
		if m.Loop == loopClosed {
			offered = fmt.Sprintf("max(%dw)", m.Workers)
		}
		ttfb50, ttfb99 := "-", "-"
		if m.Mode == modeStream {
			ttfb50, ttfb99 = fmt.Sprintf("%.3f", ms(m.TTFB.P50)), fmt.Sprintf("%.3f", ms(m.TTFB.P99))
		}
		mode := m.Mode
		if m.Mode == modeStreams {
			mode = fmt.Sprintf("json+%d streams", m.StreamsOpen)
		}
		achieved := fmt.Sprintf("%.0f", m.Achieved)
		if m.Saturated {
			achieved += " sat"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d\t%d\t%.3f\t%.3f\t%.3f\t%.3f\t%s\t%s\t%.3f\t%.1f\t%.1f\t\n",
			mode, m.Loop, m.Target, offered, achieved, m.OK(), m.Failed,
			ms(m.Latency.P50), ms(m.Latency.P90), ms(m.Latency.P99), ms(m.Latency.P999), ttfb50, ttfb99,
			m.CPUPer1k, m.RSSPeakMB, m.RSSEndMB)
	}
	tw.Flush()
	fmt.Fprintln(w, "cpu and rss are the target's own processes (cluster-3: summed over its three); direct is the mock itself;")
	fmt.Fprintln(w, "rss peak is VmHWM since the process started, rss end VmRSS at the phase's end; latency from the intended send time")
	if slices.ContainsFunc(rep.Results, func(m Measurement) bool { return m.Saturated }) {
		fmt.Fprintln(w, "sat: saturated (achieved < 95% of offered, > 1% failed, or p99 > half the request timeout)")
	}
	if len(rep.Skipped) > 0 {
		fmt.Fprintf(w, "skipped: %s\n", strings.Join(rep.Skipped, "; "))
	}
	fmt.Fprintln(w)
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	if len(rep.Comparisons) > 0 {
		fmt.Fprintln(tw, "comparison\tmode\tloop\trate\tp50 x\tp99 x\tp50 +ms\tp99 +ms\tttfb p99 +ms\treq/s x\tcpu/1k x\t")
	}
	for _, c := range rep.Comparisons {
		rate := fmt.Sprint(c.Rate)
		if c.Loop == loopClosed {
			rate = "max"
		}
		ttfb := "-"
		if c.Mode == modeStream {
			ttfb = fmt.Sprintf("%+.3f", c.TTFBP99AddedMS)
		}
		fmt.Fprintf(tw, "%s vs %s\t%s\t%s\t%s\t%.2f\t%.2f\t%+.3f\t%+.3f\t%s\t%.2f\t%.2f\t\n",
			c.Of, c.Against, c.Mode, c.Loop, rate, c.P50Ratio, c.P99Ratio, c.P50AddedMS, c.P99AddedMS, ttfb, c.ThroughputRatio, c.CPURatio)
	}
	tw.Flush()
	if len(rep.Comparisons) > 0 {
		fmt.Fprintln(w)
	}
	for _, c := range rep.Checks {
		fmt.Fprintln(w, c.Line)
	}
	if rep.Soak != nil {
		printSoak(w, rep.Soak)
	}
	fmt.Fprintf(w, "runtime %.0fs\n", rep.RuntimeSeconds)
}

// parseRates parses "500,2000,5000".
func parseRates(s string) ([]int, error) {
	var out []int
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		var r int
		if _, err := fmt.Sscan(f, &r); err != nil || r <= 0 || fmt.Sprint(r) != f {
			return nil, fmt.Errorf("bad rate %q: want a positive integer", f)
		}
		out = append(out, r)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no rates in %q", s)
	}
	return out, nil
}
