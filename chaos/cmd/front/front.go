package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// Errors of the front.
var (
	// ErrInvalidConfig reports a Config that cannot work.
	ErrInvalidConfig = errors.New("front: invalid config")
	// ErrNoBackend reports that no resolved address accepted a connection.
	ErrNoBackend = errors.New("front: no backend accepted the connection")
)

// Config configures a Front. Zero values take the documented defaults.
type Config struct {
	// Listen is the address clients connect to. Default ":8080".
	Listen string
	// Backend is "name:port": name is resolved for every connection (all
	// of its A/AAAA records are candidates) and port is dialled on each.
	// An IP literal works too. Required.
	Backend string
	// DialTimeout bounds one dial to a backend. Default 2s.
	DialTimeout time.Duration
	// HealthPath is the HTTP path probed on every backend address (GET,
	// healthy on 2xx). Default "/readyz". "-" disables probing: every
	// resolved address is then tried in turn and only refusals count.
	HealthPath string
	// HealthInterval is how often the checker resolves Backend and probes
	// every address. Default 1s. With probing disabled it is how long an
	// address that refused a connection is tried last.
	HealthInterval time.Duration
	// HealthTimeout bounds one probe. Default 500ms.
	HealthTimeout time.Duration
	// DrainTimeout bounds how long Run waits for open connections once
	// its context ends; then they are closed. Default 10s.
	DrainTimeout time.Duration
	// Logger receives the front's events. Default slog.Default().
	Logger *slog.Logger

	// lookupHost resolves Backend's name; tests replace it with a fake that
	// returns host:port pairs (see resolve).
	lookupHost func(ctx context.Context, host string) ([]string, error)
}

func (c *Config) setDefaults() {
	if c.Listen == "" {
		c.Listen = ":8080"
	}
	if c.DialTimeout <= 0 {
		c.DialTimeout = 2 * time.Second
	}
	if c.HealthPath == "" {
		c.HealthPath = "/readyz"
	}
	if c.HealthInterval <= 0 {
		c.HealthInterval = time.Second
	}
	if c.HealthTimeout <= 0 {
		c.HealthTimeout = 500 * time.Millisecond
	}
	if c.DrainTimeout <= 0 {
		c.DrainTimeout = 10 * time.Second
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.lookupHost == nil {
		c.lookupHost = net.DefaultResolver.LookupHost
	}
}

// health is what the front knows of one backend address.
type health int8

const (
	unknown health = iota // never probed: tried only when no healthy one accepts
	healthy
	unhealthy
)

// Front accepts client connections and relays each to one backend.
type Front struct {
	cfg       Config
	host      string
	port      string
	probe     *http.Client
	next      atomic.Uint64 // round-robin cursor
	ln        net.Listener
	listening chan struct{} // closed once ln is set

	mu     sync.Mutex
	state  map[string]health    // by host:port
	failed map[string]time.Time // when a dial to the address last failed
	last   []string             // last successful resolution, used when DNS fails
	conns  map[net.Conn]struct{}
}

// New checks cfg and builds a Front; Run serves it.
func New(cfg Config) (*Front, error) {
	cfg.setDefaults()
	host, port, err := net.SplitHostPort(cfg.Backend)
	if err != nil || host == "" {
		return nil, fmt.Errorf("%w: backend %q must be name:port", ErrInvalidConfig, cfg.Backend)
	}
	if p, err := strconv.Atoi(port); err != nil || p <= 0 || p > 65535 {
		return nil, fmt.Errorf("%w: backend port %q", ErrInvalidConfig, port)
	}
	return &Front{
		cfg: cfg, host: host, port: port,
		// Probes never reuse connections: a reused one could outlive the
		// node it was opened to.
		probe:     &http.Client{Timeout: cfg.HealthTimeout, Transport: &http.Transport{DisableKeepAlives: true}},
		listening: make(chan struct{}),
		state:     map[string]health{},
		failed:    map[string]time.Time{},
		conns:     map[net.Conn]struct{}{},
	}, nil
}

// Addr returns the listening address once Run has bound it, or "".
func (f *Front) Addr() string {
	select {
	case <-f.listening:
		return f.ln.Addr().String()
	default:
		return ""
	}
}

// Run listens and serves until ctx ends, then stops accepting, waits up to
// DrainTimeout for open connections and closes the rest. Every goroutine it
// starts has ended when it returns.
func (f *Front) Run(ctx context.Context) error {
	ln, err := net.Listen("tcp", f.cfg.Listen)
	if err != nil {
		return fmt.Errorf("listen %s: %w", f.cfg.Listen, err)
	}
	f.ln = ln
	close(f.listening)
	f.cfg.Logger.Info("front listening", "addr", ln.Addr().String(), "backend", f.cfg.Backend,
		"health_path", f.cfg.HealthPath)

	var checker, relays sync.WaitGroup
	checkCtx, stopChecks := context.WithCancel(context.Background())
	if f.cfg.HealthPath != "-" {
		checker.Add(1)
		go func() {
			defer checker.Done()
			f.checkLoop(checkCtx)
		}()
	}
	stopAccept := context.AfterFunc(ctx, func() { _ = ln.Close() })
	defer stopAccept()
	var acceptErr error
	for {
		c, err := ln.Accept()
		if err != nil {
			if ctx.Err() == nil {
				acceptErr = fmt.Errorf("accept: %w", err)
			}
			break
		}
		f.track(c, true)
		relays.Add(1)
		go func() {
			defer relays.Done()
			defer f.track(c, false)
			f.serve(ctx, c)
		}()
	}
	_ = ln.Close()

	// Drain: open connections may finish; past the deadline they are closed.
	done := make(chan struct{})
	go func() { relays.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(f.cfg.DrainTimeout):
		f.mu.Lock()
		n := len(f.conns)
		for c := range f.conns {
			_ = c.Close()
		}
		f.mu.Unlock()
		f.cfg.Logger.Warn("drain timeout; closed open connections", "count", n)
		<-done
	}
	stopChecks()
	checker.Wait()
	f.probe.CloseIdleConnections()
	f.cfg.Logger.Info("front stopped")
	return acceptErr
}

// track records open client and backend connections, so a drain timeout
// can close them.
func (f *Front) track(c net.Conn, open bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if open {
		f.conns[c] = struct{}{}
	} else {
		delete(f.conns, c)
		_ = c.Close()
	}
}

// serve relays one client connection to the first backend that accepts.
func (f *Front) serve(ctx context.Context, client net.Conn) {
	backend, err := f.dial(ctx)
	if err != nil {
		f.cfg.Logger.Warn("connection dropped", "client", client.RemoteAddr().String(), "err", err)
		return
	}
	f.track(backend, true)
	defer f.track(backend, false)
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); pipe(backend, client) }()
	go func() { defer wg.Done(); pipe(client, backend) }()
	wg.Wait()
}

// pipe copies src to dst, then half-closes dst so the other side sees EOF
// while the opposite direction may still be flowing.
func pipe(dst, src net.Conn) {
	_, err := io.Copy(dst, src)
	if cw, ok := dst.(interface{ CloseWrite() error }); ok && err == nil {
		_ = cw.CloseWrite()
		return
	}
	// An error on one side ends both directions.
	_ = dst.Close()
	_ = src.Close()
}

// dial tries the candidates in order: healthy ones first (round-robin),
// then the rest. A refused or timed-out dial marks the address unhealthy.
func (f *Front) dial(ctx context.Context) (net.Conn, error) {
	addrs := f.candidates(ctx)
	if len(addrs) == 0 {
		return nil, fmt.Errorf("%w: %s resolves to no address", ErrNoBackend, f.host)
	}
	d := net.Dialer{Timeout: f.cfg.DialTimeout}
	var errs []error
	for _, a := range addrs {
		c, err := d.DialContext(ctx, "tcp", a)
		if err == nil {
			return c, nil
		}
		errs = append(errs, err)
		f.markFailed(a)
		f.cfg.Logger.Debug("backend refused; trying the next", "addr", a, "err", err)
	}
	return nil, fmt.Errorf("%w: %w", ErrNoBackend, errors.Join(errs...))
}

// candidates resolves the backend name and orders its addresses: healthy
// ones, then unknown ones, then unhealthy ones (a last resort when every
// check is failing, e.g. because the checker lags); each group is rotated
// by a per-connection counter, so connections are spread round-robin.
func (f *Front) candidates(ctx context.Context) []string {
	addrs := f.resolve(ctx)
	if len(addrs) == 0 {
		return nil
	}
	turn := f.next.Add(1)
	groups := make([][]string, 3) // indexed by health
	f.mu.Lock()
	now := time.Now()
	for _, a := range addrs {
		h := f.state[a]
		if h == unhealthy && f.cfg.HealthPath == "-" && now.Sub(f.failed[a]) > f.cfg.HealthInterval {
			// Without probes nothing else would ever clear the mark.
			h = unknown
		}
		groups[h] = append(groups[h], a)
	}
	f.mu.Unlock()
	out := make([]string, 0, len(addrs))
	for _, h := range []health{healthy, unknown, unhealthy} {
		g := groups[h]
		if len(g) == 0 {
			continue
		}
		start := int(turn % uint64(len(g)))
		out = append(append(out, g[start:]...), g[:start]...)
	}
	return out
}

// resolve returns the backend's host:port addresses, sorted; when DNS
// fails it returns the last successful answer.
func (f *Front) resolve(ctx context.Context) []string {
	var addrs []string
	if ip := net.ParseIP(f.host); ip != nil {
		addrs = []string{net.JoinHostPort(f.host, f.port)}
	} else {
		hosts, err := f.cfg.lookupHost(ctx, f.host)
		if err != nil || len(hosts) == 0 {
			f.mu.Lock()
			defer f.mu.Unlock()
			return slices.Clone(f.last)
		}
		for _, h := range hosts {
			addrs = append(addrs, joinPort(h, f.port))
		}
	}
	slices.Sort(addrs)
	addrs = slices.Compact(addrs)
	f.mu.Lock()
	defer f.mu.Unlock()
	f.last = addrs
	for a := range f.failed {
		if !slices.Contains(addrs, a) {
			delete(f.failed, a)
			if f.cfg.HealthPath == "-" {
				delete(f.state, a) // the checker forgets addresses when probing
			}
		}
	}
	return slices.Clone(addrs)
}

// joinPort adds port to a resolved host, unless the resolver already gave
// host:port (the test resolver does, to address several loopback ports).
func joinPort(h, port string) string {
	if _, _, err := net.SplitHostPort(h); err == nil {
		return h
	}
	return net.JoinHostPort(h, port)
}

// markFailed records a failed dial: the address is tried last until a
// probe passes (or, without probes, for HealthInterval).
func (f *Front) markFailed(addr string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.state[addr] = unhealthy
	f.failed[addr] = time.Now()
}

// checkLoop probes every resolved address each HealthInterval until ctx
// ends, and forgets addresses that no longer resolve.
func (f *Front) checkLoop(ctx context.Context) {
	t := time.NewTicker(f.cfg.HealthInterval)
	defer t.Stop()
	for {
		f.checkOnce(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// checkOnce probes every address concurrently and records the results.
func (f *Front) checkOnce(ctx context.Context) {
	addrs := f.resolve(ctx)
	results := make([]health, len(addrs))
	var wg sync.WaitGroup
	for i, a := range addrs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i] = f.check(ctx, a)
		}()
	}
	wg.Wait()
	if ctx.Err() != nil {
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	seen := make(map[string]bool, len(addrs))
	for i, a := range addrs {
		seen[a] = true
		if old := f.state[a]; old != results[i] {
			f.cfg.Logger.Info("backend health changed", "addr", a, "healthy", results[i] == healthy)
		}
		f.state[a] = results[i]
	}
	for a := range f.state {
		if !seen[a] {
			delete(f.state, a)
		}
	}
}

// check probes one address.
func (f *Front) check(ctx context.Context, addr string) health {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+f.cfg.HealthPath, nil)
	if err != nil {
		return unhealthy
	}
	resp, err := f.probe.Do(req)
	if err != nil {
		return unhealthy
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4<<10))
	_ = resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return unhealthy
	}
	return healthy
}
