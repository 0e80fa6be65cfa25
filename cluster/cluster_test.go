package cluster

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/sluicehq/sluice/cluster/fsm"
	"github.com/sluicehq/sluice/cluster/state"
)

func applySample() *fsm.ApplyConfig {
	return &fsm.ApplyConfig{Header: fsm.Header{Actor: "test"}, Config: sampleConfig()}
}

// TestJoinMembersAndWrites grows a cluster to five, checks every node
// sees every member with its metadata, and that a write on any node (a
// follower included) reaches every node's Snapshot; it logs how long.
func TestJoinMembersAndWrites(t *testing.T) {
	tc := newTestCluster(t)
	tc.startNodes("n1", "n2", "n3")
	leader := tc.waitLeader(10 * time.Second)
	tc.startNodes("n4", "n5")
	all := []string{"n1", "n2", "n3", "n4", "n5"}
	tc.waitMembers(10*time.Second, StateAlive, all...)
	tc.waitServers(10*time.Second, all, nil)

	for _, n := range tc.running() {
		for _, m := range n.c.Members() {
			o := tc.node(m.ID)
			if m.ClusterAddr != o.c.ClusterAddr() || m.GossipAddr != o.c.GossipAddr() ||
				m.APIAddr != "127.0.0.1:8080" || m.AdminAddr != "127.0.0.1:8081" ||
				m.Region != "test-region" || m.Zone != "zone-"+m.ID || m.Version != "v0.0.0-test" || m.Name != m.ID {
				t.Errorf("%s sees member %+v", n.id, m)
			}
		}
	}

	// The first write, on a follower: forwarded to the leader.
	var follower *testNode
	for _, n := range tc.running() {
		if n != leader {
			follower = n
			break
		}
	}
	res := applyOK(t, follower.c, applySample())
	if v := follower.c.Snapshot().Version; v != res.Index {
		t.Fatalf("follower's own snapshot at %d after Apply returned index %d", v, res.Index)
	}
	tc.waitVersion(5*time.Second, res.Index)

	// Propagation: from Apply on each node until every node's snapshot
	// has the write.
	var worst time.Duration
	for i, n := range tc.running() {
		start := time.Now()
		res := applyOK(t, n.c, &fsm.UpsertTenant{Tenant: state.Tenant{Name: "team-a", Plan: fmt.Sprint("plan-", i)}})
		tc.waitVersion(5*time.Second, res.Index)
		d := time.Since(start)
		worst = max(worst, d)
		role := "follower"
		if n.c.IsLeader() {
			role = "leader"
		}
		t.Logf("write on %s (%s) visible on all 5 nodes after %v", n.id, role, d.Round(time.Microsecond))
		for _, o := range tc.running() {
			tn, ok := o.c.Snapshot().Tenant("team-a")
			if !ok || tn.Plan != fmt.Sprint("plan-", i) {
				t.Fatalf("%s: tenant %+v after write %d", o.id, tn, i)
			}
		}
	}
	t.Logf("config propagation, worst of 5 writes: %v", worst.Round(time.Microsecond))

	// Audit records carry the actor stamped on the accepting node. A
	// write applied again after an election (outcome unknown) may be in
	// the log twice.
	audit := leader.c.AuditLog()
	if len(audit) < 6 || audit[0].Actor != "test" || audit[1].Actor == "" || audit[1].At.IsZero() {
		t.Errorf("audit log %+v", audit)
	}

	// Domain errors cross the forwarding RPC with their sentinel and fields.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err := follower.c.Apply(ctx, &fsm.DeleteDeployment{Name: "gpt4o-east"})
	var ve *state.ValidationError
	if !errors.Is(err, ErrInvalid) || !errors.As(err, &ve) || ve.Fields[0].Field != "models[0].deployments[0]" {
		t.Errorf("delete of a used deployment on a follower: %v", err)
	}
	if _, err := follower.c.Apply(ctx, &fsm.DeleteKey{ID: "ghost"}); !errors.Is(err, ErrNotFound) {
		t.Errorf("delete of a missing key: %v", err)
	}
	if _, err := follower.c.Apply(ctx, &fsm.UpsertTenant{Mode: fsm.ModeCreate, Tenant: state.Tenant{Name: "team-a"}}); !errors.Is(err, ErrExists) {
		t.Errorf("create of an existing tenant: %v", err)
	}
	v := follower.c.Snapshot().Version
	if _, err := follower.c.Apply(ctx, &fsm.DeleteKey{Header: fsm.Header{IfVersion: v - 1}, ID: "k1"}); !errors.Is(err, ErrConflict) {
		t.Errorf("stale if-version: %v", err)
	}

	// Consistent reads on every node see the last write.
	last := applyOK(t, leader.c, &fsm.UpsertTenant{Tenant: state.Tenant{Name: "team-z"}})
	for _, n := range tc.running() {
		s, err := n.c.Read(ctx, true)
		if err != nil || s.Version < last.Index {
			t.Errorf("%s: consistent read at %v, %v; want >= %d", n.id, s.Version, err, last.Index)
		}
	}
}

// TestRestartRejoins stops a node (gracefully, then a hard kill), writes
// while it is down, and restarts it from its data directory: it rejoins
// with all the configuration and without bootstrapping again. Then the
// whole cluster restarts.
func TestRestartRejoins(t *testing.T) {
	tc := newTestCluster(t, func(c *Config) {
		// Small snapshot settings, so restarts and catch-up go through
		// snapshots as well as the log.
		c.Raft.SnapshotInterval = 100 * time.Millisecond
		c.Raft.SnapshotThreshold = 4
		c.Raft.TrailingLogs = 2
	})
	tc.startNodes("n1", "n2", "n3")
	tc.waitLeader(10 * time.Second)
	applyOK(t, tc.node("n1").c, applySample())

	for _, how := range []string{"graceful", "kill"} {
		leader := tc.waitLeader(10 * time.Second)
		var victim *testNode
		for _, n := range tc.running() {
			if n != leader {
				victim = n
				break
			}
		}
		if how == "kill" {
			tc.kill(victim)
		} else {
			tc.stop(victim)
		}
		var last fsm.Result
		for i := range 10 {
			last = applyOK(t, leader.c, &fsm.UpsertTenant{Tenant: state.Tenant{Name: fmt.Sprintf("t-%s-%d", how, i)}})
		}
		tc.restart(victim)
		tc.waitVersion(10*time.Second, last.Index)
		if _, ok := victim.c.Snapshot().Tenant(fmt.Sprintf("t-%s-9", how)); !ok {
			t.Fatalf("%s restart: restarted node misses writes made while it was down", how)
		}
		tc.waitServers(10*time.Second, []string{"n1", "n2", "n3"}, nil)
	}

	// Whole-cluster restart: nobody bootstraps; the stored configuration
	// elects a leader and the data is all there.
	before := tc.node("n1").c.Snapshot().Version
	for _, n := range tc.running() {
		tc.stop(n)
	}
	for _, n := range tc.nodes {
		tc.restart(n)
	}
	tc.waitLeader(10 * time.Second)
	tc.waitServers(10*time.Second, []string{"n1", "n2", "n3"}, nil)
	for _, n := range tc.running() {
		if n.c.Snapshot().Version < before {
			if err := n.c.Barrier(context.Background()); err != nil {
				t.Fatal(err)
			}
		}
		if v := n.c.Snapshot().Version; v < before {
			t.Errorf("%s at version %d after restart, want >= %d", n.id, v, before)
		}
	}
}

// TestDeadCleanupAndPromotion: with MaxVoters 3, a fourth node joins as a
// non-voter; a voter killed for longer than DeadCleanup is removed and
// the non-voter promoted.
func TestDeadCleanupAndPromotion(t *testing.T) {
	tc := newTestCluster(t, func(c *Config) { c.MaxVoters = 3 })
	tc.startNodes("n1", "n2", "n3")
	tc.waitLeader(10 * time.Second)
	tc.startNodes("n4")
	tc.waitServers(10*time.Second, []string{"n1", "n2", "n3"}, []string{"n4"})

	leader := tc.waitLeader(10 * time.Second)
	var victim *testNode
	for _, n := range tc.running() {
		if n != leader && n.id != "n4" {
			victim = n
			break
		}
	}
	killed := time.Now()
	tc.kill(victim)
	var voters []string
	for _, id := range []string{"n1", "n2", "n3", "n4"} {
		if id != victim.id {
			voters = append(voters, id)
		}
	}
	tc.waitServers(15*time.Second, voters, nil)
	t.Logf("killed voter %s removed and n4 promoted after %v (DeadCleanup %v)",
		victim.id, time.Since(killed).Round(time.Millisecond), victim.cfg.DeadCleanup)
	if d := time.Since(killed); d < victim.cfg.DeadCleanup {
		t.Errorf("removed after %v, before DeadCleanup", d)
	}
	m, _ := leader.c.members.get(victim.id)
	if m.State != StateDead {
		t.Errorf("victim state %s", m.State)
	}
	applyOK(t, tc.node("n4").c, applySample())
}

// TestRemovalKeepsQuorum: when gossip (not raft) fails on two of three
// voters, the leader sees them dead but must not remove them, which would
// shrink the cluster to one node.
func TestRemovalKeepsQuorum(t *testing.T) {
	tc := newTestCluster(t)
	tc.startNodes("n1", "n2", "n3")
	leader := tc.waitLeader(10 * time.Second)
	var others []*testNode
	for _, n := range tc.running() {
		if n != leader {
			others = append(others, n)
		}
	}
	for _, n := range others {
		if err := n.c.ml.Shutdown(); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, 10*time.Second, "gossip failure detected", func() error {
		for _, n := range others {
			if m, _ := leader.c.members.get(n.id); m.State != StateDead {
				return fmt.Errorf("%s is %s", n.id, m.State)
			}
		}
		return nil
	})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := leader.c.RemovePeer(ctx, others[0].id); !errors.Is(err, ErrQuorum) {
		t.Fatalf("RemovePeer = %v, want ErrQuorum", err)
	}
	// Let several reconciles run past DeadCleanup (poll the whole time: the
	// configuration must never shrink).
	deadline := time.Now().Add(2 * leader.cfg.DeadCleanup)
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for time.Now().Before(deadline) {
		if v := leader.c.Status().Voters; v != 3 {
			t.Fatalf("leader removed voters: %d left", v)
		}
		<-tick.C
	}
	if err := leader.c.RemovePeer(ctx, "nobody"); !errors.Is(err, ErrUnknownMember) {
		t.Errorf("RemovePeer(unknown) = %v", err)
	}
	if err := others[0].c.RemovePeer(ctx, leader.id); !errors.Is(err, ErrMemberAlive) {
		t.Errorf("RemovePeer(alive leader) from a follower = %v", err)
	}
}

// TestLeaderFailover measures the time to a new leader after the leader
// is killed, and after it shuts down gracefully (leadership transfer);
// writes work again afterwards, from the old followers.
func TestLeaderFailover(t *testing.T) {
	t.Run("test-timings", func(t *testing.T) { leaderFailover(t, newTestCluster(t)) })
	t.Run("default-timings", func(t *testing.T) {
		def := DefaultConfig().Raft
		leaderFailover(t, newTestCluster(t, func(c *Config) {
			c.Raft.HeartbeatTimeout, c.Raft.ElectionTimeout = def.HeartbeatTimeout, def.ElectionTimeout
			c.Raft.LeaderLeaseTimeout, c.Raft.CommitTimeout = def.LeaderLeaseTimeout, def.CommitTimeout
		}))
	})
}

func leaderFailover(t *testing.T, tc *testCluster) {
	rc := tc.config("n1").Raft
	t.Logf("raft heartbeat timeout %v, election timeout %v, leader lease %v", rc.HeartbeatTimeout, rc.ElectionTimeout, rc.LeaderLeaseTimeout)
	tc.startNodes("n1", "n2", "n3", "n4", "n5")
	tc.waitServers(10*time.Second, []string{"n1", "n2", "n3", "n4", "n5"}, nil)
	for _, how := range []string{"kill", "graceful"} {
		old := tc.waitLeader(10 * time.Second)
		applyOK(t, old.c, applySample())
		start := time.Now()
		if how == "kill" {
			tc.kill(old)
		} else {
			tc.stop(old)
		}
		var elected time.Duration
		waitFor(t, 10*time.Second, "a new leader", func() error {
			for _, n := range tc.running() {
				if n.c.IsLeader() {
					elected = time.Since(start)
					return nil
				}
			}
			return errors.New("no leader yet")
		})
		leader := tc.waitLeader(10 * time.Second)
		t.Logf("leader %s %s: new leader %s elected after %v", old.id, map[string]string{"kill": "killed", "graceful": "shut down"}[how],
			leader.id, elected.Round(time.Millisecond))
		for _, n := range tc.running() {
			if n != leader {
				applyOK(t, n.c, &fsm.UpsertTenant{Tenant: state.Tenant{Name: "after-" + how}})
				break
			}
		}
	}
}

// TestFailureDetectionTime measures, with the production gossip timings of
// DefaultConfig, how long until a hard-stopped member is seen dead.
func TestFailureDetectionTime(t *testing.T) {
	d := DefaultConfig().Gossip
	tc := newTestCluster(t, func(c *Config) {
		c.Gossip = d
		c.BootstrapExpect = 0 // gossip only
	})
	tc.startNodes("n1", "n2", "n3", "n4", "n5")
	tc.waitMembers(10*time.Second, StateAlive, "n1", "n2", "n3", "n4", "n5")
	var times []time.Duration
	for _, id := range []string{"n5", "n4"} {
		victim := tc.node(id)
		start := time.Now()
		tc.kill(victim)
		seen := map[string]time.Duration{}
		waitFor(t, 15*time.Second, id+" declared dead by every node", func() error {
			for _, n := range tc.running() {
				if _, ok := seen[n.id]; ok {
					continue
				}
				if m, _ := n.c.members.get(id); m.State == StateDead {
					seen[n.id] = time.Since(start)
				}
			}
			if len(seen) < len(tc.running()) {
				return fmt.Errorf("%d of %d nodes see it dead", len(seen), len(tc.running()))
			}
			return nil
		})
		var first, last time.Duration = time.Hour, 0
		for _, d := range seen {
			first, last = min(first, d), max(last, d)
		}
		times = append(times, last)
		t.Logf("%s hard-stopped (%d peers left): first declared dead after %v, by all after %v",
			id, len(tc.running()), first.Round(time.Millisecond), last.Round(time.Millisecond))
	}
	t.Logf("gossip timings: probe interval %v, probe timeout %v, suspicion mult %d (max x%d), gossip interval %v",
		d.ProbeInterval, d.ProbeTimeout, d.SuspicionMult, d.SuspicionMaxTimeoutMult, d.GossipInterval)
}

// TestSnapshotBackupRestore writes a backup from one node and restores it
// through another: the configuration returns, as a new version, with an
// audit record of the restore.
func TestSnapshotBackupRestore(t *testing.T) {
	tc := newTestCluster(t)
	tc.startNodes("n1", "n2", "n3")
	tc.waitLeader(10 * time.Second)
	n1, n2 := tc.node("n1").c, tc.node("n2").c
	applyOK(t, n1, applySample())
	var backup bytes.Buffer
	if err := n1.Barrier(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := n1.WriteSnapshot(&backup); err != nil {
		t.Fatal(err)
	}
	applyOK(t, n1, &fsm.ApplyConfig{Config: state.Config{}})
	if len(n1.Snapshot().Config.Providers) != 0 {
		t.Fatal("config not cleared")
	}
	before := n2.Snapshot().Version
	res, err := n2.RestoreSnapshot(context.Background(), &backup, "operator")
	if err != nil {
		t.Fatal(err)
	}
	tc.waitVersion(5*time.Second, res.Index)
	for _, n := range tc.running() {
		if _, ok := n.c.Snapshot().Model("gpt-4o"); !ok || n.c.Snapshot().Version <= before {
			t.Errorf("%s: restore not visible (version %d)", n.id, n.c.Snapshot().Version)
		}
	}
	audit := n1.AuditLog()
	if last := audit[len(audit)-1]; last.Actor != "operator" || last.Kind != "config" {
		t.Errorf("last audit record %+v", last)
	}
	if _, err := n2.RestoreSnapshot(context.Background(), bytes.NewReader([]byte("junk")), "x"); !errors.Is(err, ErrInvalid) {
		t.Errorf("restore of junk: %v", err)
	}
}

func TestSubscribeSeesEveryNewVersion(t *testing.T) {
	tc := newTestCluster(t)
	tc.startNodes("n1", "n2", "n3")
	tc.waitLeader(10 * time.Second)
	ch, cancel := tc.node("n3").c.Subscribe()
	defer cancel()
	if s := <-ch; s == nil {
		t.Fatal("no initial snapshot")
	}
	res := applyOK(t, tc.node("n1").c, applySample())
	timeout := time.After(5 * time.Second)
	for {
		select {
		case s := <-ch:
			if s.Version == res.Index {
				return
			}
		case <-timeout:
			t.Fatalf("subscriber never saw version %d", res.Index)
		}
	}
}

// TestNoQuorumFailsCleanly: with two of three nodes dead, a write and a
// consistent read on the survivor fail with ErrNoLeader (nothing applied)
// when their context ends; local reads still serve the last snapshot;
// restarting one node restores quorum and writes work again.
func TestNoQuorumFailsCleanly(t *testing.T) {
	tc := newTestCluster(t)
	tc.startNodes("n1", "n2", "n3")
	tc.waitLeader(10 * time.Second)
	res := applyOK(t, tc.node("n2").c, applySample())
	tc.waitVersion(5*time.Second, res.Index)
	tc.kill(tc.node("n1"))
	tc.kill(tc.node("n2"))
	survivor := tc.node("n3").c

	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if _, err := survivor.Apply(ctx, &fsm.DeleteKey{ID: "k1"}); !isErr(err, ErrNoLeader, ErrNotLeader) {
		t.Fatalf("write without quorum: %v", err)
	}
	if _, err := survivor.Read(ctx, true); !isErr(err, ErrNoLeader, ErrNotLeader) {
		t.Fatalf("consistent read without quorum: %v", err)
	}
	if s, err := survivor.Read(context.Background(), false); err != nil || s.Version != res.Index {
		t.Fatalf("local read: version %v, %v", s.Version, err)
	}

	tc.restart(tc.node("n2"))
	tc.waitLeader(10 * time.Second)
	r2 := applyOK(t, survivor, &fsm.DeleteKey{ID: "k1"})
	tc.waitVersion(5*time.Second, r2.Index)
	if _, ok := tc.node("n2").c.Snapshot().KeyByID("k1"); ok {
		t.Error("write after quorum returned is missing on the restarted node")
	}
}
