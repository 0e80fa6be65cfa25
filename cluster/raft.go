package cluster

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/hashicorp/raft"
	wal "github.com/hashicorp/raft-wal"
	"github.com/hashicorp/raft-wal/metadb"
)

// raftStores are the on-disk pieces of raft; close releases them.
type raftStores struct {
	meta  *metadb.BoltMetaDB
	wal   *wal.WAL
	snaps *raft.FileSnapshotStore
}

// openRaftStores opens DataDir/raft/{wal,snapshots}. On error nothing is
// left open.
func (c *Cluster) openRaftStores() (_ *raftStores, err error) {
	base := filepath.Join(c.cfg.DataDir, "raft")
	walDir := filepath.Join(base, "wal")
	if err := os.MkdirAll(walDir, 0o700); err != nil {
		return nil, fmt.Errorf("create raft directory: %w", err)
	}
	s := &raftStores{meta: &metadb.BoltMetaDB{}}
	defer func() {
		if err != nil {
			s.close()
		}
	}()
	// The store owns the metadata database and closes it after the log, so
	// the file lock is released on every path, including a failed open
	// (closing it twice is a no-op).
	s.wal, err = wal.Open(walDir,
		wal.WithMetaStore(s.meta),
		wal.WithSegmentSize(c.cfg.Raft.WALSegmentSize),
		wal.WithLogger(newHCLog(c.logger, "raft-wal")))
	if err != nil {
		return nil, fmt.Errorf("open raft log: %w", err)
	}
	s.snaps, err = raft.NewFileSnapshotStoreWithLogger(base, c.cfg.Raft.SnapshotRetain, newHCLog(c.logger, "raft-snapshots"))
	if err != nil {
		return nil, fmt.Errorf("open raft snapshots: %w", err)
	}
	return s, nil
}

func (s *raftStores) close() error {
	var first error
	if s.wal != nil {
		first = s.wal.Close()
	}
	if err := s.meta.Close(); err != nil && first == nil {
		first = err
	}
	return first
}

// raftConfig builds hashicorp/raft's configuration.
func (c *Cluster) raftConfig() *raft.Config {
	r := c.cfg.Raft
	rc := raft.DefaultConfig()
	rc.LocalID = raft.ServerID(c.id)
	rc.HeartbeatTimeout = r.HeartbeatTimeout
	rc.ElectionTimeout = r.ElectionTimeout
	rc.LeaderLeaseTimeout = r.LeaderLeaseTimeout
	rc.CommitTimeout = r.CommitTimeout
	rc.SnapshotInterval = r.SnapshotInterval
	rc.SnapshotThreshold = r.SnapshotThreshold
	rc.TrailingLogs = r.TrailingLogs
	// A removed server keeps raft running as a follower outside the
	// configuration (raft never lets it start an election), so the leader
	// can add it back when it reappears in gossip, e.g. after a partition
	// that outlasted DeadCleanup, without a restart.
	rc.ShutdownOnRemove = false
	rc.Logger = newHCLog(c.logger, "raft")
	return rc
}

// addressProvider resolves raft server IDs to the cluster address they
// announce in gossip, so a node that comes back on a new address is
// reachable before the leader updates the raft configuration. Unknown IDs
// fall back to the configuration's address.
type addressProvider struct{ c *Cluster }

func (p addressProvider) ServerAddr(id raft.ServerID) (raft.ServerAddress, error) {
	if m, ok := p.c.members.get(string(id)); ok && m.ClusterAddr != "" {
		return raft.ServerAddress(m.ClusterAddr), nil
	}
	return "", fmt.Errorf("%w: %s", ErrUnknownMember, id)
}
