package node

import (
	"context"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/sluicehq/sluice/admin"
	"github.com/sluicehq/sluice/cluster"
	"github.com/sluicehq/sluice/cluster/fsm"
	"github.com/sluicehq/sluice/cluster/state"
)

// startCluster joins the cluster and starts the goroutine that installs
// every new replicated snapshot into the router: the single owner of
// configuration changes on a cluster node.
func (n *Node) startCluster(ctx context.Context) error {
	cc := *n.cfg.Cluster
	if cc.APIAddr == "" {
		cc.APIAddr = n.ln.Addr().String()
	}
	if cc.Logger == nil {
		cc.Logger = n.cfg.Logger
	}
	if cc.Metrics == nil {
		cc.Metrics = n.metrics
	}
	var ac admin.Config
	if n.cfg.Admin != nil {
		ac = *n.cfg.Admin
		// Bind before joining so the address in gossip is the real one.
		aln, err := net.Listen("tcp", ac.Addr)
		if err != nil {
			return fmt.Errorf("listen admin %s: %w", ac.Addr, err)
		}
		ac.Addr = aln.Addr().String()
		_ = aln.Close()
		cc.AdminAddr = ac.Addr
	}
	tr := &shareTransport{}
	shares, err := n.newShares(cc.NodeID, tr)
	if err != nil {
		return err
	}
	cc.Sections = append(cc.Sections, shares.Table())
	if n.ledger != nil {
		cc.Sections = append(cc.Sections, n.ledger.section)
	}
	cl, err := cluster.New(cc)
	if err != nil {
		return fmt.Errorf("cluster: %w", err)
	}
	tr.c = cl
	cl.RegisterHandler(msgQuotaReport, func(_ string, payload []byte) { shares.HandleReport(payload) })
	cl.RegisterHandler(msgQuotaCool, n.handleCool)
	n.coolVia.Store(cl)
	if err := cl.Start(ctx); err != nil {
		return fmt.Errorf("cluster start: %w", err)
	}
	n.cluster = cl
	if err := n.startLedger(ctx, cl); err != nil {
		return err
	}
	shares.SetNodeID(cl.ID())
	n.shares = shares
	if n.cfg.Admin != nil {
		if ac.Logger == nil {
			ac.Logger = n.cfg.Logger
		}
		if ac.Drainer == nil {
			ac.Drainer = admin.DrainFunc(n.Drain)
		}
		if ac.Usage == nil && n.ledger != nil {
			ac.Usage = n.ledger.section
		}
		if ac.Deployments == nil {
			ac.Deployments = admin.DeploymentStatusFunc(n.deploymentStatus)
		}
		srv, err := admin.New(ac, cl)
		if err != nil {
			return fmt.Errorf("admin: %w", err)
		}
		if err := srv.Start(); err != nil {
			return fmt.Errorf("admin start: %w", err)
		}
		n.admin = srv
	}
	snaps, cancel := cl.Subscribe()
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		defer cancel()
		// A node restarted from its data directory holds its last raft
		// snapshot, which may be older than the cluster's configuration:
		// it serves nothing (503, not ready) until it caught up with the
		// leader once, rather than answer 401 for keys it does not know yet.
		if !n.catchUp(ctx, cl) {
			return
		}
		n.router.Update(cl.Snapshot())
		for {
			select {
			case <-ctx.Done():
				return
			case s, ok := <-snaps:
				if !ok {
					return
				}
				n.router.Update(s)
				shares.Update(s)
				n.cfg.Logger.Debug("configuration installed", "version", s.Version)
			}
		}
	}()
	shares.Update(cl.Snapshot())
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		shares.Run(ctx)
	}()
	if n.cfg.SeedConfig != nil {
		n.wg.Add(1)
		go func() {
			defer n.wg.Done()
			n.seed(ctx, *n.cfg.SeedConfig)
		}()
	}
	return nil
}

// catchUp waits until a consistent read succeeds: this node has applied
// everything the cluster committed before it asked. It reports false when
// ctx ends first.
func (n *Node) catchUp(ctx context.Context, cl *cluster.Cluster) bool {
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	for {
		rctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		_, err := cl.Read(rctx, true)
		cancel()
		if err == nil {
			return true
		}
		select {
		case <-ctx.Done():
			return false
		case <-t.C:
		}
	}
}

// seed applies the seed configuration once, from the leader, while the
// replicated configuration is empty. It gives up when ctx ends.
func (n *Node) seed(ctx context.Context, c state.Config) {
	t := time.NewTicker(200 * time.Millisecond)
	defer t.Stop()
	for {
		if n.cluster.Snapshot().Version != 0 {
			return
		}
		if n.cluster.IsLeader() {
			_, err := n.cluster.Apply(ctx, &fsm.ApplyConfig{Header: fsm.Header{Actor: "seed:" + n.cluster.ID()}, Config: c})
			if err == nil {
				n.cfg.Logger.Info("seed configuration applied")
				return
			}
			if !errors.Is(err, cluster.ErrNotLeader) && !errors.Is(err, cluster.ErrNoLeader) {
				n.cfg.Logger.Error("seed configuration refused", "err", err)
				return
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// Cluster returns the node's cluster membership, or nil when standalone.
func (n *Node) Cluster() *cluster.Cluster { return n.cluster }
