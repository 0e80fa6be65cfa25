package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// backend is one fake node: it answers /readyz with its readiness and any
// other path with its name.
type backend struct {
	name  string
	ready atomic.Bool
	hits  atomic.Int64
	srv   *httptest.Server
}

func newBackend(t *testing.T, name string, ready bool) *backend {
	t.Helper()
	b := &backend{name: name}
	b.ready.Store(ready)
	b.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/readyz" {
			if !b.ready.Load() {
				w.WriteHeader(http.StatusServiceUnavailable)
			}
			return
		}
		b.hits.Add(1)
		_, _ = io.WriteString(w, b.name)
	}))
	t.Cleanup(b.srv.Close)
	return b
}

func (b *backend) addr() string { return b.srv.Listener.Addr().String() }

// deadAddr returns a loopback address that refuses connections.
func deadAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	a := ln.Addr().String()
	_ = ln.Close()
	return a
}

// startFront runs a front whose backend name resolves to addrs (read on
// every lookup, so a test may change them) and stops it at cleanup.
func startFront(t *testing.T, cfg Config, addrs func() []string) *Front {
	t.Helper()
	cfg.Listen = "127.0.0.1:0"
	cfg.Backend = "backends:1"
	cfg.Logger = slog.New(slog.DiscardHandler)
	cfg.lookupHost = func(context.Context, string) ([]string, error) {
		a := addrs()
		if len(a) == 0 {
			return nil, errors.New("no such host")
		}
		return a, nil
	}
	f, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- f.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-errc; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	waitFor(t, 5*time.Second, "front listening", func() bool { return f.Addr() != "" })
	return f
}

func waitFor(t *testing.T, d time.Duration, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		<-tick.C
	}
}

func (f *Front) healthOf(addr string) health {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.state[addr]
}

// get makes one request on a new connection through the front.
func get(t *testing.T, addr string) (string, error) {
	t.Helper()
	c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := c.Get("http://" + addr + "/who")
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return string(b), err
}

func TestNewValidates(t *testing.T) {
	for _, tc := range []struct {
		backend string
		ok      bool
	}{
		{"sluice-peers:8080", true},
		{"10.0.0.1:8080", true},
		{"sluice-peers", false},
		{":8080", false},
		{"sluice-peers:http", false},
		{"sluice-peers:70000", false},
	} {
		_, err := New(Config{Backend: tc.backend})
		if (err == nil) != tc.ok || (err != nil && !errors.Is(err, ErrInvalidConfig)) {
			t.Errorf("New(%q) = %v, want ok=%v", tc.backend, err, tc.ok)
		}
	}
}

func TestRoutesOnlyToHealthyBackends(t *testing.T) {
	a, b := newBackend(t, "a", true), newBackend(t, "b", true)
	notReady := newBackend(t, "not-ready", false)
	dead := deadAddr(t)
	addrs := []string{a.addr(), b.addr(), notReady.addr(), dead}
	f := startFront(t, Config{HealthInterval: 20 * time.Millisecond}, func() []string { return addrs })
	waitFor(t, 5*time.Second, "health checks", func() bool {
		return f.healthOf(a.addr()) == healthy && f.healthOf(b.addr()) == healthy &&
			f.healthOf(notReady.addr()) == unhealthy && f.healthOf(dead) == unhealthy
	})
	seen := map[string]int{}
	for range 20 {
		name, err := get(t, f.Addr())
		if err != nil {
			t.Fatalf("request through the front: %v", err)
		}
		seen[name]++
	}
	if seen["a"] != 10 || seen["b"] != 10 {
		t.Errorf("answers by backend %v; want 10 from each healthy one (round-robin) and nothing else", seen)
	}
	if notReady.hits.Load() != 0 {
		t.Errorf("the not-ready backend got %d requests", notReady.hits.Load())
	}

	// A backend becoming ready joins the rotation at the next check.
	notReady.ready.Store(true)
	waitFor(t, 5*time.Second, "backend ready", func() bool { return f.healthOf(notReady.addr()) == healthy })
	for range 9 {
		if _, err := get(t, f.Addr()); err != nil {
			t.Fatal(err)
		}
	}
	if n := notReady.hits.Load(); n != 3 {
		t.Errorf("a backend that became ready got %d of 9 requests, want 3", n)
	}
}

func TestSkipsRefusingBackendsBeforeAnyCheck(t *testing.T) {
	// Probing is off: only refusals tell the front a backend is gone.
	a := newBackend(t, "a", true)
	dead1, dead2 := deadAddr(t), deadAddr(t)
	addrs := []string{dead1, a.addr(), dead2}
	f := startFront(t, Config{HealthPath: "-"}, func() []string { return addrs })
	for i := range 10 {
		name, err := get(t, f.Addr())
		if err != nil || name != "a" {
			t.Fatalf("request %d: %q, %v", i, name, err)
		}
	}
	if f.healthOf(dead1) != unhealthy || f.healthOf(dead2) != unhealthy {
		t.Error("refusing addresses not marked unhealthy")
	}
}

func TestRetriesRefusingBackendWithoutProbes(t *testing.T) {
	// Without probes, an address that refused is tried last for
	// HealthInterval, then like any other: a restarted node gets traffic.
	a := newBackend(t, "a", true)
	back := deadAddr(t)
	addrs := []string{a.addr(), back}
	f := startFront(t, Config{HealthPath: "-", HealthInterval: 50 * time.Millisecond}, func() []string { return addrs })
	for range 4 {
		if name, err := get(t, f.Addr()); err != nil || name != "a" {
			t.Fatalf("request: %q, %v", name, err)
		}
	}
	if f.healthOf(back) != unhealthy {
		t.Fatal("the refusing address was not marked")
	}
	ln, err := net.Listen("tcp", back)
	if err != nil {
		t.Skipf("cannot listen on %s again: %v", back, err)
	}
	b := &backend{name: "b"}
	b.srv = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		b.hits.Add(1)
		_, _ = io.WriteString(w, "b")
	}))
	b.srv.Listener = ln
	b.srv.Start()
	defer b.srv.Close()
	waitFor(t, 5*time.Second, "traffic to the address that came back", func() bool {
		_, err := get(t, f.Addr())
		return err == nil && b.hits.Load() > 0
	})
}

func TestFollowsDNSChanges(t *testing.T) {
	a, b := newBackend(t, "a", true), newBackend(t, "b", true)
	var mu sync.Mutex
	addrs := []string{a.addr()}
	f := startFront(t, Config{HealthInterval: 20 * time.Millisecond}, func() []string {
		mu.Lock()
		defer mu.Unlock()
		return append([]string(nil), addrs...)
	})
	if name, err := get(t, f.Addr()); err != nil || name != "a" {
		t.Fatalf("first request: %q, %v", name, err)
	}
	// The name now resolves to b only, as when a container is replaced.
	mu.Lock()
	addrs = []string{b.addr()}
	mu.Unlock()
	for i := range 5 {
		if name, err := get(t, f.Addr()); err != nil || name != "b" {
			t.Fatalf("request %d after the change: %q, %v", i, name, err)
		}
	}
	waitFor(t, 5*time.Second, "forgotten address", func() bool {
		f.mu.Lock()
		defer f.mu.Unlock()
		_, ok := f.state[a.addr()]
		return !ok
	})
}

func TestNoBackendClosesTheClient(t *testing.T) {
	dead := deadAddr(t)
	f := startFront(t, Config{HealthPath: "-"}, func() []string { return []string{dead} })
	if _, err := get(t, f.Addr()); err == nil {
		t.Fatal("request succeeded with every backend refusing")
	}
}

func TestShutdownLetsOpenConnectionsFinish(t *testing.T) {
	release := make(chan struct{})
	started := make(chan struct{})
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/readyz" {
			return
		}
		close(started)
		<-release
		_, _ = io.WriteString(w, "done")
	}))
	defer slow.Close()
	cfg := Config{Listen: "127.0.0.1:0", Backend: "backends:1", HealthPath: "-", Logger: slog.New(slog.DiscardHandler),
		lookupHost: func(context.Context, string) ([]string, error) { return []string{slow.Listener.Addr().String()}, nil }}
	f, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- f.Run(ctx) }()
	waitFor(t, 5*time.Second, "front listening", func() bool { return f.Addr() != "" })

	type result struct {
		body string
		err  error
	}
	res := make(chan result, 1)
	go func() {
		b, err := get(t, f.Addr())
		res <- result{b, err}
	}()
	<-started
	cancel()
	// New connections are refused once Run stops accepting.
	waitFor(t, 5*time.Second, "listener closed", func() bool {
		c, err := net.Dial("tcp", f.Addr())
		if err == nil {
			_ = c.Close()
		}
		return err != nil
	})
	close(release)
	r := <-res
	if r.err != nil || r.body != "done" {
		t.Fatalf("request open at shutdown: %q, %v", r.body, r.err)
	}
	if err := <-errc; err != nil {
		t.Fatalf("Run: %v", err)
	}
}

func TestDrainTimeoutClosesConnections(t *testing.T) {
	hang := make(chan struct{})
	defer close(hang)
	stuck := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-hang:
		case <-r.Context().Done():
		}
	}))
	defer stuck.Close()
	cfg := Config{Listen: "127.0.0.1:0", Backend: "backends:1", HealthPath: "-", DrainTimeout: 50 * time.Millisecond,
		Logger:     slog.New(slog.DiscardHandler),
		lookupHost: func(context.Context, string) ([]string, error) { return []string{stuck.Listener.Addr().String()}, nil }}
	f, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- f.Run(ctx) }()
	waitFor(t, 5*time.Second, "front listening", func() bool { return f.Addr() != "" })
	c, err := net.Dial("tcp", f.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	fmt.Fprintf(c, "GET /x HTTP/1.1\r\nHost: x\r\n\r\n")
	waitFor(t, 5*time.Second, "relay open", func() bool {
		f.mu.Lock()
		defer f.mu.Unlock()
		return len(f.conns) == 2
	})
	start := time.Now()
	cancel()
	if err := <-errc; err != nil {
		t.Fatalf("Run: %v", err)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("Run took %v to stop with a drain timeout of 50ms", d)
	}
	if _, err := c.Read(make([]byte, 1)); err == nil {
		t.Error("client connection still open after the drain timeout")
	}
}
