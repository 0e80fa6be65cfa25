package cluster

import (
	"context"
	"fmt"
	"time"

	"github.com/hashicorp/raft"
)

// monitorLeadership runs the leader loop while this node leads. raft's
// LeaderCh never blocks raft and may coalesce transitions, so each signal
// is checked against the current state.
func (c *Cluster) monitorLeadership(ctx context.Context) {
	var run *leaderRun
	stopLeader := func() {
		if run != nil {
			run.cancel()
			<-run.done
			run = nil
		}
	}
	defer stopLeader()
	for {
		select {
		case <-ctx.Done():
			return
		case <-c.raft.LeaderCh():
		}
		leading := c.raft.State() == raft.Leader
		switch {
		case leading && run == nil:
			c.logger.Info("gained leadership", "term", c.raft.CurrentTerm())
			run = c.startLeaderLoop(ctx)
		case !leading && run != nil:
			c.logger.Info("lost leadership")
			stopLeader()
		}
	}
}

// leaderRun is a running leader loop.
type leaderRun struct {
	cancel context.CancelFunc
	done   chan struct{}
}

func (c *Cluster) startLeaderLoop(ctx context.Context) *leaderRun {
	lctx, cancel := context.WithCancel(ctx)
	run := &leaderRun{cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(run.done)
		c.leaderLoop(lctx)
	}()
	return run
}

// leaderLoop reconciles gossip membership into the raft configuration on
// every membership event and periodically (nomad's leaderLoop).
func (c *Cluster) leaderLoop(ctx context.Context) {
	// Apply everything from earlier terms first, so decisions see the
	// latest state.
	for {
		err := c.raft.Barrier(c.cfg.ApplyTimeout).Error()
		if err == nil {
			break
		}
		c.logger.Warn("leader barrier failed", "error", err)
		if !sleepCtx(ctx, c.cfg.Raft.HeartbeatTimeout) {
			return
		}
	}
	r := &reconciler{c: c, missing: map[raft.ServerID]time.Time{}}
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-c.reconcileCh:
		case <-timer.C:
		}
		next := r.reconcile(ctx)
		if !timer.Stop() {
			select {
			case <-timer.C:
			default:
			}
		}
		timer.Reset(min(next, c.cfg.ReconcileInterval))
	}
}

// reconciler holds the leader's memory between reconciles.
type reconciler struct {
	c *Cluster
	// missing records when a raft server absent from gossip was first
	// noticed, so it can be removed after DeadCleanup like a dead member.
	missing map[raft.ServerID]time.Time
}

// reconcile makes one pass and returns when the next pass is due for a
// pending removal or promotion.
func (r *reconciler) reconcile(ctx context.Context) time.Duration {
	c := r.c
	next := c.cfg.ReconcileInterval
	due := func(d time.Duration) {
		if d > 0 && d < next {
			next = d
		}
	}
	f := c.raft.GetConfiguration()
	if err := f.Error(); err != nil {
		c.logger.Warn("reconcile: raft configuration unavailable", "error", err)
		return next
	}
	servers := f.Configuration().Servers
	byID := map[raft.ServerID]raft.Server{}
	voters := 0
	for _, s := range servers {
		byID[s.ID] = s
		if s.Suffrage == raft.Voter {
			voters++
		}
	}
	members := c.members.list()
	now := time.Now()

	// Add alive members, fix changed addresses, promote stable non-voters.
	for _, m := range members {
		if ctx.Err() != nil {
			return next
		}
		if !m.alive() {
			continue
		}
		id, addr := raft.ServerID(m.ID), raft.ServerAddress(m.ClusterAddr)
		delete(r.missing, id)
		s, in := byID[id]
		switch {
		case !in:
			if voters < c.cfg.MaxVoters {
				if r.change("add voter", m.ID, c.raft.AddVoter(id, addr, 0, c.cfg.ApplyTimeout)) {
					voters++
				}
			} else {
				r.change("add non-voter", m.ID, c.raft.AddNonvoter(id, addr, 0, c.cfg.ApplyTimeout))
			}
		case s.Address != addr:
			// Adding an existing server with a new address updates it.
			if s.Suffrage == raft.Voter {
				r.change("update voter address", m.ID, c.raft.AddVoter(id, addr, 0, c.cfg.ApplyTimeout))
			} else {
				r.change("update non-voter address", m.ID, c.raft.AddNonvoter(id, addr, 0, c.cfg.ApplyTimeout))
			}
		case s.Suffrage != raft.Voter && voters < c.cfg.MaxVoters:
			if wait := c.cfg.PromoteAfter - now.Sub(m.Since); wait > 0 {
				due(wait)
			} else if r.change("promote to voter", m.ID, c.raft.AddVoter(id, addr, 0, c.cfg.ApplyTimeout)) {
				voters++
			}
		}
	}

	// Remove servers dead, left or unknown for longer than DeadCleanup,
	// never dropping below an alive quorum.
	state := map[string]Member{}
	for _, m := range members {
		state[m.ID] = m
	}
	for _, s := range servers {
		if ctx.Err() != nil {
			return next
		}
		if string(s.ID) == c.id {
			continue
		}
		m, known := state[string(s.ID)]
		if known && m.alive() {
			continue
		}
		since := m.Since
		if !known {
			if _, ok := r.missing[s.ID]; !ok {
				r.missing[s.ID] = now
			}
			since = r.missing[s.ID]
		}
		if wait := c.cfg.DeadCleanup - now.Sub(since); wait > 0 {
			due(wait)
			continue
		}
		if err := c.quorumAfterRemoval(s.ID); err != nil {
			c.logger.Warn("not removing dead server", "server", s.ID, "error", err)
			continue
		}
		if r.change("remove dead server", string(s.ID), c.raft.RemoveServer(s.ID, 0, c.cfg.ApplyTimeout)) {
			delete(r.missing, s.ID)
		}
	}
	return next
}

func (r *reconciler) change(what, id string, f raft.IndexFuture) bool {
	if err := f.Error(); err != nil {
		r.c.logger.Warn("raft membership change failed", "change", what, "server", id, "error", err)
		return false
	}
	r.c.logger.Info("raft membership changed", "change", what, "server", id, "index", f.Index())
	return true
}

// quorumAfterRemoval refuses removing a server when the voters that are
// alive in gossip would be fewer than a quorum of the new configuration.
func (c *Cluster) quorumAfterRemoval(id raft.ServerID) error {
	f := c.raft.GetConfiguration()
	if err := f.Error(); err != nil {
		return mapRaftErr(err)
	}
	voters, alive := 0, 0
	for _, s := range f.Configuration().Servers {
		if s.ID == id || s.Suffrage != raft.Voter {
			continue
		}
		voters++
		if string(s.ID) == c.id {
			alive++
		} else if m, ok := c.members.get(string(s.ID)); ok && m.alive() {
			alive++
		}
	}
	if voters == 0 || alive < voters/2+1 {
		return fmt.Errorf("%w: %d of %d remaining voters alive", ErrQuorum, alive, voters)
	}
	return nil
}

// removePeerLocal removes a raft peer on the leader, for an operator.
func (c *Cluster) removePeerLocal(ctx context.Context, id string) error {
	if c.raft.State() != raft.Leader {
		return ErrNotLeader
	}
	f := c.raft.GetConfiguration()
	if err := f.Error(); err != nil {
		return mapRaftErr(err)
	}
	found := false
	for _, s := range f.Configuration().Servers {
		found = found || string(s.ID) == id
	}
	if !found {
		return fmt.Errorf("%w: %s is not a raft peer", ErrUnknownMember, id)
	}
	if m, ok := c.members.get(id); ok && m.alive() {
		return fmt.Errorf("%w: %s", ErrMemberAlive, id)
	}
	if err := c.quorumAfterRemoval(raft.ServerID(id)); err != nil {
		return err
	}
	timeout := c.cfg.ApplyTimeout
	if d, ok := ctx.Deadline(); ok {
		timeout = time.Until(d)
	}
	return mapRaftErr(c.raft.RemoveServer(raft.ServerID(id), 0, timeout).Error())
}
