package ledger

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/VictoriaMetrics/metrics"
)

// Usage is one finished request, as the request path reports it. The node
// adapts the router's record to it (this package does not import the
// router).
type Usage struct {
	// Time is when the request finished; zero means now.
	Time             time.Time
	Tenant           string
	KeyID            string
	Model            string
	Deployment       string
	Region           string
	Class            string
	Cached           bool
	Status           int
	PromptTokens     int64
	CompletionTokens int64
}

// Applier commits an encoded Batch through the cluster (any node; it
// forwards to the leader) and returns the section's result as JSON (an
// ApplyResult).
type Applier interface {
	ApplyUsage(ctx context.Context, body []byte) ([]byte, error)
}

// ApplierFunc adapts a function to Applier.
type ApplierFunc func(ctx context.Context, body []byte) ([]byte, error)

// ApplyUsage calls f.
func (f ApplierFunc) ApplyUsage(ctx context.Context, body []byte) ([]byte, error) {
	return f(ctx, body)
}

// BatcherConfig configures a Batcher. Zero fields take the defaults.
type BatcherConfig struct {
	// NodeID names this node in batch IDs. Required.
	NodeID string
	// Incarnation distinguishes this run of the node from earlier ones.
	// Default: random. Reusing an earlier run's incarnation would make its
	// new batches look like duplicates; set it only in tests.
	Incarnation uint64
	// FlushInterval is how often pending rows are sent. Default 1s: a
	// crash loses at most this much usage, and raft sees one entry per
	// node per second.
	FlushInterval time.Duration
	// MaxRows sends a batch early when this many distinct rows are
	// pending. Default 2000 (a batch of about 300 KB of JSON).
	MaxRows int
	// QueueSize is the buffer between the request path and the batcher.
	// Default 32768: about 6.5 s of records at 5,000 requests/s, more than
	// one AttemptTimeout, during which the batcher waits on the cluster and
	// does not drain the queue (between attempts it drains it).
	QueueSize int
	// AttemptTimeout bounds one apply attempt. Default 5s.
	AttemptTimeout time.Duration
	// RetryMin and RetryMax bound the backoff between attempts of the same
	// batch. Defaults 50ms and 2s.
	RetryMin, RetryMax time.Duration
	// ShutdownTimeout bounds the final flush when Run's context ends.
	// Default 5s.
	ShutdownTimeout time.Duration
	// Metrics receives the sluice_ledger_* metrics. Default: a private set.
	Metrics *metrics.Set
	// Logger; default slog.Default().
	Logger *slog.Logger
}

func (c *BatcherConfig) setDefaults() error {
	if c.NodeID == "" {
		return errors.New("ledger: BatcherConfig.NodeID is required")
	}
	if c.Incarnation == 0 {
		var b [8]byte
		if _, err := rand.Read(b[:]); err != nil {
			return fmt.Errorf("ledger: incarnation: %w", err)
		}
		c.Incarnation = binary.BigEndian.Uint64(b[:]) | 1
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&c.FlushInterval, time.Second)
	def(&c.AttemptTimeout, 5*time.Second)
	def(&c.RetryMin, 50*time.Millisecond)
	def(&c.RetryMax, 2*time.Second)
	def(&c.ShutdownTimeout, 5*time.Second)
	if c.MaxRows <= 0 {
		c.MaxRows = 2000
	}
	if c.QueueSize <= 0 {
		c.QueueSize = 32768
	}
	if c.Metrics == nil {
		c.Metrics = metrics.NewSet()
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return nil
}

// Batcher aggregates usage records into rows and flushes them as batches,
// in order, each retried until applied. Record may be called from any
// goroutine; Run owns everything else.
type Batcher struct {
	cfg     BatcherConfig
	applier Applier
	in      chan Usage
	running atomic.Bool

	// Owned by Run.
	seq      uint64
	pending  map[rowKey]Counts
	inflight []byte // the encoded batch being sent, nil when none
	inRows   int    // rows in inflight
	backoff  time.Duration

	pendingRows atomic.Int64
	applied     *metrics.Counter
	duplicates  *metrics.Counter
	flushErrors *metrics.Counter
	dropped     *metrics.Counter
	lost        *metrics.Counter
}

type rowKey struct {
	bucket int64
	Labels
}

// NewBatcher checks cfg and returns a Batcher; call Run to start it.
func NewBatcher(cfg BatcherConfig, a Applier) (*Batcher, error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	if a == nil {
		return nil, errors.New("ledger: nil Applier")
	}
	b := &Batcher{cfg: cfg, applier: a, in: make(chan Usage, cfg.QueueSize), pending: map[rowKey]Counts{}}
	m := cfg.Metrics
	b.applied = m.GetOrCreateCounter("sluice_ledger_batches_applied_total")
	b.duplicates = m.GetOrCreateCounter("sluice_ledger_batches_duplicate_total")
	b.flushErrors = m.GetOrCreateCounter("sluice_ledger_flush_errors_total")
	b.dropped = m.GetOrCreateCounter("sluice_ledger_records_dropped_total")
	b.lost = m.GetOrCreateCounter("sluice_ledger_rows_lost_total")
	m.GetOrCreateGauge("sluice_ledger_pending_rows", func() float64 { return float64(b.pendingRows.Load()) })
	return b, nil
}

// Incarnation is this Batcher's incarnation.
func (b *Batcher) Incarnation() uint64 { return b.cfg.Incarnation }

// Record queues u. It never blocks: when the queue is full the record is
// dropped and sluice_ledger_records_dropped_total counts it.
func (b *Batcher) Record(u *Usage) {
	select {
	case b.in <- *u:
	default:
		b.dropped.Inc()
	}
}

// Run aggregates and flushes until ctx ends, then flushes what it holds
// (bounded by ShutdownTimeout) and returns. It returns an error only when
// that final flush left rows unsent (they are lost and counted in
// sluice_ledger_rows_lost_total).
func (b *Batcher) Run(ctx context.Context) error {
	if !b.running.CompareAndSwap(false, true) {
		return errors.New("ledger: Batcher.Run called twice")
	}
	tick := time.NewTicker(b.cfg.FlushInterval)
	defer tick.Stop()
	retry := time.NewTimer(time.Hour)
	retry.Stop()
	defer retry.Stop()
	for {
		select {
		case <-ctx.Done():
			return b.finish()
		case u := <-b.in:
			b.add(&u)
			if len(b.pending) >= b.cfg.MaxRows && b.inflight == nil {
				b.flush(ctx, retry)
			}
		case <-tick.C:
			if b.inflight == nil {
				b.flush(ctx, retry)
			}
		case <-retry.C:
			b.flush(ctx, retry)
		}
	}
}

func (b *Batcher) add(u *Usage) {
	t := u.Time
	if t.IsZero() {
		t = time.Now()
	}
	k := rowKey{
		bucket: floorTo(t.Unix(), minuteSecs),
		Labels: Labels{Tenant: u.Tenant, Key: u.KeyID, Model: u.Model, Deployment: u.Deployment,
			Region: u.Region, Class: u.Class, Cached: u.Cached},
	}
	c := Counts{Requests: 1, PromptTokens: u.PromptTokens, CompletionTokens: u.CompletionTokens}
	if u.Status >= 400 {
		c.Errors = 1
	}
	if _, ok := b.pending[k]; !ok {
		b.pendingRows.Add(1)
	}
	b.pending[k] = b.pending[k].Add(c)
}

// cut turns the pending rows into the next batch. It reports false when
// there is nothing to send.
func (b *Batcher) cut() (bool, error) {
	if b.inflight != nil {
		return true, nil
	}
	if len(b.pending) == 0 {
		return false, nil
	}
	b.seq++
	batch := Batch{ID: BatchID{Node: b.cfg.NodeID, Incarnation: b.cfg.Incarnation, Seq: b.seq}, Rows: make([]Row, 0, len(b.pending))}
	for k, c := range b.pending {
		batch.Rows = append(batch.Rows, Row{Bucket: k.bucket, Labels: k.Labels, Counts: c})
	}
	body, err := json.Marshal(&batch)
	if err != nil {
		return false, fmt.Errorf("encode usage batch: %w", err)
	}
	b.inflight, b.inRows = body, len(batch.Rows)
	b.pending = map[rowKey]Counts{}
	return true, nil
}

// send makes one attempt at the in-flight batch.
func (b *Batcher) send(ctx context.Context) error {
	actx, cancel := context.WithTimeout(ctx, b.cfg.AttemptTimeout)
	defer cancel()
	out, err := b.applier.ApplyUsage(actx, b.inflight)
	if err != nil {
		b.flushErrors.Inc()
		return err
	}
	var res ApplyResult
	if len(out) > 0 {
		if err := json.Unmarshal(out, &res); err != nil {
			b.cfg.Logger.Warn("usage batch applied; result not understood", "err", err)
		}
	}
	if res.Duplicate {
		b.duplicates.Inc()
	} else {
		b.applied.Inc()
	}
	b.pendingRows.Add(-int64(b.inRows))
	b.inflight, b.inRows, b.backoff = nil, 0, 0
	return nil
}

// flush sends batches while there is work and attempts succeed; after a
// failure it arms retry with the next backoff.
func (b *Batcher) flush(ctx context.Context, retry *time.Timer) {
	for {
		ok, err := b.cut()
		if err != nil {
			b.cfg.Logger.Error("usage batch dropped", "err", err)
			b.lost.Add(len(b.pending))
			b.pendingRows.Add(-int64(len(b.pending)))
			b.pending = map[rowKey]Counts{}
			return
		}
		if !ok {
			return
		}
		if err := b.send(ctx); err != nil {
			if ctx.Err() != nil {
				return // finish takes over
			}
			b.backoff = min(max(b.backoff*2, b.cfg.RetryMin), b.cfg.RetryMax)
			b.cfg.Logger.Warn("usage batch not applied; retrying", "seq", b.seq, "in", b.backoff, "err", err)
			retry.Reset(b.backoff)
			return
		}
		if len(b.pending) < b.cfg.MaxRows {
			return
		}
	}
}

// finish drains the queue and flushes everything, retrying until
// ShutdownTimeout.
func (b *Batcher) finish() error {
	for drained := false; !drained; {
		select {
		case u := <-b.in:
			b.add(&u)
		default:
			drained = true
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), b.cfg.ShutdownTimeout)
	defer cancel()
	backoff := b.cfg.RetryMin
	for {
		ok, err := b.cut()
		if err != nil || !ok {
			return err
		}
		err = b.send(ctx)
		if err == nil {
			continue
		}
		wait := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
			wait.Stop()
			lost := b.inRows + len(b.pending)
			b.lost.Add(lost)
			b.pendingRows.Add(-int64(lost))
			return fmt.Errorf("ledger: final flush gave up, %d rows lost: %w", lost, err)
		case <-wait.C:
		}
		backoff = min(backoff*2, b.cfg.RetryMax)
	}
}
