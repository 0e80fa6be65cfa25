package report

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
)

// Summary writes a plain-text account of r: a header (name, seed, start,
// duration, nodes), the fault timeline, a table per tenant, each
// deployment's utilisation and worst window against its limit, other
// figures, the invariants as PASS/FAIL lines with their detail, the notes,
// and a last line starting "VERDICT: PASS" or "VERDICT: FAIL".
func Summary(w io.Writer, r *Run) error {
	if r == nil {
		return ErrNilRun
	}
	bw := bufio.NewWriter(w)
	s := &summary{w: bw, r: r}
	s.header()
	s.faults()
	s.tenants()
	s.deployments()
	s.figures()
	s.invariants()
	s.notes()
	s.printf("%s\n", verdict(r))
	if s.err != nil {
		return fmt.Errorf("report: write summary: %w", s.err)
	}
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("report: write summary: %w", err)
	}
	return nil
}

// verdict is the summary's last line.
func verdict(r *Run) string {
	n := len(r.Invariants)
	failed := r.Failed()
	switch {
	case n == 0:
		return "VERDICT: FAIL - no invariant was checked"
	case len(failed) == 0:
		return fmt.Sprintf("VERDICT: PASS - all %d invariants held", n)
	}
	names := make([]string, len(failed))
	for i, inv := range failed {
		names[i] = oneLine(inv.Name)
	}
	return fmt.Sprintf("VERDICT: FAIL - %d of %d invariants failed: %s", len(failed), n, strings.Join(names, ", "))
}

type summary struct {
	w   io.Writer
	r   *Run
	err error
}

func (s *summary) printf(format string, args ...any) {
	if s.err == nil {
		_, s.err = fmt.Fprintf(s.w, format, args...)
	}
}

// table starts a tab-aligned table; the returned flush must be called at
// the end. Trailing blanks left by empty last cells are trimmed.
func (s *summary) table() (row func(cells ...string), flush func()) {
	var buf bytes.Buffer
	tw := tabwriter.NewWriter(&buf, 0, 0, 2, ' ', 0)
	row = func(cells ...string) {
		fmt.Fprintf(tw, "  %s\n", strings.Join(cells, "\t"))
	}
	flush = func() {
		_ = tw.Flush() // writes to a bytes.Buffer cannot fail
		for _, line := range strings.SplitAfter(buf.String(), "\n") {
			if line != "" {
				s.printf("%s\n", strings.TrimRight(line, " \n"))
			}
		}
	}
	return row, flush
}

func (s *summary) section(title string) { s.printf("\n%s\n", title) }

func (s *summary) header() {
	r := s.r
	status := "PASS"
	if !r.Passed() {
		status = "FAIL"
	}
	s.printf("Sluice chaos run %q: %s\n", oneLine(r.Name), status)
	row, flush := s.table()
	row("seed", strconv.FormatInt(r.Seed, 10))
	if !r.Started.IsZero() {
		row("started", r.Started.UTC().Format(time.RFC3339))
	}
	row("duration", r.Duration.Round(time.Millisecond).String())
	ns := make([]string, len(r.Nodes))
	for i, n := range r.Nodes {
		ns[i] = oneLine(n)
	}
	row("nodes", fmt.Sprintf("%d: %s", len(r.Nodes), strings.Join(ns, ", ")))
	row("faults", strconv.Itoa(len(r.Faults)))
	flush()
}

func (s *summary) faults() {
	s.section("Fault timeline (seconds since start)")
	if len(s.r.Faults) == 0 {
		s.printf("  (none)\n")
		return
	}
	row, flush := s.table()
	row("AT", "UNTIL", "FOR", "KIND", "TARGET", "DETAIL")
	for _, f := range sortedFaults(s.r) {
		until, length := "-", "instant"
		if f.Until > f.At {
			until, length = secs(f.Until), secs(f.Until-f.At)
		}
		row(secs(f.At), until, length, oneLine(f.Kind), oneLine(f.Target), oneLine(f.Detail))
	}
	flush()
}

func (s *summary) tenants() {
	s.section("Tenants")
	if len(s.r.Tenants) == 0 {
		s.printf("  (none)\n")
		return
	}
	row, flush := s.table()
	row("TENANT", "CLASS", "SENT", "OK", "REFUSED", "FAILED", "HUNG", "OK%", "P50", "P99")
	var total TenantStats
	for _, t := range s.r.Tenants {
		row(oneLine(t.Tenant), oneLine(t.Class), i64(t.Sent), i64(t.OK), i64(t.Refused),
			i64(t.Failed), i64(t.Hung), pct(ratio(t.OK, t.Sent)), latency(t.P50), latency(t.P99))
		total.Sent += t.Sent
		total.OK += t.OK
		total.Refused += t.Refused
		total.Failed += t.Failed
		total.Hung += t.Hung
	}
	if len(s.r.Tenants) > 1 {
		row("total", "", i64(total.Sent), i64(total.OK), i64(total.Refused),
			i64(total.Failed), i64(total.Hung), pct(ratio(total.OK, total.Sent)), "", "")
	}
	flush()
}

func (s *summary) deployments() {
	s.section("Deployments (utilisation = tokens used / tokens allowed, over the windows listed)")
	views := deployments(s.r)
	if len(views) == 0 {
		s.printf("  (none)\n")
		return
	}
	row, flush := s.table()
	row("DEPLOYMENT", "REGION", "RPM", "TPM", "WINDOWS", "UTILISATION", "OVER LIMIT", "WORST TOKENS", "WORST REQUESTS")
	for _, v := range views {
		windows := "0"
		if len(v.Windows) > 0 {
			windows = fmt.Sprintf("%d x %s", len(v.Windows), secs(v.Length))
		}
		rpm, tpm := i64(v.RPM), i64(v.TPM)
		if !v.Known {
			rpm, tpm = "?", "?"
		}
		row(oneLine(v.Name), oneLine(v.Region), rpm, tpm, windows, pct(v.Utilisation()),
			fmt.Sprintf("%d of %d", v.OverLimit, v.AllWindows),
			worst(v.WorstTokens, func(w *Window) (int64, int64) { return w.Tokens, w.LimitTokens }),
			worst(v.WorstRequests, func(w *Window) (int64, int64) { return w.Requests, w.LimitRequests }))
	}
	flush()
}

// worst describes a worst window: "40s+10s 18000/16667 (108.0%)", with
// "OVER" appended when it exceeded its limit.
func worst(w *Window, get func(*Window) (int64, int64)) string {
	if w == nil {
		return "-"
	}
	v, limit := get(w)
	out := fmt.Sprintf("%s+%s %d/%d (%s)", secs(w.Start), secs(w.Length), v, limit, pct(ratio(v, limit)))
	if v > limit {
		out += " OVER"
	}
	return out
}

func (s *summary) figures() {
	if len(s.r.Figures) == 0 {
		return
	}
	s.section("Figures")
	row, flush := s.table()
	for _, k := range sortedKeys(s.r.Figures) {
		row(oneLine(k), strconv.FormatFloat(s.r.Figures[k], 'g', 6, 64))
	}
	flush()
}

func (s *summary) invariants() {
	s.section("Invariants")
	if len(s.r.Invariants) == 0 {
		s.printf("  (none checked)\n")
		return
	}
	for _, inv := range s.r.Invariants {
		mark := "PASS"
		if !inv.OK {
			mark = "FAIL"
		}
		line := fmt.Sprintf("  %s  %s", mark, oneLine(inv.Name))
		if d := oneLine(inv.Detail); d != "" {
			line += ": " + d
		}
		s.printf("%s\n", line)
	}
}

func (s *summary) notes() {
	if len(s.r.Notes) == 0 {
		s.printf("\n")
		return
	}
	s.section("Notes")
	for _, n := range s.r.Notes {
		s.printf("  - %s\n", oneLine(n))
	}
	s.printf("\n")
}

// oneLine folds a free-text field onto one line, so that a detail holding
// a newline or a tab cannot break the layout or forge a PASS/FAIL line.
func oneLine(s string) string {
	if !strings.ContainsAny(s, "\r\n\t") {
		return s
	}
	return strings.Join(strings.Fields(s), " ")
}

func i64(v int64) string { return strconv.FormatInt(v, 10) }

// latency formats a latency to a sensible precision.
func latency(d time.Duration) string {
	switch {
	case d <= 0:
		return "-"
	case d >= 10*time.Millisecond:
		return d.Round(time.Millisecond).String()
	default:
		return d.Round(10 * time.Microsecond).String()
	}
}
