package suite

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/sluicehq/sluice/chaos/report"
	"github.com/sluicehq/sluice/cluster/state"
	"github.com/sluicehq/sluice/quota"
)

// Invariant names.
const (
	InvAnswered         = "answered"
	InvLedgerEqualsMock = "ledger-equals-mock"
	InvWindowsInQuota   = "windows-within-quota"
	InvNoUpstream429    = "no-upstream-quota-429"
	InvConfigWrites     = "config-writes"
	InvTenantLimits     = "tenant-limits"
	InvNormalUnharmed   = "normal-unharmed"
)

// Thresholds of the invariants. They are the promise being checked, not
// knobs to make a run pass.
const (
	// answerGrace is how far past its deadline a request may end and
	// still count as answered (the client's own scheduling).
	answerGrace = time.Second
	// MaxUpstream429Rate is the share of upstream requests the mock may
	// refuse for quota (the same bound as the quota acceptance test).
	MaxUpstream429Rate = 0.001
	// MinNormalSuccess is the success rate normal tenants must see outside
	// fault windows.
	MinNormalSuccess = 0.99
	// MaxP99Ratio bounds normal tenants' p99 latency outside fault windows
	// against the calm phase's: 3x leaves room for a 2-core machine busy
	// restarting nodes, and still catches a tenant starved by another.
	MaxP99Ratio = 3.0
	// FaultSettle is added to the end of every fault when deciding whether
	// a request overlapped it: the lease, grace and reallocation time after
	// which the cluster is back to its calm behaviour.
	FaultSettle = 5 * time.Second
)

// NodeLossSettle is how long after a node vanishes without a word (killed,
// paused, cut off) its quota share stays out of use: the allocator waits
// until the node's reports are stale, its last lease and grace end, the
// clock margin passes, and its charges leave the longest provider window
// (and the extra slot of the nodes' windows). The provider still counts
// what the node charged, so the others cannot take that share earlier
// without risking 429s; requests the cluster refuses for want of budget
// until then are the fault's. Derived from the quota settings the suite
// runs with, not tuned to make a run pass.
var NodeLossSettle = func() time.Duration {
	q := state.DefaultQuotaSettings()
	w := max(DeploymentRPMWindow, DeploymentTPMWindow)
	return 4*q.Interval.D() + q.Lease.D() + q.Grace.D() + q.ClockMargin.D() + w + w/quota.DefaultSlots
}()

// settleEnd is when the cluster is back to its calm behaviour after f.
func settleEnd(f report.Fault) time.Duration {
	end := max(f.Until, f.At) + FaultSettle
	switch f.Kind {
	case FaultSIGKILL, FaultLeaderKill, FaultPause, FaultPartition:
		end = max(end, f.At+NodeLossSettle)
	}
	return end
}

// Answered checks that every request ended, well or with a clean error,
// before its deadline.
func Answered(recs []*Record) report.Invariant {
	var hung, late, open int
	kinds := map[string]int{}
	for _, r := range recs {
		switch {
		case r.End.IsZero():
			open++
		case r.Kind == KindHung:
			hung++
		case r.End.Sub(r.Start) > r.Deadline+answerGrace:
			late++
		}
		kinds[r.Kind]++
	}
	bad := hung + late + open
	return report.Invariant{
		Name: InvAnswered, OK: bad == 0,
		Detail: fmt.Sprintf("%d requests: %s; hung %d, ended past the deadline %d, never ended %d",
			len(recs), fmtCounts(kinds), hung, late, open),
	}
}

func fmtCounts(m map[string]int) string {
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(m)) {
		if k == "" {
			continue
		}
		parts = append(parts, fmt.Sprintf("%s %d", k, m[k]))
	}
	return strings.Join(parts, ", ")
}

// Totals are successful requests and their tokens.
type Totals struct {
	Requests   int64 `json:"requests"`
	Prompt     int64 `json:"prompt_tokens"`
	Completion int64 `json:"completion_tokens"`
}

// Sub returns t - o.
func (t Totals) Sub(o Totals) Totals {
	return Totals{t.Requests - o.Requests, t.Prompt - o.Prompt, t.Completion - o.Completion}
}

func (t Totals) String() string {
	return fmt.Sprintf("%d req, %d+%d tok", t.Requests, t.Prompt, t.Completion)
}

// LedgerEqualsMock compares, per deployment, the ledger's successful
// uncached requests and tokens with what the mock delivered minus what it
// delivered for attempts whose outcome the client could not know (so the
// gateway may never have settled them). They must be equal exactly.
func LedgerEqualsMock(ledger, mock, unknown map[string]Totals) report.Invariant {
	deps := map[string]bool{}
	for _, m := range []map[string]Totals{ledger, mock, unknown} {
		for d := range m {
			deps[d] = true
		}
	}
	ok := true
	var parts []string
	for _, d := range slices.Sorted(maps.Keys(deps)) {
		want := mock[d].Sub(unknown[d])
		eq := ledger[d] == want
		ok = ok && eq
		verdict := "equal"
		if !eq {
			diff := ledger[d].Sub(want)
			verdict = fmt.Sprintf("DIFFER by %+d req, %+d+%+d tok", diff.Requests, diff.Prompt, diff.Completion)
		}
		parts = append(parts, fmt.Sprintf("%s: ledger %v; mock %v - unknown %v = %v: %s", d, ledger[d], mock[d], unknown[d], want, verdict))
	}
	if len(deps) == 0 {
		ok = false
		parts = append(parts, "no usage on either side")
	}
	return report.Invariant{Name: InvLedgerEqualsMock, OK: ok, Detail: strings.Join(parts, "; ")}
}

// WindowsWithinQuota checks every window the mock counted against its
// limits and reports the worst window per deployment and length.
func WindowsWithinQuota(ws []report.Window) report.Invariant {
	type key struct {
		dep string
		len time.Duration
	}
	type worst struct {
		r, t   float64
		n, bad int
	}
	by := map[key]*worst{}
	for _, w := range ws {
		k := key{w.Deployment, w.Length}
		x := by[k]
		if x == nil {
			x = &worst{}
			by[k] = x
		}
		x.n++
		if w.LimitRequests > 0 {
			x.r = max(x.r, float64(w.Requests)/float64(w.LimitRequests))
		}
		if w.LimitTokens > 0 {
			x.t = max(x.t, float64(w.Tokens)/float64(w.LimitTokens))
		}
		if (w.LimitRequests > 0 && w.Requests > w.LimitRequests) || (w.LimitTokens > 0 && w.Tokens > w.LimitTokens) {
			x.bad++
		}
	}
	keys := slices.SortedFunc(maps.Keys(by), func(a, b key) int {
		if c := strings.Compare(a.dep, b.dep); c != 0 {
			return c
		}
		return int(a.len - b.len)
	})
	ok := len(ws) > 0
	var parts []string
	for _, k := range keys {
		x := by[k]
		ok = ok && x.bad == 0
		parts = append(parts, fmt.Sprintf("%s %v: %d windows, %d over; worst %.1f%% of requests, %.1f%% of tokens",
			k.dep, k.len, x.n, x.bad, 100*x.r, 100*x.t))
	}
	if len(ws) == 0 {
		parts = append(parts, "no windows")
	}
	return report.Invariant{Name: InvWindowsInQuota, OK: ok, Detail: strings.Join(parts, "; ")}
}

// Upstream is one deployment's upstream requests and quota refusals as
// the mock counted them.
type Upstream struct {
	Requests, Rejected429 int64
}

// NoUpstream429 checks that the gateway kept each deployment's traffic
// within its quota as the provider enforces it: quota 429s (not injected
// storms) at most MaxUpstream429Rate of the requests.
func NoUpstream429(up map[string]Upstream) report.Invariant {
	ok := len(up) > 0
	var parts []string
	for _, d := range slices.Sorted(maps.Keys(up)) {
		u := up[d]
		rate := float64(u.Rejected429) / float64(max(u.Requests, 1))
		ok = ok && rate <= MaxUpstream429Rate
		parts = append(parts, fmt.Sprintf("%s: %d of %d upstream requests refused for quota (%.3f%%, limit %.1f%%)",
			d, u.Rejected429, u.Requests, 100*rate, 100*MaxUpstream429Rate))
	}
	return report.Invariant{Name: InvNoUpstream429, OK: ok, Detail: strings.Join(parts, "; ")}
}

// ConfigWrites checks that every acknowledged write (a key ID) is present
// on every node; present maps node ID to the IDs it lists (nil: the node
// could not be asked, which fails the check too).
func ConfigWrites(acked []string, failed int, present map[string]map[string]bool) report.Invariant {
	ok := len(acked) > 0 && len(present) > 0
	var parts []string
	for _, n := range slices.Sorted(maps.Keys(present)) {
		if present[n] == nil {
			ok = false
			parts = append(parts, n+" unreachable: its keys could not be listed")
			continue
		}
		var missing []string
		for _, id := range acked {
			if !present[n][id] {
				missing = append(missing, id)
			}
		}
		if len(missing) > 0 {
			ok = false
			if len(missing) > 5 {
				missing = append(missing[:5], "...")
			}
			parts = append(parts, fmt.Sprintf("%s misses %v", n, missing))
		}
	}
	head := fmt.Sprintf("%d writes acknowledged, %d not acknowledged (refused or cut off), checked on %d nodes", len(acked), failed, len(present))
	if len(acked) == 0 {
		head += "; no write was acknowledged"
	}
	return report.Invariant{Name: InvConfigWrites, OK: ok, Detail: strings.Join(append([]string{head}, parts...), "; ")}
}

// MinuteUsage is one tenant's usage in one ledger minute.
type MinuteUsage struct {
	Minute   time.Time
	Requests int64
	Tokens   int64
}

// TenantLimits checks one tenant's usage per minute against its limits
// (0 = unlimited).
func TenantLimits(tenant string, rows []MinuteUsage, rpm, tpm int64) report.Invariant {
	var worstR, worstT int64
	over := 0
	for _, r := range rows {
		worstR, worstT = max(worstR, r.Requests), max(worstT, r.Tokens)
		if (rpm > 0 && r.Requests > rpm) || (tpm > 0 && r.Tokens > tpm) {
			over++
		}
	}
	return report.Invariant{
		Name: InvTenantLimits, OK: over == 0 && len(rows) > 0,
		Detail: fmt.Sprintf("tenant %s: %d minutes, %d over; worst minute %d/%d requests, %d/%d tokens",
			tenant, len(rows), over, worstR, rpm, worstT, tpm),
	}
}

// Overlaps reports whether [start, end] meets a fault's window, widened
// by FaultSettle after its end, and after a node loss to NodeLossSettle
// after it began; t0 is the run's start.
func Overlaps(faults []report.Fault, t0, start, end time.Time) bool {
	for _, f := range faults {
		from := t0.Add(f.At)
		until := t0.Add(settleEnd(f))
		if !end.Before(from) && !start.After(until) {
			return true
		}
	}
	return false
}

// NormalUnharmed checks that normal tenants succeed at least
// MinNormalSuccess of the time (failures overlapping a fault are the
// fault's, not counted), and that their p99 outside fault windows after
// the calm phase is at most MaxP99Ratio times the calm phase's.
func NormalUnharmed(recs []*Record, faults []report.Fault, t0, calmEnd time.Time) report.Invariant {
	var ok, bad, excused int
	var calm, later []time.Duration
	for _, r := range recs {
		if r.Class != ClassNormal || r.End.IsZero() {
			continue
		}
		overlapped := Overlaps(faults, t0, r.Start, r.End)
		if r.Kind == KindOK {
			ok++
			d := r.End.Sub(r.Start)
			switch {
			case r.End.Before(calmEnd):
				calm = append(calm, d)
			case !overlapped:
				later = append(later, d)
			}
			continue
		}
		if overlapped {
			excused++
			continue
		}
		bad++
	}
	rate := float64(ok) / float64(max(ok+bad, 1))
	p99c, p99l := Quantile(calm, 0.99), Quantile(later, 0.99)
	ratio := 0.0
	if p99c > 0 {
		ratio = float64(p99l) / float64(p99c)
	}
	good := ok+bad > 0 && rate >= MinNormalSuccess && len(calm) > 0 && ratio <= MaxP99Ratio
	return report.Invariant{
		Name: InvNormalUnharmed, OK: good,
		Detail: fmt.Sprintf("success %.2f%% (%d ok, %d failed outside faults, %d failures during faults excused; need >= %.0f%%); p99 calm %v, after calm outside faults %v (%.2fx, limit %.1fx)",
			100*rate, ok, bad, excused, 100*MinNormalSuccess, p99c.Round(time.Millisecond), p99l.Round(time.Millisecond), ratio, MaxP99Ratio),
	}
}

// Quantile returns the q-quantile of ds (nearest rank), 0 when empty. It
// sorts ds.
func Quantile(ds []time.Duration, q float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	slices.Sort(ds)
	i := int(q*float64(len(ds))+0.5) - 1
	return ds[min(max(i, 0), len(ds)-1)]
}

// TenantStats summarises what each tenant's clients saw.
func TenantStats(recs []*Record) []report.TenantStats {
	by := map[string]*report.TenantStats{}
	lat := map[string][]time.Duration{}
	var order []string
	for _, r := range recs {
		s := by[r.Tenant]
		if s == nil {
			s = &report.TenantStats{Tenant: r.Tenant, Class: r.Class}
			by[r.Tenant] = s
			order = append(order, r.Tenant)
		}
		s.Sent++
		switch r.Kind {
		case KindOK:
			s.OK++
			lat[r.Tenant] = append(lat[r.Tenant], r.End.Sub(r.Start))
		case KindRefused:
			s.Refused++
		case KindHung, "":
			s.Hung++
		default:
			s.Failed++
		}
	}
	slices.Sort(order)
	out := make([]report.TenantStats, 0, len(order))
	for _, t := range order {
		s := by[t]
		s.P50, s.P99 = Quantile(lat[t], 0.5), Quantile(lat[t], 0.99)
		out = append(out, *s)
	}
	return out
}

// UnknownAttempts returns the IDs of attempts whose outcome the client
// could not know.
func UnknownAttempts(recs []*Record) []string {
	var ids []string
	for _, r := range recs {
		for _, a := range r.snapshotAttempts() {
			if a.Unknown {
				ids = append(ids, a.ID)
			}
		}
	}
	return ids
}

// TopErrors returns the n most frequent error texts per class, most
// frequent first, e.g. "batch: 84 x status 429: ...".
func TopErrors(recs []*Record, n int) []string {
	type key struct{ class, text string }
	count := map[key]int{}
	for _, r := range recs {
		if r.Err != "" {
			count[key{r.Class, r.Err}]++
		}
	}
	keys := slices.SortedFunc(maps.Keys(count), func(a, b key) int {
		if c := strings.Compare(a.class, b.class); c != 0 {
			return c
		}
		if d := count[b] - count[a]; d != 0 {
			return d
		}
		return strings.Compare(a.text, b.text)
	})
	var out []string
	per := map[string]int{}
	for _, k := range keys {
		if per[k.class] >= n {
			continue
		}
		per[k.class]++
		out = append(out, fmt.Sprintf("%s: %d x %s", k.class, count[k], k.text))
	}
	return out
}
