package report

import (
	"bytes"
	"encoding/json"
	"encoding/xml"
	"errors"
	"io"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

const oddNode = `n<&>"3'` // a node name that must be escaped in XML

// sampleRun is a two-minute run on three nodes and two deployments: n2 is
// killed at 30 s and back at 60 s, the odd node is paused from 50 s to
// 65 s, region us has a 429 storm from 80 s to 95 s, and eu-1 goes over
// its token limit in the window starting at 40 s.
func sampleRun() *Run {
	r := &Run{
		Name:     "ci",
		Seed:     42,
		Started:  time.Date(2026, 11, 23, 14, 0, 0, 0, time.UTC),
		Duration: 2 * time.Minute,
		Nodes:    []string{"n1", "n2", oddNode},
		Deployments: []Deployment{
			{Name: "eu-1", Region: "eu", RPM: 600, TPM: 60000},
			{Name: "us-1", Region: "us", RPM: 300, TPM: 30000},
		},
		Faults: []Fault{
			{At: 30 * time.Second, Kind: "sigkill", Target: "n2", Detail: "pid 4242"},
			{At: 50 * time.Second, Until: 65 * time.Second, Kind: "pause", Target: oddNode},
			{At: 80 * time.Second, Until: 95 * time.Second, Kind: "429-storm", Target: "us", Detail: "every answer 429 <retry-after: 2>"},
		},
		Tenants: []TenantStats{
			{Tenant: "acme", Class: "normal", Sent: 1200, OK: 1180, Refused: 20, P50: 180 * time.Millisecond, P99: 900 * time.Millisecond},
			{Tenant: "bulk", Class: "batch", Sent: 400, OK: 350, Refused: 45, Failed: 4, Hung: 1, P50: 2 * time.Second, P99: 6 * time.Second},
			{Tenant: "spam", Class: "abusive", Sent: 5000, OK: 300, Refused: 4700, P50: 3 * time.Millisecond, P99: 12 * time.Millisecond},
		},
		Invariants: []Invariant{
			{Name: "no-hung-requests", OK: false, Detail: "1 hung of 6600 (want 0)"},
			{Name: "quota-held", OK: true, Detail: "worst 10s window 10,400/10,000 tokens within 5% tolerance"},
			{Name: "cluster-recovered", OK: true, Detail: "3 of 3 nodes healthy 4.1s after the last fault"},
		},
		Figures: map[string]float64{"utilisation_calm": 0.91, "recovery_s": 4.1},
		Notes:   []string{"partition skipped: needs root"},
	}
	for _, d := range r.Deployments {
		for start := time.Duration(0); start < r.Duration; start += 10 * time.Second {
			limitTok, limitReq := d.TPM/6, d.RPM/6
			w := Window{Deployment: d.Name, Start: start, Length: 10 * time.Second,
				Tokens: limitTok * 8 / 10, Requests: limitReq * 7 / 10, LimitTokens: limitTok, LimitRequests: limitReq}
			if d.Name == "eu-1" && start == 40*time.Second {
				w.Tokens = limitTok * 13 / 10
			}
			if d.Name == "us-1" && start >= 80*time.Second && start < 100*time.Second {
				w.Tokens, w.Requests = limitTok/10, limitReq/10
			}
			r.Windows = append(r.Windows, w)
		}
		for at := time.Duration(0); at <= r.Duration; at += 5 * time.Second {
			for _, n := range r.Nodes {
				if share, ok := sampleShare(float64(d.TPM), n, at); ok {
					r.Shares = append(r.Shares, ShareSample{At: at, Node: n, Deployment: d.Name,
						Tokens: share, Requests: share / 100})
				}
			}
		}
	}
	return r
}

// sampleShare is a node's share of a deployment at an instant, or false
// while the node cannot report: n2 is dead from 30 s to 60 s and the odd
// node paused from 50 s to 65 s; the live nodes split the quota between
// them after a few seconds.
func sampleShare(tpm float64, node string, at time.Duration) (float64, bool) {
	dead := func(n string, at time.Duration) bool {
		return (n == "n2" && at > 30*time.Second && at < 60*time.Second) ||
			(n == oddNode && at > 50*time.Second && at < 65*time.Second)
	}
	if dead(node, at) {
		return 0, false
	}
	// The allocator sees a membership change about 5 s late.
	seen := at - 5*time.Second
	live := 0
	for _, n := range []string{"n1", "n2", oddNode} {
		if !dead(n, seen) {
			live++
		}
	}
	return tpm / float64(live), true
}

func TestPassed(t *testing.T) {
	tests := []struct {
		name string
		run  *Run
		want bool
	}{
		{"nil run", nil, false},
		{"no invariants checked", &Run{}, false},
		{"all held", &Run{Invariants: []Invariant{{Name: "a", OK: true}, {Name: "b", OK: true}}}, true},
		{"one failed", &Run{Invariants: []Invariant{{Name: "a", OK: true}, {Name: "b"}}}, false},
		{"sample", sampleRun(), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.run.Passed(); got != tt.want {
				t.Fatalf("Passed() = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestWriteJSON(t *testing.T) {
	nan := sampleRun()
	nan.Figures["broken"] = math.NaN()
	inf := sampleRun()
	inf.Shares[3].Tokens = math.Inf(1)
	tests := []struct {
		name    string
		run     *Run
		wantErr error
	}{
		{"sample round-trips", sampleRun(), nil},
		{"empty run round-trips", &Run{}, nil},
		{"nil run", nil, ErrNilRun},
		{"NaN figure", nan, ErrNonFinite},
		{"infinite share", inf, ErrNonFinite},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var buf bytes.Buffer
			err := WriteJSON(&buf, tt.run)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("WriteJSON error = %v, want %v", err, tt.wantErr)
			}
			if tt.wantErr != nil {
				return
			}
			var got Run
			if err := json.Unmarshal(buf.Bytes(), &got); err != nil {
				t.Fatalf("decode: %v", err)
			}
			if !reflect.DeepEqual(&got, tt.run) {
				t.Fatalf("round trip differs:\n got %+v\nwant %+v", got, *tt.run)
			}
		})
	}
}

func TestJSONFieldNames(t *testing.T) {
	var buf bytes.Buffer
	if err := WriteJSON(&buf, sampleRun()); err != nil {
		t.Fatal(err)
	}
	out := buf.String()
	for _, key := range []string{`"duration_ns": 120000000000`, `"at_ns": 30000000000`, `"until_ns": 65000000000`,
		`"limit_tokens": 10000`, `"tokens_per_min"`, `"p99_ns"`, `"utilisation_calm": 0.91`} {
		if !strings.Contains(out, key) {
			t.Errorf("JSON lacks %s", key)
		}
	}
}

func TestSummary(t *testing.T) {
	passing := sampleRun()
	passing.Invariants = passing.Invariants[1:]
	forged := sampleRun()
	forged.Invariants[0].Detail = "bad\n  PASS  no-hung-requests"
	tests := []struct {
		name        string
		run         *Run
		want        []string
		wantVerdict string
	}{
		{
			name: "failing sample",
			run:  sampleRun(),
			want: []string{
				`Sluice chaos run "ci": FAIL`,
				"seed      42",
				"duration  2m0s",
				"nodes     3: n1, n2, " + oddNode,
				"  AT   UNTIL  FOR      KIND       TARGET",
				"30s  -      instant  sigkill    n2",
				"50s  65s    15s      pause      " + oddNode,
				"80s  95s    15s      429-storm  us",
				"spam    abusive  5000  300   4700",
				"eu-1        eu      600  60000  12 x 10s",
				"1 of 12",
				"40s+10s 13000/10000 (130.0%) OVER",
				"  FAIL  no-hung-requests: 1 hung of 6600 (want 0)",
				"  PASS  quota-held: worst 10s window",
				"  PASS  cluster-recovered: 3 of 3",
				"recovery_s        4.1",
				"  - partition skipped: needs root",
			},
			wantVerdict: "VERDICT: FAIL - 1 of 3 invariants failed: no-hung-requests",
		},
		{
			name:        "passing",
			run:         passing,
			want:        []string{`Sluice chaos run "ci": PASS`, "  PASS  quota-held"},
			wantVerdict: "VERDICT: PASS - all 2 invariants held",
		},
		{
			name:        "nothing checked",
			run:         &Run{Name: "empty"},
			want:        []string{"(none checked)", "Fault timeline", "  (none)"},
			wantVerdict: "VERDICT: FAIL - no invariant was checked",
		},
		{
			name:        "detail cannot forge a line",
			run:         forged,
			want:        []string{"  FAIL  no-hung-requests: bad PASS no-hung-requests"},
			wantVerdict: "VERDICT: FAIL - 1 of 3 invariants failed: no-hung-requests",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var buf bytes.Buffer
			if err := Summary(&buf, tt.run); err != nil {
				t.Fatal(err)
			}
			out := buf.String()
			for _, w := range tt.want {
				if !strings.Contains(out, w) {
					t.Errorf("summary lacks %q", w)
				}
			}
			lines := strings.Split(strings.TrimRight(out, "\n"), "\n")
			if last := lines[len(lines)-1]; last != tt.wantVerdict {
				t.Errorf("last line = %q, want %q", last, tt.wantVerdict)
			}
			if t.Failed() {
				t.Logf("summary:\n%s", out)
			}
		})
	}
}

// svgElement is one element of a parsed chart.
type svgElement struct {
	name  string
	attrs map[string]string
}

// parseSVG decodes every token of an SVG document, failing the test on
// malformed XML, and returns its elements and character data.
func parseSVG(t *testing.T, data []byte) ([]svgElement, string) {
	t.Helper()
	dec := xml.NewDecoder(bytes.NewReader(data))
	var (
		elems []svgElement
		text  strings.Builder
		depth int
	)
	for {
		tok, err := dec.Token()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("chart is not well-formed XML: %v", err)
		}
		switch tok := tok.(type) {
		case xml.StartElement:
			depth++
			e := svgElement{name: tok.Name.Local, attrs: map[string]string{}}
			for _, a := range tok.Attr {
				e.attrs[a.Name.Local] = a.Value
			}
			elems = append(elems, e)
		case xml.EndElement:
			depth--
		case xml.CharData:
			text.Write(tok)
			text.WriteString("\n")
		}
	}
	if depth != 0 {
		t.Fatalf("unbalanced elements: depth %d at end", depth)
	}
	if len(elems) == 0 || elems[0].name != "svg" {
		t.Fatalf("root element is not svg")
	}
	return elems, text.String()
}

func hasClass(e svgElement, class string) bool {
	for _, c := range strings.Fields(e.attrs["class"]) {
		if c == class {
			return true
		}
	}
	return false
}

func count(elems []svgElement, match func(svgElement) bool) int {
	n := 0
	for _, e := range elems {
		if match(e) {
			n++
		}
	}
	return n
}

func TestChart(t *testing.T) {
	r := sampleRun()
	var buf bytes.Buffer
	if err := Chart(&buf, r); err != nil {
		t.Fatal(err)
	}
	elems, text := parseSVG(t, buf.Bytes())

	t.Run("one share line per node per deployment", func(t *testing.T) {
		for _, d := range r.Deployments {
			for _, n := range r.Nodes {
				got := count(elems, func(e svgElement) bool {
					return e.name == "path" && hasClass(e, "share") &&
						e.attrs["data-node"] == n && e.attrs["data-deployment"] == d.Name
				})
				if got != 1 {
					t.Errorf("deployment %s node %q: %d share paths, want 1", d.Name, n, got)
				}
			}
		}
	})
	t.Run("one sum line per deployment", func(t *testing.T) {
		if n := count(elems, func(e svgElement) bool { return hasClass(e, "share-sum") }); n != len(r.Deployments) {
			t.Errorf("%d share sums, want %d", n, len(r.Deployments))
		}
	})
	t.Run("killed node's line is broken", func(t *testing.T) {
		for _, e := range elems {
			if hasClass(e, "share") && e.attrs["data-node"] == "n2" {
				if m := strings.Count(e.attrs["d"], "M"); m != 2 {
					t.Errorf("n2 path on %s has %d runs, want 2 (gap while dead)", e.attrs["data-deployment"], m)
				}
			}
		}
	})
	t.Run("over-limit window is red", func(t *testing.T) {
		over := count(elems, func(e svgElement) bool {
			return e.name == "rect" && hasClass(e, "over") && e.attrs["fill"] == colourOver
		})
		if over != 1 {
			t.Errorf("%d red over-limit bars, want 1", over)
		}
		if n := count(elems, func(e svgElement) bool { return hasClass(e, "over-marker") }); n != 1 {
			t.Errorf("%d over-limit markers, want 1", n)
		}
		if n := count(elems, func(e svgElement) bool { return e.name == "path" && hasClass(e, "limit") }); n != 4 {
			t.Errorf("%d dashed window limits, want 4 (tokens and requests, two deployments)", n)
		}
	})
	t.Run("one band or line per fault", func(t *testing.T) {
		groups := count(elems, func(e svgElement) bool { return e.name == "g" && hasClass(e, "fault") })
		bands := count(elems, func(e svgElement) bool { return hasClass(e, "fault-band") })
		lines := count(elems, func(e svgElement) bool { return hasClass(e, "fault-line") })
		if groups != 3 || bands != 2 || lines != 1 {
			t.Errorf("faults drawn as %d groups, %d bands, %d lines; want 3, 2, 1", groups, bands, lines)
		}
		for _, label := range []string{"sigkill n2", "pause " + oddNode, "429-storm us"} {
			if !strings.Contains(text, label) {
				t.Errorf("no fault label %q", label)
			}
		}
	})
	t.Run("title carries name, seed and verdict", func(t *testing.T) {
		for _, want := range []string{`Sluice chaos run "ci" · seed 42 ·`, "FAIL", "failed: no-hung-requests"} {
			if !strings.Contains(text, want) {
				t.Errorf("chart text lacks %q", want)
			}
		}
	})
	t.Run("text is escaped", func(t *testing.T) {
		raw := buf.String()
		if strings.Contains(raw, oddNode) || strings.Contains(raw, "<retry-after") {
			t.Error("raw chart contains unescaped markup from the run")
		}
		if !strings.Contains(raw, "n&lt;&amp;&gt;&#34;3&#39;") {
			t.Error("escaped node name not found")
		}
		if !strings.Contains(text, oddNode) {
			t.Error("node name does not decode back")
		}
	})
	t.Run("deterministic", func(t *testing.T) {
		var again bytes.Buffer
		if err := Chart(&again, sampleRun()); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(buf.Bytes(), again.Bytes()) {
			t.Error("two charts of the same run differ")
		}
	})
}

func TestChartDegenerateRuns(t *testing.T) {
	nan := sampleRun()
	nan.Shares[0].Tokens = math.NaN()
	mixed := sampleRun()
	mixed.Windows = append(mixed.Windows, Window{Deployment: "eu-1", Start: 60 * time.Second,
		Length: time.Minute, Tokens: 70000, LimitTokens: 60000, Requests: 100, LimitRequests: 600})
	tests := []struct {
		name        string
		run         *Run
		wantMarkers int
	}{
		{"empty run", &Run{}, 0},
		{"faults only", &Run{Faults: []Fault{{At: time.Second, Kind: "<odd kind>"}}}, 0},
		{"NaN share", nan, 1},
		{"unknown deployment in windows", &Run{Windows: []Window{{Deployment: "ghost", Length: time.Second, Tokens: 5}}}, 0},
		{"over-limit 60s window among 10s windows", mixed, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var buf bytes.Buffer
			if err := Chart(&buf, tt.run); err != nil {
				t.Fatal(err)
			}
			elems, _ := parseSVG(t, buf.Bytes())
			if n := count(elems, func(e svgElement) bool { return hasClass(e, "over-marker") }); n != tt.wantMarkers {
				t.Errorf("%d over-limit markers, want %d", n, tt.wantMarkers)
			}
			if strings.Contains(buf.String(), "NaN") {
				t.Error("chart contains NaN")
			}
		})
	}
}

func TestWriteDir(t *testing.T) {
	broken := sampleRun()
	broken.Figures["broken"] = math.Inf(-1)
	tests := []struct {
		name      string
		run       *Run
		wantFiles []string
		wantErr   error
	}{
		{"sample", sampleRun(), []string{JSONFile, SummaryFile, ChartFile}, nil},
		{"non-finite figure keeps summary and chart", broken, []string{SummaryFile, ChartFile}, ErrNonFinite},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "nested", "out")
			paths, err := WriteDir(dir, tt.run)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("WriteDir error = %v, want %v", err, tt.wantErr)
			}
			var want []string
			for _, f := range tt.wantFiles {
				want = append(want, filepath.Join(dir, f))
			}
			if !reflect.DeepEqual(paths, want) {
				t.Fatalf("paths = %v, want %v", paths, want)
			}
			entries, err := os.ReadDir(dir)
			if err != nil {
				t.Fatal(err)
			}
			if len(entries) != len(want) {
				t.Errorf("dir holds %d entries, want %d (no temporary files left)", len(entries), len(want))
			}
			for _, p := range paths {
				info, err := os.Stat(p)
				if err != nil || info.Size() == 0 {
					t.Errorf("%s: missing or empty (%v)", p, err)
				}
			}
			if tt.wantErr == nil {
				data, err := os.ReadFile(paths[0])
				if err != nil {
					t.Fatal(err)
				}
				var got Run
				if err := json.Unmarshal(data, &got); err != nil || !reflect.DeepEqual(&got, tt.run) {
					t.Errorf("report.json does not decode to the run (err %v)", err)
				}
			}
			if out := os.Getenv("REPORT_SAMPLE_DIR"); out != "" && tt.wantErr == nil {
				// For a look at the sample chart; never committed.
				if _, err := WriteDir(out, tt.run); err != nil {
					t.Fatal(err)
				}
			}
		})
	}
}

func TestNilRun(t *testing.T) {
	for name, f := range map[string]func(io.Writer, *Run) error{"WriteJSON": WriteJSON, "Summary": Summary, "Chart": Chart} {
		if err := f(io.Discard, nil); !errors.Is(err, ErrNilRun) {
			t.Errorf("%s(nil) = %v, want ErrNilRun", name, err)
		}
	}
	if _, err := WriteDir(t.TempDir(), nil); !errors.Is(err, ErrNilRun) {
		t.Errorf("WriteDir(nil) = %v, want ErrNilRun", err)
	}
}

func TestSI(t *testing.T) {
	tests := []struct {
		in   float64
		want string
	}{
		{0, "0"}, {950, "950"}, {1000, "1k"}, {1250, "1.25k"}, {25000, "25k"},
		{1500000, "1.5M"}, {2e9, "2G"}, {-1200, "-1.2k"}, {2.5, "2.5"},
	}
	for _, tt := range tests {
		if got := si(tt.in); got != tt.want {
			t.Errorf("si(%v) = %q, want %q", tt.in, got, tt.want)
		}
	}
}
