package cluster

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/hashicorp/raft"

	"github.com/sluicehq/sluice/cluster/fsm"
	"github.com/sluicehq/sluice/cluster/state"
)

// ID returns the node ID (valid after Start).
func (c *Cluster) ID() string { return c.id }

// GossipAddr returns the advertised gossip address (valid after Start).
func (c *Cluster) GossipAddr() string { return c.gossipAdvertise }

// ClusterAddr returns the advertised cluster (raft and RPC) address
// (valid after Start).
func (c *Cluster) ClusterAddr() string { return c.clusterAdvert }

// Snapshot returns the current configuration snapshot: one atomic load,
// never nil (version 0 and empty before the first write is applied).
func (c *Cluster) Snapshot() *state.Snapshot { return c.fsm.State() }

// Subscribe returns a channel that receives the current snapshot at once
// and each new one after every accepted write. A slow receiver only misses
// intermediate snapshots, never the latest. Call cancel when done.
func (c *Cluster) Subscribe() (snapshots <-chan *state.Snapshot, cancel func()) {
	return c.fsm.Subscribe()
}

// Config returns the replicated configuration as written (defaults not
// applied), from this node's state.
func (c *Cluster) Config() state.Config { return c.fsm.Config() }

// AuditLog returns the replicated audit records, oldest first.
func (c *Cluster) AuditLog() []fsm.AuditEntry { return c.fsm.AuditLog() }

// Apply commits a command through raft from any node: a follower forwards
// it to the leader. On success the write is visible in this node's
// Snapshot before Apply returns. cmd's header is stamped with the current
// time, and this node as actor, where unset.
//
// Errors, by what they say about the write:
//   - not applied: the fsm's domain errors (ErrNotFound, ErrExists,
//     ErrConflict, ErrInvalid with the fields named), and ErrNoLeader or
//     ErrNotLeader (no leader took the write before ctx ended);
//   - outcome unknown: ErrLeadershipLost, ErrTimeout (the response may have
//     been lost after the commit), ErrShutdown and transport errors. Retry
//     only commands that are idempotent (upserts, deletes tolerant of
//     ErrNotFound, batches with IDs).
func (c *Cluster) Apply(ctx context.Context, cmd fsm.Command) (fsm.Result, error) {
	if c.closed.Load() || c.raft == nil {
		return fsm.Result{}, ErrShutdown
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, c.cfg.ApplyTimeout)
		defer cancel()
	}
	fsm.Stamp(cmd, time.Now(), "node:"+c.id)
	b, err := fsm.Encode(cmd)
	if err != nil {
		return fsm.Result{}, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	var res fsm.Result
	err = c.onLeader(ctx, opApply, applyRequest{Cmd: b}, &res, func() error {
		var err error
		res, err = c.applyLocal(ctx, b)
		return err
	})
	if err != nil {
		return res, err
	}
	if err := c.fsm.WaitApplied(ctx, res.Index); err != nil {
		return res, fmt.Errorf("write %d committed but not yet applied here: %w", res.Index, mapCtxErr(err))
	}
	return res, nil
}

// applyLocal appends an encoded command on the leader and waits for its
// result from the leader's FSM.
func (c *Cluster) applyLocal(ctx context.Context, b []byte) (fsm.Result, error) {
	if err := c.fsm.Check(b); err != nil {
		return fsm.Result{}, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	f := c.raft.Apply(b, remaining(ctx))
	if err := f.Error(); err != nil {
		return fsm.Result{}, mapRaftErr(err)
	}
	resp, ok := f.Response().(fsm.Response)
	if !ok {
		return fsm.Result{}, fmt.Errorf("unexpected apply response %T", f.Response())
	}
	if resp.Err != nil {
		return fsm.Result{Index: f.Index()}, resp.Err
	}
	return resp.Result, nil
}

// onLeader runs local when this node leads, else sends op to the leader.
// It retries while there is no leader, the leader moved, or the request
// could not be sent (none of which can have applied anything), until ctx
// ends.
func (c *Cluster) onLeader(ctx context.Context, op string, req, resp any, local func() error) error {
	backoff := 10 * time.Millisecond
	for {
		if c.closed.Load() {
			return ErrShutdown
		}
		var err error
		addr, id := c.raft.LeaderWithID()
		switch {
		case c.raft.State() == raft.Leader:
			err = local()
		case id == "" || string(id) == c.id:
			err = ErrNoLeader
		default:
			target := string(addr)
			if m, ok := c.members.get(string(id)); ok && m.ClusterAddr != "" {
				target = m.ClusterAddr
			}
			err = c.call(ctx, target, op, req, resp)
		}
		if err == nil {
			return nil
		}
		retry := errors.Is(err, ErrNotLeader) || errors.Is(err, ErrNoLeader) || errors.Is(err, errNotSent)
		if !retry {
			return err
		}
		if ctx.Err() != nil || !sleepCtx(ctx, backoff) {
			// Nothing was applied: report it as ErrNoLeader (or the
			// leader's refusal), not as a timeout of unknown outcome.
			if errors.Is(err, ErrNoLeader) || errors.Is(err, ErrNotLeader) {
				return fmt.Errorf("%w (%w)", err, ctx.Err())
			}
			return fmt.Errorf("%w: %w (%w)", ErrNoLeader, err, ctx.Err())
		}
		backoff = min(backoff*2, 200*time.Millisecond)
	}
}

// readIndexLocal returns, on the leader, an index that every write
// completed before the call has reached: a barrier commits through a
// quorum (so this node still leads) and waits until the FSM applied
// everything before it.
func (c *Cluster) readIndexLocal(ctx context.Context) (uint64, error) {
	if c.raft.State() != raft.Leader {
		return 0, ErrNotLeader
	}
	if err := c.raft.Barrier(remaining(ctx)).Error(); err != nil {
		return 0, mapRaftErr(err)
	}
	return c.fsm.AppliedIndex(), nil
}

// Barrier waits until this node has applied every write that completed
// anywhere in the cluster before the call. After it returns, Snapshot() is
// at least as new as any write acknowledged before Barrier was called.
func (c *Cluster) Barrier(ctx context.Context) error {
	if c.closed.Load() || c.raft == nil {
		return ErrShutdown
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, c.cfg.ApplyTimeout)
		defer cancel()
	}
	var idx indexResponse
	err := c.onLeader(ctx, opReadIndex, struct{}{}, &idx, func() error {
		var err error
		idx.Index, err = c.readIndexLocal(ctx)
		return err
	})
	if err != nil {
		return err
	}
	if err := c.fsm.WaitApplied(ctx, idx.Index); err != nil {
		return mapCtxErr(err)
	}
	return nil
}

// Read returns the configuration snapshot. Without consistent, it is this
// node's current one (what the request path uses). With consistent, it
// first waits for a Barrier, so the result reflects every write
// acknowledged before the call (a linearizable read, served locally).
func (c *Cluster) Read(ctx context.Context, consistent bool) (*state.Snapshot, error) {
	if consistent {
		if err := c.Barrier(ctx); err != nil {
			return nil, err
		}
	}
	return c.fsm.State(), nil
}

// RaftServer is one server of the raft configuration.
type RaftServer struct {
	ID       string      `json:"id"`
	Address  string      `json:"address"`
	Suffrage string      `json:"suffrage"` // voter, nonvoter, staging
	State    MemberState `json:"state,omitempty"`
}

// Status describes this node's view of raft.
type Status struct {
	ID            string       `json:"id"`
	Name          string       `json:"name"`
	RaftState     string       `json:"raft_state"` // Leader, Follower, Candidate, Shutdown
	LeaderID      string       `json:"leader_id,omitempty"`
	LeaderAddr    string       `json:"leader_addr,omitempty"`
	Term          uint64       `json:"term"`
	LastIndex     uint64       `json:"last_index"`
	CommitIndex   uint64       `json:"commit_index"`
	AppliedIndex  uint64       `json:"applied_index"`
	FSMIndex      uint64       `json:"fsm_index"`
	ConfigVersion uint64       `json:"config_version"`
	LastContact   time.Time    `json:"last_contact,omitzero"`
	Servers       []RaftServer `json:"servers"`
	Voters        int          `json:"voters"`
}

// Status returns this node's raft status.
func (c *Cluster) Status() Status {
	st := Status{ID: c.id, Name: c.cfg.NodeName, FSMIndex: c.fsm.AppliedIndex(), ConfigVersion: c.fsm.State().Version}
	if c.raft == nil {
		st.RaftState = raft.Shutdown.String()
		return st
	}
	addr, id := c.raft.LeaderWithID()
	st.RaftState = c.raft.State().String()
	st.LeaderID, st.LeaderAddr = string(id), string(addr)
	st.Term = c.raft.CurrentTerm()
	st.LastIndex = c.raft.LastIndex()
	st.CommitIndex = c.raft.CommitIndex()
	st.AppliedIndex = c.raft.AppliedIndex()
	st.LastContact = c.raft.LastContact()
	if f := c.raft.GetConfiguration(); f.Error() == nil {
		for _, s := range f.Configuration().Servers {
			rs := RaftServer{ID: string(s.ID), Address: string(s.Address), Suffrage: suffrage(s.Suffrage)}
			if m, ok := c.members.get(rs.ID); ok {
				rs.State = m.State
			}
			if s.Suffrage == raft.Voter {
				st.Voters++
			}
			st.Servers = append(st.Servers, rs)
		}
	}
	return st
}

func suffrage(s raft.ServerSuffrage) string {
	switch s {
	case raft.Voter:
		return "voter"
	case raft.Nonvoter:
		return "nonvoter"
	}
	return "staging"
}

// Leader returns the current leader as a member (its addresses and
// metadata), and false when no leader is known.
func (c *Cluster) Leader() (Member, bool) {
	if c.raft == nil {
		return Member{}, false
	}
	addr, id := c.raft.LeaderWithID()
	if id == "" {
		return Member{}, false
	}
	if m, ok := c.members.get(string(id)); ok {
		return m, true
	}
	return Member{NodeMeta: NodeMeta{ID: string(id), ClusterAddr: string(addr)}}, true
}

// IsLeader reports whether this node is the raft leader.
func (c *Cluster) IsLeader() bool { return c.raft != nil && c.raft.State() == raft.Leader }

// RemovePeer removes a server from the raft configuration (forwarded to
// the leader). It refuses a member alive in gossip (ErrMemberAlive) and a
// removal that would leave no alive quorum (ErrQuorum). The leader also
// does this by itself after DeadCleanup.
func (c *Cluster) RemovePeer(ctx context.Context, id string) error {
	if c.closed.Load() || c.raft == nil {
		return ErrShutdown
	}
	return c.onLeader(ctx, opRemovePeer, removePeerRequest{ID: id}, nil, func() error {
		return c.removePeerLocal(ctx, id)
	})
}

// WriteSnapshot writes this node's state (configuration and audit log) in
// the snapshot format, for backup. Call Barrier first for the latest state.
func (c *Cluster) WriteSnapshot(w io.Writer) error { return c.fsm.WriteSnapshot(w) }

// RestoreSnapshot reads a snapshot written by WriteSnapshot and applies
// its configuration as one replicated write (an ApplyConfig by actor): the
// version moves forward, the audit log records the restore and keeps its
// history. The snapshot's own audit records are not restored.
func (c *Cluster) RestoreSnapshot(ctx context.Context, r io.Reader, actor string) (fsm.Result, error) {
	img, err := fsm.ReadSnapshot(r)
	if err != nil {
		return fsm.Result{}, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	return c.Apply(ctx, &fsm.ApplyConfig{Header: fsm.Header{Actor: actor}, Config: img.Config})
}
