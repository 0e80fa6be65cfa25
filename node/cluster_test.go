package node_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/sluicehq/sluice/admin"
	"github.com/sluicehq/sluice/chaos/mock"
	"github.com/sluicehq/sluice/cluster"
	"github.com/sluicehq/sluice/cluster/fsm"
	"github.com/sluicehq/sluice/cluster/state"
	"github.com/sluicehq/sluice/node"
)

func testClusterConfig(t *testing.T, id string, join []string) *cluster.Config {
	c := cluster.DefaultConfig()
	c.NodeID, c.DataDir = id, t.TempDir()
	c.GossipAddr, c.ClusterAddr = "127.0.0.1:0", "127.0.0.1:0"
	c.Join, c.BootstrapExpect = join, 3
	c.Gossip.ProbeInterval, c.Gossip.ProbeTimeout = 100*time.Millisecond, 50*time.Millisecond
	c.Raft.HeartbeatTimeout, c.Raft.ElectionTimeout, c.Raft.LeaderLeaseTimeout = 300*time.Millisecond, 300*time.Millisecond, 150*time.Millisecond
	c.JoinRetryMax, c.LeaveTimeout = 500*time.Millisecond, time.Second
	return &c
}

func chat(t *testing.T, addr, key string) int {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, "http://"+addr+"/v1/chat/completions",
		strings.NewReader(`{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}],"max_tokens":4}`))
	req.Header.Set("Authorization", "Bearer "+key)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

const adminToken = "test-admin-token-0123456789"

// TestClusterNodesShareConfig: three nodes form a cluster, the seed
// configuration reaches all of them, and a key created through the admin
// API on node 1 authenticates a request on node 3.
func TestClusterNodesShareConfig(t *testing.T) {
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
	var nodes []*node.Node
	defer func() {
		for _, n := range nodes {
			_ = n.Shutdown(context.Background())
		}
	}()
	var join []string
	for i, id := range []string{"n1", "n2", "n3"} {
		ac := admin.DefaultConfig()
		ac.Addr, ac.Tokens = "127.0.0.1:0", []admin.Token{{Name: "ops", Role: admin.RoleAdmin, Token: adminToken}}
		cfg := node.Config{APIAddr: "127.0.0.1:0", Logger: logger, Cluster: testClusterConfig(t, id, join), Admin: &ac}
		if i == 0 {
			cfg.SeedConfig = &seed
		}
		n := node.New(cfg)
		if err := n.Start(); err != nil {
			t.Fatal(err)
		}
		nodes = append(nodes, n)
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
	if code := chat(t, nodes[2].APIAddr(), "sk-two"); code != 401 {
		t.Fatalf("unknown key: %d", code)
	}
	start := time.Now()
	c := &admin.Client{Addr: nodes[0].AdminAddr(), Token: adminToken}
	// A leader change while the write commits (the test cluster's raft
	// timeouts are short, and a busy machine delays heartbeats) leaves its
	// outcome unknown; the key's plaintext is only shown once, so an
	// operator would create another key, and so does the test.
	var created *admin.CreatedKey
	for i := 2; ; i++ {
		k, err := c.CreateKey(context.Background(), admin.KeyRequest{ID: fmt.Sprintf("k%d", i), Tenant: "t"})
		var ae *admin.Error
		if errors.As(err, &ae) && ae.Status == http.StatusServiceUnavailable && time.Since(start) < 10*time.Second {
			t.Logf("key k%d: %v; creating another", i, err)
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		created = k
		break
	}
	waitUntil(t, 5*time.Second, "the new key on node 3", func() bool { return chat(t, nodes[2].APIAddr(), created.Key) == 200 })
	t.Logf("key written on node 1 served on node 3 after %v", time.Since(start))
}

func waitUntil(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		<-tick.C
	}
}

// applyConfig replaces the cluster's configuration, trying again while a
// leader change leaves the write's outcome unknown or finds no leader: the
// test clusters' raft timeouts are short and a busy machine delays
// heartbeats. Replacing the whole configuration is idempotent.
func applyConfig(t *testing.T, cl *cluster.Cluster, cfg state.Config) error {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	backoff := time.NewTicker(50 * time.Millisecond)
	defer backoff.Stop()
	for {
		_, err := cl.Apply(context.Background(), &fsm.ApplyConfig{Config: cfg})
		retry := errors.Is(err, cluster.ErrLeadershipLost) || errors.Is(err, cluster.ErrNotLeader) ||
			errors.Is(err, cluster.ErrNoLeader) || errors.Is(err, cluster.ErrTimeout)
		if !retry || time.Now().After(deadline) {
			return err
		}
		t.Logf("config write: %v; trying again", err)
		<-backoff.C
	}
}
