package cluster

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"

	"github.com/sluicehq/sluice/cluster/fsm"
	"github.com/sluicehq/sluice/cluster/state"
)

// registerOp is one operation on a single register: the plan of tenant
// "reg", written with Apply and read with a consistent Read.
type registerOp struct {
	write bool
	value string
}

var registerModel = porcupine.Model{
	Init: func() any { return "" },
	Step: func(st, in, out any) (bool, any) {
		op := in.(registerOp)
		if op.write {
			return true, op.value
		}
		return out.(string) == st.(string), st
	},
	DescribeOperation: func(in, out any) string {
		op := in.(registerOp)
		if op.write {
			return "write " + op.value
		}
		return fmt.Sprintf("read -> %q", out)
	},
}

// TestLinearizableWhileLeaderDies runs concurrent writes and consistent
// reads against every node while the leader is killed, and checks the
// history with porcupine. A write that fails has an unknown outcome: the
// replicated audit log (each write's actor names its value) tells whether
// it was applied; if so it may take effect at any time after it started,
// if not it is dropped. Failed reads are dropped.
func TestLinearizableWhileLeaderDies(t *testing.T) {
	tc := newTestCluster(t)
	tc.startNodes("n1", "n2", "n3", "n4", "n5")
	tc.waitServers(10*time.Second, []string{"n1", "n2", "n3", "n4", "n5"}, nil)
	leader := tc.waitLeader(10 * time.Second)
	applyOK(t, leader.c, applySample())

	nodes := make([]*Cluster, 0, 5)
	for _, n := range tc.running() {
		nodes = append(nodes, n.c)
	}
	const clients = 6
	epoch := time.Now()
	now := func() int64 { return int64(time.Since(epoch)) }
	var (
		mu       sync.Mutex
		ops      []porcupine.Operation
		unknown  []porcupine.Operation // failed writes
		seq      atomic.Int64
		failures atomic.Int64
		stop     = make(chan struct{})
		wg       sync.WaitGroup
	)
	for cl := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(cl), 7))
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				c := nodes[(cl+i)%len(nodes)]
				if c.closed.Load() {
					continue
				}
				ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
				op := porcupine.Operation{ClientId: cl, Call: now()}
				if rng.IntN(2) == 0 {
					v := fmt.Sprintf("v%d", seq.Add(1))
					op.Input = registerOp{write: true, value: v}
					_, err := c.Apply(ctx, &fsm.UpsertTenant{Header: fsm.Header{Actor: v}, Tenant: state.Tenant{Name: "reg", Plan: v}})
					op.Return = now()
					if err != nil {
						failures.Add(1)
						op.Return = math.MaxInt64
						op.Metadata = err
						cancel()
						mu.Lock()
						unknown = append(unknown, op)
						mu.Unlock()
						continue
					}
				} else {
					op.Input = registerOp{}
					s, err := c.Read(ctx, true)
					op.Return = now()
					if err != nil {
						failures.Add(1)
						cancel()
						continue
					}
					plan := ""
					if tn, ok := s.Tenant("reg"); ok {
						plan = tn.Plan
					}
					op.Output = plan
				}
				cancel()
				mu.Lock()
				ops = append(ops, op)
				mu.Unlock()
			}
		}()
	}

	waitOps := func(n int) {
		waitFor(t, 20*time.Second, fmt.Sprintf("%d operations", n), func() error {
			mu.Lock()
			defer mu.Unlock()
			if len(ops) < n {
				return fmt.Errorf("%d operations so far", len(ops))
			}
			return nil
		})
	}
	waitOps(100)
	killedAt := time.Now()
	tc.kill(leader)
	tc.waitLeader(10 * time.Second)
	mu.Lock()
	n := len(ops)
	mu.Unlock()
	waitOps(n + 100)
	close(stop)
	wg.Wait()

	survivor := tc.waitLeader(10 * time.Second)
	if err := survivor.c.Barrier(context.Background()); err != nil {
		t.Fatal(err)
	}
	applied := map[string]bool{}
	for _, e := range survivor.c.AuditLog() {
		applied[e.Actor] = true
	}
	resolved := 0
	for _, op := range unknown {
		if applied[op.Input.(registerOp).value] {
			ops = append(ops, op)
			resolved++
			err := op.Metadata.(error)
			t.Logf("failed write applied nevertheless: %v", err)
			if isErr(err, ErrNoLeader, ErrNotLeader, ErrInvalid) {
				t.Errorf("a write that failed with %v was applied", err)
			}
		}
	}
	t.Logf("%d writes failed; %d of them were applied nevertheless", len(unknown), resolved)

	res, info := porcupine.CheckOperationsVerbose(registerModel, ops, 60*time.Second)
	if res != porcupine.Ok {
		t.Fatalf("history of %d operations is not linearizable (%v): %+v", len(ops), res, info.PartialLinearizations())
	}
	t.Logf("linearizable: %d operations by %d clients, %d failed during failover, leader %s killed after %v",
		len(ops), clients, failures.Load(), leader.id, killedAt.Sub(epoch).Round(time.Millisecond))
}

// TestRegisterModelRejectsStaleRead guards the checker itself: a read
// that misses a write completed before it began must fail the check.
func TestRegisterModelRejectsStaleRead(t *testing.T) {
	ops := []porcupine.Operation{
		{ClientId: 0, Input: registerOp{write: true, value: "v1"}, Call: 0, Return: 10},
		{ClientId: 1, Input: registerOp{}, Output: "", Call: 20, Return: 30},
	}
	if porcupine.CheckOperations(registerModel, ops) {
		t.Fatal("stale read accepted")
	}
	ops[1].Output = "v1"
	if !porcupine.CheckOperations(registerModel, ops) {
		t.Fatal("fresh read rejected")
	}
}
