// Package report turns one chaos run's measurements into the three files a
// person reads afterwards: report.json (the whole Run, for tools and for
// comparing runs), summary.txt (a plain-text account ending in a verdict
// line) and chart.svg (what happened, at a glance).
//
// The chaos runner fills a Run while it kills nodes and injects faults, then
// calls WriteDir once at the end. This package measures nothing and judges
// nothing: invariants arrive already checked, and Passed only combines their
// verdicts. A run with no invariants does not pass, because a run that
// checked nothing has shown nothing.
//
// JSON encoding: every field has a snake_case tag. Durations and offsets are
// integer nanoseconds in fields whose names end in _ns (at_ns, p99_ns,
// duration_ns, ...); offsets are measured from Run.Started, which is an
// RFC 3339 time. Rates are per minute (tokens_per_min). Figures is a flat
// map of any other measured number; its keys are printed sorted. JSON cannot
// carry NaN or infinities, so WriteJSON refuses a Run holding one and names
// the offending field, rather than writing a file that no decoder accepts.
//
// The chart is hand-written SVG (standard library only) so that it opens in
// any browser and diffs as text. For each deployment it stacks three panels
// on one time axis: tokens per window as bars against the window's token
// limit (dashed red), requests per window the same way but smaller, and
// every node's token share over time (one coloured line per node, broken
// where the node stopped reporting) with their sum (dotted) against the
// deployment's TPM. Windows over a limit are filled red and flagged with a
// red marker above the panel, so even a one-pixel bar stands out. Fault
// intervals are shaded bands across every panel, instant faults dashed
// vertical lines, each labelled (kind and target) along the top. Hovering
// any bar, band or line shows its figures. Output is a pure function of the
// Run: the same input gives byte-identical files, so charts from two runs
// can be compared with diff.
//
// When a deployment has windows of several lengths, the chart and the
// utilisation figure use the 10 s windows (or the most common length if
// there are none); over-limit windows of any other length still get a red
// marker and a red strip over their span.
package report
