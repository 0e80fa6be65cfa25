package cluster

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	sockaddr "github.com/hashicorp/go-sockaddr"
	"github.com/hashicorp/memberlist"
	"github.com/hashicorp/raft"

	"github.com/sluicehq/sluice/cluster/fsm"
)

// Cluster is one node's membership in the Sluice cluster: gossip, raft,
// the replicated configuration and its published Snapshot.
type Cluster struct {
	cfg    Config
	logger *slog.Logger
	fsm    *fsm.FSM
	boot   *bootLock

	members     *memberTable
	broadcasts  *memberlist.TransmitLimitedQueue
	reconcileCh chan struct{} // membership changed: leader reconciles
	bootKick    chan struct{} // membership changed: bootstrap re-checks
	handlersMu  sync.RWMutex
	handlers    map[byte]MessageHandler

	// closed is set first thing at shutdown; API calls check it.
	closed atomic.Bool

	// Set by Start; guarded by mu against concurrent Start/Shutdown.
	mu              sync.Mutex
	started, shut   bool
	id              string
	metaBytes       []byte
	gossipAdvertise string
	clusterAdvert   string
	ctx             context.Context // cancelled first at shutdown
	cancel          context.CancelFunc
	wg              sync.WaitGroup
	stores          *raftStores
	mux             *mux
	trans           *raft.NetworkTransport
	raft            *raft.Raft
	ml              *memberlist.Memberlist
}

// New checks cfg and returns a node that is not started yet.
func New(cfg Config) (*Cluster, error) {
	cfg.setDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	c := &Cluster{
		cfg:         cfg,
		logger:      cfg.Logger,
		fsm:         fsm.New(cfg.Logger.With("component", "fsm"), cfg.Sections...),
		boot:        &bootLock{ttl: 5 * min(cfg.RPCTimeout, 2*time.Second)},
		reconcileCh: make(chan struct{}, 1),
		bootKick:    make(chan struct{}, 1),
		handlers:    map[byte]MessageHandler{},
	}
	c.members = newMemberTable(cfg.Logger, func() {
		notify(c.reconcileCh)
		notify(c.bootKick)
	})
	c.broadcasts = &memberlist.TransmitLimitedQueue{
		// From our table, not memberlist: gossip calls this while
		// memberlist.Create is still running.
		NumNodes:       c.members.aliveCount,
		RetransmitMult: cfg.Gossip.RetransmitMult,
	}
	return c, nil
}

// notify signals ch without blocking; a pending signal covers this one.
func notify(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

// Start opens the stores, the cluster port and gossip, starts raft and
// the background loops, and begins joining Join. It returns once the node
// serves; joining and bootstrapping continue in the background. If Start
// fails, everything it started is stopped again.
func (c *Cluster) Start(ctx context.Context) (err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.started || c.shut {
		return errors.New("cluster: Start called twice")
	}
	c.started = true
	c.ctx, c.cancel = context.WithCancel(context.Background())
	defer func() {
		if err != nil {
			c.closed.Store(true)
			c.stopLocked(ctx, false)
		}
	}()

	if err := os.MkdirAll(c.cfg.DataDir, 0o700); err != nil {
		return fmt.Errorf("create data directory: %w", err)
	}
	if c.id, err = loadOrCreateNodeID(c.cfg.DataDir, c.cfg.NodeID); err != nil {
		return err
	}
	if c.cfg.NodeName == "" {
		c.cfg.NodeName = c.id
	}
	c.logger = c.logger.With("node", c.id)
	c.members.logger = c.logger
	if c.stores, err = c.openRaftStores(); err != nil {
		return err
	}

	// The cluster port: raft and the forwarding RPC.
	ln, err := net.Listen("tcp", c.cfg.ClusterAddr)
	if err != nil {
		return fmt.Errorf("listen on cluster address: %w", err)
	}
	if c.clusterAdvert, err = advertiseAddr(c.cfg.ClusterAdvertise, ln.Addr().(*net.TCPAddr)); err != nil {
		_ = ln.Close()
		return err
	}
	c.mux = newMux(ln, strAddr(c.clusterAdvert), c.logger, c.serveRPC)
	c.trans = raft.NewNetworkTransportWithConfig(&raft.NetworkTransportConfig{
		ServerAddressProvider: addressProvider{c},
		Logger:                newHCLog(c.logger, "raft-net"),
		Stream:                raftLayer{c.mux},
		MaxPool:               3,
		Timeout:               c.cfg.RPCTimeout,
	})
	hasState, err := raft.HasExistingState(c.stores.wal, c.stores.wal, c.stores.snaps)
	if err != nil {
		return fmt.Errorf("read raft state: %w", err)
	}
	if c.raft, err = raft.NewRaft(c.raftConfig(), c.fsm, c.stores.wal, c.stores.wal, c.stores.snaps, c.trans); err != nil {
		return fmt.Errorf("start raft: %w", err)
	}
	c.mux.start()

	// Gossip.
	c.metaBytes, err = encodeMeta(NodeMeta{
		ID: c.id, Name: c.cfg.NodeName, ClusterAddr: c.clusterAdvert,
		APIAddr: c.cfg.APIAddr, AdminAddr: c.cfg.AdminAddr,
		Region: c.cfg.Region, Zone: c.cfg.Zone, Version: c.cfg.Version,
		BootstrapExpect: c.cfg.BootstrapExpect,
	})
	if err != nil {
		return err
	}
	mc, err := c.gossipConfig()
	if err != nil {
		return err
	}
	if c.ml, err = memberlist.Create(mc); err != nil {
		return fmt.Errorf("start gossip: %w", err)
	}
	c.gossipAdvertise = c.ml.LocalNode().Address()

	c.startMetrics()
	c.goLoop(c.monitorLeadership)
	c.goLoop(c.reconnectLoop)
	if c.cfg.BootstrapExpect > 0 && !hasState {
		c.goLoop(c.bootstrapLoop)
	}
	if len(c.cfg.Join) > 0 {
		c.goLoop(c.joinLoop)
	}
	c.logger.Info("cluster node started", "gossip", c.gossipAdvertise, "cluster", c.clusterAdvert,
		"existing_state", hasState, "bootstrap_expect", c.cfg.BootstrapExpect)
	return nil
}

func (c *Cluster) goLoop(fn func(context.Context)) {
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		fn(c.ctx)
	}()
}

// gossipConfig resolves the gossip bind and advertise addresses.
func (c *Cluster) gossipConfig() (*memberlist.Config, error) {
	host, portStr, err := net.SplitHostPort(c.cfg.GossipAddr)
	if err != nil {
		return nil, fmt.Errorf("%w: GossipAddr: %w", ErrInvalidConfig, err)
	}
	port, err := strconv.Atoi(portStr)
	if err != nil {
		return nil, fmt.Errorf("%w: GossipAddr port: %w", ErrInvalidConfig, err)
	}
	if host == "" {
		host = "0.0.0.0"
	}
	advHost, advPort := "", port
	if c.cfg.GossipAdvertise != "" {
		h, p, err := net.SplitHostPort(c.cfg.GossipAdvertise)
		if err != nil {
			return nil, fmt.Errorf("%w: GossipAdvertise: %w", ErrInvalidConfig, err)
		}
		if advPort, err = strconv.Atoi(p); err != nil {
			return nil, fmt.Errorf("%w: GossipAdvertise port: %w", ErrInvalidConfig, err)
		}
		advHost = h
	}
	return c.memberlistConfig(host, port, advHost, advPort), nil
}

// advertiseAddr returns explicit if set, else the bound address with a
// usable host: a wildcard bind advertises a private IP of this host.
func advertiseAddr(explicit string, bound *net.TCPAddr) (string, error) {
	if explicit != "" {
		return explicit, nil
	}
	if !bound.IP.IsUnspecified() {
		return bound.String(), nil
	}
	ip, err := sockaddr.GetPrivateIP()
	if err != nil || ip == "" {
		return "", fmt.Errorf("%w: cannot pick an address to advertise for a wildcard bind; set the advertise address", ErrInvalidConfig)
	}
	return net.JoinHostPort(ip, strconv.Itoa(bound.Port)), nil
}

// Shutdown leaves the cluster gracefully and releases everything. It is
// idempotent; later calls return nil at once.
func (c *Cluster) Shutdown(ctx context.Context) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.shut {
		return nil
	}
	c.closed.Store(true)
	return c.stopLocked(ctx, true)
}

// halt stops the node without leaving gossip or handing leadership over,
// as if the process had been killed; for tests.
func (c *Cluster) halt() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.shut {
		c.closed.Store(true)
		_ = c.stopLocked(context.Background(), false)
	}
}

// stopLocked tears down whatever Start got to, in order. c.mu is held.
func (c *Cluster) stopLocked(ctx context.Context, graceful bool) error {
	c.shut = true
	var errs []error
	// 1. Stop our own loops (join, reconnect, bootstrap, leader) so none of
	//    them acts on raft or gossip while those go away. In-flight RPC
	//    handlers see their context end.
	if c.cancel != nil {
		c.cancel()
	}
	c.wg.Wait()
	// 2. Hand leadership to a caught-up follower, so the cluster does not
	//    wait an election timeout for a new leader.
	if graceful && c.raft != nil && c.raft.State() == raft.Leader {
		if err := c.raft.LeadershipTransfer().Error(); err != nil {
			c.logger.Warn("leadership transfer failed", "error", err)
		}
	}
	// 3. Leave gossip, so peers record "left" at once instead of detecting
	//    a failure.
	if graceful && c.ml != nil {
		c.announceLeave()
		// memberlist waits forever on a zero timeout.
		if err := leaveGossip(c.ml, max(min(c.cfg.LeaveTimeout, remaining(ctx)), time.Millisecond)); err != nil {
			c.logger.Warn("gossip leave", "error", err)
		}
	}
	// 4. Stop raft: no more applies, no more snapshots.
	if c.raft != nil {
		if err := c.raft.Shutdown().Error(); err != nil {
			errs = append(errs, fmt.Errorf("raft shutdown: %w", err))
		}
	}
	// 5. Stop gossip.
	if c.ml != nil {
		if err := c.ml.Shutdown(); err != nil {
			errs = append(errs, fmt.Errorf("gossip shutdown: %w", err))
		}
	}
	// 6. Close the cluster port: raft's transport, then every connection
	//    and handler of the mux.
	if c.trans != nil {
		c.trans.CloseStreams()
		_ = c.trans.Close()
	}
	if c.mux != nil {
		c.mux.Close()
	}
	// 7. Close the stores last: raft is the only writer and it is stopped.
	if c.stores != nil {
		if err := c.stores.close(); err != nil {
			errs = append(errs, fmt.Errorf("close raft stores: %w", err))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	c.logger.Info("cluster node stopped", "graceful", graceful)
	return nil
}

// leaveGossip is memberlist's Leave, which panics if memberlist was
// already shut down (by a failed gossip layer in tests, for instance).
func leaveGossip(ml *memberlist.Memberlist, timeout time.Duration) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("gossip already shut down: %v", r)
		}
	}()
	return ml.Leave(timeout)
}

// remaining is the time left before ctx's deadline (an hour if none).
func remaining(ctx context.Context) time.Duration {
	if d, ok := ctx.Deadline(); ok {
		return max(time.Until(d), 0)
	}
	return time.Hour
}
