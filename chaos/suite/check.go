package suite

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/sluicehq/sluice/admin"
	"github.com/sluicehq/sluice/chaos/mock"
	"github.com/sluicehq/sluice/chaos/report"
)

// check collects the figures after the load and evaluates every
// invariant into a report.Run.
func (r *Runner) check(ctx context.Context, recs []*Record, rec *recorder, loadEnd time.Time) (*report.Run, error) {
	run := &report.Run{
		Name: r.sched.Name, Seed: r.sched.Seed, Started: r.t0, Duration: loadEnd.Sub(r.t0),
		Figures: map[string]float64{},
	}
	for _, n := range r.cluster.Nodes() {
		run.Nodes = append(run.Nodes, n.ID)
	}
	for _, rg := range r.regions {
		run.Deployments = append(run.Deployments, report.Deployment{Name: rg.Deployment, Region: rg.Name, RPM: DeploymentRPM, TPM: DeploymentTPM})
	}
	rec.mu.Lock()
	run.Faults, run.Shares = rec.faults, rec.shares
	acked, notAcked, warm := rec.acked, rec.notAcked, rec.warm
	rec.mu.Unlock()
	calmEnd := r.t0.Add(r.sched.Calm)
	run.Figures["offered_rps"] = float64(len(r.regions)) * DeploymentRPM / 60 * r.sched.LoadFactor
	run.Figures["budget_rps"] = float64(len(r.regions)) * DeploymentRPM / 60
	run.Figures["requests"] = float64(len(recs))

	run.Invariants = append(run.Invariants, Answered(recs))
	if err := writeRecords(filepath.Join(r.opt.Out, RecordsFile), r.t0, append(slices.Clone(warm), recs...)); err != nil {
		r.note("records: %v", err)
	}

	// The ledger settles: batches of the nodes commit through raft.
	ledger, settled, err := r.settledLedger(ctx)
	if err != nil {
		r.note("ledger: %v", err)
	}
	run.Figures["ledger_settle_s"] = settled.Seconds()

	mockTotals := map[string]Totals{}
	up := map[string]Upstream{}
	for _, rg := range r.regions {
		st, err := r.mock.Stats(ctx, rg.Name)
		if err != nil {
			return nil, fmt.Errorf("mock stats: %w", err)
		}
		d := st.Deployments["gpt-4o-mini"]
		mockTotals[rg.Deployment] = Totals{d.Completed, d.PromptTokens, d.CompletionTokens}
		up[rg.Deployment] = Upstream{Requests: d.Requests, Rejected429: d.Rejected429}
		run.Windows = append(run.Windows, windows(rg.Deployment, r.t0, d)...)
		run.Figures["mock_"+rg.Deployment+"_accepted"] = float64(d.Accepted)
		run.Figures["mock_"+rg.Deployment+"_completed"] = float64(d.Completed)
		run.Figures["mock_"+rg.Deployment+"_canceled"] = float64(d.Canceled)
		run.Figures["mock_"+rg.Deployment+"_rejected_429"] = float64(d.Rejected429)
		run.Figures["mock_"+rg.Deployment+"_force_429"] = float64(d.ErrorsInjected[mock.FaultForce429])
		run.Figures["mock_"+rg.Deployment+"_down_resets"] = float64(d.ErrorsInjected[mock.FaultDown])
	}
	unknownIDs := UnknownAttempts(append(slices.Clone(warm), recs...))
	unknown := map[string]Totals{}
	for _, rg := range r.regions {
		found, err := r.mock.Lookup(ctx, rg.Name, unknownIDs)
		if err != nil {
			r.note("mock lookup on %s: %v", rg.Name, err)
			continue
		}
		t := unknown[rg.Deployment]
		for _, us := range found {
			for _, u := range us {
				if u.Status == http.StatusOK {
					t.Requests++
					t.Prompt += u.PromptTokens
					t.Completion += u.CompletionTokens
				}
			}
		}
		unknown[rg.Deployment] = t
	}
	r.diagnoseLedger(ctx, append(slices.Clone(warm), recs...), run)
	run.Figures["unknown_attempts"] = float64(len(unknownIDs))
	for d, t := range unknown {
		run.Figures["unknown_"+d+"_delivered"] = float64(t.Requests)
	}
	run.Invariants = append(run.Invariants,
		LedgerEqualsMock(ledger, mockTotals, unknown),
		WindowsWithinQuota(run.Windows),
		NoUpstream429(up),
		r.checkConfigWrites(ctx, acked, notAcked),
		r.checkTenantLimits(ctx),
		NormalUnharmed(recs, run.Faults, r.t0, calmEnd),
	)
	run.Tenants = TenantStats(recs)
	for k, v := range Utilisation(run.Windows, r.t0, calmEnd, loadEnd, DeploymentRPM, DeploymentTPM) {
		run.Figures[k] = v
	}
	run.Notes = append(run.Notes, r.notes...)
	for _, e := range TopErrors(recs, 3) {
		run.Notes = append(run.Notes, "errors seen by "+e)
	}
	if !run.Passed() {
		for _, n := range r.cluster.Nodes() {
			run.Notes = append(run.Notes, fmt.Sprintf("end of %s's log:\n%s", n.ID, Tail(n.LogPath, 12)))
		}
	}
	return run, nil
}

// usage runs GET /admin/v1/usage on a live node.
func (r *Runner) usage(ctx context.Context, q admin.UsageQuery) (*admin.UsageReport, error) {
	var lastErr error
	for _, n := range r.cluster.Nodes() {
		if !n.Live() {
			continue
		}
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		rep, err := getUsage(cctx, n.Admin, r.cluster.AdminToken(), q)
		cancel()
		if err == nil {
			return rep, nil
		}
		lastErr = err
	}
	return nil, fmt.Errorf("usage: no node answered: %w", lastErr)
}

func getUsage(ctx context.Context, addr, token string, q admin.UsageQuery) (*admin.UsageReport, error) {
	u := url.URL{Scheme: "http", Host: addr, Path: "/admin/v1/usage", RawQuery: q.Values().Encode()}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Accept", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer discard(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("usage: %s answered %d", addr, resp.StatusCode)
	}
	var rep admin.UsageReport
	if err := json.NewDecoder(resp.Body).Decode(&rep); err != nil {
		return nil, fmt.Errorf("usage: decode: %w", err)
	}
	return &rep, nil
}

// ledgerTotals reads successful, uncached usage per deployment.
func (r *Runner) ledgerTotals(ctx context.Context) (map[string]Totals, error) {
	rep, err := r.usage(ctx, admin.UsageQuery{GroupBy: []string{"deployment", "cached"}})
	if err != nil {
		return nil, err
	}
	out := map[string]Totals{}
	for _, row := range rep.Rows {
		if row.Cached || row.Deployment == "" {
			continue
		}
		t := out[row.Deployment]
		t.Requests += row.Requests - row.Errors
		t.Prompt += row.PromptTokens
		t.Completion += row.CompletionTokens
		out[row.Deployment] = t
	}
	return out, nil
}

// settledLedger polls the ledger until three readings two seconds apart
// agree (at most a minute) and returns the last with the time it took.
func (r *Runner) settledLedger(ctx context.Context) (map[string]Totals, time.Duration, error) {
	start := time.Now()
	var last map[string]Totals
	same := 0
	err := Poll(ctx, time.Minute, 2*time.Second, func() error {
		cur, err := r.ledgerTotals(ctx)
		if err != nil {
			same = 0
			return err
		}
		if last != nil && equalTotals(cur, last) {
			same++
		} else {
			same = 0
		}
		last = cur
		if same < 2 {
			return fmt.Errorf("ledger still changing")
		}
		return nil
	})
	return last, time.Since(start), err
}

func equalTotals(a, b map[string]Totals) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

// checkConfigWrites waits (at most 30 s) until every node lists every
// acknowledged key, then judges.
func (r *Runner) checkConfigWrites(ctx context.Context, acked []string, notAcked int) report.Invariant {
	var present map[string]map[string]bool
	_ = Poll(ctx, 30*time.Second, time.Second, func() error {
		present = map[string]map[string]bool{}
		for _, n := range r.cluster.Nodes() {
			cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			keys, err := n.Client.ListKeys(cctx)
			cancel()
			if err != nil {
				present[n.ID] = nil // unreachable
				continue
			}
			set := map[string]bool{}
			for _, k := range keys {
				set[k.ID] = true
			}
			present[n.ID] = set
		}
		if inv := ConfigWrites(acked, notAcked, present); !inv.OK {
			return fmt.Errorf("%s", inv.Detail)
		}
		return nil
	})
	return ConfigWrites(acked, notAcked, present)
}

// checkTenantLimits reads the abusive tenant's usage per minute.
func (r *Runner) checkTenantLimits(ctx context.Context) report.Invariant {
	name := ""
	for _, t := range tenants {
		if t.Class == ClassAbusive {
			name = t.Name
		}
	}
	rep, err := r.usage(ctx, admin.UsageQuery{Tenant: name, GroupBy: []string{"tenant"}, Bucket: "minute"})
	if err != nil {
		return report.Invariant{Name: InvTenantLimits, Detail: err.Error()}
	}
	var rows []MinuteUsage
	for _, row := range rep.Rows {
		rows = append(rows, MinuteUsage{Minute: row.Bucket, Requests: row.Requests - row.Errors, Tokens: row.Tokens()})
	}
	return TenantLimits(name, rows, AbusiveRPM, AbusiveTPM)
}

// windows converts the mock's 10 s and 60 s window history of one
// deployment into report windows with their limits: a 10 s window allows
// the mock's per-window allowances (floor(quota*10s/1m)); a minute six
// of them.
func windows(dep string, t0 time.Time, d mock.DeploymentStats) []report.Window {
	reqs := max(int64(DeploymentRPM*DeploymentRPMWindow/time.Minute), 1)
	toks := max(int64(DeploymentTPM*DeploymentTPMWindow/time.Minute), 1)
	var out []report.Window
	add := func(h mock.WindowHistory, reqLimit, tokLimit int64) {
		for _, w := range h.Windows {
			out = append(out, report.Window{
				Deployment: dep, Start: time.UnixMilli(w.StartMS).Sub(t0), Length: time.Duration(h.SizeMS) * time.Millisecond,
				Requests: w.Requests, Tokens: w.Tokens, LimitRequests: reqLimit, LimitTokens: tokLimit,
			})
		}
	}
	add(d.TPMWindows, reqs, toks)
	add(d.MinuteWindows, 6*reqs, 6*toks)
	return out
}

// Utilisation returns the accepted share of the budget (requests and
// tokens, all deployments together) in the calm phase and with faults,
// from the whole 10 s windows inside each phase.
func Utilisation(ws []report.Window, t0, calmEnd, loadEnd time.Time, rpm, tpm int64) map[string]float64 {
	type acc struct{ r, t int64 }
	phases := map[string]*acc{"calm": {}, "faults": {}}
	deps := map[string]bool{}
	from := map[string]time.Time{"calm": t0, "faults": calmEnd}
	to := map[string]time.Time{"calm": calmEnd, "faults": loadEnd}
	// Only whole 10 s windows inside a phase count; the phase bounds are
	// rounded inward to window edges.
	for _, w := range ws {
		if w.Length != 10*time.Second {
			continue
		}
		deps[w.Deployment] = true
		start := t0.Add(w.Start)
		for p, a := range phases {
			if !start.Before(ceil10(from[p])) && !start.Add(w.Length).After(to[p]) {
				a.r += w.Requests
				a.t += w.Tokens
			}
		}
	}
	out := map[string]float64{}
	for p, a := range phases {
		lo, hi := ceil10(from[p]), to[p].Truncate(10*time.Second)
		secs := hi.Sub(lo).Seconds()
		if secs <= 0 || len(deps) == 0 {
			continue
		}
		n := float64(len(deps))
		out["utilisation_requests_"+p] = float64(a.r) / (n * secs * float64(rpm) / 60)
		out["utilisation_tokens_"+p] = float64(a.t) / (n * secs * float64(tpm) / 60)
	}
	return out
}

func ceil10(t time.Time) time.Time {
	tr := t.Truncate(10 * time.Second)
	if tr.Equal(t) {
		return t
	}
	return tr.Add(10 * time.Second)
}

// scrapeShare reads a node's quota shares from its /metrics (per request
// and token window) scaled to a minute.
func scrapeShare(ctx context.Context, client *http.Client, api string) ([]report.ShareSample, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+api+"/metrics", nil)
	if err != nil {
		return nil, err
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, err
	}
	defer discard(resp.Body)
	by := map[string]*report.ShareSample{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		dep, v, metric, ok := parseShareLine(sc.Text())
		if !ok {
			continue
		}
		s := by[dep]
		if s == nil {
			s = &report.ShareSample{Deployment: dep}
			by[dep] = s
		}
		switch metric {
		case "sluice_quota_share_requests":
			s.Requests = v * float64(time.Minute/DeploymentRPMWindow)
		case "sluice_quota_share_tokens":
			s.Tokens = v * float64(time.Minute/DeploymentTPMWindow)
		}
	}
	var out []report.ShareSample
	for _, d := range slices.Sorted(maps.Keys(by)) {
		out = append(out, *by[d])
	}
	return out, sc.Err()
}

// parseShareLine parses `sluice_quota_share_x{deployment="d"} v`.
func parseShareLine(line string) (dep string, v float64, metric string, ok bool) {
	if !strings.HasPrefix(line, "sluice_quota_share_") {
		return "", 0, "", false
	}
	metric, rest, found := strings.Cut(line, `{deployment="`)
	if !found {
		return "", 0, "", false
	}
	dep, rest, found = strings.Cut(rest, `"} `)
	if !found {
		return "", 0, "", false
	}
	v, err := strconv.ParseFloat(strings.TrimSpace(rest), 64)
	if err != nil {
		return "", 0, "", false
	}
	return dep, v, metric, true
}

// diagnoseLedger looks every attempt up at the mock and compares what it
// delivered per deployment and tenant with the ledger, and counts
// deliveries the client never saw as a success. The figures and notes say
// where a ledger difference comes from; they judge nothing.
func (r *Runner) diagnoseLedger(ctx context.Context, recs []*Record, run *report.Run) {
	type key struct{ dep, tenant string }
	owner := map[string]*Record{}
	status := map[string]Attempt{}
	var ids []string
	for _, rc := range recs {
		for _, a := range rc.snapshotAttempts() {
			owner[a.ID], status[a.ID] = rc, a
			ids = append(ids, a.ID)
		}
	}
	delivered := map[key]Totals{}
	var dup, notSeenOK, unknownDelivered int
	for _, rg := range r.regions {
		found, err := r.mock.Lookup(ctx, rg.Name, ids)
		if err != nil {
			r.note("mock lookup on %s: %v", rg.Name, err)
			return
		}
		for id, us := range found {
			n200 := 0
			for _, u := range us {
				if u.Status != http.StatusOK {
					continue
				}
				n200++
				k := key{rg.Deployment, owner[id].Tenant}
				t := delivered[k]
				t.Requests++
				t.Prompt += u.PromptTokens
				t.Completion += u.CompletionTokens
				delivered[k] = t
			}
			a := status[id]
			switch {
			case n200 > 1:
				dup++
			case n200 == 1 && a.Unknown:
				unknownDelivered++
			case n200 == 1 && a.Status != http.StatusOK:
				notSeenOK++
			}
		}
	}
	run.Figures["mock_ids_delivered_twice"] = float64(dup)
	run.Figures["mock_delivered_unknown_outcome"] = float64(unknownDelivered)
	run.Figures["mock_delivered_client_not_ok"] = float64(notSeenOK)
	rep, err := r.usage(ctx, admin.UsageQuery{GroupBy: []string{"deployment", "tenant", "cached"}})
	if err != nil {
		r.note("ledger by tenant: %v", err)
		return
	}
	ledger := map[key]Totals{}
	for _, row := range rep.Rows {
		if row.Cached || row.Deployment == "" {
			continue
		}
		k := key{row.Deployment, row.Tenant}
		t := ledger[k]
		t.Requests += row.Requests - row.Errors
		t.Prompt += row.PromptTokens
		t.Completion += row.CompletionTokens
		ledger[k] = t
	}
	keys := map[key]bool{}
	for k := range ledger {
		keys[k] = true
	}
	for k := range delivered {
		keys[k] = true
	}
	for k := range keys {
		if ledger[k] != delivered[k] {
			r.note("ledger vs mock deliveries of %s on %s: ledger %v, mock delivered to our ids %v", k.tenant, k.dep, ledger[k], delivered[k])
		}
	}
}

// RecordsFile is the file of every request record (JSON lines), next to
// the report.
const RecordsFile = "requests.jsonl"

// writeRecords writes one JSON line per request, times relative to t0.
func writeRecords(path string, t0 time.Time, recs []*Record) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	w := bufio.NewWriter(f)
	enc := json.NewEncoder(w)
	type line struct {
		*Record
		StartS float64 `json:"start_s"`
		EndS   float64 `json:"end_s"`
	}
	for _, rc := range recs {
		rc.mu.Lock()
		err := enc.Encode(line{rc, rc.Start.Sub(t0).Seconds(), rc.End.Sub(t0).Seconds()})
		rc.mu.Unlock()
		if err != nil {
			_ = f.Close()
			return err
		}
	}
	if err := w.Flush(); err != nil {
		_ = f.Close()
		return err
	}
	return f.Close()
}
