package report

import (
	"fmt"
	"io"
	"math"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Chart geometry, in SVG user units (pixels at 100%).
const (
	chartWidth   = 1200.0
	marginLeft   = 70.0  // room for the value ticks
	marginRight  = 190.0 // the legend column
	plotLeft     = marginLeft
	plotRight    = chartWidth - marginRight
	plotWidth    = plotRight - plotLeft
	titleHeight  = 58.0
	laneHeight   = 13.0 // one row of fault labels
	maxLanes     = 6
	headHeight   = 34.0 // a deployment's heading and its first panel's label
	tokensHeight = 140.0
	reqsHeight   = 48.0
	sharesHeight = 120.0
	panelGap     = 18.0 // room for the next panel's label
	blockGap     = 30.0 // x tick labels and space before the next deployment
	xTicks       = 12   // about this many time ticks
	yTicks       = 4
	labelChars   = 26  // longest fault label, in runes
	charWidth    = 6.4 // rough width of a bold 10px character, for label lanes
)

// Chart writes an SVG chart of r: for each deployment, tokens per window
// against the token limit, requests per window against the request limit,
// and each node's token share over time; fault intervals shaded across all
// panels with labels along the top; a title with the run's name, seed and
// verdict. The output depends only on r.
func Chart(w io.Writer, r *Run) error {
	if r == nil {
		return ErrNilRun
	}
	c := newChart(r)
	c.draw()
	if _, err := w.Write(c.s.buf.Bytes()); err != nil {
		return fmt.Errorf("report: write chart: %w", err)
	}
	return nil
}

type chart struct {
	s      svg
	r      *Run
	end    time.Duration // right edge of the time axis
	tStep  float64       // seconds between time ticks
	views  []*deploymentView
	nodes  []string
	nodeIx map[string]int
	faults []Fault
	lanes  []int // label lane of each fault
	nLanes int

	bandsTop, height float64
}

func newChart(r *Run) *chart {
	c := &chart{r: r, views: deployments(r), nodes: nodes(r), faults: sortedFaults(r)}
	c.nodeIx = make(map[string]int, len(c.nodes))
	for i, n := range c.nodes {
		c.nodeIx[n] = i
	}
	span := extent(r).Seconds()
	top, step := niceCeil(span, xTicks)
	c.end, c.tStep = time.Duration(top*float64(time.Second)), step
	c.assignLanes()
	c.bandsTop = titleHeight + float64(c.nLanes)*laneHeight + 4
	blocks := float64(len(c.views))
	if blocks == 0 {
		blocks = 0.3 // room for a "no data" line
	}
	c.height = c.bandsTop + blocks*c.blockHeight() + 24
	return c
}

func (c *chart) blockHeight() float64 {
	return headHeight + tokensHeight + panelGap + reqsHeight + panelGap + sharesHeight + blockGap
}

// x maps an offset from the start to a horizontal position.
func (c *chart) x(d time.Duration) float64 {
	if c.end <= 0 {
		return plotLeft
	}
	f := float64(d) / float64(c.end)
	return plotLeft + math.Max(0, math.Min(1, f))*plotWidth
}

func faultLabel(f Fault) string {
	label := f.Kind
	if f.Target != "" {
		label += " " + f.Target
	}
	return clip(label, labelChars)
}

// assignLanes puts each fault's label in the first row where it does not
// overlap the previous label; past maxLanes, in the row that frees first.
func (c *chart) assignLanes() {
	var ends []float64
	c.lanes = make([]int, len(c.faults))
	for i, f := range c.faults {
		x := c.x(f.At)
		width := float64(len([]rune(faultLabel(f))))*charWidth + 8
		lane := -1
		for j, e := range ends {
			if e <= x {
				lane = j
				break
			}
		}
		if lane < 0 && len(ends) < maxLanes {
			ends = append(ends, 0)
			lane = len(ends) - 1
		}
		if lane < 0 {
			lane = 0
			for j, e := range ends {
				if e < ends[lane] {
					lane = j
				}
			}
		}
		ends[lane] = x + width
		c.lanes[i] = lane
	}
	c.nLanes = len(ends)
}

func (c *chart) draw() {
	s := &c.s
	s.printf(`<?xml version="1.0" encoding="UTF-8"?>` + "\n")
	s.printf(`<svg xmlns="http://www.w3.org/2000/svg" width="%s" height="%s" viewBox="0 0 %s %s" %s font-size="11">`+"\n",
		num(chartWidth), num(c.height), num(chartWidth), num(c.height), fontFamily)
	s.rect(0, 0, chartWidth, c.height, `fill="#ffffff"`)
	c.title()
	c.faultBands()
	y := c.bandsTop
	for _, v := range c.views {
		c.block(v, y)
		y += c.blockHeight()
	}
	if len(c.views) == 0 {
		s.text(plotLeft, y+20, `fill="#616161"`, "no windows or share samples were recorded")
	}
	c.legend()
	s.text(plotLeft+plotWidth/2, c.height-8, `text-anchor="middle" fill="#616161"`, "seconds since start")
	s.printf("</svg>\n")
}

func (c *chart) title() {
	s, r := &c.s, c.r
	verdict, colour := "FAIL", colourOver
	if r.Passed() {
		verdict, colour = "PASS", colourPass
	}
	s.printf(`<text x="%s" y="22" font-size="17" font-weight="bold" fill="#212121">%s <tspan fill="%s">%s</tspan></text>`+"\n",
		num(plotLeft), esc(fmt.Sprintf("Sluice chaos run %q · seed %d ·", clip(r.Name, 40), r.Seed)), colour, verdict)
	held := len(r.Invariants) - len(r.Failed())
	sub := []string{}
	if !r.Started.IsZero() {
		sub = append(sub, "started "+r.Started.UTC().Format(time.RFC3339))
	}
	sub = append(sub,
		"duration "+r.Duration.Round(time.Millisecond).String(),
		fmt.Sprintf("%d nodes", len(r.Nodes)),
		fmt.Sprintf("%d deployments", len(c.views)),
		fmt.Sprintf("%d faults", len(r.Faults)),
		fmt.Sprintf("invariants %d/%d held", held, len(r.Invariants)))
	s.text(plotLeft, 40, `fill="#424242"`, strings.Join(sub, " · "))
	if failed := r.Failed(); len(failed) > 0 {
		names := make([]string, len(failed))
		for i, f := range failed {
			names[i] = f.Name
		}
		s.text(plotLeft, 54, `fill="`+colourOver+`"`, clip("failed: "+strings.Join(names, ", "), 150))
	}
}

// faultBands draws one band (interval) or line (instant) per fault across
// every panel, with its label in its lane above the panels.
func (c *chart) faultBands() {
	s := &c.s
	bottom := c.height - 30
	for i, f := range c.faults {
		colour := faultColour(f.Kind)
		x0 := c.x(f.At)
		tip := fmt.Sprintf("%s %s at %s", f.Kind, f.Target, secs(f.At))
		if f.Until > f.At {
			tip += " until " + secs(f.Until)
		}
		if f.Detail != "" {
			tip += ": " + oneLine(f.Detail)
		}
		s.printf(`<g class="fault" data-kind="%s" data-target="%s"><title>%s</title>`+"\n", esc(f.Kind), esc(f.Target), esc(tip))
		if f.Until > f.At {
			x1 := c.x(f.Until)
			s.rect(x0, c.bandsTop, math.Max(x1-x0, 1), bottom-c.bandsTop,
				fmt.Sprintf(`class="fault-band" fill="%s" fill-opacity="0.14" stroke="%s" stroke-opacity="0.5" stroke-width="0.5"`, colour, colour))
		} else {
			s.line(x0, c.bandsTop, x0, bottom,
				fmt.Sprintf(`class="fault-line" stroke="%s" stroke-width="1.5" stroke-dasharray="5 3"`, colour))
		}
		ly := titleHeight + float64(c.lanes[i]+1)*laneHeight - 3
		s.line(x0, ly+2, x0, c.bandsTop, fmt.Sprintf(`stroke="%s" stroke-width="1"`, colour))
		s.text(x0+2, ly, fmt.Sprintf(`class="fault-label" font-size="10" font-weight="bold" fill="%s"`, colour), faultLabel(f))
		s.printf("</g>\n")
	}
}

// panel is one plotting area with its vertical scale.
type panel struct {
	top, height float64
	max         float64 // value at the top edge
}

func (p panel) y(v float64) float64 {
	if p.max <= 0 || math.IsNaN(v) {
		return p.top + p.height
	}
	return p.top + p.height - math.Max(0, math.Min(1, v/p.max))*p.height
}

func (p panel) bottom() float64 { return p.top + p.height }

// frame draws a panel's label, grid, value ticks and border.
func (c *chart) frame(p panel, step float64, label string, timeLabels bool) {
	s := &c.s
	s.text(plotLeft, p.top-5, `font-size="11" fill="#424242"`, label)
	for i := 0; float64(i)*step <= p.max*(1+1e-9); i++ {
		v := float64(i) * step
		y := p.y(v)
		if v > 0 {
			s.line(plotLeft, y, plotRight, y, `stroke="`+colourGrid+`" stroke-width="0.7"`)
		}
		s.text(plotLeft-5, y+3.5, `text-anchor="end" font-size="10" fill="`+colourAxis+`"`, si(v))
	}
	for i := 0; float64(i)*c.tStep <= c.end.Seconds()*(1+1e-9); i++ {
		t := float64(i) * c.tStep
		x := c.x(time.Duration(t * float64(time.Second)))
		if t > 0 {
			s.line(x, p.top, x, p.bottom(), `stroke="`+colourGrid+`" stroke-width="0.7"`)
		}
		s.line(x, p.bottom(), x, p.bottom()+3, `stroke="`+colourAxis+`"`)
		if timeLabels {
			s.text(x, p.bottom()+14, `text-anchor="middle" font-size="10" fill="`+colourAxis+`"`, strconv.FormatFloat(math.Round(t*1000)/1000, 'f', -1, 64))
		}
	}
	s.rect(plotLeft, p.top, plotWidth, p.height, `fill="none" stroke="`+colourAxis+`" stroke-width="0.8"`)
}

// block draws one deployment: heading, tokens, requests and shares panels.
func (c *chart) block(v *deploymentView, y float64) {
	s := &c.s
	s.printf(`<g class="deployment" data-deployment="%s">`+"\n", esc(v.Name))
	head := clip(v.Name, 40)
	if v.Region != "" {
		head += " · region " + clip(v.Region, 20)
	}
	if v.Known {
		head += fmt.Sprintf(" · RPM %s · TPM %s", si(float64(v.RPM)), si(float64(v.TPM)))
	}
	head += " · utilisation " + pct(v.Utilisation())
	s.printf(`<text x="%s" y="%s" font-size="13" font-weight="bold" fill="#212121">%s`, num(plotLeft), num(y+14), esc(head))
	if v.OverLimit > 0 {
		s.printf(` <tspan fill="%s">· %d window(s) over limit</tspan>`, colourOver, v.OverLimit)
	}
	s.printf("</text>\n")

	win := "window"
	if v.Length > 0 {
		win = secs(v.Length) + " window"
	}
	top := y + headHeight
	c.windowPanel(v, panel{top: top, height: tokensHeight}, "tokens per "+win+" (dashed red: limit)",
		func(w Window) (int64, int64) { return w.Tokens, w.LimitTokens }, colourTokens, true)
	top += tokensHeight + panelGap
	c.windowPanel(v, panel{top: top, height: reqsHeight}, "requests per "+win,
		func(w Window) (int64, int64) { return w.Requests, w.LimitRequests }, colourReqs, false)
	top += reqsHeight + panelGap
	c.sharesPanel(v, panel{top: top, height: sharesHeight})
	s.printf("</g>\n")
}

// windowPanel draws one bar per window of the chosen length, red when over
// its limit, the limit as a dashed red step line, and a red marker above
// every window over either limit (of any length, for the tokens panel).
func (c *chart) windowPanel(v *deploymentView, p panel, label string, get func(Window) (int64, int64), colour string, markAll bool) {
	s := &c.s
	var peak float64
	for _, w := range v.Windows {
		val, limit := get(w)
		peak = math.Max(peak, math.Max(float64(val), float64(limit)))
	}
	var step float64
	p.max, step = niceCeil(peak*1.05, yTicks)
	if p.height < 60 {
		p.max, step = niceCeil(peak*1.05, 2)
	}
	c.frame(p, step, label, false)

	for _, w := range v.Windows {
		val, limit := get(w)
		x0, x1 := c.x(w.Start), c.x(w.Start+w.Length)
		if x1-x0 > 8 { // a hairline between wide bars; narrow bars touch
			x0, x1 = x0+0.5, x1-0.5
		}
		fill, class := colour, "bar"
		if limit > 0 && val > limit {
			fill, class = colourOver, "bar over"
		}
		s.printf(`<rect class="%s" x="%s" y="%s" width="%s" height="%s" fill="%s"><title>%s</title></rect>`+"\n",
			class, num(x0), num(p.y(float64(val))), num(math.Max(x1-x0, 0.8)), num(p.bottom()-p.y(float64(val))), fill,
			esc(fmt.Sprintf("%s at %s: %d of %d (%s)", v.Name, secs(w.Start), val, limit, pct(ratio(val, limit)))))
	}

	// The limit as a step line, broken where windows are not contiguous.
	var path strings.Builder
	var prevEnd time.Duration = -1
	var prevY float64
	for _, w := range v.Windows {
		_, limit := get(w)
		if limit <= 0 {
			prevEnd = -1
			continue
		}
		ly := p.y(float64(limit))
		switch {
		case prevEnd == w.Start && ly == prevY:
			// Same level: the previous segment simply continues.
		case prevEnd == w.Start:
			fmt.Fprintf(&path, "L%s %s ", num(c.x(w.Start)), num(ly))
		default:
			fmt.Fprintf(&path, "M%s %s ", num(c.x(w.Start)), num(ly))
		}
		fmt.Fprintf(&path, "L%s %s ", num(c.x(w.Start+w.Length)), num(ly))
		prevEnd, prevY = w.Start+w.Length, ly
	}
	if path.Len() > 0 {
		s.printf(`<path class="limit" d="%s" fill="none" stroke="%s" stroke-width="1.5" stroke-dasharray="6 4"/>`+"\n",
			strings.TrimSpace(path.String()), colourLimit)
	}

	// Markers above over-limit windows, so a thin bar still stands out.
	for _, w := range v.Windows {
		if val, limit := get(w); limit > 0 && val > limit {
			c.overMarker(w, p, false, fmt.Sprintf("over limit at %s: %d > %d", secs(w.Start), val, limit))
		}
	}
	if markAll {
		for _, w := range v.Others {
			c.overMarker(w, p, true, fmt.Sprintf("%s window at %s over limit: %d tokens (limit %d), %d requests (limit %d)",
				secs(w.Length), secs(w.Start), w.Tokens, w.LimitTokens, w.Requests, w.LimitRequests))
		}
	}
}

// overMarker draws a red triangle above a window's middle, and for a window
// of another length than the bars, a red strip along the panel top.
func (c *chart) overMarker(w Window, p panel, strip bool, tip string) {
	s := &c.s
	x0, x1 := c.x(w.Start), c.x(w.Start+w.Length)
	mid := (x0 + x1) / 2
	s.printf(`<g class="over-marker"><title>%s</title>`, esc(tip))
	s.printf(`<path d="M%s %s L%s %s L%s %s Z" fill="%s"/>`, num(mid-5), num(p.top-9), num(mid+5), num(p.top-9), num(mid), num(p.top-1), colourOver)
	if strip {
		s.printf(`<rect x="%s" y="%s" width="%s" height="4" fill="%s"/>`, num(x0), num(p.top), num(math.Max(x1-x0, 1)), colourOver)
	}
	s.printf("</g>\n")
}

// sharesPanel draws each node's token share over time, one path per node,
// broken where the node stopped reporting, their sum, and the deployment's
// TPM.
func (c *chart) sharesPanel(v *deploymentView, p panel) {
	s := &c.s
	byNode := map[string][]ShareSample{}
	peak := float64(v.TPM)
	for _, sm := range c.r.Shares {
		if sm.Deployment != v.Name || math.IsNaN(sm.Tokens) || math.IsInf(sm.Tokens, 0) {
			continue
		}
		byNode[sm.Node] = append(byNode[sm.Node], sm)
		peak = math.Max(peak, sm.Tokens)
	}
	for _, samples := range byNode {
		sort.SliceStable(samples, func(i, j int) bool { return samples[i].At < samples[j].At })
	}
	sums := c.shareSums(byNode)
	for _, pt := range sums {
		peak = math.Max(peak, pt.sum)
	}
	var step float64
	p.max, step = niceCeil(peak*1.05, yTicks)
	c.frame(p, step, "token share per node (tokens/min; dotted: sum; dashed red: TPM)", true)
	if v.TPM > 0 {
		y := p.y(float64(v.TPM))
		s.line(plotLeft, y, plotRight, y, fmt.Sprintf(`class="limit" stroke="%s" stroke-width="1.5" stroke-dasharray="6 4"`, colourLimit))
	}
	if len(sums) > 0 {
		var d strings.Builder
		for i, pt := range sums {
			cmd := "L"
			if i == 0 {
				cmd = "M"
			}
			fmt.Fprintf(&d, "%s%s %s ", cmd, num(c.x(pt.at)), num(p.y(pt.sum)))
		}
		s.printf(`<path class="share-sum" data-deployment="%s" d="%s" fill="none" stroke="#424242" stroke-width="1.2" stroke-dasharray="2 2"><title>%s</title></path>`+"\n",
			esc(v.Name), strings.TrimSpace(d.String()), esc("sum of node shares of "+v.Name))
	}
	for _, node := range c.nodes {
		samples := byNode[node]
		if len(samples) == 0 {
			continue
		}
		gap := gapThreshold(samples)
		var d strings.Builder
		var dots []ShareSample // points with no neighbour, drawn as dots
		for i, sm := range samples {
			startsRun := i == 0 || sm.At-samples[i-1].At > gap
			endsRun := i == len(samples)-1 || samples[i+1].At-sm.At > gap
			cmd := "L"
			if startsRun {
				cmd = "M"
			}
			fmt.Fprintf(&d, "%s%s %s ", cmd, num(c.x(sm.At)), num(p.y(sm.Tokens)))
			if startsRun && endsRun {
				dots = append(dots, sm)
			}
		}
		colour, dash := nodeStyle(c.nodeIx[node])
		dashAttr := ""
		if dash != "" {
			dashAttr = ` stroke-dasharray="` + dash + `"`
		}
		s.printf(`<path class="share" data-node="%s" data-deployment="%s" d="%s" fill="none" stroke="%s" stroke-width="%s" stroke-linejoin="round"%s><title>%s</title></path>`+"\n",
			esc(node), esc(v.Name), strings.TrimSpace(d.String()), colour, num(c.lineWidth(node)), dashAttr, esc(node+" share of "+v.Name))
		for _, sm := range dots {
			s.printf(`<circle cx="%s" cy="%s" r="2" fill="%s"/>`+"\n", num(c.x(sm.At)), num(p.y(sm.Tokens)), colour)
		}
	}
}

// sumPoint is the sum of the nodes' shares at one instant.
type sumPoint struct {
	at  time.Duration
	sum float64
}

// lineWidth narrows each successive node's line, from 4 down to 1.5, so
// that nodes holding equal shares (the usual case) show as nested stripes
// instead of the last line hiding the others.
func (c *chart) lineWidth(node string) float64 {
	n := len(c.nodes)
	if n < 2 {
		return 2
	}
	return 1.5 + 2.5*float64(n-1-c.nodeIx[node])/float64(n-1)
}

// shareSums sums the nodes' shares over time, so that shares spreading
// back after a kill and a sum above the TPM both show. Samples go into
// buckets of the shortest node's median sampling interval (nodes sampled
// in the same tick land in the same bucket); a bucket sums the last sample
// of each node in it, and a node that did not report adds nothing. byNode
// holds each node's samples sorted by time.
func (c *chart) shareSums(byNode map[string][]ShareSample) []sumPoint {
	if len(byNode) < 2 {
		return nil
	}
	interval := time.Duration(math.MaxInt64)
	for _, node := range c.nodes {
		if m := medianInterval(byNode[node]); m > 0 && m < interval {
			interval = m
		}
	}
	if interval == time.Duration(math.MaxInt64) {
		return nil
	}
	var all []ShareSample
	for _, node := range c.nodes {
		all = append(all, byNode[node]...)
	}
	sort.SliceStable(all, func(i, j int) bool { return all[i].At < all[j].At })
	var (
		keys  []int64
		perNo = map[int64]map[string]float64{}
	)
	for _, sm := range all {
		k := int64(math.Round(float64(sm.At) / float64(interval)))
		if perNo[k] == nil {
			perNo[k] = map[string]float64{}
			keys = append(keys, k)
		}
		perNo[k][sm.Node] = sm.Tokens
	}
	points := make([]sumPoint, 0, len(keys))
	for _, k := range keys {
		var sum float64
		for _, node := range c.nodes {
			sum += perNo[k][node]
		}
		points = append(points, sumPoint{at: time.Duration(k) * interval, sum: sum})
	}
	return points
}

// medianInterval is the median time between a node's consecutive samples,
// or 0 with fewer than three samples.
func medianInterval(samples []ShareSample) time.Duration {
	if len(samples) < 3 {
		return 0
	}
	gaps := make([]time.Duration, 0, len(samples)-1)
	for i := 1; i < len(samples); i++ {
		gaps = append(gaps, samples[i].At-samples[i-1].At)
	}
	sort.Slice(gaps, func(i, j int) bool { return gaps[i] < gaps[j] })
	return gaps[len(gaps)/2]
}

// gapThreshold is the interval beyond which two samples of a node are not
// joined: a node that was killed or paused stopped reporting, and a line
// across the hole would hide that. It is 2.5 times the median interval.
func gapThreshold(samples []ShareSample) time.Duration {
	median := medianInterval(samples)
	if median <= 0 {
		return time.Duration(math.MaxInt64)
	}
	return median * 5 / 2
}

// legend draws the right-hand column: nodes, marks, then fault kinds.
func (c *chart) legend() {
	s := &c.s
	x := plotRight + 18
	y := c.bandsTop + headHeight
	heading := func(t string) {
		s.text(x, y, `font-size="11" font-weight="bold" fill="#212121"`, t)
		y += 16
	}
	entry := func(swatch func(y float64), label string) {
		swatch(y)
		s.text(x+26, y+4, `font-size="11" fill="#212121"`, clip(label, 24))
		y += 16
	}
	if len(c.nodes) > 0 {
		heading("nodes")
		for i, n := range c.nodes {
			colour, dash := nodeStyle(i)
			attrs := fmt.Sprintf(`stroke="%s" stroke-width="%s"`, colour, num(c.lineWidth(n)))
			if dash != "" {
				attrs += ` stroke-dasharray="` + dash + `"`
			}
			entry(func(y float64) { s.line(x, y, x+20, y, `class="legend-node" `+attrs) }, n)
		}
		y += 8
	}
	heading("marks")
	entry(func(y float64) { s.rect(x, y-5, 20, 10, `fill="`+colourTokens+`"`) }, "tokens in window")
	entry(func(y float64) { s.rect(x, y-5, 20, 10, `fill="`+colourReqs+`"`) }, "requests in window")
	entry(func(y float64) { s.rect(x, y-5, 20, 10, `fill="`+colourOver+`"`) }, "over limit")
	entry(func(y float64) {
		s.line(x, y, x+20, y, `stroke="`+colourLimit+`" stroke-width="1.5" stroke-dasharray="6 4"`)
	}, "limit")
	entry(func(y float64) {
		s.line(x, y, x+20, y, `stroke="#424242" stroke-width="1.2" stroke-dasharray="2 2"`)
	}, "sum of node shares")
	y += 8
	var kinds []string
	seen := map[string]bool{}
	for _, f := range c.faults {
		if !seen[f.Kind] {
			seen[f.Kind] = true
			kinds = append(kinds, f.Kind)
		}
	}
	sort.Strings(kinds)
	if len(kinds) > 0 {
		heading("faults")
		for _, k := range kinds {
			colour := faultColour(k)
			entry(func(y float64) {
				s.rect(x, y-5, 20, 10, fmt.Sprintf(`fill="%s" fill-opacity="0.25" stroke="%s"`, colour, colour))
			}, k)
		}
		s.text(x, y+2, `font-size="10" fill="#616161"`, "band: interval; dashed: instant")
	}
}
