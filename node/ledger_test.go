package node_test

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluicehq/sluice/admin"
	"github.com/sluicehq/sluice/chaos/mock"
	"github.com/sluicehq/sluice/cluster/state"
	"github.com/sluicehq/sluice/node"
	"github.com/sluicehq/sluice/quota/ledger"
	"github.com/sluicehq/sluice/router"
)

// countingSink sums the usage records one node's router produced.
type countingSink struct {
	mu sync.Mutex
	c  ledger.Counts
}

func (s *countingSink) Record(r *router.Record) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.c = s.c.Add(ledger.Counts{Requests: 1, PromptTokens: r.PromptTokens, CompletionTokens: r.CompletionTokens})
	if r.Status >= 400 {
		s.c.Errors++
	}
}

func (s *countingSink) counts() ledger.Counts {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.c
}

// TestUsageLedgerCluster: requests through three nodes are counted
// exactly once in the replicated ledger, equally on every node; retries
// across a leader change count nothing twice; a node whose cluster is gone
// before it flushes loses only its unflushed batch.
func TestUsageLedgerCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a three-node cluster (about 10 s)")
	}
	region, err := mock.NewRegion(mock.RegionConfig{Name: "eastus", APIKey: "node-test-key",
		Deployments: []mock.DeploymentConfig{{Name: "gpt-4o-mini"}}})
	if err != nil {
		t.Fatal(err)
	}
	up := httptest.NewServer(region)
	defer up.Close()
	defer region.Close()
	t.Setenv("NODE_TEST_KEY", "node-test-key")
	seed := state.Config{
		Providers:   []state.Provider{{Name: "az", Kind: state.KindAzure, Endpoint: up.URL, APIKey: "env:NODE_TEST_KEY"}},
		Deployments: []state.Deployment{{Name: "east", Provider: "az", Upstream: "gpt-4o-mini"}},
		Models:      []state.Model{{Name: "gpt-4o-mini", Deployments: []string{"east"}}},
		Tenants:     []state.Tenant{{Name: "t"}},
		Keys:        []state.Key{{ID: "k1", Hash: state.HashKey("sk-one"), Tenant: "t"}},
	}
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	var (
		nodes []*node.Node
		dirs  []string // data directories
		sinks []*countingSink
		down  = map[int]bool{}
	)
	defer func() {
		for _, n := range nodes {
			_ = n.Shutdown(context.Background())
		}
	}()
	var join []string
	for i, id := range []string{"n1", "n2", "n3"} {
		ac := admin.DefaultConfig()
		ac.Addr, ac.Tokens = "127.0.0.1:0", []admin.Token{{Name: "ops", Role: admin.RoleAdmin, Token: adminToken}}
		sink := &countingSink{}
		cc := testClusterConfig(t, id, join)
		dirs = append(dirs, cc.DataDir)
		cfg := node.Config{APIAddr: "127.0.0.1:0", Logger: logger, Cluster: cc, Admin: &ac,
			Router: router.Config{Sink: sink},
			Ledger: ledger.BatcherConfig{FlushInterval: 50 * time.Millisecond, ShutdownTimeout: time.Second, RetryMin: 10 * time.Millisecond}}
		if i == 0 {
			cfg.SeedConfig = &seed
		}
		n := node.New(cfg)
		if err := n.Start(); err != nil {
			t.Fatal(err)
		}
		nodes, sinks = append(nodes, n), append(sinks, sink)
		join = []string{nodes[0].Cluster().GossipAddr()}
	}
	waitUntil(t, 15*time.Second, "every node to serve the seed config", func() bool {
		for _, n := range nodes {
			if chat(t, n.APIAddr(), "sk-one") != 200 {
				return false
			}
		}
		return true
	})
	sent := func(which ...int) ledger.Counts {
		var c ledger.Counts
		for _, i := range which {
			c = c.Add(sinks[i].counts())
		}
		return c
	}
	// usageTotal asks node i's admin API for the ledger's totals.
	usageTotal := func(i int) ledger.Counts {
		r, err := (&admin.Client{Addr: nodes[i].AdminAddr(), Token: adminToken}).Usage(context.Background(), admin.UsageQuery{GroupBy: []string{"tenant", "key"}})
		if err != nil {
			t.Fatalf("usage from node %d: %v", i, err)
		}
		return r.Total
	}
	converge := func(what string, want func() ledger.Counts) {
		t.Helper()
		waitUntil(t, 15*time.Second, what, func() bool {
			for i := range nodes {
				if !down[i] && usageTotal(i) != want() {
					return false
				}
			}
			return true
		})
	}

	// 1. Requests through every node.
	for round := 0; round < 5; round++ {
		for _, n := range nodes {
			chat(t, n.APIAddr(), "sk-one")
		}
	}
	converge("ledger totals equal to every record on every node", func() ledger.Counts { return sent(0, 1, 2) })
	if c := sent(0, 1, 2); c.Requests < 18 || c.PromptTokens == 0 || c.CompletionTokens == 0 {
		t.Fatalf("records %+v: the test counts at least 18 requests with tokens", c)
	}

	// 2. The leader leaves while the followers keep sending: their batches
	// are retried across the leader change and count once.
	leader := -1
	for i, n := range nodes {
		if n.Cluster().IsLeader() {
			leader = i
		}
	}
	if leader < 0 {
		t.Fatal("no leader")
	}
	var followers []int
	for i := range nodes {
		if i != leader {
			followers = append(followers, i)
		}
	}
	stopTraffic := make(chan struct{})
	var traffic sync.WaitGroup
	var during atomic.Int64
	for _, f := range followers {
		traffic.Add(1)
		go func() {
			defer traffic.Done()
			for {
				select {
				case <-stopTraffic:
					return
				default:
				}
				if chatErr(nodes[f].APIAddr(), "sk-one") == nil {
					during.Add(1)
				}
			}
		}()
	}
	waitUntil(t, 5*time.Second, "traffic before the leader change", func() bool { return during.Load() >= 20 })
	if err := nodes[leader].Shutdown(context.Background()); err != nil {
		t.Fatalf("leader shutdown: %v", err)
	}
	down[leader] = true
	waitUntil(t, 10*time.Second, "a new leader", func() bool {
		for _, f := range followers {
			if nodes[f].Cluster().IsLeader() {
				return true
			}
		}
		return false
	})
	mark := during.Load()
	waitUntil(t, 5*time.Second, "traffic after the leader change", func() bool { return during.Load() >= mark+20 })
	close(stopTraffic)
	traffic.Wait()
	converge("exact totals after the leader change", func() ledger.Counts { return sent(0, 1, 2) })
	t.Logf("%d requests during the leader change; ledger total %+v", during.Load(), usageTotal(followers[0]))

	// 3. A node whose cluster is gone before it flushes: what it flushed
	// stays, its unflushed records stay in its journal for its next start
	// (none is lost), nothing counts twice.
	victim, survivor := followers[0], followers[1]
	before := sent(0, 1, 2)
	if err := nodes[victim].Cluster().Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	for range 4 {
		chat(t, nodes[victim].APIAddr(), "sk-one")
	}
	if err := nodes[victim].Shutdown(context.Background()); err != nil && !strings.Contains(err.Error(), "cluster") {
		t.Fatalf("victim shutdown: %v", err)
	}
	down[victim] = true
	if got := sent(0, 1, 2).Requests - before.Requests; got != 4 {
		t.Fatalf("%d records after the cluster stopped, want 4", got)
	}
	if got := metricLine(nodes[victim], "sluice_ledger_rows_lost_total"); got != "0" {
		t.Errorf("victim lost %q rows, want 0: they stay in the journal", got)
	}
	if fi, err := os.Stat(filepath.Join(dirs[victim], "usage-ledger.journal")); err != nil || fi.Size() == 0 {
		t.Errorf("victim's journal: %v, %v; want its unflushed records", fi, err)
	}
	if got := usageTotal(survivor); got != before {
		t.Errorf("survivor total %+v, want %+v (flushed records only)", got, before)
	}
}

// chatErr is chat for goroutines other than the test's: it reports
// instead of failing the test.
func chatErr(addr, key string) error {
	req, err := http.NewRequest(http.MethodPost, "http://"+addr+"/v1/chat/completions",
		strings.NewReader(`{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}],"max_tokens":4}`))
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+key)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	return resp.Body.Close()
}

func TestStandaloneHasNoLedger(t *testing.T) {
	sink := &countingSink{}
	n := node.New(node.Config{APIAddr: "127.0.0.1:0", Router: router.Config{Sink: sink}})
	if n.UsageLedger() != nil {
		t.Error("a standalone node has a replicated ledger")
	}
}

func metricLine(n *node.Node, name string) string {
	var sb strings.Builder
	n.Metrics().WritePrometheus(&sb)
	for _, line := range strings.Split(sb.String(), "\n") {
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			return v
		}
	}
	return ""
}
