package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/sluicehq/sluice/chaos/suite"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// run parses flags and performs one run; it returns the exit code.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("chaos", flag.ContinueOnError)
	fs.SetOutput(stderr)
	schedule := fs.String("schedule", suite.ScheduleCI, "schedule: smoke (~30 s, one kill), ci (every fault once, ~3 min) or long (10 min, a kill every 20 s at 1.5x load)")
	seed := fs.Int64("seed", 0, "seed of fault order and targets, prompts and the mock (default: the current time)")
	out := fs.String("out", "", "output directory (default .run/chaos/<schedule>-<time>)")
	bin := fs.String("bin", "", "directory with prebuilt sluice and mockllm binaries (default: build them)")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if *seed == 0 {
		*seed = time.Now().UnixNano() % 1_000_000
	}
	if *out == "" {
		*out = filepath.Join(".run", "chaos", fmt.Sprintf("%s-%s", *schedule, time.Now().UTC().Format("20060102-150405")))
	}
	logger := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	start := time.Now()
	r, err := suite.NewRunner(suite.Options{Schedule: *schedule, Seed: *seed, Out: *out, BinDir: *bin, Logger: logger})
	if err != nil {
		fmt.Fprintln(stderr, "chaos:", err)
		return 2
	}
	// Every child process dies with the run, also on a panic here (the
	// kernel kills the rest: they are started with a parent-death signal).
	defer r.Close()
	rep, err := r.Run(ctx)
	if cerr := r.Close(); cerr != nil {
		logger.Warn("cleanup", "err", cerr)
	}
	if err != nil {
		fmt.Fprintln(stderr, "chaos: run failed:", err)
		return 2
	}
	rep.Figures["wall_time_s"] = time.Since(start).Seconds()
	files, err := suite.WriteReport(*out, rep, stdout)
	if err != nil {
		fmt.Fprintln(stderr, "chaos:", err)
		return 2
	}
	fmt.Fprintf(stdout, "seed %d; report in %v (wall time %v)\n", *seed, files, time.Since(start).Round(time.Second))
	if !rep.Passed() {
		return 1
	}
	return 0
}
