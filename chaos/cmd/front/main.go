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
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stderr); err != nil {
		stop()
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(0)
		}
		fmt.Fprintln(os.Stderr, "front:", err)
		os.Exit(1)
	}
}

// run parses flags and serves until ctx ends.
func run(ctx context.Context, args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("front", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var cfg Config
	fs.StringVar(&cfg.Listen, "listen", ":8080", "address clients connect to")
	fs.StringVar(&cfg.Backend, "backend", "", "name:port of the backends; the name is resolved per connection (required)")
	fs.DurationVar(&cfg.DialTimeout, "dial-timeout", 0, "bound of one backend dial (default 2s)")
	fs.StringVar(&cfg.HealthPath, "health-path", "/readyz", `HTTP path probed on every backend; "-" disables probing`)
	fs.DurationVar(&cfg.HealthInterval, "health-interval", 0, "how often every backend is probed (default 1s)")
	fs.DurationVar(&cfg.HealthTimeout, "health-timeout", 0, "bound of one probe (default 500ms)")
	fs.DurationVar(&cfg.DrainTimeout, "drain-timeout", 0, "how long open connections may finish at shutdown (default 10s)")
	logLevel := fs.String("log-level", "info", "log level: debug, info, warn or error")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(*logLevel)); err != nil {
		return fmt.Errorf("-log-level: %w", err)
	}
	cfg.Logger = slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
	f, err := New(cfg)
	if err != nil {
		return err
	}
	return f.Run(ctx)
}
