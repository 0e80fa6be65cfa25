package node

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"time"

	"github.com/sluicehq/sluice/cluster"
	"github.com/sluicehq/sluice/quota"
)

// Gossip message types of the quota actors.
const (
	msgQuotaReport byte = cluster.FirstUserMessage + 4 // node -> leader demand report
	msgQuotaCool   byte = cluster.FirstUserMessage + 5 // a deployment answered 429: cool it everywhere
)

// maxRemoteCooling bounds a cooling mark received from a peer.
const maxRemoteCooling = time.Minute

// coolMessage tells peers a deployment is cooling until a time.
type coolMessage struct {
	Deployment string `json:"d"`
	Until      int64  `json:"u"` // unix nanoseconds
}

// broadcastCool spreads a cooling mark by gossip; only the latest mark of
// a deployment is kept in the queue.
func (n *Node) broadcastCool(deployment string, until time.Time) {
	cl := n.coolVia.Load()
	if cl == nil {
		return
	}
	body, err := json.Marshal(coolMessage{Deployment: deployment, Until: until.UnixNano()})
	if err != nil {
		return
	}
	_ = cl.BroadcastLatest(msgQuotaCool, deployment, body)
}

// handleCool applies a peer's cooling mark.
func (n *Node) handleCool(_ string, payload []byte) {
	var m coolMessage
	if err := json.Unmarshal(payload, &m); err != nil || m.Deployment == "" {
		return
	}
	until := time.Unix(0, m.Until)
	if limit := time.Now().Add(maxRemoteCooling); until.After(limit) {
		until = limit
	}
	n.router.Cool(m.Deployment, until)
}

// shareTransport adapts the cluster to quota.ShareTransport. Its cluster
// is set once the cluster exists; until then the actors are not running.
type shareTransport struct{ c *cluster.Cluster }

func (t *shareTransport) IsLeader() bool { return t.c.IsLeader() }

func (t *shareTransport) Barrier(ctx context.Context) error { return t.c.Barrier(ctx) }

func (t *shareTransport) ApplySection(ctx context.Context, typ uint8, body []byte) (any, error) {
	return t.c.ApplySection(ctx, typ, body)
}

func (t *shareTransport) SendReport(_ context.Context, body []byte) error {
	l, ok := t.c.Leader()
	if !ok {
		return cluster.ErrNoLeader
	}
	return t.c.SendTo(l.ID, msgQuotaReport, body)
}

func (t *shareTransport) Alive() []string {
	var out []string
	for _, m := range t.c.Members() {
		if m.State == cluster.StateAlive || m.State == cluster.StateSuspect {
			out = append(out, m.ID)
		}
	}
	return out
}

func (t *shareTransport) Size() int { return len(t.c.Status().Servers) }

// newShares builds the quota share actors of a cluster node; each start
// of the process is a new incarnation, because its windows start empty.
func (n *Node) newShares(nodeID string, tr *shareTransport) (*quota.Shares, error) {
	var inc [4]byte
	if _, err := rand.Read(inc[:]); err != nil {
		return nil, fmt.Errorf("incarnation: %w", err)
	}
	return quota.NewShares(quota.SharesConfig{
		NodeID:    nodeID,
		Limiter:   n.limiter,
		Transport: tr,
		Logger:    n.cfg.Logger,
	}, hex.EncodeToString(inc[:])), nil
}

// QuotaState returns what this node's share holder last applied (nil on
// a standalone node).
func (n *Node) QuotaState() *quota.HolderState {
	if n.shares == nil {
		return nil
	}
	return n.shares.Holder().State()
}

// Config returns the node's configuration (with defaults applied).
func (n *Node) Config() Config { return n.cfg }
