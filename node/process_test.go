package node_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"net"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"

	"github.com/sluicehq/sluice/admin"
	"github.com/sluicehq/sluice/cluster/state"
)

// regOp is one operation on a single register: the plan of tenant "reg",
// written with PUT /admin/v1/tenants/reg and read with a consistent list.
type regOp struct {
	write bool
	value string
}

var regModel = porcupine.Model{
	Init: func() any { return "" },
	Step: func(st, in, out any) (bool, any) {
		op := in.(regOp)
		if op.write {
			return true, op.value
		}
		return out.(string) == st.(string), st
	},
	DescribeOperation: func(in, out any) string {
		if op := in.(regOp); op.write {
			return "write " + op.value
		}
		return fmt.Sprintf("read -> %q", out)
	},
	DescribeOperationMetadata: func(m any) string {
		if m == nil {
			return ""
		}
		return fmt.Sprint(m)
	},
}

// regTimeout bounds one register operation. It is longer than an election
// plus the forwarding retries, so a client rarely gives up on a write the
// cluster still completes.
const regTimeout = 5 * time.Second

// outcome is what a failed call says about a write.
type outcome int

const (
	applied    outcome = iota // acknowledged
	notApplied                // refused with a 4xx, or never sent (dial failed)
	unknown                   // 5xx, timeout, connection lost after sending
)

// classify maps a call's error to its outcome, and reports whether the
// client should move to another node (a transport failure, not an answer).
func classify(err error) (outcome, bool) {
	if err == nil {
		return applied, false
	}
	var ae *admin.Error
	if errors.As(err, &ae) {
		if ae.Status >= 500 {
			return unknown, false
		}
		return notApplied, false
	}
	var oe *net.OpError
	if errors.As(err, &oe) && oe.Op == "dial" {
		return notApplied, true
	}
	return unknown, true
}

// regHistory records the operations of the register clients.
type regHistory struct {
	epoch time.Time

	mu       sync.Mutex
	ops      []porcupine.Operation // acknowledged writes and successful reads
	pending  []porcupine.Operation // writes of unknown outcome, Return = MaxInt64
	rejected []error               // writes refused with a 4xx: never expected
	stats    map[string]int
}

func newRegHistory() *regHistory {
	return &regHistory{epoch: time.Now(), stats: map[string]int{}}
}

// now is the history's clock: nanoseconds since epoch, monotonic.
func (h *regHistory) now() int64 { return int64(time.Since(h.epoch)) }

// write puts value as the register's value through n.
func (h *regHistory) write(n *procNode, client int, value string) error {
	op := porcupine.Operation{ClientId: client, Input: regOp{write: true, value: value}, Call: h.now()}
	_, err := call(regTimeout, func(ctx context.Context) (struct{}, error) {
		return struct{}{}, n.client.Put(ctx, admin.KindTenants, "reg", state.Tenant{Name: "reg", Plan: value}, nil)
	})
	op.Return = h.now()
	oc, _ := classify(err)
	h.mu.Lock()
	defer h.mu.Unlock()
	switch oc {
	case applied:
		h.stats["write acked"]++
		h.ops = append(h.ops, op)
	case notApplied:
		h.stats["write not applied"]++
		var ae *admin.Error
		if errors.As(err, &ae) {
			h.rejected = append(h.rejected, fmt.Errorf("write %s via %s: %w", value, n.id, err))
		}
	case unknown:
		// It may take effect at any time after its call: it stays pending
		// to the end of the history.
		h.stats["write unknown"]++
		op.Return = math.MaxInt64
		op.Metadata = fmt.Sprintf("via %s: %v", n.id, err)
		h.pending = append(h.pending, op)
	}
	return err
}

// read reads the register through n with a consistent read. A failed
// read tells nothing and is dropped.
func (h *regHistory) read(n *procNode, client int) (string, error) {
	op := porcupine.Operation{ClientId: client, Input: regOp{}, Call: h.now()}
	p, err := call(regTimeout, func(ctx context.Context) (*admin.Page, error) {
		return n.client.List(ctx, admin.KindTenants, admin.ListOptions{Consistent: true})
	})
	op.Return = h.now()
	value := ""
	if err == nil {
		for _, raw := range p.Items {
			var tn state.Tenant
			if derr := json.Unmarshal(raw, &tn); derr != nil {
				err = fmt.Errorf("decode tenant: %w", derr)
				break
			}
			if tn.Name == "reg" {
				value = tn.Plan
			}
		}
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if err != nil {
		h.stats["read failed"]++
		return "", err
	}
	h.stats["read ok"]++
	op.Output = value
	op.Metadata = "via " + n.id
	h.ops = append(h.ops, op)
	return value, nil
}

// client runs random writes and reads until stop is closed, starting on
// nodes[id] and moving to the next node when a call fails in transport.
func (h *regHistory) client(id int, nodes []*procNode, stop <-chan struct{}) {
	rng := rand.New(rand.NewPCG(uint64(id), 42))
	target := id
	for i := 0; ; i++ {
		select {
		case <-stop:
			return
		default:
		}
		n := nodes[target%len(nodes)]
		var err error
		if rng.IntN(2) == 0 {
			err = h.write(n, id, fmt.Sprintf("c%d-%d", id, i))
		} else {
			_, err = h.read(n, id)
		}
		if _, failover := classify(err); failover {
			target++
		}
	}
}

// completedSince counts acknowledged operations called at or after t.
func (h *regHistory) completedSince(t int64) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	k := 0
	for _, op := range h.ops {
		if op.Call >= t {
			k++
		}
	}
	return k
}

// TestProcessLeaderKillLinearizable runs three sluice processes, drives a
// register (tenant "reg"'s plan) from three admin clients on different
// nodes, SIGKILLs the leader two seconds in, and checks with porcupine
// that the history is linearizable. Writes of unknown outcome stay pending
// to the end of the history; failed reads are dropped. The killed node is
// then restarted from its data directory and must rejoin with the final
// value.
func TestProcessLeaderKillLinearizable(t *testing.T) {
	pc := newProcCluster(t)
	nodes := pc.bootstrap("n1", "n2", "n3")
	var leaderID string
	pc.eventually(30*time.Second, "one leader seen by all three nodes", func() (err error) {
		leaderID, err = sameLeader(nodes)
		return err
	})
	var leader *procNode
	var survivors []*procNode
	for _, n := range nodes {
		if n.id == leaderID {
			leader = n
		} else {
			survivors = append(survivors, n)
		}
	}

	h := newRegHistory()
	stop := make(chan struct{})
	var wg sync.WaitGroup
	stopClients := sync.OnceFunc(func() {
		close(stop)
		wg.Wait()
	})
	// Registered after the nodes' cleanups, so it runs before them: the
	// clients stop before the processes are killed.
	t.Cleanup(stopClients)
	const clients = 3
	for id := range clients {
		wg.Go(func() { h.client(id, nodes, stop) })
	}

	pc.eventually(15*time.Second, "2s of workload", func() error {
		if d := time.Since(h.epoch); d < 2*time.Second {
			return fmt.Errorf("workload has run %v", d)
		}
		if k := h.completedSince(0); k < 20 {
			return fmt.Errorf("%d operations completed", k)
		}
		return nil
	})
	killedAt := time.Now()
	pc.kill(leader)
	var newLeader string
	if err := pc.poll(15*time.Second, 10*time.Millisecond, func() (err error) {
		newLeader, err = sameLeader(survivors, leader.id)
		return err
	}); err != nil {
		t.Fatalf("no new leader after SIGKILL of %s: %v", leader.id, err)
	}
	election := time.Since(killedAt)
	t.Logf("SIGKILL of leader %s: both survivors name %s the leader after %v", leader.id, newLeader, election.Round(time.Millisecond))

	elected := h.now()
	pc.eventually(20*time.Second, "6s of workload with progress after the failover", func() error {
		if d := time.Since(h.epoch); d < 6*time.Second {
			return fmt.Errorf("workload has run %v", d)
		}
		if k := h.completedSince(elected); k < 20 {
			return fmt.Errorf("%d operations completed since the new leader", k)
		}
		return nil
	})
	stopClients()

	// The final value, read consistently on each survivor, joins the history.
	final := map[string]string{}
	for i, n := range survivors {
		pc.eventually(10*time.Second, "a consistent read on "+n.id, func() (err error) {
			final[n.id], err = h.read(n, clients+i)
			return err
		})
	}
	if final[survivors[0].id] != final[survivors[1].id] {
		t.Errorf("survivors disagree on the final value: %v", final)
	}
	finalValue := final[survivors[0].id]

	h.mu.Lock()
	completed, pending := slices.Clone(h.ops), slices.Clone(h.pending)
	stats, rejected := fmt.Sprint(h.stats), slices.Clone(h.rejected)
	h.mu.Unlock()
	ops := slices.Concat(completed, pending)
	for _, err := range rejected {
		t.Errorf("write refused: %v", err)
	}
	t.Logf("history: %d operations (%v)", len(ops), stats)
	res, info := porcupine.CheckOperationsVerbose(regModel, ops, 30*time.Second)
	if res != porcupine.Ok {
		path := filepath.Join(t.ArtifactDir(), "history.html")
		if err := porcupine.VisualizePath(regModel, info, path); err != nil {
			t.Logf("visualize: %v", err)
		}
		t.Fatalf("history of %d operations is %v, not linearizable (visualization: %s, kept with -artifacts)", len(ops), res, path)
	}
	if err := finalValueError(finalValue, completed, pending); err != nil {
		t.Error(err)
	}

	// Restart the killed node from its data directory.
	restartedAt := time.Now()
	pc.start(leader)
	ids := nodeIDs(nodes)
	pc.eventually(30*time.Second, leader.id+" alive again in every node's members", func() error {
		return allAlive(nodes, ids)
	})
	gossipRejoin := time.Since(restartedAt)
	var got string
	pc.eventually(30*time.Second, "a consistent read on the restarted "+leader.id, func() (err error) {
		got, err = h.read(leader, clients+len(survivors))
		return err
	})
	caughtUp := time.Since(restartedAt)
	if got != finalValue {
		t.Errorf("restarted %s reads %q, survivors read %q", leader.id, got, finalValue)
	}
	var rejoinedLeader string
	pc.eventually(10*time.Second, "all three nodes to name one leader", func() (err error) {
		rejoinedLeader, err = sameLeader(nodes)
		return err
	})
	t.Logf("restarted %s: alive in every node's members after %v, consistent read served after %v; leader %s (was %s)",
		leader.id, gossipRejoin.Round(time.Millisecond), caughtUp.Round(time.Millisecond), rejoinedLeader, newLeader)
}

// finalValueError checks the value left at the end of a history: it was
// written, and no acknowledged write began after its write returned (that
// write would have replaced it). A write of unknown outcome may be the
// final value.
func finalValueError(final string, ops, pending []porcupine.Operation) error {
	var acked []porcupine.Operation
	for _, op := range ops {
		if op.Input.(regOp).write {
			acked = append(acked, op)
		}
	}
	if final == "" {
		if len(acked) > 0 {
			return fmt.Errorf("the register is empty after %d acknowledged writes", len(acked))
		}
		return nil
	}
	writes := slices.Concat(acked, pending)
	i := slices.IndexFunc(writes, func(op porcupine.Operation) bool { return op.Input.(regOp).value == final })
	if i < 0 {
		return fmt.Errorf("final value %q was never written", final)
	}
	w := writes[i]
	for _, a := range acked {
		if a.Call > w.Return {
			return fmt.Errorf("final value %q (its write returned at %v) lost acknowledged write %q (called at %v)",
				final, time.Duration(w.Return), a.Input.(regOp).value, time.Duration(a.Call))
		}
	}
	return nil
}

// TestRegisterHistoryChecks guards the checks themselves: the model
// rejects a stale read, and the final-value check accepts the last
// acknowledged write or a pending one, nothing else.
func TestRegisterHistoryChecks(t *testing.T) {
	w := func(v string, call, ret int64) porcupine.Operation {
		return porcupine.Operation{Input: regOp{write: true, value: v}, Call: call, Return: ret}
	}
	r := func(v string, call, ret int64) porcupine.Operation {
		return porcupine.Operation{ClientId: 1, Input: regOp{}, Output: v, Call: call, Return: ret}
	}
	history := []porcupine.Operation{w("a", 0, 10), w("b", 20, 30)}
	pending := []porcupine.Operation{w("p", 25, math.MaxInt64)}
	tests := []struct {
		name         string
		ops          []porcupine.Operation
		linearizable bool
		final        string
		finalOK      bool
	}{
		{"fresh read", []porcupine.Operation{w("a", 0, 10), r("a", 20, 30)}, true, "a", true},
		{"stale read", []porcupine.Operation{w("a", 0, 10), r("", 20, 30)}, false, "a", true},
		{"concurrent read sees either", []porcupine.Operation{w("a", 0, 10), w("b", 5, 30), r("a", 20, 25)}, true, "b", true},
		{"last acknowledged write", history, true, "b", true},
		{"pending write", slices.Concat(history, pending), true, "p", true},
		{"overwritten write", history, true, "a", false},
		{"never written", history, true, "x", false},
		{"empty after writes", history, true, "", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := porcupine.CheckOperations(regModel, tc.ops); got != tc.linearizable {
				t.Errorf("linearizable = %v, want %v", got, tc.linearizable)
			}
			var ops, pend []porcupine.Operation
			for _, op := range tc.ops {
				if op.Return == math.MaxInt64 {
					pend = append(pend, op)
				} else {
					ops = append(ops, op)
				}
			}
			if err := finalValueError(tc.final, ops, pend); (err == nil) != tc.finalOK {
				t.Errorf("final %q: error %v, want ok=%v", tc.final, err, tc.finalOK)
			}
		})
	}
}

// TestProcessFourthAndFifthJoin starts three bootstrapped processes, then
// two more that join through one of them without -bootstrap-expect, and
// waits for every node to see five alive members and five raft voters.
func TestProcessFourthAndFifthJoin(t *testing.T) {
	pc := newProcCluster(t)
	first := pc.bootstrap("n1", "n2", "n3")
	pc.eventually(30*time.Second, "one leader seen by all three nodes", func() error {
		_, err := sameLeader(first)
		return err
	})
	start := time.Now()
	all := first
	for _, id := range []string{"n4", "n5"} {
		n := pc.addNode(id, 0)
		n.join = []string{first[0].gossip}
		pc.start(n)
		all = append(all, n)
	}
	ids := nodeIDs(all)
	pc.eventually(30*time.Second, "five alive members on every node", func() error {
		return allAlive(all, ids)
	})
	gossip := time.Since(start)
	pc.eventually(30*time.Second, "five voters in every node's raft configuration", func() error {
		if _, err := sameLeader(all); err != nil {
			return err
		}
		for _, n := range all {
			st, err := n.status()
			if err != nil {
				return err
			}
			var servers []string
			for _, s := range st.Servers {
				servers = append(servers, s.ID)
			}
			slices.Sort(servers)
			if !slices.Equal(servers, ids) || st.Voters != len(ids) {
				return fmt.Errorf("%s: raft servers %v, %d voters", n.id, servers, st.Voters)
			}
		}
		return nil
	})
	t.Logf("n4 and n5 joined through %s: five alive members everywhere after %v, five voters after %v",
		first[0].id, gossip.Round(time.Millisecond), time.Since(start).Round(time.Millisecond))
}
