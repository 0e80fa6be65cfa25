package ledger

import (
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"sync/atomic"
	"time"
)

const (
	minuteSecs = int64(time.Minute / time.Second)
	hourSecs   = int64(time.Hour / time.Second)
	daySecs    = 24 * hourSecs
)

func floorTo(t, step int64) int64 {
	r := t % step
	if r < 0 {
		r += step
	}
	return t - r
}

// subject is what Totals is asked about: a tenant, a key, or both empty
// for everything.
type subject struct{ tenant, key string }

// bucket is the immutable content of one time bucket.
type bucket struct {
	start int64 // Unix seconds
	hour  bool  // per-hour (compacted) rather than per-minute
	rows  map[Labels]Counts
	// subj holds the sums Totals reads: per (tenant, key), per (tenant,
	// "") and per ("", "").
	subj map[subject]Counts
}

func (b *bucket) clone() *bucket {
	return &bucket{start: b.start, hour: b.hour, rows: maps.Clone(b.rows), subj: maps.Clone(b.subj)}
}

func (b *bucket) add(l Labels, c Counts) {
	b.rows[l] = b.rows[l].Add(c)
	addSubjects(b.subj, l, c)
}

// addSubjects adds c to the sums of every subject l belongs to.
func addSubjects(m map[subject]Counts, l Labels, c Counts) {
	subs := [...]subject{{"", ""}, {l.Tenant, ""}, {l.Tenant, l.Key}}
	for i, s := range subs {
		if i > 0 && s == subs[i-1] {
			continue // empty key or tenant: the same subject as the wider one
		}
		m[s] = m[s].Add(c)
	}
}

// incarnation is what the section keeps per (node, incarnation): the
// highest sequence applied and when the last batch came.
type incarnation struct {
	Seq  uint64 `json:"seq"`
	Last int64  `json:"last"` // Unix seconds of its last applied batch
}

type incarnationKey struct {
	Node        string
	Incarnation uint64
}

// state is one immutable version of the ledger; View wraps it.
type state struct {
	now          int64 // latest entry time seen, Unix seconds
	boundary     int64 // buckets starting before it are per hour
	cut          int64 // buckets starting before it are dropped
	buckets      map[int64]*bucket
	order        []int64 // bucket starts, ascending
	incarnations map[incarnationKey]incarnation
	index        uint64 // raft index of the last applied batch
	// hours rolls the subject sums of the per-minute buckets up per hour
	// (keyed by the hour's start), so Totals over a day reads at most 24
	// hours and two partial hours of minutes.
	hours map[int64]map[subject]Counts
}

func emptyState() *state {
	return &state{buckets: map[int64]*bucket{}, incarnations: map[incarnationKey]incarnation{}, hours: map[int64]map[subject]Counts{}}
}

// Section is the replicated usage ledger. It satisfies the cluster FSM's
// section contract; give each FSM its own Section.
type Section struct {
	cur atomic.Pointer[state]
}

// NewSection returns an empty ledger.
func NewSection() *Section {
	s := &Section{}
	s.cur.Store(emptyState())
	return s
}

// Name labels the section.
func (*Section) Name() string { return "usage-ledger" }

// Type is SectionType.
func (*Section) Type() uint8 { return SectionType }

// View returns the current immutable view; it never locks.
func (s *Section) View() *View { return &View{st: s.cur.Load()} }

// Validate refuses a body Apply would refuse, before it reaches the log.
func (*Section) Validate(body []byte) error {
	_, err := decodeBatch(body)
	return err
}

func decodeBatch(body []byte) (*Batch, error) {
	var b Batch
	if err := json.Unmarshal(body, &b); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidBatch, err)
	}
	if err := b.validate(); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidBatch, err)
	}
	return &b, nil
}

// Apply counts one batch unless its ID was already applied, then compacts
// using at (the time stamped into the entry). It is deterministic.
func (s *Section) Apply(index uint64, at time.Time, body []byte) (any, error) {
	b, err := decodeBatch(body)
	if err != nil {
		return nil, err
	}
	cur := s.cur.Load()
	sk := incarnationKey{b.ID.Node, b.ID.Incarnation}
	if prev, ok := cur.incarnations[sk]; ok && b.ID.Seq <= prev.Seq {
		return ApplyResult{Duplicate: true}, nil
	}
	next := &state{
		now: max(cur.now, at.Unix()), boundary: cur.boundary, cut: cur.cut,
		buckets: maps.Clone(cur.buckets), incarnations: maps.Clone(cur.incarnations), index: index,
		hours: maps.Clone(cur.hours),
	}
	touchedHours := map[int64]bool{}
	hourSums := func(h int64) map[subject]Counts {
		m, ok := next.hours[h]
		switch {
		case !ok:
			m = map[subject]Counts{}
			next.hours[h] = m
		case !touchedHours[h]:
			m = maps.Clone(m)
			next.hours[h] = m
		}
		touchedHours[h] = true
		return m
	}
	touched := map[int64]bool{} // buckets already copied by this apply
	changed := false            // the set of buckets changed
	writable := func(start int64, hour bool) *bucket {
		bk, ok := next.buckets[start]
		switch {
		case !ok:
			bk = &bucket{start: start, hour: hour, rows: map[Labels]Counts{}, subj: map[subject]Counts{}}
			next.buckets[start] = bk
			changed = true
		case !touched[start]:
			bk = bk.clone()
			next.buckets[start] = bk
		}
		touched[start] = true
		return bk
	}
	res := ApplyResult{}
	changed = next.compact(writable) || changed
	for i := range b.Rows {
		r := &b.Rows[i]
		start := r.Bucket
		if start > next.now+int64(MaxFuture/time.Second) {
			start = next.now
		}
		start = floorTo(start, minuteSecs)
		hour := start < next.boundary
		if hour {
			start = floorTo(start, hourSecs)
		}
		if start < next.cut {
			res.Dropped++
			continue
		}
		writable(start, hour).add(r.Labels, r.Counts)
		if !hour {
			addSubjects(hourSums(floorTo(start, hourSecs)), r.Labels, r.Counts)
		}
		res.Rows++
	}
	next.incarnations[sk] = incarnation{Seq: b.ID.Seq, Last: next.now}
	if changed {
		next.order = slices.Sorted(maps.Keys(next.buckets))
	} else {
		next.order = cur.order
	}
	s.cur.Store(next)
	return res, nil
}

// compact moves the boundaries to st.now: minute buckets older than
// Horizon roll into their hour, buckets older than Retention and incarnations
// idle for as long are dropped. It reports whether buckets were removed
// or added. The work happens when a boundary crosses an hour, so it is
// paid about once an hour.
func (st *state) compact(writable func(start int64, hour bool) *bucket) bool {
	changed := false
	if b := floorTo(st.now-int64(Horizon/time.Second), hourSecs); b > st.boundary {
		st.boundary = b
		// Remove every minute bucket first: an hour bucket has the key of
		// its hour's first minute. The boundary is hour-aligned, so whole
		// hours move at once and the two never coexist.
		var old []*bucket
		for start, bk := range st.buckets {
			if !bk.hour && start < b {
				old = append(old, bk)
				delete(st.buckets, start)
			}
		}
		for h := range st.hours {
			if h < b {
				delete(st.hours, h) // now an hour bucket with its own sums
			}
		}
		for _, bk := range old {
			h := writable(floorTo(bk.start, hourSecs), true)
			for l, c := range bk.rows {
				h.add(l, c)
			}
			changed = true
		}
	}
	if c := floorTo(st.now-int64(Retention/time.Second), hourSecs); c > st.cut {
		st.cut = c
		for start := range st.buckets {
			if start < c {
				delete(st.buckets, start)
				changed = true
			}
		}
		for k, s := range st.incarnations {
			if s.Last < c {
				delete(st.incarnations, k)
			}
		}
	}
	return changed
}

// snapshotState is the encoded form of a state.
type snapshotState struct {
	Now          int64                 `json:"now"`
	Boundary     int64                 `json:"boundary"`
	Cut          int64                 `json:"cut"`
	Index        uint64                `json:"index"`
	Buckets      []snapshotBucket      `json:"buckets"`
	Incarnations []snapshotIncarnation `json:"incarnations"`
}

type snapshotBucket struct {
	Start int64 `json:"start"`
	Hour  bool  `json:"hour,omitempty"`
	Rows  []Row `json:"rows"`
}

type snapshotIncarnation struct {
	Node        string `json:"node"`
	Incarnation uint64 `json:"inc"`
	incarnation
}

// Snapshot encodes the current view. It reads the immutable state, so it
// may run beside Apply.
func (s *Section) Snapshot() ([]byte, error) {
	st := s.cur.Load()
	out := snapshotState{Now: st.now, Boundary: st.boundary, Cut: st.cut, Index: st.index}
	for _, start := range st.order {
		bk := st.buckets[start]
		sb := snapshotBucket{Start: start, Hour: bk.hour, Rows: make([]Row, 0, len(bk.rows))}
		for l, c := range bk.rows {
			sb.Rows = append(sb.Rows, Row{Bucket: start, Labels: l, Counts: c})
		}
		slices.SortFunc(sb.Rows, func(a, b Row) int { return compareLabels(a.Labels, b.Labels) })
		out.Buckets = append(out.Buckets, sb)
	}
	for k, v := range st.incarnations {
		out.Incarnations = append(out.Incarnations, snapshotIncarnation{Node: k.Node, Incarnation: k.Incarnation, incarnation: v})
	}
	slices.SortFunc(out.Incarnations, func(a, b snapshotIncarnation) int {
		if a.Node != b.Node {
			if a.Node < b.Node {
				return -1
			}
			return 1
		}
		return cmpU64(a.Incarnation, b.Incarnation)
	})
	return json.Marshal(out)
}

// Restore replaces the state with an encoded one; empty b is the empty
// ledger.
func (s *Section) Restore(b []byte) error {
	st := emptyState()
	if len(b) > 0 {
		var in snapshotState
		if err := json.Unmarshal(b, &in); err != nil {
			return fmt.Errorf("decode usage ledger: %w", err)
		}
		st.now, st.boundary, st.cut, st.index = in.Now, in.Boundary, in.Cut, in.Index
		for _, sb := range in.Buckets {
			bk := &bucket{start: sb.Start, hour: sb.Hour, rows: map[Labels]Counts{}, subj: map[subject]Counts{}}
			for _, r := range sb.Rows {
				bk.add(r.Labels, r.Counts)
			}
			st.buckets[sb.Start] = bk
			if !bk.hour {
				h := floorTo(bk.start, hourSecs)
				if st.hours[h] == nil {
					st.hours[h] = map[subject]Counts{}
				}
				for l, c := range bk.rows {
					addSubjects(st.hours[h], l, c)
				}
			}
		}
		for _, ss := range in.Incarnations {
			st.incarnations[incarnationKey{ss.Node, ss.Incarnation}] = ss.incarnation
		}
	}
	st.order = slices.Sorted(maps.Keys(st.buckets))
	s.cur.Store(st)
	return nil
}

func cmpU64(a, b uint64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}
