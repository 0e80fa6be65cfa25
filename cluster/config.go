package cluster

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"github.com/sluicehq/sluice/cluster/fsm"
)

// Default ports, used when a join address or an address option names no port.
const (
	DefaultGossipPort  = 7946
	DefaultClusterPort = 7947
)

// Config configures one node of the cluster. Start from DefaultConfig and
// override what you need; New fills any zero field from the defaults.
type Config struct {
	// NodeID identifies the node in gossip and raft, forever. Default: an
	// ID generated on first start and kept in DataDir/node-id, so a node
	// restarted from its data directory keeps its identity.
	NodeID string
	// NodeName is a human label shown in Members. Default: NodeID.
	NodeName string
	// DataDir holds the raft log, stable store and snapshots. Required.
	DataDir string
	// ClusterName separates clusters sharing a network: gossip from a
	// cluster with another name is dropped. Default "sluice".
	ClusterName string

	// GossipAddr is the host:port memberlist binds (UDP and TCP).
	// Default "0.0.0.0:7946"; port 0 picks a free port.
	GossipAddr string
	// GossipAdvertise is the host:port other nodes reach gossip on.
	// Default: GossipAddr's host when it is an IP other than 0.0.0.0, else
	// a private IP of this host; the bound port.
	GossipAdvertise string
	// ClusterAddr is the host:port of the cluster port, shared by raft and
	// the forwarding RPC. Default "0.0.0.0:7947"; port 0 picks a free port.
	ClusterAddr string
	// ClusterAdvertise is the host:port other nodes reach the cluster port
	// on. Default: chosen like GossipAdvertise.
	ClusterAdvertise string

	// Join lists gossip addresses of existing members: host:port, or a DNS
	// name whose every A/AAAA record is tried (port DefaultGossipPort when
	// none is given). Start retries with backoff until one join succeeds.
	Join []string
	// BootstrapExpect is the number of nodes that form a new cluster
	// together (like Consul's bootstrap_expect). 0 never bootstraps: the
	// node waits to be added by an existing leader. Nodes restarted from a
	// data directory never bootstrap again.
	BootstrapExpect int
	// GossipKey encrypts gossip (AES, 16, 24 or 32 bytes); nil disables
	// encryption. Every member must use the same key.
	GossipKey []byte

	// Metadata published in gossip for the other packages.
	APIAddr   string // where the OpenAI-compatible API listens
	AdminAddr string // where the admin API listens
	Region    string
	Zone      string
	Version   string // build version of this node

	// DeadCleanup is how long a member may stay dead (or left) before the
	// leader removes it from the raft configuration. Default 30s: longer
	// than a process restart, short enough that a dead voter does not hold
	// the quorum size up for long.
	DeadCleanup time.Duration
	// MaxVoters caps raft voters; later servers join as non-voters and are
	// promoted when a voter goes away. Default 5.
	MaxVoters int
	// PromoteAfter is how long a non-voter must have been alive before it
	// is promoted to a free voter slot. Default 10s.
	PromoteAfter time.Duration
	// ReconcileInterval is the leader's periodic full reconcile of gossip
	// membership into raft, besides the one run on every membership event.
	// Default 10s.
	ReconcileInterval time.Duration
	// ReconnectInterval is how often a node retries joining dead members and
	// the Join list when it is alone, to heal partitions. Default 15s.
	ReconnectInterval time.Duration
	// JoinRetryMax caps the backoff between join attempts. Default 10s.
	JoinRetryMax time.Duration

	// RPCTimeout bounds one forwarded call (dial, request, response).
	// Default 10s.
	RPCTimeout time.Duration
	// ApplyTimeout bounds a write when the caller's context has no
	// deadline. Default 10s.
	ApplyTimeout time.Duration
	// LeaveTimeout bounds the gossip leave broadcast and the leadership
	// transfer at Shutdown. Default 5s.
	LeaveTimeout time.Duration

	Gossip GossipConfig
	Raft   RaftConfig

	// Sections are replicated state kept beside the configuration (the
	// usage ledger, quota leases), each owning one command type in 32-63;
	// see fsm.Section. Every node of a cluster must register the same
	// sections. Each value belongs to this node's FSM: never share one
	// between nodes. Default: none.
	Sections []fsm.Section

	// Logger receives structured logs; raft and memberlist logs are routed
	// into it. Default: slog.Default().
	Logger *slog.Logger
	// Metrics, when set, receives the node's raft and membership metrics
	// (see metrics.go); pass the node's own set, one per node. Default nil:
	// no metrics.
	Metrics *metrics.Set

	// lookupHost resolves join names; tests replace it.
	lookupHost func(ctx context.Context, host string) ([]string, error)
}

// GossipConfig holds memberlist timings. The defaults favour fast failure
// detection on a LAN: with them a hard-stopped member is declared dead in
// about 1.2-1.5 s (measured by TestFailureDetectionTime), against about 6 s with
// memberlist's DefaultLANConfig.
type GossipConfig struct {
	// ProbeInterval: each member probes one other member per interval.
	// Default 200ms (memberlist LAN: 1s). Detection time scales with it.
	ProbeInterval time.Duration
	// ProbeTimeout is how long a probe waits for an ack before indirect
	// probes. Default 100ms: LAN round trips are well under 1 ms, and the
	// Lifeguard awareness score stretches it on an overloaded node.
	ProbeTimeout time.Duration
	// SuspicionMult scales the suspicion timeout: a suspect is declared
	// dead after SuspicionMult*max(1,log10(N))*ProbeInterval at the least.
	// Default 4 (800ms at the default interval for N < 10).
	SuspicionMult int
	// SuspicionMaxTimeoutMult bounds the suspicion timeout when no other
	// member confirms the suspicion. Default 3.
	SuspicionMaxTimeoutMult int
	// GossipInterval and GossipNodes set gossip fan-out. Defaults 100ms and 3.
	GossipInterval time.Duration
	GossipNodes    int
	// RetransmitMult: each broadcast is retransmitted RetransmitMult*log(N+1)
	// times. Default 4.
	RetransmitMult int
	// PushPullInterval is the full state sync period. Default 15s.
	PushPullInterval time.Duration
	// TCPTimeout bounds TCP exchanges (joins, push/pull, SendTo). Default 5s.
	TCPTimeout time.Duration
	// GossipToTheDeadTime: how long dead members still receive gossip, so a
	// falsely-declared member learns it and refutes. Default 15s.
	GossipToTheDeadTime time.Duration
}

// RaftConfig holds raft timings and log settings.
type RaftConfig struct {
	// HeartbeatTimeout and ElectionTimeout: a follower that hears nothing
	// for a random time between 1x and 2x starts an election. Defaults
	// 500ms each: half of hashicorp/raft's, because writes here are small
	// and rare and a leaderless cluster cannot change configuration or hand
	// out quota leases.
	HeartbeatTimeout time.Duration
	ElectionTimeout  time.Duration
	// LeaderLeaseTimeout: a leader that cannot reach a quorum for this long
	// steps down. Default 250ms.
	LeaderLeaseTimeout time.Duration
	// CommitTimeout bounds how long an idle leader waits before sending a
	// heartbeat carrying the commit index. Default 20ms (raft: 50ms), which
	// cuts the time for a write to show on followers.
	CommitTimeout time.Duration
	// SnapshotInterval and SnapshotThreshold: raft checks every interval
	// and snapshots when more than threshold entries were appended.
	// Defaults 2m and 8192.
	SnapshotInterval  time.Duration
	SnapshotThreshold uint64
	// TrailingLogs kept after a snapshot, so slow followers catch up from
	// the log instead of a snapshot. Default 10240.
	TrailingLogs uint64
	// SnapshotRetain is how many snapshots stay on disk. Default 2.
	SnapshotRetain int
	// WALSegmentSize is the size of a raft-wal segment file (preallocated).
	// Default 16 MiB: configuration entries are small.
	WALSegmentSize int
}

// DefaultConfig returns the production defaults. Every value is explained
// on its field.
func DefaultConfig() Config {
	return Config{
		ClusterName:       "sluice",
		GossipAddr:        net.JoinHostPort("0.0.0.0", fmt.Sprint(DefaultGossipPort)),
		ClusterAddr:       net.JoinHostPort("0.0.0.0", fmt.Sprint(DefaultClusterPort)),
		DeadCleanup:       30 * time.Second,
		MaxVoters:         5,
		PromoteAfter:      10 * time.Second,
		ReconcileInterval: 10 * time.Second,
		ReconnectInterval: 15 * time.Second,
		JoinRetryMax:      10 * time.Second,
		RPCTimeout:        10 * time.Second,
		ApplyTimeout:      10 * time.Second,
		LeaveTimeout:      5 * time.Second,
		Gossip: GossipConfig{
			ProbeInterval:           200 * time.Millisecond,
			ProbeTimeout:            100 * time.Millisecond,
			SuspicionMult:           4,
			SuspicionMaxTimeoutMult: 3,
			GossipInterval:          100 * time.Millisecond,
			GossipNodes:             3,
			RetransmitMult:          4,
			PushPullInterval:        15 * time.Second,
			TCPTimeout:              5 * time.Second,
			GossipToTheDeadTime:     15 * time.Second,
		},
		Raft: RaftConfig{
			HeartbeatTimeout:   500 * time.Millisecond,
			ElectionTimeout:    500 * time.Millisecond,
			LeaderLeaseTimeout: 250 * time.Millisecond,
			CommitTimeout:      20 * time.Millisecond,
			SnapshotInterval:   2 * time.Minute,
			SnapshotThreshold:  8192,
			TrailingLogs:       10240,
			SnapshotRetain:     2,
			WALSegmentSize:     16 << 20,
		},
	}
}

// setDefaults fills zero fields from DefaultConfig.
func (c *Config) setDefaults() {
	d := DefaultConfig()
	setStr := func(v *string, def string) {
		if *v == "" {
			*v = def
		}
	}
	setDur := func(v *time.Duration, def time.Duration) {
		if *v == 0 {
			*v = def
		}
	}
	setInt := func(v *int, def int) {
		if *v == 0 {
			*v = def
		}
	}
	setStr(&c.ClusterName, d.ClusterName)
	setStr(&c.GossipAddr, d.GossipAddr)
	setStr(&c.ClusterAddr, d.ClusterAddr)
	setDur(&c.DeadCleanup, d.DeadCleanup)
	setInt(&c.MaxVoters, d.MaxVoters)
	setDur(&c.PromoteAfter, d.PromoteAfter)
	setDur(&c.ReconcileInterval, d.ReconcileInterval)
	setDur(&c.ReconnectInterval, d.ReconnectInterval)
	setDur(&c.JoinRetryMax, d.JoinRetryMax)
	setDur(&c.RPCTimeout, d.RPCTimeout)
	setDur(&c.ApplyTimeout, d.ApplyTimeout)
	setDur(&c.LeaveTimeout, d.LeaveTimeout)

	g, dg := &c.Gossip, d.Gossip
	setDur(&g.ProbeInterval, dg.ProbeInterval)
	setDur(&g.ProbeTimeout, dg.ProbeTimeout)
	setInt(&g.SuspicionMult, dg.SuspicionMult)
	setInt(&g.SuspicionMaxTimeoutMult, dg.SuspicionMaxTimeoutMult)
	setDur(&g.GossipInterval, dg.GossipInterval)
	setInt(&g.GossipNodes, dg.GossipNodes)
	setInt(&g.RetransmitMult, dg.RetransmitMult)
	setDur(&g.PushPullInterval, dg.PushPullInterval)
	setDur(&g.TCPTimeout, dg.TCPTimeout)
	setDur(&g.GossipToTheDeadTime, dg.GossipToTheDeadTime)

	r, dr := &c.Raft, d.Raft
	setDur(&r.HeartbeatTimeout, dr.HeartbeatTimeout)
	setDur(&r.ElectionTimeout, dr.ElectionTimeout)
	setDur(&r.LeaderLeaseTimeout, dr.LeaderLeaseTimeout)
	setDur(&r.CommitTimeout, dr.CommitTimeout)
	setDur(&r.SnapshotInterval, dr.SnapshotInterval)
	if r.SnapshotThreshold == 0 {
		r.SnapshotThreshold = dr.SnapshotThreshold
	}
	if r.TrailingLogs == 0 {
		r.TrailingLogs = dr.TrailingLogs
	}
	setInt(&r.SnapshotRetain, dr.SnapshotRetain)
	setInt(&r.WALSegmentSize, dr.WALSegmentSize)

	if c.NodeName == "" {
		c.NodeName = c.NodeID
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.lookupHost == nil {
		c.lookupHost = net.DefaultResolver.LookupHost
	}
}

// validate checks a defaulted configuration.
func (c *Config) validate() error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if c.DataDir == "" {
		bad("DataDir is required")
	}
	if c.NodeID != "" && !validID(c.NodeID) {
		bad("NodeID %q: use letters, digits, '.', '_' or '-' (at most 64)", c.NodeID)
	}
	for name, addr := range map[string]string{"GossipAddr": c.GossipAddr, "ClusterAddr": c.ClusterAddr,
		"GossipAdvertise": c.GossipAdvertise, "ClusterAdvertise": c.ClusterAdvertise} {
		if addr == "" {
			continue
		}
		if _, _, err := net.SplitHostPort(addr); err != nil {
			bad("%s %q: %v", name, addr, err)
		}
	}
	switch len(c.GossipKey) {
	case 0, 16, 24, 32:
	default:
		bad("GossipKey must be 16, 24 or 32 bytes, got %d", len(c.GossipKey))
	}
	if c.BootstrapExpect < 0 {
		bad("BootstrapExpect must not be negative")
	}
	if c.MaxVoters < 1 {
		bad("MaxVoters must be at least 1")
	}
	if c.BootstrapExpect > c.MaxVoters {
		bad("BootstrapExpect (%d) must not exceed MaxVoters (%d)", c.BootstrapExpect, c.MaxVoters)
	}
	if c.Raft.ElectionTimeout < c.Raft.HeartbeatTimeout {
		bad("Raft.ElectionTimeout must be at least Raft.HeartbeatTimeout")
	}
	if c.Raft.LeaderLeaseTimeout > c.Raft.HeartbeatTimeout {
		bad("Raft.LeaderLeaseTimeout must not exceed Raft.HeartbeatTimeout")
	}
	if c.Gossip.ProbeTimeout > c.Gossip.ProbeInterval {
		bad("Gossip.ProbeTimeout must not exceed Gossip.ProbeInterval")
	}
	if err := fsm.ValidateSections(c.Sections); err != nil {
		bad("Sections: %v", err)
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalidConfig, err)
	}
	return nil
}

func validID(id string) bool {
	if len(id) == 0 || len(id) > 64 {
		return false
	}
	for _, r := range id {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '.', r == '_', r == '-':
		default:
			return false
		}
	}
	return true
}

const nodeIDFile = "node-id"

// loadOrCreateNodeID returns the ID kept in dir, creating one if needed.
// An explicit ID must match a kept one: a data directory belongs to one node.
func loadOrCreateNodeID(dir, explicit string) (string, error) {
	path := filepath.Join(dir, nodeIDFile)
	b, err := os.ReadFile(path)
	switch {
	case err == nil:
		kept := strings.TrimSpace(string(b))
		if explicit != "" && explicit != kept {
			return "", fmt.Errorf("%w: data directory belongs to node %q, not %q", ErrInvalidConfig, kept, explicit)
		}
		return kept, nil
	case !errors.Is(err, os.ErrNotExist):
		return "", fmt.Errorf("read node ID: %w", err)
	}
	id := explicit
	if id == "" {
		var raw [16]byte
		if _, err := rand.Read(raw[:]); err != nil {
			return "", err
		}
		id = hex.EncodeToString(raw[:])
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(id+"\n"), 0o600); err != nil {
		return "", fmt.Errorf("write node ID: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return "", fmt.Errorf("write node ID: %w", err)
	}
	return id, nil
}

// DecodeGossipKey decodes a base64 gossip key (as generated by
// "openssl rand -base64 32") and checks its length.
func DecodeGossipKey(s string) ([]byte, error) {
	k, err := base64.StdEncoding.DecodeString(strings.TrimSpace(s))
	if err != nil {
		return nil, fmt.Errorf("%w: gossip key is not base64: %w", ErrInvalidConfig, err)
	}
	switch len(k) {
	case 16, 24, 32:
		return k, nil
	}
	return nil, fmt.Errorf("%w: gossip key must decode to 16, 24 or 32 bytes, got %d", ErrInvalidConfig, len(k))
}
