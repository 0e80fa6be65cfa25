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
	// FlushInterval is how often pending rows are sent. Default 1s: raft
	// sees one entry per node per second. Without a journal a crash loses
	// at most this much usage.
	FlushInterval time.Duration
	// MaxRows sends a batch early when this many distinct rows are
	// pending. Default 2000 (a batch of about 300 KB of JSON).
	MaxRows int
	// QueueSize is the buffer between the request path and the batcher.
	// Default 32768: about 6.5 s of records at 5,000 requests/s. The
	// batcher drains it while an apply attempt waits on the cluster.
	QueueSize int
	// AttemptTimeout bounds one apply attempt. Default 5s.
	AttemptTimeout time.Duration
	// RetryMin and RetryMax bound the backoff between attempts of the same
	// batch. Defaults 50ms and 2s.
	RetryMin, RetryMax time.Duration
	// ShutdownTimeout bounds the final flush when Run's context ends.
	// Default 5s.
	ShutdownTimeout time.Duration
	// JournalPath is the write-ahead journal (see the package doc).
	// Default empty: no journal, and a crash loses what the batcher holds.
	// The node sets it to a file in its data directory.
	JournalPath string
	// JournalSync makes every journal write an fsync. Default false: a
	// killed process loses nothing that reached the kernel, a power loss
	// may lose the last unflushed page.
	JournalSync bool
	// JournalMaxBytes is the size at which the journal is rewritten with
	// only what is still unapplied (it is emptied outright whenever
	// everything is applied). Default 1 MiB.
	JournalMaxBytes int64
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
	if c.JournalMaxBytes <= 0 {
		c.JournalMaxBytes = 1 << 20
	}
	if c.Metrics == nil {
		c.Metrics = metrics.NewSet()
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return nil
}

// maxDrain bounds the records taken from the queue (and journaled with
// one write) before the batcher looks at its timers again.
const maxDrain = 4096

// Batcher aggregates usage records into rows and flushes them as batches,
// in order, each retried until applied. Record may be called from any
// goroutine; Run owns everything else.
type Batcher struct {
	cfg     BatcherConfig
	applier Applier
	in      chan Usage
	running atomic.Bool

	// Owned by Run (and NewBatcher before it).
	seq     uint64
	pending map[rowKey]Counts
	queue   []queued // cut and not yet applied, oldest first; queue[0] is sent
	sending bool     // an attempt at queue[0] runs; its result comes on results
	waiting bool     // a retry backoff is armed
	backoff time.Duration
	results chan attemptResult
	j       *journal // nil without a journal; j.f nil while it is down
	jState  journalState

	// Test hooks (export_test.go); nil in production.
	crash       func(point string) bool
	observeWait func(time.Duration)

	pendingRows atomic.Int64
	applied     *metrics.Counter
	duplicates  *metrics.Counter
	flushErrors *metrics.Counter
	dropped     *metrics.Counter
	lost        *metrics.Counter
	jMetrics    journalMetrics
}

type queued struct {
	id   BatchID
	body []byte
	rows int
}

type attemptResult struct {
	out []byte
	err error
}

type rowKey struct {
	bucket int64
	Labels
}

// NewBatcher checks cfg, replays the journal if there is one, and returns
// a Batcher; call Run to start it. It fails when the journal exists but
// cannot be read.
func NewBatcher(cfg BatcherConfig, a Applier) (*Batcher, error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	if a == nil {
		return nil, errors.New("ledger: nil Applier")
	}
	b := &Batcher{cfg: cfg, applier: a, in: make(chan Usage, cfg.QueueSize), pending: map[rowKey]Counts{},
		results: make(chan attemptResult, 1)}
	m := cfg.Metrics
	b.applied = m.GetOrCreateCounter("sluice_ledger_batches_applied_total")
	b.duplicates = m.GetOrCreateCounter("sluice_ledger_batches_duplicate_total")
	b.flushErrors = m.GetOrCreateCounter("sluice_ledger_flush_errors_total")
	b.dropped = m.GetOrCreateCounter("sluice_ledger_records_dropped_total")
	b.lost = m.GetOrCreateCounter("sluice_ledger_rows_lost_total")
	m.GetOrCreateGauge("sluice_ledger_pending_rows", func() float64 { return float64(b.pendingRows.Load()) })
	b.jMetrics.init(m)
	if cfg.JournalPath != "" {
		if err := b.openJournal(); err != nil {
			return nil, fmt.Errorf("ledger: %w", err)
		}
	}
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
// that final flush left rows unsent (kept in the journal for the next
// start, or without a journal lost and counted in
// sluice_ledger_rows_lost_total).
func (b *Batcher) Run(ctx context.Context) (err error) {
	if !b.running.CompareAndSwap(false, true) {
		return errors.New("ledger: Batcher.Run called twice")
	}
	defer b.closeJournal()
	if b.crash != nil {
		defer b.recoverCrash(&err)
	}
	tick := time.NewTicker(b.cfg.FlushInterval)
	defer tick.Stop()
	retry := time.NewTimer(time.Hour)
	retry.Stop()
	defer retry.Stop()
	b.flush(ctx, retry) // batches replayed from the journal go first
	for {
		select {
		case <-ctx.Done():
			return b.finish()
		case u := <-b.in:
			b.drain(&u)
			if len(b.pending) >= b.cfg.MaxRows {
				b.flush(ctx, retry)
			}
		case <-tick.C:
			b.reviveJournal()
			b.flush(ctx, retry)
		case <-retry.C:
			b.waiting = false
			b.flush(ctx, retry)
		case r := <-b.results:
			b.sending = false
			b.settled(ctx, r, retry)
		}
	}
}

// drain adds first and whatever else the queue holds (up to maxDrain) to
// the pending rows, and journals them with one write.
func (b *Batcher) drain(first *Usage) {
	now := time.Now()
	journaling := b.journalUp()
	var buf []byte
	if journaling {
		buf = b.j.buf[:0]
	}
	u := first
	for i := 0; ; i++ {
		if u.Time.IsZero() {
			u.Time = now
		} else if b.observeWait != nil {
			b.observeWait(now.Sub(u.Time))
		}
		b.add(u)
		if journaling {
			buf = appendRecordFrame(buf, u)
		}
		if i == maxDrain {
			break
		}
		next, ok := b.tryReceive()
		if !ok {
			break
		}
		u = &next
	}
	if journaling {
		b.j.buf = buf
		b.journalWrite(buf)
		b.journalBound()
	}
}

func (b *Batcher) tryReceive() (Usage, bool) {
	select {
	case u := <-b.in:
		return u, true
	default:
		return Usage{}, false
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
	b.addRow(k, c)
}

func (b *Batcher) addRow(k rowKey, c Counts) {
	if _, ok := b.pending[k]; !ok {
		b.pendingRows.Add(1)
	}
	b.pending[k] = b.pending[k].Add(c)
}

// cut turns the pending rows into the next batch, journals it and queues
// it. It does nothing when a batch is queued or nothing is pending.
func (b *Batcher) cut() error {
	if len(b.queue) > 0 || len(b.pending) == 0 {
		return nil
	}
	b.seq++
	batch := Batch{ID: BatchID{Node: b.cfg.NodeID, Incarnation: b.cfg.Incarnation, Seq: b.seq}, Rows: make([]Row, 0, len(b.pending))}
	for k, c := range b.pending {
		batch.Rows = append(batch.Rows, Row{Bucket: k.bucket, Labels: k.Labels, Counts: c})
	}
	body, err := json.Marshal(&batch)
	if err != nil {
		return fmt.Errorf("encode usage batch: %w", err)
	}
	b.maybeCrash(crashBeforeBatchFrame)
	b.queue = append(b.queue, queued{id: batch.ID, body: body, rows: len(batch.Rows)})
	b.pending = map[rowKey]Counts{}
	b.journalBatch(batch.ID, body)
	b.maybeCrash(crashAfterBatchFrame)
	return nil
}

// flush starts an attempt at the oldest queued batch, cutting one from
// the pending rows if none is queued, unless an attempt runs or waits for
// its retry.
func (b *Batcher) flush(ctx context.Context, retry *time.Timer) {
	if b.sending || b.waiting {
		return
	}
	if err := b.cut(); err != nil {
		b.cfg.Logger.Error("usage batch dropped", "err", err)
		b.lost.Add(len(b.pending))
		b.pendingRows.Add(-int64(len(b.pending)))
		b.pending = map[rowKey]Counts{}
		return
	}
	if len(b.queue) == 0 {
		return
	}
	body := b.queue[0].body
	b.sending = true
	// Owned by Run: it never returns while sending is set without
	// receiving the result (results has room for it, so this never blocks).
	go func() {
		actx, cancel := context.WithTimeout(ctx, b.cfg.AttemptTimeout)
		out, err := b.applier.ApplyUsage(actx, body)
		cancel()
		b.results <- attemptResult{out: out, err: err}
	}()
}

// settled handles the result of an attempt made by flush.
func (b *Batcher) settled(ctx context.Context, r attemptResult, retry *time.Timer) {
	if err := b.settle(r); err != nil {
		if ctx.Err() != nil {
			return // finish takes over
		}
		b.backoff = min(max(b.backoff*2, b.cfg.RetryMin), b.cfg.RetryMax)
		b.cfg.Logger.Warn("usage batch not applied; retrying", "seq", b.queue[0].id.Seq, "in", b.backoff, "err", err)
		b.waiting = true
		retry.Reset(b.backoff)
		return
	}
	if len(b.queue) > 0 || len(b.pending) >= b.cfg.MaxRows {
		b.flush(ctx, retry)
	}
}

// settle records the outcome of an attempt at queue[0]: on success the
// batch leaves the queue.
func (b *Batcher) settle(r attemptResult) error {
	if r.err != nil {
		b.flushErrors.Inc()
		return r.err
	}
	var res ApplyResult
	if len(r.out) > 0 {
		if err := json.Unmarshal(r.out, &res); err != nil {
			b.cfg.Logger.Warn("usage batch applied; result not understood", "err", err)
		}
	}
	if res.Duplicate {
		b.duplicates.Inc()
	} else {
		b.applied.Inc()
	}
	b.maybeCrash(crashAfterApply)
	q := b.queue[0]
	b.queue[0] = queued{}
	b.queue = b.queue[1:]
	b.pendingRows.Add(-int64(q.rows))
	b.backoff = 0
	b.journalApplied(q.id)
	return nil
}

// finish waits for the attempt under way, drains the queue and flushes
// everything, retrying until ShutdownTimeout.
func (b *Batcher) finish() error {
	if b.sending {
		b.sending = false
		_ = b.settle(<-b.results)
	}
	for {
		u, ok := b.tryReceive()
		if !ok {
			break
		}
		b.drain(&u)
	}
	ctx, cancel := context.WithTimeout(context.Background(), b.cfg.ShutdownTimeout)
	defer cancel()
	backoff := b.cfg.RetryMin
	for {
		if err := b.cut(); err != nil {
			return err
		}
		if len(b.queue) == 0 {
			return nil
		}
		actx, acancel := context.WithTimeout(ctx, b.cfg.AttemptTimeout)
		out, err := b.applier.ApplyUsage(actx, b.queue[0].body)
		acancel()
		if err = b.settle(attemptResult{out: out, err: err}); err == nil {
			continue
		}
		wait := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
			wait.Stop()
			left := len(b.pending)
			for _, q := range b.queue {
				left += q.rows
			}
			b.pendingRows.Add(-int64(left))
			if b.journalUp() {
				return fmt.Errorf("ledger: final flush gave up, %d rows kept in the journal for the next start: %w", left, err)
			}
			b.lost.Add(left)
			return fmt.Errorf("ledger: final flush gave up, %d rows lost: %w", left, err)
		case <-wait.C:
		}
		backoff = min(backoff*2, b.cfg.RetryMax)
	}
}
