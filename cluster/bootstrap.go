package cluster

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/hashicorp/raft"
)

// Bootstrap (like Consul's bootstrap_expect, with a lock to make it safe
// whatever order nodes start in):
//
//  1. A node with no raft state and BootstrapExpect = N waits until gossip
//     shows at least N alive members expecting N.
//  2. Only the member with the lowest node ID among them goes on; the
//     others wait to be added by the leader it will become.
//  3. It takes a promise (a short lease) from itself and from every other
//     member it sees. A node grants one promise at a time and answers
//     "I have state" instead once it has any raft state. A node that has
//     promised never bootstraps itself while the promise lasts.
//  4. With every promise held, it bootstraps raft with all of them (the
//     first MaxVoters by ID as voters). If any member already has state,
//     a cluster exists: it stops and waits to be added.
//
// Two nodes whose views share a member cannot both collect promises, so
// at most one configuration is bootstrapped unless gossip is split into
// disjoint groups of N or more from the start, which no protocol without
// a fixed member list can tell from a cluster of N. A node restarted from
// a data directory has raft state and never enters this loop.

// promiseRequest asks a node not to bootstrap, and to grant no other
// promise, for the promise TTL.
type promiseRequest struct {
	From    string `json:"from"`
	Release bool   `json:"release,omitempty"`
}

type promiseResponse struct {
	Granted  bool   `json:"granted"`
	HasState bool   `json:"has_state"`
	Holder   string `json:"holder,omitempty"`
}

// bootLock is the promise a node has granted (possibly to itself).
type bootLock struct {
	ttl time.Duration

	mu     sync.Mutex
	holder string
	until  time.Time
}

// answer handles a promise request from another node.
func (b *bootLock) answer(p promiseRequest, hasState func() bool) promiseResponse {
	b.mu.Lock()
	defer b.mu.Unlock()
	if p.Release {
		if b.holder == p.From {
			b.holder = ""
		}
		return promiseResponse{}
	}
	if hasState() {
		return promiseResponse{HasState: true}
	}
	now := time.Now()
	if b.holder != "" && b.holder != p.From && now.Before(b.until) {
		return promiseResponse{Holder: b.holder}
	}
	b.holder, b.until = p.From, now.Add(b.ttl)
	return promiseResponse{Granted: true}
}

// bootstrap runs fn while holding the lock, if self still holds the promise.
func (b *bootLock) bootstrap(self string, fn func() error) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.holder != self || time.Now().After(b.until) {
		return errors.New("bootstrap promise expired")
	}
	return fn()
}

// bootstrapPoll is how often the bootstrap loop re-checks membership
// besides membership events.
const bootstrapPoll = 250 * time.Millisecond

func (c *Cluster) bootstrapLoop(ctx context.Context) {
	t := time.NewTicker(bootstrapPoll)
	defer t.Stop()
	warned := map[string]bool{}
	for {
		select {
		case <-ctx.Done():
			return
		case <-c.bootKick:
		case <-t.C:
		}
		if c.hasRaftState() {
			return
		}
		if c.tryBootstrap(ctx, warned) {
			return
		}
	}
}

// tryBootstrap makes one attempt; it reports whether the loop is done
// (bootstrapped, or a cluster already exists).
func (c *Cluster) tryBootstrap(ctx context.Context, warned map[string]bool) bool {
	expect := c.cfg.BootstrapExpect
	var servers []Member
	for _, m := range c.members.list() {
		if !m.alive() {
			continue
		}
		if m.BootstrapExpect != expect {
			if !warned[m.ID] {
				warned[m.ID] = true
				c.logger.Warn("member expects a different bootstrap size; not counting it",
					"member", m.ID, "its_expect", m.BootstrapExpect, "our_expect", expect)
			}
			continue
		}
		servers = append(servers, m)
	}
	if len(servers) < expect || servers[0].ID != c.id {
		return false
	}
	// Take our own promise first, then everyone else's.
	if r := c.boot.answer(promiseRequest{From: c.id}, c.hasRaftState); !r.Granted {
		return r.HasState
	}
	callTimeout := min(c.cfg.RPCTimeout, 2*time.Second)
	start := time.Now()
	var granted []Member
	release := func() {
		for _, m := range granted {
			rctx, cancel := context.WithTimeout(ctx, callTimeout)
			_ = c.call(rctx, m.ClusterAddr, opPromise, promiseRequest{From: c.id, Release: true}, nil)
			cancel()
		}
		c.boot.answer(promiseRequest{From: c.id, Release: true}, c.hasRaftState)
	}
	for _, m := range servers[1:] {
		cctx, cancel := context.WithTimeout(ctx, callTimeout)
		var r promiseResponse
		err := c.call(cctx, m.ClusterAddr, opPromise, promiseRequest{From: c.id}, &r)
		cancel()
		switch {
		case err != nil:
			c.logger.Debug("bootstrap promise failed", "member", m.ID, "error", err)
			release()
			return false
		case r.HasState:
			c.logger.Info("a member already has raft state; waiting to be added by the leader", "member", m.ID)
			release()
			return true
		case !r.Granted:
			c.logger.Debug("member promised another node", "member", m.ID, "holder", r.Holder)
			release()
			return false
		}
		granted = append(granted, m)
	}
	if time.Since(start) > c.boot.ttl/2 {
		release()
		return false
	}
	var conf raft.Configuration
	for i, m := range servers {
		s := raft.Server{ID: raft.ServerID(m.ID), Address: raft.ServerAddress(m.ClusterAddr), Suffrage: raft.Voter}
		if i >= c.cfg.MaxVoters {
			s.Suffrage = raft.Nonvoter
		}
		conf.Servers = append(conf.Servers, s)
	}
	err := c.boot.bootstrap(c.id, func() error {
		if c.hasRaftState() {
			return raft.ErrCantBootstrap
		}
		return c.raft.BootstrapCluster(conf).Error()
	})
	if err != nil {
		c.logger.Warn("bootstrap failed", "error", err)
		release()
		return errors.Is(err, raft.ErrCantBootstrap)
	}
	c.logger.Info("bootstrapped raft cluster", "servers", len(conf.Servers))
	return true
}

// hasRaftState reports whether this node has any raft log, snapshot or
// configuration: such a node is part of a cluster and never bootstraps.
func (c *Cluster) hasRaftState() bool {
	if c.raft == nil {
		return false
	}
	if c.raft.LastIndex() > 0 {
		return true
	}
	f := c.raft.GetConfiguration()
	return f.Error() == nil && len(f.Configuration().Servers) > 0
}
