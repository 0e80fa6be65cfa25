package main

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/sluicehq/sluice/chaos/load"
)

// soakInterval is how often a soak samples the node's memory.
const soakInterval = 10 * time.Second

// Soak is a long run at one rate through one Sluice node.
type Soak struct {
	Rate     int          `json:"rate"`
	Duration string       `json:"duration"`
	Samples  []SoakSample `json:"samples"`
	// GrowthMB is the mean RSS of the last minute minus that of the first.
	GrowthMB float64 `json:"growth_mb"`
}

// SoakSample is the node's memory at one moment of the soak.
type SoakSample struct {
	At      float64 `json:"at_s"` // since the start of the load
	RSSMB   float64 `json:"rss_mb"`
	PeakMB  float64 `json:"rss_peak_mb"`
	CPUSecs float64 `json:"cpu_s"`
}

// rssGrowth is the mean RSS of the samples in the last window minus that
// of the samples in the first window. With no sample in either it is 0.
func rssGrowth(samples []SoakSample, window time.Duration) float64 {
	if len(samples) == 0 {
		return 0
	}
	w := window.Seconds()
	end := samples[len(samples)-1].At
	var first, last []float64
	for _, s := range samples {
		if s.At <= samples[0].At+w {
			first = append(first, s.RSSMB)
		}
		if s.At >= end-w {
			last = append(last, s.RSSMB)
		}
	}
	return mean(last) - mean(first)
}

func mean(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	var s float64
	for _, x := range v {
		s += x
	}
	return s / float64(len(v))
}

// sampleEvery samples p every interval until stop is closed, and returns
// the samples on done.
func sampleEvery(p *proc, interval time.Duration, stop <-chan struct{}) <-chan []SoakSample {
	done := make(chan []SoakSample, 1)
	go func() {
		var out []SoakSample
		start := time.Now()
		tick := time.NewTicker(interval)
		defer tick.Stop()
		take := func() {
			if s, err := load.ReadProc(p.pid()); err == nil {
				out = append(out, SoakSample{At: time.Since(start).Seconds(), RSSMB: mb(s.RSS), PeakMB: mb(s.PeakRSS), CPUSecs: s.CPU.Seconds()})
			}
		}
		take()
		for {
			select {
			case <-stop:
				take()
				done <- out
				return
			case <-tick.C:
				take()
			}
		}
	}()
	return done
}

// soak runs one open-loop JSON phase through sluice for d, sampling its
// memory every soakInterval.
func (r *runner) soak(ctx context.Context, sluice *system, rate, streams int, d time.Duration) (Measurement, *Soak, error) {
	stop := make(chan struct{})
	samples := sampleEvery(sluice.procs[0], soakInterval, stop)
	soakRunner := *r
	soakRunner.dur, soakRunner.rounds = d, 1
	mode := modeJSON
	if streams > 0 {
		mode = modeStreams
	}
	ms, err := soakRunner.measure(ctx, []*system{sluice}, phase{mode: mode, loop: loopOpen, rate: rate, streams: streams})
	close(stop)
	var m Measurement
	if err == nil {
		m = ms[0]
	}
	s := &Soak{Rate: rate, Duration: d.String(), Samples: <-samples}
	s.GrowthMB = rssGrowth(s.Samples, time.Minute)
	return m, s, err
}

// soakCheck judges the growth; a saturated soak measures a queue, not the
// node, and is inconclusive.
func soakCheck(s *Soak, m Measurement) Check {
	ok := s.GrowthMB <= limitSoakGrowthMB
	verdict := map[bool]string{true: "ok", false: "FAIL"}[ok]
	if m.Saturated {
		ok, verdict = false, fmt.Sprintf("INCONCLUSIVE (saturated: %d of %d failed, p99 %.0f ms)", m.Failed, m.Sent, ms(m.Latency.P99))
	}
	return Check{Name: "soak_rss_growth_mb", Value: s.GrowthMB, Limit: limitSoakGrowthMB, OK: ok, Inconclusive: m.Saturated,
		Line: fmt.Sprintf("RSS growth sluice over %s at %d/s (last minus first minute): %+.1f MB (target flat, ≤ %d MB) %s",
			s.Duration, s.Rate, s.GrowthMB, limitSoakGrowthMB, verdict)}
}

func printSoak(w io.Writer, s *Soak) {
	fmt.Fprintf(w, "\nsoak at %d/s for %s, RSS every %v:\n", s.Rate, s.Duration, soakInterval)
	for _, x := range s.Samples {
		fmt.Fprintf(w, "  %6.0fs  rss %6.1f MB  peak %6.1f MB  cpu %7.1fs\n", x.At, x.RSSMB, x.PeakMB, x.CPUSecs)
	}
	fmt.Fprintf(w, "growth (last minus first minute's mean): %+.1f MB\n", s.GrowthMB)
}
