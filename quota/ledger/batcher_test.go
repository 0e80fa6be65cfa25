package ledger

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// fakeCluster applies batches to a real Section, in order, like raft's
// single apply goroutine. fail decides per attempt: "" applies, "refuse"
// fails without applying, "lost" applies and then reports an error (a
// response lost after the commit).
type fakeCluster struct {
	sec   *Section
	mu    sync.Mutex
	index uint64
	calls atomic.Int64
	fail  func(call int64) string
}

func (f *fakeCluster) ApplyUsage(ctx context.Context, body []byte) ([]byte, error) {
	n := f.calls.Add(1)
	mode := ""
	if f.fail != nil {
		mode = f.fail(n)
	}
	if mode == "refuse" {
		return nil, errors.New("no leader")
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	f.mu.Lock()
	f.index++
	v, err := f.sec.Apply(f.index, time.Now(), body)
	f.mu.Unlock()
	if err != nil {
		return nil, err
	}
	if mode == "lost" {
		return nil, errors.New("timed out")
	}
	return json.Marshal(v)
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		<-tick.C
	}
}

type runningBatcher struct {
	b      *Batcher
	cancel context.CancelFunc
	done   chan error
}

func startBatcher(t *testing.T, cfg BatcherConfig, a Applier) *runningBatcher {
	t.Helper()
	if cfg.NodeID == "" {
		cfg.NodeID = "n1"
	}
	if cfg.Metrics == nil {
		cfg.Metrics = metrics.NewSet()
	}
	cfg.Logger = slog.New(slog.DiscardHandler)
	b, err := NewBatcher(cfg, a)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	rb := &runningBatcher{b: b, cancel: cancel, done: make(chan error, 1)}
	go func() { rb.done <- b.Run(ctx) }()
	t.Cleanup(func() { rb.stop() })
	return rb
}

func (rb *runningBatcher) stop() error {
	rb.cancel()
	err, ok := <-rb.done
	if ok {
		close(rb.done)
	}
	return err
}

func usage(tenant string, status int) *Usage {
	return &Usage{Time: time.Now(), Tenant: tenant, KeyID: "k", Model: "m", Status: status, PromptTokens: 3, CompletionTokens: 2}
}

func metricValue(t *testing.T, s *metrics.Set, name string) string {
	t.Helper()
	var sb strings.Builder
	s.WritePrometheus(&sb)
	for _, line := range strings.Split(sb.String(), "\n") {
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			return v
		}
	}
	return ""
}

func TestBatcherFlushes(t *testing.T) {
	cases := []struct {
		name string
		cfg  BatcherConfig
		n    int
	}{
		{name: "on the interval", cfg: BatcherConfig{FlushInterval: 20 * time.Millisecond}, n: 100},
		{name: "early at MaxRows", cfg: BatcherConfig{FlushInterval: time.Hour, MaxRows: 3}, n: 3},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			fc := &fakeCluster{sec: NewSection()}
			rb := startBatcher(t, tc.cfg, fc)
			tenants := []string{"a", "b", "c"}
			for i := 0; i < tc.n; i++ {
				status := 200
				if i%10 == 0 {
					status = 500
				}
				rb.b.Record(usage(tenants[i%3], status))
			}
			waitFor(t, "all records applied", func() bool {
				return fc.sec.View().Totals("", "", time.Time{}, time.Time{}).Requests == int64(tc.n)
			})
			got := fc.sec.View().Totals("", "", time.Time{}, time.Time{})
			if got.PromptTokens != 3*int64(tc.n) || got.CompletionTokens != 2*int64(tc.n) || got.Errors != int64((tc.n+9)/10) {
				t.Errorf("totals %+v", got)
			}
		})
	}
}

// TestBatcherRetriesExactlyOnce: refused attempts are retried, and an
// attempt that committed but reported an error is retried as the same
// batch, which the section recognises: nothing is counted twice.
func TestBatcherRetriesExactlyOnce(t *testing.T) {
	fc := &fakeCluster{sec: NewSection(), fail: func(call int64) string {
		switch call {
		case 1, 2:
			return "refuse"
		case 3:
			return "lost"
		}
		return ""
	}}
	m := metrics.NewSet()
	rb := startBatcher(t, BatcherConfig{FlushInterval: 10 * time.Millisecond, RetryMin: time.Millisecond, Metrics: m}, fc)
	for i := 0; i < 10; i++ {
		rb.b.Record(usage("a", 200))
	}
	waitFor(t, "the duplicate retry", func() bool { return metricValue(t, m, "sluice_ledger_batches_duplicate_total") == "1" })
	for i := 0; i < 5; i++ {
		rb.b.Record(usage("a", 200))
	}
	// The first batch counts as a duplicate (its committed attempt was
	// reported lost); the records after it arrive in later batches (how
	// many depends on where the flush timer cut them). Every record counts
	// once: the total reaches 15 and stays there.
	waitFor(t, "every record", func() bool {
		return fc.sec.View().Totals("a", "", time.Time{}, time.Time{}).Requests >= 15
	})
	waitFor(t, "no pending rows", func() bool { return metricValue(t, m, "sluice_ledger_pending_rows") == "0" })
	if got := fc.sec.View().Totals("a", "", time.Time{}, time.Time{}).Requests; got != 15 {
		t.Errorf("requests %d, want 15", got)
	}
	if v := metricValue(t, m, "sluice_ledger_flush_errors_total"); v != "3" {
		t.Errorf("flush errors %s, want 3", v)
	}
	waitFor(t, "no pending rows", func() bool { return metricValue(t, m, "sluice_ledger_pending_rows") == "0" })
}

func TestBatcherShutdown(t *testing.T) {
	t.Run("flushes what it holds", func(t *testing.T) {
		fc := &fakeCluster{sec: NewSection()}
		rb := startBatcher(t, BatcherConfig{FlushInterval: time.Hour}, fc)
		for i := 0; i < 7; i++ {
			rb.b.Record(usage("a", 200))
		}
		if err := rb.stop(); err != nil {
			t.Fatal(err)
		}
		if got := fc.sec.View().Totals("", "", time.Time{}, time.Time{}).Requests; got != 7 {
			t.Errorf("requests %d after shutdown, want 7", got)
		}
	})
	t.Run("gives up after the timeout", func(t *testing.T) {
		fc := &fakeCluster{sec: NewSection(), fail: func(int64) string { return "refuse" }}
		m := metrics.NewSet()
		rb := startBatcher(t, BatcherConfig{FlushInterval: time.Hour, ShutdownTimeout: 50 * time.Millisecond,
			RetryMin: time.Millisecond, Metrics: m}, fc)
		rb.b.Record(usage("a", 200))
		rb.b.Record(usage("b", 200))
		err := rb.stop()
		if err == nil || !strings.Contains(err.Error(), "2 rows lost") {
			t.Fatalf("stop: %v", err)
		}
		if v := metricValue(t, m, "sluice_ledger_rows_lost_total"); v != "2" {
			t.Errorf("lost %s", v)
		}
	})
}

func TestBatcherRecordNeverBlocks(t *testing.T) {
	m := metrics.NewSet()
	b, err := NewBatcher(BatcherConfig{NodeID: "n", QueueSize: 2, Metrics: m}, &fakeCluster{sec: NewSection()})
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 5; i++ { // not running: the queue fills
		b.Record(usage("a", 200))
	}
	if v := metricValue(t, m, "sluice_ledger_records_dropped_total"); v != "3" {
		t.Errorf("dropped %s, want 3", v)
	}
}

// TestBatcherNoDropsWhileApplyWaits: a second of records at 5,000
// requests/s arrives while the first apply attempt is stuck; none is
// dropped and all are counted once the cluster answers.
func TestBatcherNoDropsWhileApplyWaits(t *testing.T) {
	release := make(chan struct{})
	fc := &fakeCluster{sec: NewSection()}
	stuck := ApplierFunc(func(ctx context.Context, body []byte) ([]byte, error) {
		if fc.calls.Load() == 0 {
			select {
			case <-release:
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		}
		return fc.ApplyUsage(ctx, body)
	})
	m := metrics.NewSet()
	rb := startBatcher(t, BatcherConfig{FlushInterval: 10 * time.Millisecond, Metrics: m}, stuck)
	rb.b.Record(usage("first", 200))
	waitFor(t, "the first attempt to start", func() bool { return metricValue(t, m, "sluice_ledger_pending_rows") == "1" })
	for i := 0; i < 5000; i++ {
		rb.b.Record(usage(fmt.Sprint("t", i%50), 200))
	}
	close(release)
	waitFor(t, "every record applied", func() bool {
		return fc.sec.View().Totals("", "", time.Time{}, time.Time{}).Requests == 5001
	})
	if v := metricValue(t, m, "sluice_ledger_records_dropped_total"); v != "0" {
		t.Errorf("dropped %s records", v)
	}
}

func TestBatcherConfig(t *testing.T) {
	if _, err := NewBatcher(BatcherConfig{}, &fakeCluster{}); err == nil {
		t.Error("missing NodeID accepted")
	}
	if _, err := NewBatcher(BatcherConfig{NodeID: "n"}, nil); err == nil {
		t.Error("nil applier accepted")
	}
	a, _ := NewBatcher(BatcherConfig{NodeID: "n"}, &fakeCluster{})
	b, _ := NewBatcher(BatcherConfig{NodeID: "n"}, &fakeCluster{})
	if a.Incarnation() == 0 || a.Incarnation() == b.Incarnation() {
		t.Errorf("incarnations %d %d", a.Incarnation(), b.Incarnation())
	}
}

// BenchmarkRecord measures the request path's cost with a running batcher.
func BenchmarkRecord(b *testing.B) {
	fc := &fakeCluster{sec: NewSection()}
	bt, _ := NewBatcher(BatcherConfig{NodeID: "n", Metrics: metrics.NewSet()}, fc)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = bt.Run(ctx) }()
	u := usage("a", 200)
	for b.Loop() {
		bt.Record(u)
	}
	cancel()
	<-done
}
