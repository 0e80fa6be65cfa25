package cluster

import (
	"context"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/hashicorp/raft"
)

// Raft and membership metrics, registered in Config.Metrics when it is
// set (one set per node; never the process-wide default set, so several
// nodes in one process keep their own numbers). hashicorp/go-metrics is
// deliberately not used: every value is read from raft's and the member
// table's own accessors when /metrics is scraped, so nothing is sampled in
// the background and a scrape always sees the current state.
//
//   - sluice_raft_state{state}: 1 for the node's current raft state
//     (follower, candidate, leader, shutdown), 0 for the others.
//   - sluice_raft_leader: 1 on the leader. Summed over the cluster it must
//     be exactly 1.
//   - sluice_raft_term, sluice_raft_last_index, sluice_raft_commit_index,
//     sluice_raft_applied_index: the log as this node sees it.
//   - sluice_raft_last_contact_seconds: on a follower, time since it last
//     heard from the leader (0 on the leader).
//   - sluice_raft_servers{suffrage}: servers in the raft configuration,
//     voters and non-voters.
//   - sluice_cluster_members{state}: gossip members by state (alive,
//     suspect, dead, left), this node included.
//   - sluice_raft_leader_changes_total: times this node saw the leader
//     change to a new node (counted by a raft observer).

// metricRaftStates are the values of sluice_raft_state's state label.
var metricRaftStates = [...]raft.RaftState{raft.Follower, raft.Candidate, raft.Leader, raft.Shutdown}

// metricMemberStates are the values of sluice_cluster_members' label.
var metricMemberStates = [...]MemberState{StateAlive, StateSuspect, StateDead, StateLeft}

// startMetrics registers the node's metrics and starts the observer that
// counts leader changes. It runs in Start once raft and gossip exist; the
// observer goroutine is stopped with the other loops at shutdown.
func (c *Cluster) startMetrics() {
	set := c.cfg.Metrics
	if set == nil {
		return
	}
	changes := set.GetOrCreateCounter("sluice_raft_leader_changes_total")
	r := c.raft
	set.RegisterMetricsWriter(func(w io.Writer) { c.writeMetrics(w, r) })

	ch := make(chan raft.Observation, 16)
	obs := raft.NewObserver(ch, false, func(o *raft.Observation) bool {
		_, ok := o.Data.(raft.LeaderObservation)
		return ok
	})
	r.RegisterObserver(obs)
	c.goLoop(func(ctx context.Context) {
		defer r.DeregisterObserver(obs)
		var last raft.ServerID
		for {
			select {
			case <-ctx.Done():
				return
			case o := <-ch:
				lo, _ := o.Data.(raft.LeaderObservation)
				if lo.LeaderID != "" && lo.LeaderID != last {
					last = lo.LeaderID
					changes.Inc()
				}
			}
		}
	})
}

// writeMetrics writes the scrape-time gauges. It is safe after Shutdown:
// raft then reports the Shutdown state and its last indices.
func (c *Cluster) writeMetrics(w io.Writer, r *raft.Raft) {
	state := r.State()
	for _, s := range metricRaftStates {
		fmt.Fprintf(w, "sluice_raft_state{state=%q} %d\n", strings.ToLower(s.String()), b2i(s == state))
	}
	fmt.Fprintf(w, "sluice_raft_leader %d\n", b2i(state == raft.Leader))
	fmt.Fprintf(w, "sluice_raft_term %d\n", r.CurrentTerm())
	fmt.Fprintf(w, "sluice_raft_last_index %d\n", r.LastIndex())
	fmt.Fprintf(w, "sluice_raft_commit_index %d\n", r.CommitIndex())
	fmt.Fprintf(w, "sluice_raft_applied_index %d\n", r.AppliedIndex())
	contact := 0.0
	if state == raft.Follower {
		if lc := r.LastContact(); !lc.IsZero() {
			contact = time.Since(lc).Seconds()
		}
	}
	fmt.Fprintf(w, "sluice_raft_last_contact_seconds %g\n", contact)
	var voters, nonVoters int
	if f := r.GetConfiguration(); f.Error() == nil {
		for _, s := range f.Configuration().Servers {
			if s.Suffrage == raft.Voter {
				voters++
			} else {
				nonVoters++
			}
		}
	}
	fmt.Fprintf(w, "sluice_raft_servers{suffrage=\"voter\"} %d\n", voters)
	fmt.Fprintf(w, "sluice_raft_servers{suffrage=\"nonvoter\"} %d\n", nonVoters)
	counts := map[MemberState]int{}
	for _, m := range c.members.list() {
		counts[m.State]++
	}
	for _, s := range metricMemberStates {
		fmt.Fprintf(w, "sluice_cluster_members{state=%q} %d\n", s, counts[s])
	}
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}
