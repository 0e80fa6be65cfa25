package node

import (
	"context"
	"fmt"
	"path/filepath"
	"sync/atomic"
	"time"

	"github.com/sluicehq/sluice/cluster"
	"github.com/sluicehq/sluice/cluster/fsm"
	"github.com/sluicehq/sluice/quota/ledger"
	"github.com/sluicehq/sluice/router"
)

// The ledger cannot import the cluster, so the node checks at compile time
// that its section fits the FSM: it implements the contract structurally,
// validates bodies before raft sees them, and owns fsm.CmdUsageBatch (the
// constant expression overflows, failing the build, if the types differ).
var (
	_ fsm.Section          = (*ledger.Section)(nil)
	_ fsm.SectionValidator = (*ledger.Section)(nil)
)

const _ = uint(ledger.SectionType-uint8(fsm.CmdUsageBatch)) + uint(uint8(fsm.CmdUsageBatch)-ledger.SectionType)

// nodeLedger is the usage ledger of a cluster node: the replicated section
// (registered with the cluster, read by the admin API) and the batcher
// that feeds it from the router's usage records.
type nodeLedger struct {
	section *ledger.Section
	batcher atomic.Pointer[ledger.Batcher] // set once the cluster runs
	next    router.Sink                    // the sink configured before, if any
}

// Record hands a finished request to the batcher (and to the sink that was
// configured before). It never blocks.
func (l *nodeLedger) Record(r *router.Record) {
	if l.next != nil {
		l.next.Record(r)
	}
	b := l.batcher.Load()
	if b == nil {
		return // the API does not serve before the cluster runs
	}
	b.Record(&ledger.Usage{
		Time: r.Time, Tenant: r.Tenant, KeyID: r.KeyID, Model: r.Model, Deployment: r.Deployment,
		Region: r.Region, Class: r.Class, Cached: r.Cached, Status: r.Status,
		PromptTokens: r.PromptTokens, CompletionTokens: r.CompletionTokens,
	})
}

// initLedger, in cluster mode, makes the ledger the router's usage sink
// (chained after any sink already configured).
func (n *Node) initLedger(rc *router.Config) {
	if n.cfg.Cluster == nil {
		return // standalone: no replicated ledger, the configured sink stays
	}
	n.ledger = &nodeLedger{section: ledger.NewSection(), next: rc.Sink}
	rc.Sink = n.ledger
	// Hour and day budgets count what the whole cluster used, durably.
	section := n.ledger.section
	n.limiter.SetLedger(func(tenant, key string, from, to time.Time) int64 {
		c := section.View().Totals(tenant, key, from, to)
		return c.PromptTokens + c.CompletionTokens
	})
}

// UsageLedger returns the node's replicated usage ledger, or nil when
// standalone.
func (n *Node) UsageLedger() *ledger.Section {
	if n.ledger == nil {
		return nil
	}
	return n.ledger.section
}

// ledgerJournalFile is the usage ledger's write-ahead journal in the
// cluster data directory.
const ledgerJournalFile = "usage-ledger.journal"

// startLedger starts the batcher once the cluster runs; it stops when ctx
// ends, after a final flush (the cluster is shut down after it).
func (n *Node) startLedger(ctx context.Context, cl *cluster.Cluster) error {
	if n.ledger == nil {
		return nil
	}
	bc := n.cfg.Ledger
	bc.NodeID = cl.ID()
	if bc.Metrics == nil {
		bc.Metrics = n.metrics
	}
	if bc.Logger == nil {
		bc.Logger = n.cfg.Logger.With("component", "ledger")
	}
	if bc.JournalPath == "" && n.cfg.Cluster.DataDir != "" {
		// The journal lives beside the raft log: a node restarted from its
		// data directory re-sends what a kill left unapplied.
		bc.JournalPath = filepath.Join(n.cfg.Cluster.DataDir, ledgerJournalFile)
	}
	// NewBatcher replays the journal before the batcher is installed, so
	// the replayed usage goes first.
	b, err := ledger.NewBatcher(bc, ledger.ApplierFunc(func(ctx context.Context, body []byte) ([]byte, error) {
		return cl.ApplySection(ctx, ledger.SectionType, body)
	}))
	if err != nil {
		return fmt.Errorf("usage ledger: %w", err)
	}
	n.ledger.batcher.Store(b)
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		if err := b.Run(ctx); err != nil {
			n.cfg.Logger.Error("usage ledger stopped with rows unsent", "err", err)
		}
	}()
	return nil
}
