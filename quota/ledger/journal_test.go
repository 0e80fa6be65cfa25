package ledger

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/VictoriaMetrics/metrics"
)

func testUsage(i int) Usage {
	return Usage{Time: time.Unix(1_700_000_000+int64(i), 0), Tenant: "t" + strconv.Itoa(i%3), KeyID: "k",
		Model: "gpt", Deployment: "east", Region: "eastus", Class: "interactive", Cached: i%2 == 0,
		Status: 200 + i%2*300, PromptTokens: int64(10 + i), CompletionTokens: int64(i)}
}

func testBody(t testing.TB, id BatchID, rows ...Row) []byte {
	t.Helper()
	body, err := json.Marshal(&Batch{ID: id, Rows: rows})
	if err != nil {
		t.Fatal(err)
	}
	return body
}

func TestJournalFrames(t *testing.T) {
	id1 := BatchID{Node: "n1", Incarnation: 7, Seq: 1}
	id2 := BatchID{Node: "n1", Incarnation: 7, Seq: 2}
	row := Row{Bucket: 1_700_000_040, Labels: Labels{Tenant: "a"}, Counts: Counts{Requests: 2, PromptTokens: 5}}
	body1, body2 := testBody(t, id1, row), testBody(t, id2, row)
	u0, u1, u2 := testUsage(0), testUsage(1), testUsage(2)
	rowsFrame := func(dst []byte) []byte {
		out, err := appendRowsFrame(dst, []Row{row})
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	var whole []byte
	whole = appendRecordFrame(whole, &u0)
	whole = appendBatchFrame(whole, id1, body1)
	whole = appendRecordFrame(whole, &u1)
	whole = appendAppliedFrame(whole, id1)
	whole = rowsFrame(whole)
	whole = appendBatchFrame(whole, id2, body2)
	whole = appendRecordFrame(whole, &u2)
	lastStart := len(whole) - len(appendRecordFrame(nil, &u2))
	badCRC := slices.Clone(whole)
	badCRC[lastStart+frameHeader+3] ^= 0x40
	badKind := slices.Clone(whole)
	badKind[lastStart+8] = 99
	hugeLen := slices.Clone(whole)
	hugeLen[lastStart+3] = 0xff

	cases := []struct {
		name    string
		data    []byte
		frames  int
		valid   int
		batches []BatchID
		records []Usage
		rows    int
	}{
		{name: "empty", data: nil},
		{name: "whole journal", data: whole, frames: 7, valid: len(whole), batches: []BatchID{id2}, records: []Usage{u2}},
		{name: "records and rows after the last batch", data: rowsFrame(appendRecordFrame(appendBatchFrame(nil, id1, body1), &u0)),
			frames: 3, batches: []BatchID{id1}, records: []Usage{u0}, rows: 1},
		{name: "applied before batch frame still marks it", data: appendBatchFrame(appendAppliedFrame(nil, id1), id1, body1), frames: 2},
		{name: "torn header", data: whole[:lastStart+5], frames: 6, valid: lastStart, batches: []BatchID{id2}},
		{name: "torn payload", data: whole[:len(whole)-1], frames: 6, valid: lastStart, batches: []BatchID{id2}},
		{name: "bad CRC", data: badCRC, frames: 6, valid: lastStart, batches: []BatchID{id2}},
		{name: "unknown kind", data: badKind, frames: 6, valid: lastStart, batches: []BatchID{id2}},
		{name: "absurd length", data: hugeLen, frames: 6, valid: lastStart, batches: []BatchID{id2}},
		{name: "garbage", data: []byte("not a journal at all"), frames: 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			rep := readJournal(tc.data)
			if tc.valid == 0 && tc.frames > 0 {
				tc.valid = len(tc.data)
			}
			if rep.frames != tc.frames || rep.valid != tc.valid {
				t.Errorf("frames %d valid %d, want %d and %d", rep.frames, rep.valid, tc.frames, tc.valid)
			}
			var ids []BatchID
			for _, b := range rep.batches {
				ids = append(ids, b.id)
				if want := testBody(t, b.id, row); !bytes.Equal(b.body, want) {
					t.Errorf("batch %v body %s, want %s", b.id, b.body, want)
				}
			}
			if !slices.Equal(ids, tc.batches) {
				t.Errorf("unapplied batches %v, want %v", ids, tc.batches)
			}
			if len(rep.records) != len(tc.records) {
				t.Fatalf("records %+v, want %+v", rep.records, tc.records)
			}
			for i := range rep.records {
				got, want := rep.records[i], tc.records[i]
				if !got.Time.Equal(want.Time) {
					t.Errorf("record %d time %v, want %v", i, got.Time, want.Time)
				}
				got.Time = want.Time
				if got != want {
					t.Errorf("record %d %+v, want %+v", i, got, want)
				}
			}
			if len(rep.rows) != tc.rows {
				t.Errorf("rows %d, want %d", len(rep.rows), tc.rows)
			}
		})
	}
}

// dedupApplier applies each batch ID once, as the section does, and
// counts the rest as duplicates.
type dedupApplier struct {
	mu      sync.Mutex
	seen    map[BatchID]bool
	total   Counts
	dups    int
	applied int
	fail    atomic.Bool // refuse every attempt
}

func (d *dedupApplier) ApplyUsage(ctx context.Context, body []byte) ([]byte, error) {
	if d.fail.Load() {
		return nil, errors.New("no leader")
	}
	b, err := decodeBatch(body)
	if err != nil {
		return nil, err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.seen[b.ID] {
		d.dups++
		return json.Marshal(ApplyResult{Duplicate: true})
	}
	d.seen[b.ID] = true
	d.applied++
	for _, r := range b.Rows {
		d.total = d.total.Add(r.Counts)
	}
	return json.Marshal(ApplyResult{Rows: len(b.Rows)})
}

func (d *dedupApplier) snapshot() (Counts, int, int) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.total, d.applied, d.dups
}

// journalBatcher returns a Batcher on the journal at path; crash, when
// set, stops its Run at the nth time it reaches point (a kill).
func journalBatcher(t *testing.T, path string, a Applier, m *metrics.Set, point string, nth int) *Batcher {
	t.Helper()
	if m == nil {
		m = metrics.NewSet()
	}
	b, err := NewBatcher(BatcherConfig{NodeID: "n1", JournalPath: path, FlushInterval: 2 * time.Millisecond, MaxRows: 7,
		RetryMin: time.Millisecond, ShutdownTimeout: 2 * time.Second, Metrics: m, Logger: slog.New(slog.DiscardHandler)}, a)
	if err != nil {
		t.Fatal(err)
	}
	if point != "" {
		seen := 0
		b.crash = func(p string) bool {
			if p == point {
				seen++
			}
			return p == point && seen == nth
		}
	}
	return b
}

// TestJournalCrashReplay kills a Batcher (Run ends at a crash point, no
// final flush, memory gone) again and again under load, each time starting
// a new one on the same journal. At the end the applied totals equal the
// records that reached the batcher exactly, minus only those still in
// its queue at the kill, and no batch counted twice.
func TestJournalCrashReplay(t *testing.T) {
	cases := []struct {
		name   string
		points []string
		// wantDups: a batch was applied and not marked, so its replay is a
		// duplicate.
		wantDups bool
	}{
		{name: "before the batch frame", points: []string{crashBeforeBatchFrame}},
		{name: "after the batch frame, before apply", points: []string{crashAfterBatchFrame}},
		{name: "after apply, before the applied frame", points: []string{crashAfterApply}, wantDups: true},
		{name: "mixed", points: []string{crashAfterApply, crashBeforeBatchFrame, crashAfterBatchFrame, crashAfterApply, crashAfterBatchFrame, crashAfterApply},
			wantDups: true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "usage.journal")
			app := &dedupApplier{seen: map[BatchID]bool{}}
			rng := rand.New(rand.NewPCG(1, uint64(len(tc.name))))
			var want Counts
			var lostInQueue int
			rounds := max(len(tc.points), 4)
			for round := range rounds {
				point := tc.points[round%len(tc.points)]
				m := metrics.NewSet()
				b := journalBatcher(t, path, app, m, point, 1+rng.IntN(3))
				done := make(chan error, 1)
				go func() { done <- b.Run(context.Background()) }()
				var err error
				sent := 0
				pace := time.NewTicker(500 * time.Microsecond)
			send:
				for i := 0; ; i++ {
					select {
					case err = <-done:
						break send
					default:
					}
					u := testUsage(round*100_000 + i)
					u.Time = time.Now()
					b.Record(&u)
					sent++
					want = want.Add(Counts{Requests: 1, PromptTokens: u.PromptTokens, CompletionTokens: u.CompletionTokens})
					if u.Status >= 400 {
						want.Errors++
					}
					if i%5 == 4 {
						// About 10,000 records/s, so the batcher keeps up;
						// kills find records journaled, pending and queued.
						<-pace.C
					}
					if sent > 1_000_000 {
						t.Fatalf("round %d: no crash at %s", round, point)
					}
				}
				pace.Stop()
				if !errors.Is(err, errCrashed) {
					t.Fatalf("round %d: Run returned %v, want a crash at %s", round, err, point)
				}
				// What the kill took: records still in the queue.
				for len(b.in) > 0 {
					u := <-b.in
					lostInQueue++
					want = want.Add(Counts{Requests: -1, PromptTokens: -u.PromptTokens, CompletionTokens: -u.CompletionTokens})
					if u.Status >= 400 {
						want.Errors--
					}
				}
				if v := metricValue(t, m, "sluice_ledger_records_dropped_total"); v != "0" {
					t.Fatalf("round %d dropped %s records", round, v)
				}
				t.Logf("round %d: crash at %s after %d records; replayed %s batches, %s records",
					round, point, sent, metricValue(t, m, "sluice_ledger_journal_replayed_batches_total"),
					metricValue(t, m, "sluice_ledger_journal_replayed_records_total"))
			}
			// A last run that ends normally flushes everything.
			m := metrics.NewSet()
			b := journalBatcher(t, path, app, m, "", 0)
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() { done <- b.Run(ctx) }()
			waitFor(t, "the replay applied", func() bool { got, _, _ := app.snapshot(); return got == want })
			cancel()
			if err := <-done; err != nil {
				t.Fatal(err)
			}
			got, applied, dups := app.snapshot()
			if got != want {
				t.Fatalf("applied %+v, want %+v", got, want)
			}
			if tc.wantDups && dups == 0 {
				t.Error("no replayed batch was a duplicate; the crash after apply was not exercised")
			}
			if !tc.wantDups && dups != 0 {
				t.Errorf("%d duplicates, want none", dups)
			}
			if fi, err := os.Stat(path); err != nil || fi.Size() != 0 {
				t.Errorf("journal after a clean stop: %v, %v; want empty", fi, err)
			}
			t.Logf("%d requests in %d batches applied, %d duplicates refused, %d records lost in the queue at kills", got.Requests, applied, dups, lostInQueue)
		})
	}
}

// TestJournalRotation: the journal is rewritten with just the unapplied
// state when it reaches JournalMaxBytes, stays bounded through an outage
// and is empty once everything is applied; a torn tail is cut at start.
func TestJournalRotation(t *testing.T) {
	path := filepath.Join(t.TempDir(), "usage.journal")
	app := &dedupApplier{seen: map[BatchID]bool{}}
	app.fail.Store(true) // an outage: nothing applies
	m := metrics.NewSet()
	b, err := NewBatcher(BatcherConfig{NodeID: "n1", JournalPath: path, FlushInterval: time.Millisecond, JournalMaxBytes: 4 << 10,
		RetryMin: time.Millisecond, RetryMax: 5 * time.Millisecond, Metrics: m, Logger: slog.New(slog.DiscardHandler)}, app)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- b.Run(ctx) }()
	var maxSize int64
	const n = 5000
	pace := time.NewTicker(500 * time.Microsecond)
	defer pace.Stop()
	for i := range n {
		u := testUsage(i % 6) // six label combinations: the unapplied state is small
		u.Time = time.Now()
		b.Record(&u)
		if i%5 == 4 {
			<-pace.C
			if fi, err := os.Stat(path); err == nil {
				maxSize = max(maxSize, fi.Size())
			}
		}
	}
	// 5,000 records are about 250 KB of frames; the journal holds the
	// failing batch and the pending rows (about 2 KB), rewritten when it
	// reaches 4 KiB or twice what the last rewrite wrote (it may pass that
	// by one drain's write before the rewrite).
	waitFor(t, "the journal back under its limit", func() bool {
		v, _ := strconv.Atoi(metricValue(t, m, "sluice_ledger_journal_bytes"))
		return len(b.in) == 0 && v > 0 && v < 8<<10
	})
	if maxSize > 64<<10 {
		t.Errorf("journal grew to %d bytes during the outage", maxSize)
	}
	app.fail.Store(false)
	waitFor(t, "everything applied", func() bool { got, _, _ := app.snapshot(); return got.Requests == n })
	waitFor(t, "an empty journal", func() bool { return metricValue(t, m, "sluice_ledger_journal_bytes") == "0" })
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	t.Logf("largest journal seen during the outage: %d bytes", maxSize)

	// A torn tail is cut at start.
	u := testUsage(1)
	data := appendRecordFrame(nil, &u)
	if err := os.WriteFile(path, append(data, data[:len(data)-2]...), 0o600); err != nil {
		t.Fatal(err)
	}
	m = metrics.NewSet()
	b, err = NewBatcher(BatcherConfig{NodeID: "n1", JournalPath: path, Metrics: m, Logger: slog.New(slog.DiscardHandler)}, app)
	if err != nil {
		t.Fatal(err)
	}
	b.closeJournal()
	rest, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if rep := readJournal(rest); rep.valid != len(rest) || len(rep.rows) != 1 || rep.rows[0].Requests != 1 {
		t.Errorf("rewritten journal: %d of %d bytes valid, rows %+v", rep.valid, len(rest), rep.rows)
	}
	if v := metricValue(t, m, "sluice_ledger_journal_replayed_records_total"); v != "1" {
		t.Errorf("replayed %s records, want 1", v)
	}
}

// TestJournalStaleBatch: a journaled batch older than the replay horizon
// is not re-sent (its incarnation may be forgotten); it is counted.
func TestJournalStaleBatch(t *testing.T) {
	path := filepath.Join(t.TempDir(), "usage.journal")
	old := time.Now().Add(-Retention).Unix()
	fresh := time.Now().Unix()
	idOld, idFresh := BatchID{Node: "n1", Incarnation: 3, Seq: 9}, BatchID{Node: "n1", Incarnation: 5, Seq: 1}
	var data []byte
	data = appendBatchFrame(data, idOld, testBody(t, idOld, Row{Bucket: floorTo(old, 60), Counts: Counts{Requests: 4}}))
	data = appendBatchFrame(data, idFresh, testBody(t, idFresh, Row{Bucket: floorTo(fresh, 60), Counts: Counts{Requests: 2}}))
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	app := &dedupApplier{seen: map[BatchID]bool{}}
	m := metrics.NewSet()
	rb := startBatcher(t, BatcherConfig{JournalPath: path, FlushInterval: 5 * time.Millisecond, Metrics: m}, app)
	waitFor(t, "the fresh batch", func() bool { got, _, _ := app.snapshot(); return got.Requests == 2 })
	if err := rb.stop(); err != nil {
		t.Fatal(err)
	}
	if got, _, _ := app.snapshot(); got.Requests != 2 {
		t.Errorf("applied %d requests, want 2 (the stale batch dropped)", got.Requests)
	}
	for name, want := range map[string]string{"sluice_ledger_journal_stale_batches_total": "1", "sluice_ledger_journal_replayed_batches_total": "1"} {
		if v := metricValue(t, m, name); v != want {
			t.Errorf("%s = %s, want %s", name, v, want)
		}
	}
}

// TestJournalWriteErrors: a journal that cannot be written is counted and
// the batcher keeps counting usage without it.
func TestJournalWriteErrors(t *testing.T) {
	path := filepath.Join(t.TempDir(), "usage.journal")
	app := &dedupApplier{seen: map[BatchID]bool{}}
	m := metrics.NewSet()
	b, err := NewBatcher(BatcherConfig{NodeID: "n1", JournalPath: path, FlushInterval: 5 * time.Millisecond, Metrics: m,
		Logger: slog.New(slog.DiscardHandler)}, app)
	if err != nil {
		t.Fatal(err)
	}
	// Before Run (which owns it): swap in a descriptor that refuses writes.
	ro, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	b.j.close()
	b.j.f = ro
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- b.Run(ctx) }()
	for i := range 50 {
		u := testUsage(i)
		b.Record(&u)
	}
	waitFor(t, "every record applied", func() bool { got, _, _ := app.snapshot(); return got.Requests == 50 })
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if v := metricValue(t, m, "sluice_ledger_journal_errors_total"); v != "1" {
		t.Errorf("journal errors %s, want 1 (then the journal is off)", v)
	}
}

// TestJournalQueueWait measures the loss window that remains: how long a
// record waits in the queue before it is journaled, at 2,000 records/s
// with an apply that takes 5 ms.
func TestJournalQueueWait(t *testing.T) {
	if testing.Short() {
		t.Skip("two seconds of load")
	}
	path := filepath.Join(t.TempDir(), "usage.journal")
	slow := ApplierFunc(func(ctx context.Context, body []byte) ([]byte, error) {
		timer := time.NewTimer(5 * time.Millisecond)
		defer timer.Stop()
		select {
		case <-timer.C:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		return json.Marshal(ApplyResult{})
	})
	b, err := NewBatcher(BatcherConfig{NodeID: "n1", JournalPath: path, Logger: slog.New(slog.DiscardHandler)}, slow)
	if err != nil {
		t.Fatal(err)
	}
	var waits []time.Duration // appended by Run only, read after it returned
	b.observeWait = func(d time.Duration) { waits = append(waits, d) }
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- b.Run(ctx) }()
	tick := time.NewTicker(time.Millisecond) // two records per tick: 2,000/s
	const n = 4000
	for i := 0; i < n; i += 2 {
		<-tick.C
		for k := range 2 {
			u := testUsage(i + k)
			u.Time = time.Now()
			b.Record(&u)
		}
	}
	tick.Stop()
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if len(waits) != n {
		t.Fatalf("%d waits observed, want %d", len(waits), n)
	}
	slices.Sort(waits)
	p := func(q float64) time.Duration { return waits[int(q*float64(len(waits)-1))] }
	t.Logf("queue wait before the journal write at 2,000 records/s: p50 %v, p99 %v, p99.9 %v, max %v", p(0.5), p(0.99), p(0.999), p(1))
	if p(0.99) > 100*time.Millisecond {
		t.Errorf("p99 queue wait %v", p(0.99))
	}
}

func FuzzJournalReplay(f *testing.F) {
	id := BatchID{Node: "n", Incarnation: 1, Seq: 1}
	u := testUsage(1)
	var seed []byte
	seed = appendRecordFrame(seed, &u)
	seed = appendBatchFrame(seed, id, testBody(f, id, Row{Bucket: 60, Counts: Counts{Requests: 1}}))
	seed = appendRecordFrame(seed, &u)
	seed, _ = appendRowsFrame(seed, []Row{{Bucket: 120, Counts: Counts{Requests: 3}}})
	f.Add(seed)
	f.Add(appendAppliedFrame(slices.Clone(seed), id))
	f.Add(seed[:len(seed)-3])
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		rep := readJournal(data)
		if rep.valid > len(data) || rep.valid < 0 {
			t.Fatalf("valid %d of %d bytes", rep.valid, len(data))
		}
		if got := len(rep.records) + len(rep.batches); got > rep.frames {
			t.Fatalf("%d records and batches from %d frames", got, rep.frames)
		}
		if len(rep.rows) > 0 && rep.frames == 0 {
			t.Fatal("rows without a frame")
		}
		again := readJournal(data[:rep.valid])
		if again.frames != rep.frames || again.valid != rep.valid {
			t.Fatalf("the valid prefix reads differently: %d/%d frames", again.frames, rep.frames)
		}
		b, err := NewBatcher(BatcherConfig{NodeID: "n", QueueSize: 1, Logger: slog.New(slog.DiscardHandler)}, &dedupApplier{})
		if err != nil {
			t.Fatal(err)
		}
		b.replay(rep) // never panics
		if len(b.queue) > len(rep.batches) {
			t.Fatalf("%d batches queued from %d", len(b.queue), len(rep.batches))
		}
	})
}

// BenchmarkJournalAppend is the journal's cost per record: encoding the
// frame and its share of one write per drain (256 records here).
func BenchmarkJournalAppend(b *testing.B) {
	j, _, err := openJournal(filepath.Join(b.TempDir(), "usage.journal"), false)
	if err != nil {
		b.Fatal(err)
	}
	if err := j.rotate(nil); err != nil {
		b.Fatal(err)
	}
	defer j.close()
	u := testUsage(7)
	const perDrain = 256
	i := 0
	for b.Loop() {
		j.buf = appendRecordFrame(j.buf, &u)
		if i++; i == perDrain {
			if err := j.write(j.buf); err != nil {
				b.Fatal(err)
			}
			j.buf, i = j.buf[:0], 0
			if j.size > 64<<20 {
				_ = j.truncate()
			}
		}
	}
	b.ReportMetric(float64(len(appendRecordFrame(nil, &u))), "bytes/record")
}

// BenchmarkJournalReplay reads a journal of 100,000 records.
func BenchmarkJournalReplay(b *testing.B) {
	var data []byte
	const n = 100_000
	for i := range n {
		u := testUsage(i)
		data = appendRecordFrame(data, &u)
	}
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		if rep := readJournal(data); len(rep.records) != n {
			b.Fatalf("%d records", len(rep.records))
		}
	}
	b.ReportMetric(float64(n)*float64(b.N)/b.Elapsed().Seconds(), "records/s")
}

// TestReplayHorizonAndSection: a re-sent batch is a duplicate while the
// section remembers its incarnation, also after a snapshot and restore;
// by the time the section forgets the incarnation, the batch is beyond
// the replay horizon and the batcher no longer re-sends it.
func TestReplayHorizonAndSection(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 12, 0, 30, 0, time.UTC)
	id := BatchID{Node: "n1", Incarnation: 9, Seq: 3}
	row := Row{Bucket: floorTo(t0.Unix(), minuteSecs), Labels: Labels{Tenant: "a"}, Counts: Counts{Requests: 5}}
	body := testBody(t, id, row)
	first := NewSection()
	if _, err := first.Apply(1, t0, body); err != nil {
		t.Fatal(err)
	}
	snap, err := first.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	sec := NewSection()
	if err := sec.Restore(snap); err != nil {
		t.Fatal(err)
	}
	if res, err := sec.Apply(2, t0.Add(time.Hour), body); err != nil || !res.(ApplyResult).Duplicate {
		t.Fatalf("replay after restore: %+v, %v; want a duplicate", res, err)
	}
	cases := []struct {
		after                    time.Duration
		remembered, tooOldToSend bool
	}{
		{after: Retention - 25*time.Hour, remembered: true},
		{after: Retention - 12*time.Hour, remembered: true, tooOldToSend: true},
		{after: Retention + 2*time.Hour, tooOldToSend: true},
	}
	for i, tc := range cases {
		// Another node's traffic moves the section's time on.
		at := t0.Add(tc.after)
		other := testBody(t, BatchID{Node: "n2", Incarnation: 1, Seq: uint64(i + 1)},
			Row{Bucket: floorTo(at.Unix(), minuteSecs), Labels: Labels{Tenant: "b"}, Counts: Counts{Requests: 1}})
		if _, err := sec.Apply(uint64(3+i), at, other); err != nil {
			t.Fatal(err)
		}
		_, remembered := sec.cur.Load().incarnations[incarnationKey{id.Node, id.Incarnation}]
		tooOld := row.Bucket < at.Add(-replayHorizon).Unix() // the test replay makes at that time
		if remembered != tc.remembered || tooOld != tc.tooOldToSend {
			t.Errorf("%v later: remembered %v, beyond the replay horizon %v; want %v and %v", tc.after, remembered, tooOld, tc.remembered, tc.tooOldToSend)
		}
		if !remembered && !tooOld {
			t.Errorf("%v later: the section forgot the incarnation but the batcher would re-send the batch", tc.after)
		}
	}
}
