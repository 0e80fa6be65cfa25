package cluster

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/sluicehq/sluice/cluster/fsm"
	"github.com/sluicehq/sluice/cluster/state"
)

// The harness runs whole nodes in this process on 127.0.0.1 with ports
// from the kernel, data directories from t.TempDir and shortened timings.
// Set SLUICE_TEST_LOG=debug (or info, warn) to see the nodes' logs.

func testLogger() *slog.Logger {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(os.Getenv("SLUICE_TEST_LOG"))); err != nil || os.Getenv("SLUICE_TEST_LOG") == "" {
		return slog.New(slog.DiscardHandler)
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: lv}))
}

var clusterSeq atomic.Int64

// testConfig returns a node configuration with test timings.
func testConfig(id, dataDir, clusterName string) Config {
	cfg := DefaultConfig()
	cfg.NodeID = id
	cfg.DataDir = dataDir
	cfg.ClusterName = clusterName
	cfg.GossipAddr = "127.0.0.1:0"
	cfg.ClusterAddr = "127.0.0.1:0"
	cfg.APIAddr = "127.0.0.1:8080"
	cfg.AdminAddr = "127.0.0.1:8081"
	cfg.Region, cfg.Zone, cfg.Version = "test-region", "zone-"+id, "v0.0.0-test"
	cfg.BootstrapExpect = 3
	cfg.DeadCleanup = 1500 * time.Millisecond
	cfg.PromoteAfter = 300 * time.Millisecond
	cfg.ReconcileInterval = 200 * time.Millisecond
	cfg.ReconnectInterval = time.Second
	cfg.JoinRetryMax = 300 * time.Millisecond
	cfg.RPCTimeout = 2 * time.Second
	cfg.ApplyTimeout = 5 * time.Second
	cfg.LeaveTimeout = time.Second
	cfg.Gossip.ProbeInterval = 100 * time.Millisecond
	cfg.Gossip.ProbeTimeout = 50 * time.Millisecond
	cfg.Gossip.SuspicionMult = 3
	cfg.Gossip.SuspicionMaxTimeoutMult = 2
	cfg.Gossip.GossipInterval = 50 * time.Millisecond
	cfg.Gossip.PushPullInterval = 2 * time.Second
	cfg.Gossip.TCPTimeout = time.Second
	cfg.Raft.HeartbeatTimeout = 300 * time.Millisecond
	cfg.Raft.ElectionTimeout = 300 * time.Millisecond
	cfg.Raft.LeaderLeaseTimeout = 150 * time.Millisecond
	cfg.Raft.CommitTimeout = 10 * time.Millisecond
	cfg.Raft.WALSegmentSize = 1 << 20
	cfg.Logger = testLogger().With("test_node", id)
	return cfg
}

type testNode struct {
	id  string
	cfg Config
	c   *Cluster // nil while stopped
}

type testCluster struct {
	t     *testing.T
	name  string
	base  string
	mods  []func(*Config)
	nodes []*testNode
}

// newTestCluster returns an empty harness; mods apply to every node's
// config. Cleanup stops every node and checks for leaked goroutines.
func newTestCluster(t *testing.T, mods ...func(*Config)) *testCluster {
	t.Helper()
	tc := &testCluster{
		t:    t,
		name: fmt.Sprintf("test-%d-%s", clusterSeq.Add(1), strings.ReplaceAll(t.Name(), "/", "-")),
		base: t.TempDir(),
		mods: mods,
	}
	t.Cleanup(func() {
		tc.stopAll()
		verifyNoLeaks(t)
	})
	return tc
}

// verifyNoLeaks fails the test if goroutines are left over once every
// node stopped. memberlist's Shutdown does not wait for an in-flight probe,
// which exits by itself when its ack timer fires (one probe interval), so
// poll for a few seconds rather than goleak's default ~0.4 s; a real leak
// still fails.
func verifyNoLeaks(t *testing.T) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		err := goleak.Find(goleakOptions()...)
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Errorf("goroutines leaked: %v", err)
			return
		}
		<-tick.C
	}
}

func goleakOptions() []goleak.Option {
	return []goleak.Option{
		// Started by a package init in go-metrics' default in-memory sink,
		// shared by the whole process; not owned by any node.
		goleak.IgnoreTopFunction("github.com/hashicorp/go-metrics.(*InmemSignal).run"),
		goleak.IgnoreTopFunction("github.com/armon/go-metrics.(*InmemSignal).run"),
	}
}

// newNode configures a node (not started). It joins every node started so far.
func (tc *testCluster) newNode(id string, mods ...func(*Config)) *testNode {
	n := &testNode{id: id, cfg: tc.config(id, mods...)}
	tc.nodes = append(tc.nodes, n)
	return n
}

// config returns the configuration a node with this ID would get.
func (tc *testCluster) config(id string, mods ...func(*Config)) Config {
	cfg := testConfig(id, filepath.Join(tc.base, id), tc.name)
	for _, m := range tc.mods {
		m(&cfg)
	}
	for _, m := range mods {
		m(&cfg)
	}
	return cfg
}

// start starts a configured node, joining the running ones.
func (tc *testCluster) start(n *testNode) {
	tc.t.Helper()
	cfg := n.cfg
	if cfg.Join == nil {
		for _, o := range tc.running() {
			cfg.Join = append(cfg.Join, o.c.GossipAddr())
		}
	}
	c, err := New(cfg)
	if err != nil {
		tc.t.Fatalf("new %s: %v", n.id, err)
	}
	if err := c.Start(context.Background()); err != nil {
		tc.t.Fatalf("start %s: %v", n.id, err)
	}
	n.c = c
	// A restart reuses the same addresses, like a restarted process would.
	n.cfg.GossipAddr, n.cfg.ClusterAddr = c.GossipAddr(), c.ClusterAddr()
}

// startNodes configures and starts nodes with the given IDs, in order.
func (tc *testCluster) startNodes(ids ...string) []*testNode {
	var out []*testNode
	for _, id := range ids {
		n := tc.newNode(id)
		tc.start(n)
		out = append(out, n)
	}
	return out
}

// stop shuts a node down gracefully.
func (tc *testCluster) stop(n *testNode) {
	tc.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := n.c.Shutdown(ctx); err != nil {
		tc.t.Errorf("shutdown %s: %v", n.id, err)
	}
	n.c = nil
}

// kill stops a node as if its process died: no leave, no hand-over.
func (tc *testCluster) kill(n *testNode) {
	n.c.halt()
	n.c = nil
}

// restart starts a stopped node again from its data directory.
func (tc *testCluster) restart(n *testNode) {
	tc.t.Helper()
	n.cfg.Join = nil
	tc.start(n)
}

func (tc *testCluster) stopAll() {
	for _, n := range tc.nodes {
		if n.c != nil {
			tc.stop(n)
		}
	}
}

func (tc *testCluster) running() []*testNode {
	var out []*testNode
	for _, n := range tc.nodes {
		if n.c != nil {
			out = append(out, n)
		}
	}
	return out
}

func (tc *testCluster) node(id string) *testNode {
	for _, n := range tc.nodes {
		if n.id == id {
			return n
		}
	}
	tc.t.Fatalf("no node %s", id)
	return nil
}

// waitFor polls cond until it returns nil or the timeout passes.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s: %v", timeout, what, err)
		}
		<-tick.C
	}
}

// waitLeader waits until every running node sees the same leader in the
// same term, and returns it.
func (tc *testCluster) waitLeader(timeout time.Duration) *testNode {
	tc.t.Helper()
	var leader *testNode
	waitFor(tc.t, timeout, "a leader seen by every node", func() error {
		leader = nil
		var id string
		var term uint64
		for i, n := range tc.running() {
			st := n.c.Status()
			if st.LeaderID == "" {
				return fmt.Errorf("%s sees no leader", n.id)
			}
			if i == 0 {
				id, term = st.LeaderID, st.Term
			} else if st.LeaderID != id || st.Term != term {
				return fmt.Errorf("%s sees leader %s term %d, others %s term %d", n.id, st.LeaderID, st.Term, id, term)
			}
			if st.RaftState == "Leader" {
				leader = n
			}
		}
		if leader == nil || leader.id != id {
			return fmt.Errorf("leader %s is not running", id)
		}
		return nil
	})
	return leader
}

// waitServers waits until every running node's raft configuration lists
// exactly the given voters and non-voters.
func (tc *testCluster) waitServers(timeout time.Duration, voters, nonvoters []string) {
	tc.t.Helper()
	slices.Sort(voters)
	slices.Sort(nonvoters)
	waitFor(tc.t, timeout, fmt.Sprintf("voters %v non-voters %v", voters, nonvoters), func() error {
		for _, n := range tc.running() {
			var v, nv []string
			for _, s := range n.c.Status().Servers {
				if s.Suffrage == "voter" {
					v = append(v, s.ID)
				} else {
					nv = append(nv, s.ID)
				}
			}
			slices.Sort(v)
			slices.Sort(nv)
			if !slices.Equal(v, voters) || !slices.Equal(nv, nonvoters) {
				return fmt.Errorf("%s has voters %v non-voters %v", n.id, v, nv)
			}
		}
		return nil
	})
}

// waitVersion waits until every running node's snapshot has version >= v.
func (tc *testCluster) waitVersion(timeout time.Duration, v uint64) {
	tc.t.Helper()
	waitFor(tc.t, timeout, fmt.Sprintf("config version %d everywhere", v), func() error {
		for _, n := range tc.running() {
			if got := n.c.Snapshot().Version; got < v {
				return fmt.Errorf("%s at version %d", n.id, got)
			}
		}
		return nil
	})
}

// waitMembers waits until every running node sees the IDs with state st.
func (tc *testCluster) waitMembers(timeout time.Duration, st MemberState, ids ...string) {
	tc.t.Helper()
	waitFor(tc.t, timeout, fmt.Sprintf("members %v %s everywhere", ids, st), func() error {
		for _, n := range tc.running() {
			seen := map[string]MemberState{}
			for _, m := range n.c.Members() {
				seen[m.ID] = m.State
			}
			for _, id := range ids {
				if seen[id] != st {
					return fmt.Errorf("%s sees %s as %q", n.id, id, seen[id])
				}
			}
		}
		return nil
	})
}

func ids(nodes []*testNode) []string {
	var out []string
	for _, n := range nodes {
		out = append(out, n.id)
	}
	return out
}

// sampleConfig is a small valid configuration.
func sampleConfig() state.Config {
	return state.Config{
		Providers:   []state.Provider{{Name: "az", Kind: state.KindAzure, Endpoint: "https://az.example.com", APIKey: "env:AZ_KEY"}},
		Deployments: []state.Deployment{{Name: "gpt4o-east", Provider: "az", Upstream: "gpt-4o", TPM: 240000, RPM: 1440}},
		Models:      []state.Model{{Name: "gpt-4o", Deployments: []string{"gpt4o-east"}}},
		Tenants:     []state.Tenant{{Name: "team-a"}},
		Keys:        []state.Key{{ID: "k1", Hash: state.HashKey("sk-team-a"), Tenant: "team-a"}},
	}
}

// applyOK applies cmd, which the tests keep idempotent (upserts of the
// same value), so a write whose outcome is unknown because an election
// under load interrupted it is simply applied again.
func applyOK(t *testing.T, c *Cluster, cmd fsm.Command) fsm.Result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for {
		res, err := c.Apply(ctx, cmd)
		if err == nil {
			return res
		}
		if ctx.Err() != nil || !(errors.Is(err, ErrLeadershipLost) || errors.Is(err, ErrNoLeader) || errors.Is(err, ErrNotLeader)) {
			t.Fatalf("apply %T on %s: %v", cmd, c.ID(), err)
		}
		t.Logf("apply %T on %s: %v; applying again", cmd, c.ID(), err)
		select {
		case <-ctx.Done():
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// freePort returns a port free for both TCP and UDP on 127.0.0.1, for
// tests that must know addresses before nodes start.
func freePort(t *testing.T) int {
	t.Helper()
	for range 20 {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		port := ln.Addr().(*net.TCPAddr).Port
		pc, err := net.ListenPacket("udp", "127.0.0.1:"+strconv.Itoa(port))
		_ = ln.Close()
		if err == nil {
			_ = pc.Close()
			return port
		}
	}
	t.Fatal("no free port")
	return 0
}

func isErr(err error, targets ...error) bool {
	for _, t := range targets {
		if errors.Is(err, t) {
			return true
		}
	}
	return false
}
