package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/http/pprof"
	"net/url"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/sluicehq/sluice/chaos/mock"
	"github.com/sluicehq/sluice/node"
)

// The hidden subcommands below are the systems under test that are not
// separate binaries. The bench re-executes itself with one of them so that
// each system runs in its own process and can be charged for its own CPU
// time and memory. Each listens, prints "listening ADDR" on standard output
// and serves until SIGTERM or SIGINT.

// subcommands maps a hidden subcommand to its entry point.
var subcommands = map[string]func(ctx context.Context, args []string) error{
	"mock":  serveMock,
	"proxy": serveProxy,
	"node":  serveNode,
}

// Mock deployments: fastDeployment answers at once; slowDeployment streams
// one token every slowTokenInterval, for the streams held open.
const (
	fastDeployment    = "gpt-4o-mini"
	slowDeployment    = "slow"
	slowTokenInterval = 50 * time.Millisecond
	slowMaxTokens     = 400 // 20 s per stream
)

// mockRegion is the mock provider every target ends at.
func mockRegion(key string) mock.RegionConfig {
	return mock.RegionConfig{Name: "bench", APIKey: key, Deployments: []mock.DeploymentConfig{
		{Name: fastDeployment, Completion: mock.CompletionConfig{MeanTokens: 16}},
		{Name: slowDeployment, Completion: mock.CompletionConfig{MeanTokens: 4 * slowMaxTokens},
			Latency: mock.LatencyConfig{TokenInterval: mock.Duration(slowTokenInterval)}},
	}}
}

func serveMock(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("mock", flag.ContinueOnError)
	addr := fs.String("listen", "127.0.0.1:0", "address to serve the mock on")
	if err := fs.Parse(args); err != nil {
		return err
	}
	region, err := mock.NewRegion(mockRegion(os.Getenv(mockKeyEnv)))
	if err != nil {
		return fmt.Errorf("mock: %w", err)
	}
	// Release stalled streams before the server waits for them.
	return serveUntilDone(ctx, *addr, region, func() { _ = region.Close() })
}

// newBareProxy is what any Go proxy pays: httputil.ReverseProxy with a
// transport pooled for one busy upstream and immediate flushing.
func newBareProxy(upstream *url.URL) http.Handler {
	rp := httputil.NewSingleHostReverseProxy(upstream)
	rp.Transport = &http.Transport{
		Proxy:               nil,
		DialContext:         (&net.Dialer{Timeout: 2 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConns:        4096,
		MaxIdleConnsPerHost: 4096,
		IdleConnTimeout:     90 * time.Second,
		DisableCompression:  true,
		ForceAttemptHTTP2:   false,
	}
	rp.FlushInterval = -1
	rp.ErrorLog = slog.NewLogLogger(slog.NewTextHandler(os.Stderr, nil).WithAttrs([]slog.Attr{slog.String("proxy", "bare")}), slog.LevelWarn)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// Keep reading the request body after the response headers went
		// out (see the style guide's note on SSE behind ReverseProxy).
		_ = http.NewResponseController(w).EnableFullDuplex()
		rp.ServeHTTP(w, r)
	})
}

func serveProxy(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("proxy", flag.ContinueOnError)
	addr := fs.String("listen", "127.0.0.1:0", "address to serve the proxy on")
	upstream := fs.String("upstream", "", "URL of the upstream")
	if err := fs.Parse(args); err != nil {
		return err
	}
	u, err := url.Parse(*upstream)
	if err != nil || u.Host == "" {
		return fmt.Errorf("proxy: bad -upstream %q", *upstream)
	}
	return serveUntilDone(ctx, *addr, newBareProxy(u), nil)
}

// serveNode runs one standalone Sluice node in this process, the same way
// `sluice agent -config` does, plus a pprof endpoint so that a run can
// profile the node's request path.
func serveNode(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("node", flag.ContinueOnError)
	listen := fs.String("listen", "", "address of the OpenAI/Azure API")
	configPath := fs.String("config", "", "declarative configuration file")
	pprofAddr := fs.String("pprof", "127.0.0.1:0", "address of the pprof endpoint")
	if err := fs.Parse(args); err != nil {
		return err
	}
	cfg, err := node.LoadConfig(*configPath)
	if err != nil {
		return err
	}
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	n := node.New(node.Config{APIAddr: *listen, Logger: logger})
	if err := n.Install(cfg); err != nil {
		return fmt.Errorf("node: install: %w", err)
	}
	if err := n.Start(); err != nil {
		return fmt.Errorf("node: start: %w", err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	err = serveUntilDone(ctx, *pprofAddr, mux, nil)
	sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return errors.Join(err, n.Shutdown(sctx))
}

// serveUntilDone serves h on addr, prints the bound address and returns
// once ctx ends (after a graceful shutdown) or the server fails. release,
// if not nil, runs before the shutdown.
func serveUntilDone(ctx context.Context, addr string, h http.Handler, release func()) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	fmt.Printf("listening %s\n", ln.Addr())
	select {
	case err := <-errc:
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	if release != nil {
		release()
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		_ = srv.Close()
	}
	<-errc
	return nil
}

// runSubcommand runs a hidden subcommand until SIGTERM or SIGINT.
func runSubcommand(name string, args []string) int {
	f := subcommands[name]
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	if err := f(ctx, args); err != nil && !errors.Is(err, flag.ErrHelp) {
		fmt.Fprintf(os.Stderr, "bench %s: %v\n", name, err)
		return 1
	}
	return 0
}
