package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/sluicehq/sluice/chaos/mock"
	"sigs.k8s.io/yaml"
)

// shutdownTimeout bounds the graceful shutdown.
const shutdownTimeout = 10 * time.Second

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		stop()
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(0)
		}
		fmt.Fprintln(os.Stderr, "mockllm:", err)
		os.Exit(1)
	}
}

// run parses flags, loads the config and serves until ctx ends.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("mockllm", flag.ContinueOnError)
	fs.SetOutput(stderr)
	configPath := fs.String("config", "", "YAML config file (default: built-in eastus and swedencentral regions)")
	seed := fs.Int64("seed", 0, "seed for every region's random source (overrides the config)")
	logLevel := fs.String("log-level", "info", "log level: debug, info, warn or error (debug logs every request)")
	printConfig := fs.Bool("print-config", false, "print the effective config as YAML and exit")
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
	logger := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))

	cfg := DefaultConfig()
	if *configPath != "" {
		var err error
		if cfg, err = LoadConfig(*configPath); err != nil {
			return err
		}
	}
	fs.Visit(func(f *flag.Flag) {
		if f.Name == "seed" {
			for i := range cfg.Regions {
				cfg.Regions[i].Seed = *seed
			}
		}
	})
	if *printConfig {
		b, err := yaml.Marshal(cfg)
		if err != nil {
			return fmt.Errorf("print config: %w", err)
		}
		_, err = stdout.Write(b)
		return err
	}
	return Serve(ctx, cfg, logger, nil)
}

// Serve starts one HTTP server per region and blocks until ctx ends or a
// server fails, then shuts every server down gracefully. onListen, if not
// nil, is called with each region's name and bound address once all are
// listening.
func Serve(ctx context.Context, cfg Config, logger *slog.Logger, onListen func(region, addr string)) error {
	if err := cfg.Validate(); err != nil {
		return err
	}
	type running struct {
		region *mock.Region
		srv    *http.Server
		ln     net.Listener
	}
	var all []running
	closeAll := func() {
		for _, r := range all {
			_ = r.region.Close()
			_ = r.ln.Close()
		}
	}
	for _, rc := range cfg.Regions {
		rc.Logger = logger
		region, err := mock.NewRegion(rc)
		if err != nil {
			closeAll()
			return err
		}
		ln, err := net.Listen("tcp", rc.Listen)
		if err != nil {
			_ = region.Close()
			closeAll()
			return fmt.Errorf("region %q: listen: %w", rc.Name, err)
		}
		srv := &http.Server{
			Handler:           region,
			ReadHeaderTimeout: 10 * time.Second,
			IdleTimeout:       2 * time.Minute,
			ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
		}
		all = append(all, running{region: region, srv: srv, ln: ln})
	}

	errc := make(chan error, len(all))
	for _, r := range all {
		keySource := "config api_key"
		for _, rc := range cfg.Regions {
			if rc.Name == r.region.Name() && rc.APIKeyEnv != "" && os.Getenv(rc.APIKeyEnv) != "" {
				keySource = "env " + rc.APIKeyEnv
			}
		}
		var deps []string
		for _, d := range r.region.Config().Deployments {
			deps = append(deps, d.Name+"("+string(d.Kind)+")")
		}
		logger.Info("serving region", "region", r.region.Name(), "addr", r.ln.Addr().String(),
			"dialect", r.region.Dialect(), "deployments", deps, "api_key_source", keySource)
		go func() {
			if err := r.srv.Serve(r.ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				errc <- fmt.Errorf("region %q: serve: %w", r.region.Name(), err)
			}
		}()
	}
	if onListen != nil {
		for _, r := range all {
			onListen(r.region.Name(), r.ln.Addr().String())
		}
	}

	var serveErr error
	select {
	case <-ctx.Done():
		logger.Info("shutting down")
	case serveErr = <-errc:
		logger.Error("server failed", "err", serveErr)
	}
	// Release stalled and delayed requests first so Shutdown can finish.
	for _, r := range all {
		_ = r.region.Close()
	}
	sctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
	defer cancel()
	for _, r := range all {
		if err := r.srv.Shutdown(sctx); err != nil {
			logger.Warn("graceful shutdown incomplete; closing", "region", r.region.Name(), "err", err)
			_ = r.srv.Close()
		}
	}
	logger.Info("stopped")
	return serveErr
}
