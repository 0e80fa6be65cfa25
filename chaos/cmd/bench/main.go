package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/sluicehq/sluice/chaos/load"
)

const (
	mockKey  = "bench-mock-key"
	benchKey = "sk-bench"
)

// options are the command line of a run.
type options struct {
	rates     []int
	dur       time.Duration
	warmup    time.Duration
	workers   int
	timeout   time.Duration
	rounds    int
	stream    bool
	streams   int
	checkRate int
	targets   []string
	jsonOut   string
	soak      time.Duration
	sluiceBin string
	profile   string
	keep      bool
}

func main() {
	if len(os.Args) > 1 && subcommands[os.Args[1]] != nil {
		os.Exit(runSubcommand(os.Args[1], os.Args[2:]))
	}
	var o options
	rates := flag.String("rates", "500,2000,5000", "open-loop offered rates, requests per second")
	flag.DurationVar(&o.dur, "duration", 4*time.Second, "measured load per phase (target, mode and rate)")
	flag.DurationVar(&o.warmup, "warmup", 500*time.Millisecond, "unmeasured load before each phase")
	flag.IntVar(&o.workers, "workers", 64, "concurrent workers of the closed-loop (maximum throughput) phases; 0 skips them")
	flag.DurationVar(&o.timeout, "timeout", 2*time.Second, "per-request timeout; bounds how long an overloaded phase drains")
	flag.IntVar(&o.rounds, "rounds", 4, "interleaved rounds per phase: each gives every target duration/rounds in turn")
	flag.BoolVar(&o.stream, "stream", true, "also measure streaming answers (time to first byte)")
	flag.IntVar(&o.streams, "streams", 100, "slow streams held open in an extra JSON phase at -check-rate (0: no such phase)")
	flag.IntVar(&o.checkRate, "check-rate", 2000, "open-loop rate the targets are checked at")
	targets := flag.String("targets", strings.Join([]string{targetDirect, targetBare, targetSluice, targetCluster}, ","), "targets to measure")
	flag.StringVar(&o.jsonOut, "json", "", "write the results as JSON to this file")
	flag.DurationVar(&o.soak, "soak", 0, "instead: run one -check-rate phase through one node this long and sample its RSS every 10s")
	flag.StringVar(&o.sluiceBin, "sluice-bin", "", "sluice binary to run (default: build node/cmd/sluice)")
	flag.StringVar(&o.profile, "profile", "", "run the single node with pprof and write its CPU profiles at -check-rate to this directory")
	flag.BoolVar(&o.keep, "keep", false, "keep the scratch directory (the processes' logs and data) and print its path")
	flag.Parse()
	var err error
	if o.rates, err = parseRates(*rates); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(2)
	}
	for _, t := range strings.Split(*targets, ",") {
		if t = strings.TrimSpace(t); t != "" {
			o.targets = append(o.targets, t)
		}
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, o); err != nil {
		stop()
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

// phases lists the phases of a run in order. The held-streams phase goes
// first, so that the peak RSS it reports (VmHWM cannot be reset) is its
// own and not that of a heavier phase before it. Then the open loop by
// rising rate, JSON then stream, so that a target saturated at one rate
// can skip the higher ones; the closed loop last.
func phases(o options) []phase {
	var out []phase
	if o.streams > 0 && slices.Contains(o.rates, o.checkRate) {
		out = append(out, phase{mode: modeStreams, loop: loopOpen, rate: o.checkRate, streams: o.streams})
	}
	modes := []string{modeJSON}
	if o.stream {
		modes = append(modes, modeStream)
	}
	for _, r := range o.rates {
		for _, m := range modes {
			out = append(out, phase{mode: m, loop: loopOpen, rate: r})
		}
	}
	if o.workers > 0 {
		for _, m := range modes {
			out = append(out, phase{mode: m, loop: loopClosed, workers: o.workers})
		}
	}
	return out
}

func run(ctx context.Context, o options) (err error) {
	began := time.Now()
	dir, err := os.MkdirTemp("", "sluice-bench-")
	if err != nil {
		return fmt.Errorf("scratch dir: %w", err)
	}
	defer func() {
		if o.keep {
			fmt.Fprintf(os.Stderr, "bench: logs kept in %s\n", dir)
			return
		}
		_ = os.RemoveAll(dir)
	}()
	self, err := os.Executable()
	if err != nil {
		return fmt.Errorf("own binary: %w", err)
	}
	e := &env{dir: dir, self: self, sluiceBin: o.sluiceBin, profile: o.profile != ""}
	want := func(t string) bool { return slices.Contains(o.targets, t) }
	if o.soak > 0 {
		o.targets = []string{targetDirect, targetSluice}
	}
	needBin := want(targetCluster) || (want(targetSluice) && !e.profile)
	if needBin && e.sluiceBin == "" {
		fmt.Fprintln(os.Stderr, "bench: building sluice")
		if e.sluiceBin, err = buildSluice(ctx, dir); err != nil {
			return err
		}
	}

	// Start the systems; the mock first, since every other one ends at it.
	var systems []*system
	defer func() { stopAll(systems...) }()
	mockSys, err := startMock(ctx, e)
	if err != nil {
		return err
	}
	systems = append(systems, mockSys)
	starters := []struct {
		name  string
		start func(context.Context, *env) (*system, error)
	}{{targetBare, startBare}, {targetSluice, startSluice}, {targetCluster, startCluster}}
	for _, s := range starters {
		if !want(s.name) {
			continue
		}
		fmt.Fprintf(os.Stderr, "bench: starting %s\n", s.name)
		sys, err := s.start(ctx, e)
		if err != nil {
			return err
		}
		systems = append(systems, sys)
	}
	var measured []*system
	for _, s := range systems {
		if want(s.name) {
			measured = append(measured, s)
		}
	}

	client := load.NewClient()
	defer client.CloseIdleConnections()
	r := &runner{mock: mockSys, dur: o.dur, warmup: o.warmup, timeout: o.timeout, rounds: o.rounds, client: client, profDir: o.profile, profAt: o.checkRate}
	rep := &Report{Started: began.UTC(), PhaseDuration: o.dur.String(), Warmup: o.warmup.String(), CPUs: runtime.NumCPU(),
		Rates: o.rates, Workers: o.workers, Rounds: o.rounds, Streams: o.streams}

	if o.soak > 0 {
		var sluice *system
		for _, s := range measured {
			if s.name == targetSluice {
				sluice = s
			}
		}
		fmt.Fprintf(os.Stderr, "bench: soak at %d/s for %v\n", o.checkRate, o.soak)
		m, s, err := r.soak(ctx, sluice, o.checkRate, o.streams, o.soak)
		if err != nil {
			return err
		}
		rep.Results, rep.Soak, rep.PhaseDuration = []Measurement{m}, s, o.soak.String()
		rep.Checks = append(rep.Checks, soakCheck(s, m))
	} else {
		// satAt[target/mode] is the lowest open-loop rate that target
		// could not keep up with; higher rates would only queue.
		satAt := map[string]int{}
		for _, ph := range phases(o) {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			var active []*system
			for _, sys := range measured {
				if at, ok := satAt[sys.name+"/"+ph.mode]; ok && ph.loop == loopOpen && ph.rate > at {
					fmt.Fprintf(os.Stderr, "bench: %-12s %-6s %-12s %d/s skipped: saturated at %d/s\n", ph.mode, ph.loop, sys.name, ph.rate, at)
					rep.Skipped = append(rep.Skipped, fmt.Sprintf("%s %s at %d/s (saturated at %d/s)", sys.name, ph.mode, ph.rate, at))
					continue
				}
				active = append(active, sys)
			}
			ms, err := r.measure(ctx, active, ph)
			if err != nil {
				return fmt.Errorf("%s %s: %w", ph.mode, ph.loop, err)
			}
			for _, m := range ms {
				key := m.Target + "/" + m.Mode
				if _, ok := satAt[key]; m.Saturated && !ok {
					satAt[key] = ph.rate
				}
				progress(m)
			}
			rep.Results = append(rep.Results, ms...)
		}
		rep.Comparisons = compare(rep.Results)
		rep.Checks = checks(rep.Results, o.checkRate)
	}
	rep.RuntimeSeconds = time.Since(began).Seconds()
	printTable(os.Stdout, rep)
	if o.profile != "" {
		fmt.Printf("profiles in %s (go tool pprof -top -cum FILE)\n", o.profile)
	}
	if o.jsonOut != "" {
		b, err := json.MarshalIndent(rep, "", "  ")
		if err != nil {
			return fmt.Errorf("json: %w", err)
		}
		if err := os.WriteFile(o.jsonOut, b, 0o644); err != nil {
			return fmt.Errorf("json: %w", err)
		}
	}
	if ctx.Err() != nil {
		return errors.New("interrupted")
	}
	return nil
}

// progress prints one line per phase on standard error while a run goes.
func progress(m Measurement) {
	what := fmt.Sprintf("%d/s", m.OfferedRate)
	if m.Loop == loopClosed {
		what = fmt.Sprintf("max with %d workers", m.Workers)
	}
	fmt.Fprintf(os.Stderr, "bench: %-12s %-6s %-12s %-10s achieved %6.0f/s p50 %.3f ms p99 %.3f ms failed %d (timeouts %d)\n",
		m.Mode, m.Loop, m.Target, what, m.Achieved, ms(m.Latency.P50), ms(m.Latency.P99), m.Failed, m.Timeouts)
}
