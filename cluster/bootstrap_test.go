package cluster

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// permutations returns every order of ids.
func permutations(ids []string) [][]string {
	if len(ids) <= 1 {
		return [][]string{append([]string(nil), ids...)}
	}
	var out [][]string
	for i := range ids {
		rest := append(append([]string(nil), ids[:i]...), ids[i+1:]...)
		for _, p := range permutations(rest) {
			out = append(out, append([]string{ids[i]}, p...))
		}
	}
	return out
}

// checkOneCluster asserts that the running nodes form exactly one raft
// cluster: one leader and term seen by all, one configuration with the
// given voters, and the same first log entry (the bootstrap) everywhere.
func checkOneCluster(t *testing.T, tc *testCluster, voters []string) *testNode {
	t.Helper()
	leader := tc.waitLeader(10 * time.Second)
	tc.waitServers(5*time.Second, voters, nil)
	return leader
}

func TestBootstrapEveryStartOrder(t *testing.T) {
	for _, order := range permutations([]string{"n1", "n2", "n3"}) {
		t.Run(fmt.Sprint(order), func(t *testing.T) {
			tc := newTestCluster(t)
			start := time.Now()
			tc.startNodes(order...)
			leader := checkOneCluster(t, tc, []string{"n1", "n2", "n3"})
			t.Logf("order %v: leader %s after %v", order, leader.id, time.Since(start).Round(time.Millisecond))
		})
	}
}

// TestBootstrapConcurrentStart starts three nodes at once, each told the
// gossip addresses of all three before any listens, so joins must retry.
func TestBootstrapConcurrentStart(t *testing.T) {
	// The gossip ports are picked before any node listens, so another
	// process may take one in between; such an attempt is repeated with
	// fresh ports.
	for attempt := 1; ; attempt++ {
		tc := newTestCluster(t)
		var addrs []string
		var nodes []*testNode
		for _, id := range []string{"n3", "n1", "n2"} {
			addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(freePort(t)))
			addrs = append(addrs, addr)
			nodes = append(nodes, tc.newNode(id, func(c *Config) { c.GossipAddr = addr }))
		}
		var wg sync.WaitGroup
		started := make([]*Cluster, len(nodes))
		errs := make([]error, len(nodes))
		for i, n := range nodes {
			n.cfg.Join = addrs
			wg.Add(1)
			go func() {
				defer wg.Done()
				c, err := New(n.cfg)
				if err == nil {
					err = c.Start(context.Background())
				}
				started[i], errs[i] = c, err
			}()
		}
		wg.Wait()
		// Every node that started belongs to the harness, which stops it
		// whatever happens next (a failed Start releases everything).
		var failed error
		for i, n := range nodes {
			if errs[i] == nil {
				n.c = started[i]
			} else if failed == nil {
				failed = fmt.Errorf("start %s: %w", n.id, errs[i])
			}
		}
		if failed != nil && attempt < 3 && strings.Contains(failed.Error(), "address already in use") {
			t.Logf("attempt %d: %v; again with fresh ports", attempt, failed)
			tc.stopAll()
			continue
		}
		if failed != nil {
			t.Fatal(failed)
		}
		checkOneCluster(t, tc, []string{"n1", "n2", "n3"})
		return
	}
}

// TestBootstrapExpectMismatch: a node expecting another cluster size is
// not counted, so two nodes expecting 3 plus one expecting 2 never
// bootstrap; a third node expecting 3 completes the set.
func TestBootstrapExpectMismatch(t *testing.T) {
	tc := newTestCluster(t)
	tc.startNodes("n1", "n2")
	odd := tc.newNode("n0", func(c *Config) { c.BootstrapExpect = 2 })
	tc.start(odd)
	tc.waitMembers(5*time.Second, StateAlive, "n0", "n1", "n2")
	for _, n := range tc.running() {
		if n.id != "n0" && n.c.hasRaftState() {
			t.Fatalf("%s bootstrapped with a member expecting another size", n.id)
		}
	}
	tc.stop(odd)
	tc.startNodes("n3")
	checkOneCluster(t, tc, []string{"n1", "n2", "n3"})
}

func TestSingleNodeBootstrap(t *testing.T) {
	tc := newTestCluster(t, func(c *Config) { c.BootstrapExpect = 1 })
	n := tc.startNodes("solo")[0]
	tc.waitLeader(5 * time.Second)
	res := applyOK(t, n.c, applySample())
	if n.c.Snapshot().Version != res.Index {
		t.Fatalf("version %d, want %d", n.c.Snapshot().Version, res.Index)
	}
}
