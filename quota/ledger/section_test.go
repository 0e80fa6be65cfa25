package ledger

import (
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"testing"
	"time"

	"pgregory.net/rapid"
)

var t0 = time.Date(2026, 11, 2, 10, 0, 0, 0, time.UTC)

// tb is what both testing.TB and *rapid.T offer.
type tb interface {
	Helper()
	Fatal(args ...any)
	Fatalf(format string, args ...any)
}

func encodeBatch(t tb, b Batch) []byte {
	t.Helper()
	body, err := json.Marshal(b)
	if err != nil {
		t.Fatal(err)
	}
	return body
}

func mustApply(t tb, s *Section, index uint64, at time.Time, b Batch) ApplyResult {
	t.Helper()
	v, err := s.Apply(index, at, encodeBatch(t, b))
	if err != nil {
		t.Fatalf("apply %+v: %v", b.ID, err)
	}
	return v.(ApplyResult)
}

func row(at time.Time, tenant, key, model string, c Counts) Row {
	return Row{Bucket: at.Unix(), Labels: Labels{Tenant: tenant, Key: key, Model: model, Deployment: model + "-d", Region: "eu", Class: "standard"}, Counts: c}
}

func TestAggregation(t *testing.T) {
	s := NewSection()
	id := func(seq uint64) BatchID { return BatchID{Node: "n1", Incarnation: 7, Seq: seq} }
	mustApply(t, s, 1, t0, Batch{ID: id(1), Rows: []Row{
		row(t0, "a", "k1", "gpt", Counts{Requests: 2, PromptTokens: 10, CompletionTokens: 5}),
		row(t0.Add(30*time.Second), "a", "k1", "gpt", Counts{Requests: 1, PromptTokens: 1, Errors: 1}), // same minute
		row(t0, "b", "k2", "gpt", Counts{Requests: 1, PromptTokens: 3}),
	}})
	mustApply(t, s, 2, t0.Add(time.Minute), Batch{ID: id(2), Rows: []Row{
		row(t0.Add(time.Minute), "a", "k3", "mini", Counts{Requests: 4, CompletionTokens: 8}),
	}})
	v := s.View()
	if v.Rows() != 3 || v.Buckets() != 2 {
		t.Fatalf("rows %d buckets %d, want 3 and 2", v.Rows(), v.Buckets())
	}
	cases := []struct {
		name  string
		f     Filter
		g     GroupBy
		want  []QueryRow
		total Counts
	}{
		{name: "everything", total: Counts{Requests: 8, PromptTokens: 14, CompletionTokens: 13, Errors: 1},
			want: []QueryRow{{Counts: Counts{Requests: 8, PromptTokens: 14, CompletionTokens: 13, Errors: 1}}}},
		{name: "by tenant", g: GroupBy{Fields: []string{FieldTenant}},
			total: Counts{Requests: 8, PromptTokens: 14, CompletionTokens: 13, Errors: 1},
			want: []QueryRow{
				{Labels: Labels{Tenant: "a"}, Counts: Counts{Requests: 7, PromptTokens: 11, CompletionTokens: 13, Errors: 1}},
				{Labels: Labels{Tenant: "b"}, Counts: Counts{Requests: 1, PromptTokens: 3}},
			}},
		{name: "tenant a by minute and model", f: Filter{Tenant: "a"}, g: GroupBy{Fields: []string{FieldModel}, Bucket: BucketMinute},
			total: Counts{Requests: 7, PromptTokens: 11, CompletionTokens: 13, Errors: 1},
			want: []QueryRow{
				{Bucket: t0, Labels: Labels{Model: "gpt"}, Counts: Counts{Requests: 3, PromptTokens: 11, CompletionTokens: 5, Errors: 1}},
				{Bucket: t0.Add(time.Minute), Labels: Labels{Model: "mini"}, Counts: Counts{Requests: 4, CompletionTokens: 8}},
			}},
		{name: "time window excludes the first minute", f: Filter{From: t0.Add(time.Second)}, g: GroupBy{Bucket: BucketHour},
			total: Counts{Requests: 4, CompletionTokens: 8},
			want:  []QueryRow{{Bucket: t0, Counts: Counts{Requests: 4, CompletionTokens: 8}}}},
		{name: "no match", f: Filter{Region: "us"}, want: []QueryRow{}},
	}
	for _, tc := range cases {
		res, err := v.Query(tc.f, tc.g)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if tc.name == "no match" {
			if len(res.Rows) != 0 || res.Total != (Counts{}) {
				t.Errorf("%s: %+v", tc.name, res)
			}
			continue
		}
		if !reflect.DeepEqual(res.Rows, tc.want) || res.Total != tc.total {
			t.Errorf("%s:\n got %+v total %+v\nwant %+v total %+v", tc.name, res.Rows, res.Total, tc.want, tc.total)
		}
	}
	if got := v.Totals("a", "", t0, t0.Add(time.Hour)); got.Requests != 7 || got.Tokens() != 24 {
		t.Errorf("tenant totals %+v", got)
	}
	if got := v.Totals("a", "k1", t0, t0.Add(time.Minute)); got.Requests != 3 {
		t.Errorf("key totals %+v", got)
	}
	if got := v.Totals("", "", time.Time{}, time.Time{}); got.Requests != 8 {
		t.Errorf("all totals %+v", got)
	}
	if _, err := v.Query(Filter{}, GroupBy{Fields: []string{"colour"}}); !errors.Is(err, ErrInvalidQuery) {
		t.Errorf("bad field: %v", err)
	}
	if _, err := v.Query(Filter{}, GroupBy{Bucket: "week"}); !errors.Is(err, ErrInvalidQuery) {
		t.Errorf("bad bucket: %v", err)
	}
}

func TestInvalidBatches(t *testing.T) {
	s := NewSection()
	cases := map[string]string{
		"not json":        `{`,
		"no node":         `{"id":{"seq":1}}`,
		"seq zero":        `{"id":{"node":"n","seq":0}}`,
		"negative counts": `{"id":{"node":"n","seq":1},"rows":[{"bucket":0,"requests":-1}]}`,
	}
	for name, body := range cases {
		if err := s.Validate([]byte(body)); !errors.Is(err, ErrInvalidBatch) {
			t.Errorf("%s: Validate = %v", name, err)
		}
		if _, err := s.Apply(1, t0, []byte(body)); !errors.Is(err, ErrInvalidBatch) {
			t.Errorf("%s: Apply = %v", name, err)
		}
	}
	if s.View().Rows() != 0 {
		t.Error("a refused batch changed the state")
	}
}

// TestExactlyOnce delivers every batch of several node incarnations at
// least once, in order of first sending, with retries of earlier batches
// arriving late and repeatedly: the ledger counts each batch once.
func TestExactlyOnce(t *testing.T) {
	rapid.Check(t, func(rt *rapid.T) {
		s := NewSection()
		type sent struct {
			batch Batch
			n     int64
		}
		var (
			delivered []sent // everything sent so far (for late retries)
			want      int64
			index     uint64
		)
		incs := rapid.SliceOfN(rapid.Uint64Range(1, 1<<62), 1, 3).Draw(rt, "incarnations")
		nodes := []string{"n1", "n2"}
		seqs := map[string]uint64{}
		steps := rapid.IntRange(1, 60).Draw(rt, "steps")
		for i := 0; i < steps; i++ {
			index++
			if len(delivered) > 0 && rapid.Bool().Draw(rt, "retry old") {
				// A retry (or a duplicate delivery) of any earlier batch.
				old := delivered[rapid.IntRange(0, len(delivered)-1).Draw(rt, "which")]
				if res := mustApply(rt, s, index, t0, old.batch); !res.Duplicate {
					rt.Fatalf("retry of %+v counted again", old.batch.ID)
				}
				continue
			}
			node := nodes[rapid.IntRange(0, 1).Draw(rt, "node")]
			inc := incs[rapid.IntRange(0, len(incs)-1).Draw(rt, "inc")]
			k := fmt.Sprintf("%s/%d", node, inc)
			seqs[k] += uint64(rapid.IntRange(1, 2).Draw(rt, "seq step")) // a gap is allowed
			n := rapid.Int64Range(1, 50).Draw(rt, "requests")
			b := Batch{ID: BatchID{Node: node, Incarnation: inc, Seq: seqs[k]},
				Rows: []Row{row(t0, "t", "k", "m", Counts{Requests: n})}}
			if res := mustApply(rt, s, index, t0, b); res.Duplicate {
				rt.Fatalf("new batch %+v taken for a duplicate", b.ID)
			}
			want += n
			delivered = append(delivered, sent{b, n})
		}
		if got := s.View().Totals("", "", time.Time{}, time.Time{}).Requests; got != want {
			rt.Fatalf("total %d, want %d", got, want)
		}
	})
}

// maxBuckets is the bound doc.go states.
const maxBuckets = int((Horizon+MaxFuture)/time.Minute) + 60 + int(Retention/time.Hour) + 1

// TestCompactionBound applies random batches over simulated weeks: the
// state never exceeds labels x buckets, and compaction conserves every
// count not older than the retention.
func TestCompactionBound(t *testing.T) {
	rapid.Check(t, func(rt *rapid.T) {
		s := NewSection()
		tenants := []string{"a", "b", "c"}
		models := []string{"x", "y"}
		labelCombos := len(tenants) * len(models)
		now := t0
		type applied struct {
			start int64 // effective minute start
			c     Counts
		}
		var all []applied
		steps := rapid.IntRange(1, 80).Draw(rt, "steps")
		for i := 1; i <= steps; i++ {
			now = now.Add(time.Duration(rapid.Int64Range(0, int64(3*24*time.Hour)).Draw(rt, "advance")))
			var rows []Row
			for j := rapid.IntRange(1, 6).Draw(rt, "rows"); j > 0; j-- {
				// Rows from 40 days back to 2 hours ahead (skew).
				off := time.Duration(rapid.Int64Range(-int64(40*24*time.Hour), int64(2*time.Hour)).Draw(rt, "offset"))
				at := now.Add(off)
				c := Counts{Requests: 1, PromptTokens: rapid.Int64Range(0, 100).Draw(rt, "p")}
				rows = append(rows, Row{Bucket: at.Unix(), Labels: Labels{
					Tenant: tenants[rapid.IntRange(0, 2).Draw(rt, "tenant")],
					Model:  models[rapid.IntRange(0, 1).Draw(rt, "model")]}, Counts: c})
				eff := at.Unix() // as Apply sees it: now only moves forward here
				if eff > now.Unix()+int64(MaxFuture/time.Second) {
					eff = now.Unix()
				}
				all = append(all, applied{floorTo(eff, minuteSecs), c})
			}
			mustApply(rt, s, uint64(i), now, Batch{ID: BatchID{Node: "n", Incarnation: 1, Seq: uint64(i)}, Rows: rows})
			v := s.View()
			if v.Buckets() > maxBuckets || v.Rows() > labelCombos*maxBuckets {
				rt.Fatalf("state %d rows in %d buckets exceeds the bound %d x %d", v.Rows(), v.Buckets(), labelCombos, maxBuckets)
			}
			for start, b := range v.st.buckets {
				if b.hour != (start < v.st.boundary) || (b.hour && start%hourSecs != 0) {
					rt.Fatalf("bucket %d hour=%v with boundary %d", start, b.hour, v.st.boundary)
				}
			}
		}
		v := s.View()
		var want Counts
		for _, a := range all {
			if floorTo(a.start, hourSecs) >= v.st.cut {
				want = want.Add(a.c)
			}
		}
		if got := v.Totals("", "", time.Time{}, time.Time{}); got != want {
			rt.Fatalf("totals %+v, want %+v (cut %d)", got, want, v.st.cut)
		}
		res, _ := v.Query(Filter{}, GroupBy{Fields: []string{FieldTenant}})
		if res.Total != want {
			rt.Fatalf("query total %+v, want %+v", res.Total, want)
		}
		var sum Counts
		for _, tn := range tenants {
			sum = sum.Add(v.Totals(tn, "", time.Time{}, time.Time{}))
		}
		if sum != want {
			rt.Fatalf("per-tenant totals %+v, want %+v", sum, want)
		}
	})
}

// TestQueryMatchesModel compares Query with a brute-force grouping of the
// raw rows (all within the per-minute horizon).
func TestQueryMatchesModel(t *testing.T) {
	rapid.Check(t, func(rt *rapid.T) {
		s := NewSection()
		pick := func(label string, opts ...string) string { return opts[rapid.IntRange(0, len(opts)-1).Draw(rt, label)] }
		var raw []Row
		for i := 1; i <= rapid.IntRange(1, 8).Draw(rt, "batches"); i++ {
			var rows []Row
			for j := rapid.IntRange(1, 10).Draw(rt, "rows"); j > 0; j-- {
				at := t0.Add(time.Duration(rapid.IntRange(0, 36*60).Draw(rt, "minute")) * time.Minute)
				r := Row{Bucket: at.Unix(), Labels: Labels{
					Tenant: pick("tenant", "a", "b"), Key: pick("key", "k1", "k2", "k3"), Model: pick("model", "x", "y"),
					Deployment: pick("dep", "d1", "d2"), Region: pick("region", "eu", "us"), Class: pick("class", "standard", "batch"),
					Cached: rapid.Bool().Draw(rt, "cached")},
					Counts: Counts{Requests: 1, PromptTokens: rapid.Int64Range(0, 9).Draw(rt, "p"), Errors: rapid.Int64Range(0, 1).Draw(rt, "e")}}
				rows = append(rows, r)
			}
			raw = append(raw, rows...)
			mustApply(rt, s, uint64(i), t0.Add(36*time.Hour), Batch{ID: BatchID{Node: "n", Incarnation: 1, Seq: uint64(i)}, Rows: rows})
		}
		f := Filter{Tenant: pick("ft", "", "a"), Key: pick("fk", "", "k2"), Model: pick("fm", "", "x"),
			Deployment: pick("fd", "", "d1"), Region: pick("fr", "", "us")}
		if rapid.Bool().Draw(rt, "from") {
			f.From = t0.Add(time.Duration(rapid.IntRange(0, 36*60).Draw(rt, "from min")) * time.Minute)
		}
		if rapid.Bool().Draw(rt, "to") {
			f.To = t0.Add(time.Duration(rapid.IntRange(0, 36*60).Draw(rt, "to min")) * time.Minute)
		}
		var g GroupBy
		for _, fld := range Fields {
			if rapid.Bool().Draw(rt, "group "+fld) {
				g.Fields = append(g.Fields, fld)
			}
		}
		g.Bucket = pick("bucket", BucketNone, BucketMinute, BucketHour, BucketDay)

		type key struct {
			b int64
			Labels
		}
		model := map[key]Counts{}
		var total Counts
		for _, r := range raw {
			st := floorTo(r.Bucket, minuteSecs)
			if (!f.From.IsZero() && st < f.From.Unix()) || (!f.To.IsZero() && st >= f.To.Unix()) || !f.match(r.Labels) {
				continue
			}
			k := key{bucketStart(st, g.Bucket), project(r.Labels, g.Fields)}
			model[k] = model[k].Add(r.Counts)
			total = total.Add(r.Counts)
		}
		res, err := s.View().Query(f, g)
		if err != nil {
			rt.Fatal(err)
		}
		if res.Total != total || len(res.Rows) != len(model) {
			rt.Fatalf("total %+v rows %d, want %+v and %d", res.Total, len(res.Rows), total, len(model))
		}
		for _, r := range res.Rows {
			var b int64
			if g.Bucket != BucketNone {
				b = r.Bucket.Unix()
			}
			if model[key{b, r.Labels}] != r.Counts {
				rt.Fatalf("row %+v, model has %+v", r, model[key{b, r.Labels}])
			}
		}
		if f.Model == "" && f.Deployment == "" && f.Region == "" {
			if got := s.View().Totals(f.Tenant, f.Key, f.From, f.To); got != total && (f.Tenant != "" || f.Key == "") {
				rt.Fatalf("Totals %+v, want %+v", got, total)
			}
		}
	})
}

func TestSnapshotRestore(t *testing.T) {
	s := NewSection()
	for i := 1; i <= 5; i++ {
		at := t0.Add(time.Duration(i) * 20 * time.Hour) // crosses the horizon: hour and minute rows
		mustApply(t, s, uint64(i), at, Batch{ID: BatchID{Node: "n", Incarnation: 3, Seq: uint64(i)},
			Rows: []Row{row(at, "a", "k", "m", Counts{Requests: int64(i), PromptTokens: 2})}})
	}
	b, err := s.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	r := NewSection()
	if err := r.Restore(b); err != nil {
		t.Fatal(err)
	}
	b2, _ := r.Snapshot()
	if string(b) != string(b2) {
		t.Errorf("snapshot of restored state differs:\n%s\n%s", b, b2)
	}
	q1, _ := s.View().Query(Filter{}, GroupBy{Bucket: BucketMinute})
	q2, _ := r.View().Query(Filter{}, GroupBy{Bucket: BucketMinute})
	if !reflect.DeepEqual(q1, q2) || q1.Total.Requests != 15 {
		t.Errorf("queries differ after restore: %+v %+v", q1, q2)
	}
	if res := mustApply(t, r, 6, t0.Add(101*time.Hour), Batch{ID: BatchID{Node: "n", Incarnation: 3, Seq: 5}}); !res.Duplicate {
		t.Error("dedup state not restored")
	}
	if err := r.Restore(nil); err != nil || r.View().Rows() != 0 {
		t.Errorf("empty restore: %v, %d rows", err, r.View().Rows())
	}
	if err := r.Restore([]byte("{")); err == nil {
		t.Error("corrupt state restored")
	}
}

func TestIdleIncarnationsForgotten(t *testing.T) {
	s := NewSection()
	mustApply(t, s, 1, t0, Batch{ID: BatchID{Node: "old", Incarnation: 1, Seq: 1}})
	mustApply(t, s, 2, t0.Add(Retention+2*time.Hour), Batch{ID: BatchID{Node: "new", Incarnation: 1, Seq: 1}})
	st := s.View().st
	if _, ok := st.incarnations[incarnationKey{"old", 1}]; ok || len(st.incarnations) != 1 {
		t.Errorf("incarnations %+v", st.incarnations)
	}
}

func BenchmarkApply(b *testing.B) {
	s := NewSection()
	rows := make([]Row, 200)
	for i := range rows {
		rows[i] = row(t0, fmt.Sprint("t", i%20), fmt.Sprint("k", i), "m", Counts{Requests: 1})
	}
	for i := 0; b.Loop(); i++ {
		at := t0.Add(time.Duration(i) * time.Second)
		for j := range rows {
			rows[j].Bucket = at.Unix()
		}
		if _, err := s.Apply(uint64(i+1), at, encodeBatch(b, Batch{ID: BatchID{Node: "n", Incarnation: 1, Seq: uint64(i + 1)}, Rows: rows})); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkTotalsDay(b *testing.B) {
	s := NewSection()
	for i := 1; i <= 1440; i++ {
		at := t0.Add(time.Duration(i) * time.Minute)
		mustApply(b, s, uint64(i), at, Batch{ID: BatchID{Node: "n", Incarnation: 1, Seq: uint64(i)},
			Rows: []Row{row(at, "a", "k", "m", Counts{Requests: 1})}})
	}
	v := s.View()
	for b.Loop() {
		if v.Totals("a", "", t0, t0.Add(24*time.Hour)).Requests == 0 {
			b.Fatal("no totals")
		}
	}
}
