package report

import (
	"math"
	"sort"
	"strconv"
	"strings"
	"time"
)

// preferredWindow is the window length drawn and summarised when a
// deployment has windows of several lengths.
const preferredWindow = 10 * time.Second

// deploymentView is what the summary and the chart derive from the Run for
// one deployment.
type deploymentView struct {
	Deployment
	Known bool // listed in Run.Deployments, not only seen in windows/shares

	Length  time.Duration // the window length drawn and used for utilisation
	Windows []Window      // windows of that length, by start
	Others  []Window      // over-limit windows of other lengths, by start

	Tokens, LimitTokens int64 // totals over Windows
	OverLimit           int   // windows of any length over either limit
	WorstTokens         *Window
	WorstRequests       *Window
	AllWindows          int // windows of any length
}

// Utilisation is the tokens used over the tokens allowed in the drawn
// windows, or NaN if no limit is known.
func (d *deploymentView) Utilisation() float64 {
	if d.LimitTokens <= 0 {
		return math.NaN()
	}
	return float64(d.Tokens) / float64(d.LimitTokens)
}

func overLimit(w Window) bool {
	return (w.LimitTokens > 0 && w.Tokens > w.LimitTokens) ||
		(w.LimitRequests > 0 && w.Requests > w.LimitRequests)
}

func ratio(v, limit int64) float64 {
	if limit <= 0 {
		return math.NaN()
	}
	return float64(v) / float64(limit)
}

// deployments returns one view per deployment: those in Run.Deployments in
// their order, then any other name met in windows or shares, sorted.
func deployments(r *Run) []*deploymentView {
	var views []*deploymentView
	byName := map[string]*deploymentView{}
	for _, d := range r.Deployments {
		if _, dup := byName[d.Name]; dup {
			continue
		}
		v := &deploymentView{Deployment: d, Known: true}
		byName[d.Name] = v
		views = append(views, v)
	}
	var extra []string
	note := func(name string) {
		if _, ok := byName[name]; !ok {
			byName[name] = &deploymentView{Deployment: Deployment{Name: name}}
			extra = append(extra, name)
		}
	}
	for _, w := range r.Windows {
		note(w.Deployment)
	}
	for _, s := range r.Shares {
		note(s.Deployment)
	}
	sort.Strings(extra)
	for _, name := range extra {
		views = append(views, byName[name])
	}

	grouped := map[string][]Window{}
	for _, w := range r.Windows {
		grouped[w.Deployment] = append(grouped[w.Deployment], w)
	}
	for _, v := range views {
		ws := grouped[v.Name]
		sort.SliceStable(ws, func(i, j int) bool {
			if ws[i].Start != ws[j].Start {
				return ws[i].Start < ws[j].Start
			}
			return ws[i].Length < ws[j].Length
		})
		v.AllWindows = len(ws)
		v.Length = chooseLength(ws)
		for i := range ws {
			w := ws[i]
			if w.Length == v.Length {
				v.Windows = append(v.Windows, w)
				v.Tokens += w.Tokens
				v.LimitTokens += w.LimitTokens
			} else if overLimit(w) {
				v.Others = append(v.Others, w)
			}
			if overLimit(w) {
				v.OverLimit++
			}
			if q := ratio(w.Tokens, w.LimitTokens); !math.IsNaN(q) &&
				(v.WorstTokens == nil || q > ratio(v.WorstTokens.Tokens, v.WorstTokens.LimitTokens)) {
				v.WorstTokens = &ws[i]
			}
			if q := ratio(w.Requests, w.LimitRequests); !math.IsNaN(q) &&
				(v.WorstRequests == nil || q > ratio(v.WorstRequests.Requests, v.WorstRequests.LimitRequests)) {
				v.WorstRequests = &ws[i]
			}
		}
	}
	return views
}

// chooseLength picks the window length to draw: 10 s if present, else the
// most common length, the shorter one on a tie.
func chooseLength(ws []Window) time.Duration {
	count := map[time.Duration]int{}
	for _, w := range ws {
		count[w.Length]++
	}
	if count[preferredWindow] > 0 {
		return preferredWindow
	}
	var best time.Duration
	for l, n := range count {
		if n > count[best] || (n == count[best] && l < best) {
			best = l
		}
	}
	return best
}

// nodes returns Run.Nodes in order, then any other node met in shares or
// as a fault target, sorted, without duplicates.
func nodes(r *Run) []string {
	seen := map[string]bool{}
	var out, extra []string
	for _, n := range r.Nodes {
		if !seen[n] {
			seen[n] = true
			out = append(out, n)
		}
	}
	for _, s := range r.Shares {
		if !seen[s.Node] {
			seen[s.Node] = true
			extra = append(extra, s.Node)
		}
	}
	sort.Strings(extra)
	return append(out, extra...)
}

// extent is the time span the chart covers: the run's duration, stretched
// to include every window, share sample and fault.
func extent(r *Run) time.Duration {
	end := r.Duration
	grow := func(d time.Duration) {
		if d > end {
			end = d
		}
	}
	for _, w := range r.Windows {
		grow(w.Start + w.Length)
	}
	for _, s := range r.Shares {
		grow(s.At)
	}
	for _, f := range r.Faults {
		grow(f.At)
		grow(f.Until)
	}
	if end <= 0 {
		end = time.Second
	}
	return end
}

// sortedFaults returns the faults ordered by start, then kind and target.
func sortedFaults(r *Run) []Fault {
	fs := append([]Fault(nil), r.Faults...)
	sort.SliceStable(fs, func(i, j int) bool {
		if fs[i].At != fs[j].At {
			return fs[i].At < fs[j].At
		}
		if fs[i].Kind != fs[j].Kind {
			return fs[i].Kind < fs[j].Kind
		}
		return fs[i].Target < fs[j].Target
	})
	return fs
}

// niceStep returns a step of the form {1, 2, 2.5, 5}×10^k such that span
// is covered by at most about n steps.
func niceStep(span float64, n int) float64 {
	if span <= 0 || n <= 0 || math.IsNaN(span) || math.IsInf(span, 0) {
		return 1
	}
	raw := span / float64(n)
	mag := math.Pow(10, math.Floor(math.Log10(raw)))
	for _, m := range []float64{1, 2, 2.5, 5, 10} {
		if m*mag >= raw {
			return m * mag
		}
	}
	return 10 * mag
}

// niceCeil rounds v up to a multiple of a nice step, so an axis ends on a
// tick; it returns 1 for a non-positive v.
func niceCeil(v float64, ticks int) (top, step float64) {
	if v <= 0 || math.IsNaN(v) || math.IsInf(v, 0) {
		return 1, niceStep(1, ticks)
	}
	step = niceStep(v, ticks)
	return math.Ceil(v/step-1e-9) * step, step
}

// si formats v with a k, M or G suffix and at most three significant
// digits: 950, 1.2k, 25k, 1.5M.
func si(v float64) string {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return strconv.FormatFloat(v, 'f', -1, 64)
	}
	sign := ""
	if v < 0 {
		sign, v = "-", -v
	}
	suffix := ""
	for _, s := range []struct {
		div float64
		sfx string
	}{{1e9, "G"}, {1e6, "M"}, {1e3, "k"}} {
		if v >= s.div {
			v, suffix = v/s.div, s.sfx
			break
		}
	}
	prec := 0
	switch {
	case v < 10:
		prec = 2
	case v < 100:
		prec = 1
	}
	out := strconv.FormatFloat(v, 'f', prec, 64)
	if strings.Contains(out, ".") {
		out = strings.TrimRight(strings.TrimRight(out, "0"), ".")
	}
	return sign + out + suffix
}

// secs formats an offset as seconds: 0s, 12s, 12.5s, 1234s.
func secs(d time.Duration) string {
	s := strconv.FormatFloat(d.Seconds(), 'f', 1, 64)
	return strings.TrimSuffix(s, ".0") + "s"
}

// pct formats a ratio as a percentage, or "-" for NaN.
func pct(r float64) string {
	if math.IsNaN(r) || math.IsInf(r, 0) {
		return "-"
	}
	return strconv.FormatFloat(r*100, 'f', 1, 64) + "%"
}
