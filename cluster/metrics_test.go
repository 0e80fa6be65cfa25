package cluster

import (
	"bytes"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/VictoriaMetrics/metrics"
)

// scrape parses a set's exposition into series -> value.
func scrape(t *testing.T, s *metrics.Set) map[string]float64 {
	t.Helper()
	var b bytes.Buffer
	s.WritePrometheus(&b)
	out := map[string]float64{}
	for _, l := range strings.Split(b.String(), "\n") {
		if l == "" || strings.HasPrefix(l, "#") {
			continue
		}
		i := strings.LastIndexByte(l, ' ')
		v, err := strconv.ParseFloat(l[i+1:], 64)
		if err != nil {
			t.Fatalf("bad sample line %q: %v", l, err)
		}
		if _, dup := out[l[:i]]; dup {
			t.Fatalf("series %s exported twice", l[:i])
		}
		out[l[:i]] = v
	}
	return out
}

// TestMetricsFollowRaftAndGossip: three nodes, each with its own set.
// Exactly one reports leader; every node counts 3 voters and 3 alive
// members and its indices agree with raft's; once the leader dies the
// survivors elect another, count the leader change and see one member
// dead, and the dead node's set still scrapes.
func TestMetricsFollowRaftAndGossip(t *testing.T) {
	tc := newTestCluster(t)
	sets := map[string]*metrics.Set{}
	for _, id := range []string{"n1", "n2", "n3"} {
		sets[id] = metrics.NewSet()
		tc.start(tc.newNode(id, func(c *Config) { c.Metrics = sets[id] }))
	}
	leader := tc.waitLeader(15 * time.Second)
	tc.waitServers(15*time.Second, []string{"n1", "n2", "n3"}, nil)
	tc.waitMembers(15*time.Second, StateAlive, "n1", "n2", "n3")

	// check sums sluice_raft_leader over running nodes and checks each
	// node's gauges against its own state.
	check := func(running []*testNode, voters, alive, dead int) error {
		leaders := 0.0
		for _, n := range running {
			m := scrape(t, sets[n.id])
			leaders += m["sluice_raft_leader"]
			st := n.c.Status()
			for _, tc := range []struct {
				series string
				want   float64
			}{
				{`sluice_raft_state{state="` + strings.ToLower(st.RaftState) + `"}`, 1},
				{`sluice_raft_servers{suffrage="voter"}`, float64(voters)},
				{`sluice_cluster_members{state="alive"}`, float64(alive)},
				{`sluice_cluster_members{state="dead"}`, float64(dead)},
				{`sluice_raft_term`, float64(st.Term)},
			} {
				if got, ok := m[tc.series]; !ok || got != tc.want {
					return fmt.Errorf("%s: %s = %v (exported %v), want %v", n.id, tc.series, got, ok, tc.want)
				}
			}
			if m["sluice_raft_applied_index"] > m["sluice_raft_last_index"] || m["sluice_raft_commit_index"] == 0 {
				return fmt.Errorf("%s: indices applied %v commit %v last %v", n.id,
					m["sluice_raft_applied_index"], m["sluice_raft_commit_index"], m["sluice_raft_last_index"])
			}
			if m["sluice_raft_leader_changes_total"] < 1 {
				return fmt.Errorf("%s: no leader change counted", n.id)
			}
		}
		if leaders != 1 {
			return fmt.Errorf("%v nodes report leader", leaders)
		}
		return nil
	}
	waitFor(t, 10*time.Second, "metrics of a healthy cluster", func() error { return check(tc.running(), 3, 3, 0) })

	before := map[string]float64{}
	for _, n := range tc.running() {
		before[n.id] = scrape(t, sets[n.id])["sluice_raft_leader_changes_total"]
	}
	dead := leader.id
	tc.kill(leader)
	tc.waitLeader(15 * time.Second)
	var survivors []string
	for _, n := range tc.running() {
		survivors = append(survivors, n.id)
	}
	// The leader removes the dead voter after DeadCleanup.
	tc.waitServers(15*time.Second, survivors, nil)
	waitFor(t, 15*time.Second, "metrics after the leader died", func() error {
		if err := check(tc.running(), 2, 2, 1); err != nil {
			return err
		}
		for _, n := range tc.running() {
			if got := scrape(t, sets[n.id])["sluice_raft_leader_changes_total"]; got <= before[n.id] {
				return fmt.Errorf("%s: leader changes %v, was %v", n.id, got, before[n.id])
			}
		}
		return nil
	})
	if m := scrape(t, sets[dead]); m[`sluice_raft_state{state="shutdown"}`] != 1 || m["sluice_raft_leader"] != 0 {
		t.Fatalf("stopped node exports state %v leader %v", m[`sluice_raft_state{state="shutdown"}`], m["sluice_raft_leader"])
	}
}
