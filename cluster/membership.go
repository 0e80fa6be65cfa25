package cluster

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/hashicorp/memberlist"
)

// MemberState is a member's gossip state as seen by this node.
type MemberState string

// Member states.
const (
	StateAlive   MemberState = "alive"
	StateSuspect MemberState = "suspect" // reserved: see Members
	StateDead    MemberState = "dead"    // failed without leaving
	StateLeft    MemberState = "left"    // left gracefully
)

// Member is one node as seen through gossip.
type Member struct {
	NodeMeta
	// GossipAddr is the member's gossip host:port.
	GossipAddr string
	State      MemberState
	// Since is when this node saw State begin (alive and suspect are
	// tracked together: Since is when the member last became alive).
	Since time.Time
}

// alive reports whether the member counts as up (suspects still do).
func (m *Member) alive() bool { return m.State == StateAlive || m.State == StateSuspect }

// tombstoneTimeout is how long dead and left members stay listed.
const tombstoneTimeout = 24 * time.Hour

// memberTable is the node's view of membership, keyed by node ID (never by
// address: test nodes share 127.0.0.1). Memberlist's delegates write it
// from memberlist's goroutines, so it is guarded by a mutex rather than
// owned by one goroutine; each change signals changed without blocking.
type memberTable struct {
	logger  *slog.Logger
	changed func()

	mu      sync.Mutex
	byID    map[string]*Member
	leaving map[string]time.Time // leave intents received, by node ID
}

func newMemberTable(logger *slog.Logger, changed func()) *memberTable {
	return &memberTable{logger: logger, changed: changed, byID: map[string]*Member{}, leaving: map[string]time.Time{}}
}

// leaveIntentTTL is how long a leave intent explains a member's departure.
const leaveIntentTTL = 30 * time.Second

// leaveIntent records that a member announced it is leaving. memberlist
// reports a graceful leave and a failure alike (its Node.State is not
// updated when NotifyLeave runs), so a leaving node tells its peers first,
// as serf does.
func (t *memberTable) leaveIntent(id string) {
	now := time.Now()
	t.mu.Lock()
	t.leaving[id] = now
	m, ok := t.byID[id]
	if ok && m.State == StateDead && now.Sub(m.Since) < leaveIntentTTL {
		m.State = StateLeft
	}
	t.mu.Unlock()
	if ok {
		t.changed()
	}
}

func (t *memberTable) upsert(n *memberlist.Node, st MemberState) {
	meta, err := decodeMeta(n.Meta)
	if err != nil {
		t.logger.Warn("ignoring member with bad metadata", "member", n.Name, "error", err)
		return
	}
	if meta.ID != n.Name {
		t.logger.Warn("ignoring member whose metadata names another node", "member", n.Name, "meta_id", meta.ID)
		return
	}
	now := time.Now()
	t.mu.Lock()
	m, ok := t.byID[meta.ID]
	if !ok {
		m = &Member{}
		t.byID[meta.ID] = m
	}
	wasAlive := ok && m.alive()
	switch at, left := t.leaving[meta.ID]; {
	case st == StateAlive:
		delete(t.leaving, meta.ID)
	case st == StateDead && left && now.Sub(at) < leaveIntentTTL:
		st = StateLeft
	}
	m.NodeMeta = meta
	m.GossipAddr = net.JoinHostPort(n.Addr.String(), strconv.Itoa(int(n.Port)))
	if !ok || m.State != st && !(wasAlive && st == StateAlive) {
		m.Since = now
	}
	m.State = st
	t.mu.Unlock()
	t.changed()
}

// get returns a copy of the member with id.
func (t *memberTable) get(id string) (Member, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	m, ok := t.byID[id]
	if !ok {
		return Member{}, false
	}
	return *m, true
}

// aliveCount is the number of alive members, at least 1 (this node).
func (t *memberTable) aliveCount() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	n := 0
	for _, m := range t.byID {
		if m.alive() {
			n++
		}
	}
	return max(n, 1)
}

// list returns copies of every member, sorted by ID.
func (t *memberTable) list() []Member {
	t.mu.Lock()
	out := make([]Member, 0, len(t.byID))
	for _, m := range t.byID {
		out = append(out, *m)
	}
	t.mu.Unlock()
	slices.SortFunc(out, func(a, b Member) int { return cmpString(a.ID, b.ID) })
	return out
}

// prune forgets dead and left members older than the tombstone timeout.
func (t *memberTable) prune(now time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for id, m := range t.byID {
		if !m.alive() && now.Sub(m.Since) > tombstoneTimeout {
			delete(t.byID, id)
		}
	}
	for id, at := range t.leaving {
		if now.Sub(at) > leaveIntentTTL {
			delete(t.leaving, id)
		}
	}
}

func cmpString(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// delegate receives memberlist's callbacks for one node.
type delegate struct {
	c *Cluster
}

var (
	_ memberlist.Delegate         = delegate{}
	_ memberlist.EventDelegate    = delegate{}
	_ memberlist.AliveDelegate    = delegate{}
	_ memberlist.ConflictDelegate = delegate{}
)

func (d delegate) NodeMeta(limit int) []byte {
	if len(d.c.metaBytes) > limit {
		// encodeMeta already refused this at start; never send a cut blob.
		return nil
	}
	return d.c.metaBytes
}

func (d delegate) NotifyMsg(b []byte) { d.c.handleMessage(b) }
func (d delegate) GetBroadcasts(overhead, limit int) [][]byte {
	return d.c.broadcasts.GetBroadcasts(overhead, limit)
}
func (d delegate) LocalState(bool) []byte          { return nil }
func (d delegate) MergeRemoteState([]byte, bool)   {}
func (d delegate) NotifyJoin(n *memberlist.Node)   { d.c.members.upsert(n, StateAlive) }
func (d delegate) NotifyUpdate(n *memberlist.Node) { d.c.members.upsert(n, StateAlive) }
func (d delegate) NotifyLeave(n *memberlist.Node)  { d.c.members.upsert(n, StateDead) }

// NotifyAlive refuses members whose metadata does not decode or names
// another node, so the rest of the package can trust member metadata.
func (d delegate) NotifyAlive(n *memberlist.Node) error {
	meta, err := decodeMeta(n.Meta)
	if err != nil {
		return err
	}
	if meta.ID != n.Name {
		return fmt.Errorf("%w: meta ID %q on node %q", errMeta, meta.ID, n.Name)
	}
	return nil
}

func (d delegate) NotifyConflict(existing, other *memberlist.Node) {
	d.c.logger.Error("two nodes claim the same node ID", "id", existing.Name,
		"existing", existing.Address(), "other", other.Address())
}

// memberlistConfig builds memberlist's configuration from ours.
func (c *Cluster) memberlistConfig(bindHost string, bindPort int, advHost string, advPort int) *memberlist.Config {
	g := c.cfg.Gossip
	mc := memberlist.DefaultLANConfig()
	mc.Name = c.id
	mc.Label = c.cfg.ClusterName
	mc.BindAddr, mc.BindPort = bindHost, bindPort
	mc.AdvertiseAddr, mc.AdvertisePort = advHost, advPort
	mc.ProbeInterval = g.ProbeInterval
	mc.ProbeTimeout = g.ProbeTimeout
	mc.SuspicionMult = g.SuspicionMult
	mc.SuspicionMaxTimeoutMult = g.SuspicionMaxTimeoutMult
	mc.GossipInterval = g.GossipInterval
	mc.GossipNodes = g.GossipNodes
	mc.RetransmitMult = g.RetransmitMult
	mc.PushPullInterval = g.PushPullInterval
	mc.TCPTimeout = g.TCPTimeout
	mc.GossipToTheDeadTime = g.GossipToTheDeadTime
	mc.SecretKey = c.cfg.GossipKey
	d := delegate{c}
	mc.Delegate, mc.Events, mc.Alive, mc.Conflict = d, d, d, d
	mc.Logger = newHCLog(c.logger, "memberlist").StandardLogger(nil)
	return mc
}

// Members returns every member this node knows of, sorted by ID,
// including dead and left ones until they are forgotten.
//
// memberlist v0.7.0 does not report suspicion through its API (its
// Node.State stays at its initial value and there is no event for it), so
// a failing member goes from alive to dead; StateSuspect is never
// reported today.
func (c *Cluster) Members() []Member {
	if c.members == nil {
		return nil
	}
	return c.members.list()
}

// memberNode returns a memberlist.Node for an alive member, built from the
// table: memberlist's own Node values are mutated under its private lock
// and must not be read by us.
func (c *Cluster) memberNode(id string) (*memberlist.Node, bool) {
	m, ok := c.members.get(id)
	if !ok || !m.alive() {
		return nil, false
	}
	host, port, err := net.SplitHostPort(m.GossipAddr)
	if err != nil {
		return nil, false
	}
	p, err := strconv.Atoi(port)
	if err != nil {
		return nil, false
	}
	return &memberlist.Node{Name: m.ID, Addr: net.ParseIP(host), Port: uint16(p)}, true
}

// resolveJoin expands join entries to ip:port addresses: an IP keeps its
// port, a name is resolved and every address it has is used.
func (c *Cluster) resolveJoin(ctx context.Context, entries []string) ([]string, error) {
	var out, failed []string
	var errs []error
	for _, e := range entries {
		host, port, err := net.SplitHostPort(e)
		if err != nil {
			host, port = e, strconv.Itoa(DefaultGossipPort)
		}
		if ip := net.ParseIP(host); ip != nil {
			out = append(out, net.JoinHostPort(host, port))
			continue
		}
		addrs, err := c.cfg.lookupHost(ctx, host)
		if err != nil || len(addrs) == 0 {
			failed = append(failed, e)
			errs = append(errs, fmt.Errorf("resolve %s: %w", host, err))
			continue
		}
		for _, a := range addrs {
			out = append(out, net.JoinHostPort(a, port))
		}
	}
	slices.Sort(out)
	out = slices.Compact(out)
	if len(out) == 0 && len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	if len(failed) > 0 {
		c.logger.Warn("some join names did not resolve", "names", failed, "error", errors.Join(errs...))
	}
	return out, nil
}

// Join contacts the given gossip addresses (names are resolved) and
// returns how many were reached.
func (c *Cluster) Join(ctx context.Context, addrs []string) (int, error) {
	if c.ml == nil {
		return 0, ErrShutdown
	}
	resolved, err := c.resolveJoin(ctx, addrs)
	if err != nil {
		return 0, err
	}
	var self []string
	for _, a := range resolved {
		if a != c.gossipAdvertise {
			self = append(self, a)
		}
	}
	if len(self) == 0 {
		return 0, nil
	}
	n, err := c.ml.Join(self)
	if n > 0 {
		return n, nil
	}
	return 0, err
}

// joinLoop joins the configured addresses, retrying with capped
// exponential backoff and jitter until one join succeeds or ctx ends.
func (c *Cluster) joinLoop(ctx context.Context) {
	backoff := 200 * time.Millisecond
	for attempt := 1; ; attempt++ {
		n, err := c.Join(ctx, c.cfg.Join)
		if err == nil && n > 0 {
			c.logger.Info("joined cluster", "contacted", n, "attempts", attempt)
			return
		}
		if err == nil && n == 0 {
			return // only ourselves in the list
		}
		c.logger.Warn("join failed; retrying", "attempt", attempt, "in", backoff, "error", err)
		if !sleepCtx(ctx, backoff/2+rand.N(backoff/2+1)) {
			return
		}
		backoff = min(backoff*2, c.cfg.JoinRetryMax)
	}
}

// reconnectLoop heals partitions: memberlist forgets a dead member after a
// while, so members on two sides of a healed partition would never meet
// again. Periodically retry dead (not left) members, and the join list
// when this node is alone.
func (c *Cluster) reconnectLoop(ctx context.Context) {
	t := time.NewTicker(c.cfg.ReconnectInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			c.members.prune(now)
			var targets []string
			alone := true
			for _, m := range c.members.list() {
				switch {
				case m.ID == c.id:
				case m.alive():
					alone = false
				case m.State == StateDead:
					targets = append(targets, m.GossipAddr)
				}
			}
			if alone {
				targets = append(targets, c.cfg.Join...)
			}
			if len(targets) > 0 {
				if n, err := c.Join(ctx, targets); n > 0 {
					c.logger.Info("reconnected to members", "contacted", n)
				} else if err != nil {
					c.logger.Debug("reconnect failed", "error", err)
				}
			}
		}
	}
}

// sleepCtx waits d or until ctx ends; it reports whether ctx is still live.
func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
