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
	cl, err := cluster.New(cc)
	if err != nil {
		return fmt.Errorf("cluster: %w", err)
	}
	if err := cl.Start(ctx); err != nil {
		return fmt.Errorf("cluster start: %w", err)
	}
	n.cluster = cl
	if n.cfg.Admin != nil {
		if ac.Logger == nil {
			ac.Logger = n.cfg.Logger
		}
		if ac.Drainer == nil {
			ac.Drainer = admin.DrainFunc(n.Drain)
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
		for {
			select {
			case <-ctx.Done():
				return
			case s, ok := <-snaps:
				if !ok {
					return
				}
				n.router.Update(s)
				n.cfg.Logger.Debug("configuration installed", "version", s.Version)
			}
		}
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
