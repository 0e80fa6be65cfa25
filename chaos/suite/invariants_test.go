package suite

import (
	"strings"
	"testing"
	"time"

	"github.com/sluicehq/sluice/chaos/report"
)

var t0 = time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)

// rec builds a finished record starting at start (since t0) lasting d.
func rec(class, kind string, start, d time.Duration) *Record {
	return &Record{Tenant: class + "-t", Class: class, Kind: kind, Start: t0.Add(start), End: t0.Add(start + d), Deadline: 30 * time.Second}
}

func TestAnswered(t *testing.T) {
	open := rec(ClassNormal, "", 0, 0)
	open.End = time.Time{}
	tests := []struct {
		name string
		recs []*Record
		ok   bool
	}{
		{"all ok or clean errors", []*Record{rec(ClassNormal, KindOK, 0, time.Second), rec(ClassBatch, KindRefused, 0, time.Second), rec(ClassNormal, KindFailed, 0, time.Second)}, true},
		{"one hung", []*Record{rec(ClassNormal, KindOK, 0, time.Second), rec(ClassNormal, KindHung, 0, 30*time.Second)}, false},
		{"ended past its deadline", []*Record{rec(ClassNormal, KindFailed, 0, 40*time.Second)}, false},
		{"never ended", []*Record{open}, false},
		{"no requests", nil, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Answered(tt.recs); got.OK != tt.ok {
				t.Errorf("OK = %v, want %v (%s)", got.OK, tt.ok, got.Detail)
			}
		})
	}
}

func TestLedgerEqualsMock(t *testing.T) {
	tests := []struct {
		name                  string
		ledger, mock, unknown map[string]Totals
		ok                    bool
		detail                string
	}{
		{"equal", map[string]Totals{"east": {10, 100, 200}}, map[string]Totals{"east": {10, 100, 200}}, nil, true, "equal"},
		{"unknown attempts subtracted", map[string]Totals{"east": {9, 90, 180}}, map[string]Totals{"east": {10, 100, 200}}, map[string]Totals{"east": {1, 10, 20}}, true, "equal"},
		{"ledger lost a request", map[string]Totals{"east": {9, 90, 180}}, map[string]Totals{"east": {10, 100, 200}}, nil, false, "DIFFER by -1 req"},
		{"ledger counted more", map[string]Totals{"east": {11, 110, 220}}, map[string]Totals{"east": {10, 100, 200}}, nil, false, "DIFFER by +1 req"},
		{"a deployment only in the mock", map[string]Totals{}, map[string]Totals{"sweden": {1, 1, 1}}, nil, false, "sweden"},
		{"nothing at all", nil, nil, nil, false, "no usage"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := LedgerEqualsMock(tt.ledger, tt.mock, tt.unknown)
			if got.OK != tt.ok || !strings.Contains(got.Detail, tt.detail) {
				t.Errorf("got %v %q, want %v containing %q", got.OK, got.Detail, tt.ok, tt.detail)
			}
		})
	}
}

func TestWindowsWithinQuota(t *testing.T) {
	w := func(reqs, toks int64) report.Window {
		return report.Window{Deployment: "east", Length: 10 * time.Second, Requests: reqs, Tokens: toks, LimitRequests: 100, LimitTokens: 5000}
	}
	tests := []struct {
		name string
		ws   []report.Window
		ok   bool
	}{
		{"within", []report.Window{w(100, 5000), w(10, 10)}, true},
		{"requests over", []report.Window{w(101, 10)}, false},
		{"tokens over", []report.Window{w(1, 5001)}, false},
		{"no windows", nil, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := WindowsWithinQuota(tt.ws); got.OK != tt.ok {
				t.Errorf("OK = %v, want %v (%s)", got.OK, tt.ok, got.Detail)
			}
		})
	}
}

func TestNoUpstream429(t *testing.T) {
	tests := []struct {
		name string
		up   map[string]Upstream
		ok   bool
	}{
		{"none", map[string]Upstream{"east": {Requests: 1000}}, true},
		{"at the bound", map[string]Upstream{"east": {Requests: 1000, Rejected429: 1}}, true},
		{"over", map[string]Upstream{"east": {Requests: 1000, Rejected429: 2}}, false},
		{"no traffic known", nil, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := NoUpstream429(tt.up); got.OK != tt.ok {
				t.Errorf("OK = %v, want %v (%s)", got.OK, tt.ok, got.Detail)
			}
		})
	}
}

func TestConfigWrites(t *testing.T) {
	all := map[string]bool{"a": true, "b": true}
	tests := []struct {
		name    string
		acked   []string
		present map[string]map[string]bool
		ok      bool
	}{
		{"everywhere", []string{"a", "b"}, map[string]map[string]bool{"n1": all, "n2": all}, true},
		{"lost on one node", []string{"a", "b"}, map[string]map[string]bool{"n1": all, "n2": {"a": true}}, false},
		{"nothing acknowledged", nil, map[string]map[string]bool{"n1": all}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := ConfigWrites(tt.acked, 0, tt.present); got.OK != tt.ok {
				t.Errorf("OK = %v, want %v (%s)", got.OK, tt.ok, got.Detail)
			}
		})
	}
}

func TestTenantLimits(t *testing.T) {
	tests := []struct {
		name string
		rows []MinuteUsage
		ok   bool
	}{
		{"within", []MinuteUsage{{Requests: 60, Tokens: 3000}, {Requests: 10, Tokens: 10}}, true},
		{"requests over", []MinuteUsage{{Requests: 61, Tokens: 10}}, false},
		{"tokens over", []MinuteUsage{{Requests: 1, Tokens: 3001}}, false},
		{"no usage", nil, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := TenantLimits("abuser", tt.rows, 60, 3000); got.OK != tt.ok {
				t.Errorf("OK = %v, want %v (%s)", got.OK, tt.ok, got.Detail)
			}
		})
	}
}

func TestNormalUnharmed(t *testing.T) {
	calmEnd := t0.Add(20 * time.Second)
	kill := []report.Fault{{At: 30 * time.Second, Until: 35 * time.Second, Kind: FaultSIGKILL, Target: "n1"}}
	many := func(class, kind string, start time.Duration, n int, d time.Duration) []*Record {
		var rs []*Record
		for i := range n {
			rs = append(rs, rec(class, kind, start+time.Duration(i)*10*time.Millisecond, d))
		}
		return rs
	}
	cat := func(parts ...[]*Record) []*Record {
		var out []*Record
		for _, p := range parts {
			out = append(out, p...)
		}
		return out
	}
	calm := many(ClassNormal, KindOK, 0, 200, 100*time.Millisecond)
	later := many(ClassNormal, KindOK, 50*time.Second, 200, 120*time.Millisecond)
	tests := []struct {
		name string
		recs []*Record
		ok   bool
	}{
		{"healthy", cat(calm, later), true},
		{"failures at a kill are the fault's", cat(calm, later, many(ClassNormal, KindFailed, 31*time.Second, 50, time.Millisecond)), true},
		{"failures shortly after the fault are excused too", cat(calm, later, many(ClassNormal, KindRefused, 38*time.Second, 20, time.Millisecond)), true},
		{"refusals outside faults", cat(calm, later, many(ClassNormal, KindRefused, 60*time.Second, 10, time.Millisecond)), false},
		{"other classes do not count", cat(calm, later, many(ClassAbusive, KindRefused, 60*time.Second, 100, time.Millisecond)), true},
		{"slow after calm", cat(calm, many(ClassNormal, KindOK, 50*time.Second, 200, time.Second)), false},
		{"no calm phase measured", later, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := NormalUnharmed(tt.recs, kill, t0, calmEnd); got.OK != tt.ok {
				t.Errorf("OK = %v, want %v (%s)", got.OK, tt.ok, got.Detail)
			}
		})
	}
}

func TestQuantile(t *testing.T) {
	ds := func(ms ...int) []time.Duration {
		var out []time.Duration
		for _, m := range ms {
			out = append(out, time.Duration(m)*time.Millisecond)
		}
		return out
	}
	tests := []struct {
		name string
		in   []time.Duration
		q    float64
		want time.Duration
	}{
		{"empty", nil, 0.99, 0},
		{"one", ds(5), 0.5, 5 * time.Millisecond},
		{"median of unsorted", ds(3, 1, 2), 0.5, 2 * time.Millisecond},
		{"p99 of 100", ds(func() []int {
			var v []int
			for i := 1; i <= 100; i++ {
				v = append(v, i)
			}
			return v
		}()...), 0.99, 99 * time.Millisecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Quantile(tt.in, tt.q); got != tt.want {
				t.Errorf("Quantile = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestUtilisation(t *testing.T) {
	calmEnd, loadEnd := t0.Add(30*time.Second), t0.Add(60*time.Second)
	var ws []report.Window
	for s := time.Duration(0); s < 60*time.Second; s += 10 * time.Second {
		ws = append(ws, report.Window{Deployment: "east", Start: s, Length: 10 * time.Second, Requests: 50, Tokens: 2500})
	}
	got := Utilisation(ws, t0, calmEnd, loadEnd, 600, 30000)
	for k, want := range map[string]float64{"utilisation_requests_calm": 0.5, "utilisation_tokens_calm": 0.5, "utilisation_requests_faults": 0.5} {
		if got[k] != want {
			t.Errorf("%s = %v, want %v (all %v)", k, got[k], want, got)
		}
	}
}

func TestParseShareLine(t *testing.T) {
	tests := []struct {
		line   string
		dep    string
		v      float64
		metric string
		ok     bool
	}{
		{`sluice_quota_share_requests{deployment="east"} 33`, "east", 33, "sluice_quota_share_requests", true},
		{`sluice_quota_share_tokens{deployment="sweden"} 1666`, "sweden", 1666, "sluice_quota_share_tokens", true},
		{`sluice_quota_used_tokens{deployment="east"} 3`, "", 0, "", false},
		{`sluice_quota_share_tokens{deployment="east"} x`, "", 0, "", false},
	}
	for _, tt := range tests {
		dep, v, metric, ok := parseShareLine(tt.line)
		if dep != tt.dep || v != tt.v || metric != tt.metric || ok != tt.ok {
			t.Errorf("parseShareLine(%q) = %q %v %q %v", tt.line, dep, v, metric, ok)
		}
	}
}

func TestConfigWritesUnreachable(t *testing.T) {
	got := ConfigWrites([]string{"a"}, 0, map[string]map[string]bool{"n1": {"a": true}, "n2": nil})
	if got.OK || !strings.Contains(got.Detail, "n2 unreachable") {
		t.Errorf("got %v %q", got.OK, got.Detail)
	}
}

func TestTenantRates(t *testing.T) {
	tests := []struct {
		offered, budget float64
		want            map[string]float64
	}{
		{18, 20, map[string]float64{"alpha": 6, "bravo": 6, "crunch": 3.6, "abuser": 2.4}},
		{30, 20, map[string]float64{"alpha": 6, "bravo": 6, "crunch": 10.8, "abuser": 7.2}},
		{10, 20, map[string]float64{"alpha": 6, "bravo": 6, "crunch": 0, "abuser": 0}},
	}
	for _, tt := range tests {
		got := tenantRates(tt.offered, tt.budget)
		for k, w := range tt.want {
			if d := got[k] - w; d > 1e-9 || d < -1e-9 {
				t.Errorf("offered %v: %s = %v, want %v", tt.offered, k, got[k], w)
			}
		}
	}
}

// TestOverlapsSettle: a fault excuses requests until FaultSettle after it
// ends, and a node loss until NodeLossSettle after it began, which is
// longer than a 5 s kill plus FaultSettle.
func TestOverlapsSettle(t *testing.T) {
	at := func(d time.Duration) time.Time { return t0.Add(d) }
	kill := report.Fault{Kind: FaultSIGKILL, At: 30 * time.Second, Until: 35 * time.Second}
	down := report.Fault{Kind: FaultRegionDown, At: 30 * time.Second, Until: 40 * time.Second}
	if NodeLossSettle <= 10*time.Second {
		t.Fatalf("NodeLossSettle %v: shorter than a kill, its restart and FaultSettle", NodeLossSettle)
	}
	cases := []struct {
		name  string
		fault report.Fault
		start time.Duration
		want  bool
	}{
		{"before the kill", kill, 29 * time.Second, false},
		{"during the kill", kill, 32 * time.Second, true},
		{"after restart plus settle, while the share is held", kill, 30*time.Second + NodeLossSettle - time.Second, true},
		{"after the share came back", kill, 30*time.Second + NodeLossSettle + time.Second, false},
		{"region down, settling", down, 44 * time.Second, true},
		{"region down, settled", down, 46 * time.Second, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := Overlaps([]report.Fault{tc.fault}, t0, at(tc.start), at(tc.start+100*time.Millisecond))
			if got != tc.want {
				t.Fatalf("Overlaps = %v, want %v (NodeLossSettle %v)", got, tc.want, NodeLossSettle)
			}
		})
	}
}
