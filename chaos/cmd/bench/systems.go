package main

import (
	"context"
	"fmt"
	"net/http"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/sluicehq/sluice/chaos/load"
)

// Target names, in the order they are measured and printed.
const (
	targetDirect  = "direct"
	targetBare    = "bare-proxy"
	targetSluice  = "sluice"
	targetCluster = "cluster-3"
)

// system is one system under test: the processes charged for it and the
// API it serves.
type system struct {
	name  string
	procs []*proc
	// urls are the base URLs of its API (several: round-robin).
	urls []string
	// azure: it speaks the mock's Azure paths with the mock's key;
	// otherwise Sluice's OpenAI path with the bench key.
	azure bool
	// pprof is the base URL of a profile endpoint, when profiling.
	pprof string
}

// chatBody is the request every target gets: a short chat completion,
// optionally streamed, for the given model.
func chatBody(model string, stream bool, maxTokens int) string {
	if maxTokens <= 0 {
		maxTokens = 32
	}
	s := ""
	if stream {
		s = `,"stream":true`
	}
	return `{"model":"` + model + `","messages":[{"role":"system","content":"You are a helpful assistant."},` +
		`{"role":"user","content":"Summarise the plot of Hamlet in two sentences."}],"max_tokens":` + itoa(maxTokens) + s + `}`
}

// target builds the load target for one model; stream asks for SSE.
func (s *system) target(model string, stream bool, maxTokens int) load.Target {
	t := load.Target{Name: s.name, Body: []byte(chatBody(model, stream, maxTokens)), Stream: stream}
	if s.azure {
		t.Headers = http.Header{"Api-Key": {mockKey}, "Content-Type": {"application/json"}}
		for _, u := range s.urls {
			t.URLs = append(t.URLs, u+"/openai/deployments/"+model+"/chat/completions?api-version="+azureVersion)
		}
	} else {
		t.Headers = http.Header{"Authorization": {"Bearer " + benchKey}, "Content-Type": {"application/json"}}
		for _, u := range s.urls {
			t.URLs = append(t.URLs, u+"/v1/chat/completions")
		}
	}
	if len(t.URLs) == 1 {
		t.URL, t.URLs = t.URLs[0], nil
	}
	return t
}

// env is what starting the systems needs.
type env struct {
	dir       string // scratch directory of the run
	self      string // this binary, for the hidden subcommands
	sluiceBin string // the sluice binary
	mockURL   string
	profile   bool // run the single node with a pprof endpoint
}

func (e *env) childEnv() []string { return []string{mockKeyEnv + "=" + mockKey} }

func startMock(ctx context.Context, e *env) (*system, error) {
	p, err := startProc(e.dir, "mock", e.childEnv(), e.self, "mock", "-listen", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	addr, err := p.listenAddr(ctx)
	if err != nil {
		p.stop()
		return nil, err
	}
	e.mockURL = "http://" + addr
	return &system{name: targetDirect, procs: []*proc{p}, urls: []string{e.mockURL}, azure: true}, nil
}

func startBare(ctx context.Context, e *env) (*system, error) {
	p, err := startProc(e.dir, "proxy", nil, e.self, "proxy", "-listen", "127.0.0.1:0", "-upstream", e.mockURL)
	if err != nil {
		return nil, err
	}
	addr, err := p.listenAddr(ctx)
	if err != nil {
		p.stop()
		return nil, err
	}
	return &system{name: targetBare, procs: []*proc{p}, urls: []string{"http://" + addr}, azure: true}, nil
}

// startSluice starts one standalone node: the sluice binary, or with
// profiling this binary's in-process node with a pprof endpoint.
func startSluice(ctx context.Context, e *env) (*system, error) {
	cfg, err := writeConfig(e.dir, e.mockURL)
	if err != nil {
		return nil, err
	}
	api, err := freePort()
	if err != nil {
		return nil, err
	}
	var p *proc
	if e.profile {
		p, err = startProc(e.dir, "sluice", e.childEnv(), e.self, "node", "-listen", api, "-config", cfg)
	} else {
		p, err = startProc(e.dir, "sluice", e.childEnv(), e.sluiceBin, "agent", "-config", cfg, "-listen", api, "-log-level", "warn")
	}
	if err != nil {
		return nil, err
	}
	sys := &system{name: targetSluice, procs: []*proc{p}, urls: []string{"http://" + api}}
	if e.profile {
		addr, err := p.listenAddr(ctx)
		if err != nil {
			p.stop()
			return nil, err
		}
		sys.pprof = "http://" + addr
	}
	if err := waitServing(ctx, p, api); err != nil {
		p.stop()
		return nil, err
	}
	return sys, nil
}

// startCluster starts three `sluice agent` cluster members seeded with the
// same configuration, like deploy/local/run.sh.
func startCluster(ctx context.Context, e *env) (_ *system, err error) {
	const n = 3
	cfg, err := writeConfig(e.dir, e.mockURL)
	if err != nil {
		return nil, err
	}
	addrs, err := clusterAddrs(n)
	if err != nil {
		return nil, err
	}
	var peers []string
	for _, a := range addrs {
		peers = append(peers, a.gossip)
	}
	sys := &system{name: targetCluster}
	defer func() {
		if err != nil {
			stopAll(sys)
		}
	}()
	childEnv := append(e.childEnv(), adminTokenEnv+"=bench:admin:"+randomToken())
	for i, a := range addrs {
		id := fmt.Sprintf("node%d", i)
		p, err := startProc(e.dir, "cluster-"+id, childEnv, e.sluiceBin, "agent",
			"-node-id", id, "-data-dir", filepath.Join(e.dir, id), "-config", cfg,
			"-listen", a.api, "-gossip-addr", a.gossip, "-cluster-addr", a.cluster, "-admin-listen", a.admin,
			"-join", strings.Join(peers, ","), "-bootstrap-expect", itoa(n), "-log-level", "warn")
		if err != nil {
			return nil, err
		}
		sys.procs = append(sys.procs, p)
		sys.urls = append(sys.urls, "http://"+a.api)
	}
	for i, p := range sys.procs {
		if err := waitServing(ctx, p, addrs[i].api); err != nil {
			return nil, err
		}
	}
	return sys, nil
}

// stopAll stops the processes of the systems: it asks all of them to
// drain at once (a cluster's members stop together rather than each
// waiting for a quorum the previous one took away), then waits for each.
func stopAll(systems ...*system) {
	var all []*proc
	for i := len(systems) - 1; i >= 0; i-- {
		if systems[i] != nil {
			all = append(all, systems[i].procs...)
		}
	}
	for _, p := range all {
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
	}
	for _, p := range all {
		p.stop()
	}
}
