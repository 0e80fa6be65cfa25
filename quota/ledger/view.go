package ledger

import (
	"fmt"
	"math"
	"slices"
	"sort"
	"strings"
	"time"
)

// View is an immutable version of the ledger. It is safe to use from any
// goroutine and never changes; ask the Section for a newer one.
type View struct{ st *state }

// Filter selects rows. Empty strings match everything; a zero From or To
// leaves that side open. A bucket is included when its start lies in
// [From, To): per-hour buckets (older than Horizon) count whole.
type Filter struct {
	Tenant, Key, Model, Deployment, Region string
	From, To                               time.Time
}

// Group-by fields.
const (
	FieldTenant     = "tenant"
	FieldKey        = "key"
	FieldModel      = "model"
	FieldDeployment = "deployment"
	FieldRegion     = "region"
	FieldClass      = "class"
	FieldCached     = "cached"
)

// Fields lists the valid group-by fields in output order.
var Fields = []string{FieldTenant, FieldKey, FieldModel, FieldDeployment, FieldRegion, FieldClass, FieldCached}

// Bucket sizes for GroupBy.Bucket.
const (
	BucketNone   = ""
	BucketMinute = "minute"
	BucketHour   = "hour"
	BucketDay    = "day"
)

// GroupBy chooses the result rows: one per distinct value of Fields (any
// of Fields' names) and, unless Bucket is empty, per time bucket (minute,
// hour or UTC day). Rows older than Horizon exist only per hour, so a
// minute grouping shows them at their hour.
type GroupBy struct {
	Fields []string
	Bucket string
}

// Validate reports an unknown field or bucket.
func (g GroupBy) Validate() error {
	for _, f := range g.Fields {
		if !slices.Contains(Fields, f) {
			return fmt.Errorf("%w: unknown group-by field %q (use %s)", ErrInvalidQuery, f, strings.Join(Fields, ", "))
		}
	}
	switch g.Bucket {
	case BucketNone, BucketMinute, BucketHour, BucketDay:
	default:
		return fmt.Errorf("%w: unknown bucket %q (use minute, hour or day)", ErrInvalidQuery, g.Bucket)
	}
	return nil
}

// QueryRow is one group: only the grouped labels are set.
type QueryRow struct {
	Bucket time.Time `json:"bucket,omitzero"`
	Labels
	Counts
}

// Result answers a Query.
type Result struct {
	Rows  []QueryRow `json:"rows"`
	Total Counts     `json:"total"`
}

// bounds returns [lo, hi) in Unix seconds such that a bucket starting at
// s is within [from, to) exactly when lo <= s < hi.
func bounds(from, to time.Time) (lo, hi int64) {
	lo, hi = math.MinInt64, math.MaxInt64
	if !from.IsZero() {
		lo = from.Unix()
		if from.Nanosecond() > 0 {
			lo++ // a bucket starting before from is outside
		}
	}
	if !to.IsZero() {
		hi = to.Unix()
		if to.Nanosecond() > 0 {
			hi++
		}
	}
	return lo, hi
}

// span returns the bucket starts within [from, to).
func (v *View) span(from, to time.Time) []int64 {
	order := v.st.order
	lo, hi := bounds(from, to)
	i := sort.Search(len(order), func(i int) bool { return order[i] >= lo })
	j := sort.Search(len(order), func(i int) bool { return order[i] >= hi })
	if i > j {
		return nil
	}
	return order[i:j]
}

func (f *Filter) match(l Labels) bool {
	return (f.Tenant == "" || f.Tenant == l.Tenant) && (f.Key == "" || f.Key == l.Key) &&
		(f.Model == "" || f.Model == l.Model) && (f.Deployment == "" || f.Deployment == l.Deployment) &&
		(f.Region == "" || f.Region == l.Region)
}

// project keeps the grouped labels.
func project(l Labels, fields []string) Labels {
	var out Labels
	for _, f := range fields {
		switch f {
		case FieldTenant:
			out.Tenant = l.Tenant
		case FieldKey:
			out.Key = l.Key
		case FieldModel:
			out.Model = l.Model
		case FieldDeployment:
			out.Deployment = l.Deployment
		case FieldRegion:
			out.Region = l.Region
		case FieldClass:
			out.Class = l.Class
		case FieldCached:
			out.Cached = l.Cached
		}
	}
	return out
}

func bucketStart(start int64, size string) int64 {
	switch size {
	case BucketMinute:
		return start
	case BucketHour:
		return floorTo(start, hourSecs)
	case BucketDay:
		return floorTo(start, daySecs)
	}
	return 0
}

// Query returns the rows matching f, grouped by g, ordered by bucket then
// labels, with their total.
func (v *View) Query(f Filter, g GroupBy) (Result, error) {
	if err := g.Validate(); err != nil {
		return Result{}, err
	}
	type key struct {
		bucket int64
		Labels
	}
	groups := map[key]Counts{}
	var total Counts
	for _, start := range v.span(f.From, f.To) {
		for l, c := range v.st.buckets[start].rows {
			if !f.match(l) {
				continue
			}
			k := key{bucketStart(start, g.Bucket), project(l, g.Fields)}
			groups[k] = groups[k].Add(c)
			total = total.Add(c)
		}
	}
	res := Result{Rows: make([]QueryRow, 0, len(groups)), Total: total}
	for k, c := range groups {
		r := QueryRow{Labels: k.Labels, Counts: c}
		if g.Bucket != BucketNone {
			r.Bucket = time.Unix(k.bucket, 0).UTC()
		}
		res.Rows = append(res.Rows, r)
	}
	slices.SortFunc(res.Rows, func(a, b QueryRow) int {
		if c := a.Bucket.Compare(b.Bucket); c != 0 {
			return c
		}
		return compareLabels(a.Labels, b.Labels)
	})
	return res, nil
}

// Totals sums the usage of a tenant (key empty), one key of a tenant, or
// everything (both empty) over the buckets starting in [from, to). It
// reads precomputed sums: one per whole hour in the window and one per
// minute of the partial hours at its ends, so a day costs at most about
// 24 + 2x60 map reads.
func (v *View) Totals(tenant, key string, from, to time.Time) Counts {
	var c Counts
	s := subject{tenant, key}
	lo, hi := bounds(from, to)
	order := v.span(from, to)
	for i := 0; i < len(order); {
		start := order[i]
		b := v.st.buckets[start]
		if !b.hour {
			h := floorTo(start, hourSecs)
			if sums, ok := v.st.hours[h]; ok && h >= lo && h <= hi-hourSecs {
				c = c.Add(sums[s])
				for i < len(order) && order[i] < h+hourSecs {
					i++ // the hour's minutes are in its sum
				}
				continue
			}
		}
		c = c.Add(b.subj[s])
		i++
	}
	return c
}

// Now is the latest entry time the ledger has applied (zero when empty).
func (v *View) Now() time.Time {
	if v.st.now == 0 {
		return time.Time{}
	}
	return time.Unix(v.st.now, 0).UTC()
}

// Rows is the number of stored rows (all label combinations of all buckets).
func (v *View) Rows() int {
	n := 0
	for _, b := range v.st.buckets {
		n += len(b.rows)
	}
	return n
}

// Buckets is the number of stored time buckets.
func (v *View) Buckets() int { return len(v.st.buckets) }

func compareLabels(a, b Labels) int {
	for _, p := range [...][2]string{{a.Tenant, b.Tenant}, {a.Key, b.Key}, {a.Model, b.Model},
		{a.Deployment, b.Deployment}, {a.Region, b.Region}, {a.Class, b.Class}} {
		if c := strings.Compare(p[0], p[1]); c != 0 {
			return c
		}
	}
	switch {
	case a.Cached == b.Cached:
		return 0
	case !a.Cached:
		return -1
	}
	return 1
}

// Query answers a query from the current view (see View.Query).
func (s *Section) Query(f Filter, g GroupBy) (Result, error) { return s.View().Query(f, g) }

// Totals sums usage from the current view (see View.Totals).
func (s *Section) Totals(tenant, key string, from, to time.Time) Counts {
	return s.View().Totals(tenant, key, from, to)
}
